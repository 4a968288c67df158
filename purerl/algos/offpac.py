"""Off-policy actor-critic (Off-PAC; Degris, White & Sutton 2012, arXiv:1205.4839).

Experience comes from a behaviour policy b, not from the policy π being learned:
``behaviour="uniform"`` (uniform random actions) or ``"stale"`` (a copy of π refreshed
every ``behaviour_update_every`` updates). The loop keeps the experience, with log
b(a|s), in a sequence replay (``replay(config)``); each update samples segments of
``segment_length`` consecutive steps of one env and, with the per-step importance
ratio ρ_t = π(a_t|s_t) / b(a_t|s_t),

  * fits the critic V to importance-corrected TD(λ) targets v_t (V-trace, with ρ and the
    traces truncated at ``clip_rho`` / ``clip_c``; ``purerl.ops.vtrace``);
  * moves the actor along ρ̄_t (r_t + γ[λ v_{t+1} + (1−λ) V(s_{t+1})] − V(s_t)) ∇log π(a_t|s_t)
    (plus an entropy bonus), the excursion-objective gradient of the paper with a deep
    critic.

ρ is a constant weight: no gradient flows through it (differentiating through ρ
would add a term the off-policy gradient theorem does not have), and ratios are those
of the step's own state s_t. Steps cut by a time limit are bootstrapped by the loop
with γ V(s') from the critic of the update that samples them, not the critic of
collection time. With b = π every ρ is 1 and the update is on-policy actor-critic: a TD(λ)
critic and GAE(λ) advantages (tested). The paper's linear GTD(λ) critic is replaced by this deep TD
critic, as in deep Off-PAC implementations (e.g. DeepRL's ``OffPAC_agent``).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_choice, check_range, config
from purerl.memory import Replay, random_actions
from purerl.networks import ValueNet
from purerl.ops.returns import vtrace
from purerl.types import Box, Discrete, EnvSpec, Transition

RUN = RunConfig(total_steps=1_000_000, num_envs=16, num_steps=16)


@config
class Config:
    """Off-PAC hyperparameters."""

    _infinite_ok = ("clip_rho",)  # inf: no truncation (not a field: no annotation)
    behaviour: str = "stale"
    """Behaviour policy b: 'uniform' (uniform random actions) or 'stale' (a copy of π)."""
    behaviour_update_every: int = 10
    """With behaviour='stale': updates between refreshing b ← π."""
    replay_size: int = 1024
    """Replay capacity in segments (segment_length steps each)."""
    segment_length: int = 16
    """Steps per sampled segment: the horizon of the TD(λ) targets."""
    batch_segments: int = 16
    """Segments per gradient step."""
    updates_per_round: int = 1
    """Updates (one gradient step each) per training round, one round per
    RunConfig.num_envs * num_steps env steps: the replay ratio (was
    updates_per_rollout)."""
    _renamed = {"updates_per_rollout": "updates_per_round"}  # not a field
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
        common.check_common_fields(self)
        check_choice(self, "behaviour", ("uniform", "stale"))
        for name in ("behaviour_update_every", "replay_size", "segment_length",
                     "batch_segments", "updates_per_round"):
            check_range(self, name, 1)
        check_range(self, "trace_lambda", 0.0, 1.0)
        check_range(self, "clip_rho", 0.0, low_open=True)
        check_range(self, "clip_c", 0.0, low_open=True)


def replay(cfg: Config) -> Replay:
    """The loop's replay for Off-PAC: per-env streams, sampled as segments."""
    return Replay(capacity=cfg.replay_size * cfg.segment_length,
                  batch_size=cfg.batch_segments, updates=cfg.updates_per_round,
                  sequence_length=cfg.segment_length)


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    behaviour: dict  # actor parameters of the stale behaviour policy (unused if uniform)
    opt_state: optax.OptState
    iteration: jax.Array  # int32, gradient steps done


def offpac_loss(params, batch: Transition, actor, critic, cfg, env_spec):
    """The Off-PAC loss of a batch of segments (time-major ``[T, S, ...]``, the loop's
    ``Transition``: ``extras["log_prob"]`` holds log b, ``next_obs[-1]`` the
    observation after each segment)."""
    dist = actor.apply(params["actor"], batch.obs)
    log_pi = dist.log_prob(common.flat_action(batch.action, env_spec))
    rho = jnp.exp(jax.lax.stop_gradient(log_pi) - batch.extras["log_prob"])
    value = critic.apply(params["critic"], batch.obs)
    last_value = critic.apply(params["critic"], batch.next_obs[-1])
    all_values = jnp.concatenate([value, last_value[None]], axis=0)
    targets, adv = vtrace(batch.reward, batch.discount, all_values, rho,
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

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "critic": critic.init(k_critic, obs)}
        return State(params, params["actor"], opt.init(params), jnp.int32(0))

    def uniform_action(obs, key):
        batch = obs.shape[: obs.ndim - len(env_spec.obs_shape)]
        action = random_actions(space, key, batch)
        if isinstance(space, Discrete):
            return action, jnp.full(batch, -np.log(space.n), jnp.float32)
        log_b = -np.sum(np.log(np.subtract(space.high, space.low)))
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

    def update(state, batch: Transition, key):
        del key  # deterministic given the sampled segments
        grads, metrics = jax.grad(offpac_loss, has_aux=True)(
            state.params, batch, actor, critic, cfg, env_spec)
        rates = common.group_rates(state.params, {"actor": cfg.lr, "critic": cfg.critic_lr})
        params, opt_state, grad_norm = opt.step(state.params, grads, state.opt_state, rates)
        metrics["opt/grad_norm"] = grad_norm
        iteration = state.iteration + 1
        refresh = iteration % (cfg.behaviour_update_every * cfg.updates_per_round) == 0
        behaviour = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                                 params["actor"], state.behaviour)
        return State(params, behaviour, opt_state, iteration), metrics

    return stateless(init, act, update, value)


SPEC = AlgoSpec(
    name="offpac", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    replay=replay,
)
