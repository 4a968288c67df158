"""Off-policy actor-critic (Off-PAC; Degris, White & Sutton 2012, arXiv:1205.4839).

Experience comes from a behaviour policy b, not from the policy π being learned:
``behaviour="uniform"`` (uniform random actions) or ``"stale"`` (a copy of π refreshed
every ``behaviour_update_every`` updates). Each rollout goes into a replay buffer as
one segment of ``num_steps`` steps per env, with log b(a|s); each update samples
segments and, with the per-step importance ratio ρ_t = π(a_t|s_t) / b(a_t|s_t),

  * fits the critic V to importance-corrected TD(λ) targets v_t (V-trace, with ρ and the
    traces truncated at ``clip_rho`` / ``clip_c``; ``purerl.ops.vtrace``);
  * moves the actor along ρ̄_t (r_t + γ[λ v_{t+1} + (1−λ) V(s_{t+1})] − V(s_t)) ∇log π(a_t|s_t)
    (plus an entropy bonus), the excursion-objective gradient of the paper with a deep
    critic.

ρ is a constant weight: no gradient flows through it (ALGORITHMS.md §4 lists
differentiating through ρ as a known bug), and ratios are those of the step's own
state s_t. With b = π every ρ is 1 and the update is on-policy actor-critic: a TD(λ)
critic and GAE(λ) advantages (tested). The paper's linear GTD(λ) critic is replaced by this deep TD
critic, as in deep Off-PAC implementations (e.g. DeepRL's ``OffPAC_agent``).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purerl import buffers
from purerl.algos import common
from purerl.algos.base import Agent
from purerl.config import check_choice, check_range, config
from purerl.networks import ValueNet
from purerl.ops.returns import vtrace
from purerl.types import Box, Discrete, EnvSpec, Transition

ACTION_SPACES = ("Discrete", "Box")


@config
class Config:
    """Off-PAC hyperparameters."""

    total_steps: int = 1_000_000
    """Environment steps per seed (summed over the parallel envs)."""
    num_envs: int = 16
    """Parallel environments per seed (each rollout adds one segment per env)."""
    num_steps: int = 16
    """Segment length: steps per env per rollout, the horizon of the TD(λ) targets."""
    num_evals: int = 20
    """Evaluations over the run (the last one at the end)."""
    num_eval_envs: int = 8
    """Evaluation episodes per evaluation (the target policy π in eval mode)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (an env wrapper)."""
    behaviour: str = "stale"
    """Behaviour policy b: 'uniform' (uniform random actions) or 'stale' (a copy of π)."""
    behaviour_update_every: int = 10
    """With behaviour='stale': updates between refreshing b ← π."""
    replay_size: int = 1024
    """Replay capacity in segments (num_steps transitions each)."""
    batch_segments: int = 16
    """Segments per gradient step."""
    updates_per_rollout: int = 1
    """Gradient steps per rollout (the replay ratio)."""
    gamma: float = 0.99
    """Discount factor."""
    trace_lambda: float = 0.9
    """λ of the importance-corrected TD(λ) critic targets."""
    clip_rho: float = 1.0
    """Truncation ρ̄ of the importance ratios weighting the TD errors and the actor
    (inf: untruncated per-decision importance sampling)."""
    clip_c: float = 1.0
    """Truncation of the ratios in the eligibility traces (c_t = λ min(clip_c, ρ_t))."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    lr: float = 3e-4
    """Actor (Adam) learning rate."""
    critic_lr: float = 1e-3
    """Critic (Adam) learning rate."""
    ent_coef: float = 0.01
    """Entropy-bonus coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip over actor and critic; 0 disables it."""
    hidden_sizes: tuple = (64, 64)
    """Hidden layer widths of the actor and of the critic (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""

    def __post_init__(self):
        common.check_loop_fields(self)
        check_choice(self, "behaviour", ("uniform", "stale"))
        for name in ("behaviour_update_every", "replay_size", "batch_segments",
                     "updates_per_rollout"):
            check_range(self, name, 1)
        check_range(self, "trace_lambda", 0.0, 1.0)
        check_range(self, "clip_rho", 0.0, low_open=True)
        check_range(self, "clip_c", 0.0, low_open=True)
        if self.replay_size < self.num_envs:
            raise ValueError(f"Config.replay_size must be >= num_envs = {self.num_envs} "
                             f"(one rollout's segments), got {self.replay_size}")
        batch = self.num_envs * self.num_steps
        if self.total_steps < batch:
            raise ValueError(f"Config.total_steps must be >= num_envs * num_steps = "
                             f"{batch}, got {self.total_steps}")


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    behaviour: dict  # actor parameters of the stale behaviour policy (unused if uniform)
    opt_state: optax.OptState
    replay: buffers.FlatState  # segments: obs, action, reward, discount, log_b, last_obs
    iteration: jax.Array  # int32


def offpac_loss(params, seg, actor, critic, cfg, env_spec):
    """The Off-PAC loss of a batch of segments (time-major ``[T, S, ...]``).

    ``seg`` holds obs, action, reward, discount, log_b (behaviour log-probs) and
    last_obs (the observation after the segment's last step, ``[S, ...]``).
    """
    dist = actor.apply(params["actor"], seg["obs"])
    log_pi = dist.log_prob(common.flat_action(seg["action"], env_spec))
    rho = jnp.exp(jax.lax.stop_gradient(log_pi) - seg["log_b"])
    value = critic.apply(params["critic"], seg["obs"])
    last_value = critic.apply(params["critic"], seg["last_obs"])
    all_values = jnp.concatenate([value, last_value[None]], axis=0)
    targets, adv = vtrace(seg["reward"], seg["discount"], all_values, rho,
                          cfg.trace_lambda, cfg.clip_rho, cfg.clip_c)
    pg_loss = common.policy_gradient_loss(log_pi, adv)
    critic_loss = common.value_loss(value, targets)
    entropy = dist.entropy().mean()
    loss = pg_loss + critic_loss - cfg.ent_coef * entropy
    return loss, {"loss/actor": pg_loss, "loss/critic": critic_loss,
                  "loss/entropy": entropy, "offpac/rho_mean": rho.mean(),
                  "offpac/rho_max": rho.max()}


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build Off-PAC's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.offpac.Config, got {type(cfg).__name__}")
    space = env_spec.action_space
    if cfg.behaviour == "uniform" and isinstance(space, Box):
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError("Config.behaviour='uniform' needs finite Box action bounds")
    actor = common.make_actor(cfg, env_spec)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=len(env_spec.obs_shape))
    clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    opt = common.flat_optimizer(optax.chain(*clip, optax.scale_by_adam()))
    obs_spec = jax.ShapeDtypeStruct(env_spec.obs_shape, jnp.float32)
    action_dtype = jnp.int32 if isinstance(space, Discrete) else jnp.float32
    action_shape = () if isinstance(space, Discrete) else tuple(space.shape)
    t = cfg.num_steps
    segment = {
        "obs": jax.ShapeDtypeStruct((t, *env_spec.obs_shape), jnp.float32),
        "action": jax.ShapeDtypeStruct((t, *action_shape), action_dtype),
        "reward": jax.ShapeDtypeStruct((t,), jnp.float32),
        "discount": jax.ShapeDtypeStruct((t,), jnp.float32),
        "log_b": jax.ShapeDtypeStruct((t,), jnp.float32),
        "last_obs": obs_spec,
    }

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "critic": critic.init(k_critic, obs)}
        return State(params, params["actor"], opt.init(params),
                     buffers.flat_init(segment, cfg.replay_size), jnp.int32(0))

    def uniform_action(obs, key):
        batch = obs.shape[: obs.ndim - len(env_spec.obs_shape)]
        if isinstance(space, Discrete):
            action = jax.random.randint(key, batch, 0, space.n)
            return action, jnp.full(batch, -np.log(space.n), jnp.float32)
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
        action = jax.random.uniform(key, (*batch, *space.shape), jnp.float32, low, high)
        log_b = -jnp.sum(jnp.log(jnp.broadcast_to(high - low, space.shape)))
        return action, jnp.full(batch, log_b, jnp.float32)

    def act(state, obs, key, eval=False):
        if eval:
            action, _ = common.sample(actor.apply(state.params["actor"], obs), key,
                                      env_spec, eval=True)
            return action, {}
        if cfg.behaviour == "uniform":
            action, log_b = uniform_action(obs, key)
        else:
            action, log_b = common.sample(actor.apply(state.behaviour, obs), key, env_spec,
                                          eval=False)
        return action, {"log_prob": log_b}

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    def gradient_step(carry, key):
        params, opt_state, replay = carry
        seg = buffers.flat_sample(replay, key, cfg.batch_segments)
        last_obs = seg.pop("last_obs")
        seg = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), seg)  # -> [T, S, ...]
        seg["last_obs"] = last_obs
        grads, metrics = jax.grad(offpac_loss, has_aux=True)(
            params, seg, actor, critic, cfg, env_spec)
        rates = common.group_rates(params, {"actor": cfg.lr, "critic": cfg.critic_lr})
        params, opt_state, grad_norm = opt.step(params, grads, opt_state, rates)
        metrics["opt/grad_norm"] = grad_norm
        return (params, opt_state, replay), metrics

    def update(state, batch: Transition, key):
        to_items = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731 - [T, B] -> [B, T]
        items = {
            "obs": to_items(batch.obs).astype(jnp.float32),
            "action": to_items(batch.action).astype(action_dtype),
            "reward": to_items(batch.reward),
            "discount": to_items(batch.discount),
            "log_b": to_items(batch.extras["log_prob"]),
            "last_obs": batch.next_obs[-1].astype(jnp.float32),
        }
        replay = buffers.flat_add(state.replay, items)
        keys = jax.random.split(key, cfg.updates_per_rollout)
        (params, opt_state, replay), metrics = jax.lax.scan(
            gradient_step, (state.params, state.opt_state, replay), keys)
        metrics = jax.tree.map(jnp.mean, metrics)
        iteration = state.iteration + 1
        refresh = (iteration % cfg.behaviour_update_every) == 0
        behaviour = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                                 params["actor"], state.behaviour)
        return State(params, behaviour, opt_state, replay, iteration), metrics

    return Agent(init=init, act=act, update=update, value=value)
