"""Q actor-critic (Sutton, McAllester, Singh & Mansour 2000, "Policy gradient methods for
reinforcement learning with function approximation", NIPS 12).

    critic (on-policy SARSA): δ_t = r_t + γ Q_w(s_{t+1}, a_{t+1}) − Q_w(s_t, a_t),
                              w ← w + α_w δ_t ∇Q_w(s_t, a_t)
    actor:                    θ ← θ + α_θ Q_w(s_t, a_t) ∇log π(a_t|s_t)

a_{t+1} is the action the policy actually took next in the rollout (SARSA). At the end
of a rollout, and for a step cut by the time limit, the next action has not been
taken, so the critic bootstraps from the expected value Σ_a π(a|s) Q(s, a) (discrete;
Q(s, mode of π) for continuous actions). ``td_steps`` > 1 gives n-step SARSA targets.

``advantage=True`` replaces the actor's weight by Q(s,a) − Σ_a π(a|s) Q(s,a), a
lower-variance option (discrete actions only: the sum is exact there). Neither weight
is differentiated: the critic learns only from its TD loss.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_range, config
from purerl.networks import QNet
from purerl.ops.returns import n_step_returns
from purerl.types import Discrete, EnvSpec, Transition

RUN = RunConfig(total_steps=1_000_000, num_envs=16, num_steps=5)


@config
class Config:
    """Q actor-critic hyperparameters."""

    gamma: float = 0.99
    """Discount factor."""
    td_steps: int = 1
    """n of the n-step SARSA target (1: the one-step algorithm)."""
    advantage: bool = False
    """Weight the actor by Q(s,a) − Σπ Q instead of Q(s,a) (discrete actions)."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    lr: float = 3e-4
    """Actor (Adam) learning rate α_θ, decayed linearly to 0 if anneal_lr."""
    critic_lr: float = 1e-3
    """Critic (Adam) learning rate α_w, decayed linearly to 0 if anneal_lr."""
    anneal_lr: bool = True
    """Decay both learning rates linearly to 0 over the run."""
    ent_coef: float = 0.01
    """Entropy-bonus coefficient (0: the plain algorithm)."""
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
        check_range(self, "td_steps", 1)


def check_run(cfg: Config, run: RunConfig) -> None:
    """The n-step targets need n steps of one rollout."""
    if cfg.td_steps > run.num_steps:
        raise ValueError(f"Config.td_steps must be <= RunConfig.num_steps = "
                         f"{run.num_steps}, got {cfg.td_steps}")


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    opt_state: optax.OptState
    iteration: jax.Array  # int32


def q_taken(critic, critic_params, obs, action, env_spec: EnvSpec):
    """Q(s, a) for the actions taken, and (discrete) every action's Q(s, ·)."""
    if isinstance(env_spec.action_space, Discrete):
        q = critic.apply(critic_params, obs)
        return jnp.take_along_axis(q, action[..., None].astype(jnp.int32), -1)[..., 0], q
    return critic.apply(critic_params, obs, common.flat_action(action, env_spec)), None


def q_actor_critic_loss(params, batch, actor, critic, cfg, env_spec: EnvSpec):
    """SARSA critic loss plus the actor's −E[w log π(a|s)], w = Q(s,a) (or the
    advantage), w held constant; returns ``(loss, metrics)``."""
    q, q_all = q_taken(critic, params["critic"], batch.obs, batch.action, env_spec)
    # SARSA: the value of the next step is Q of the action taken there.
    next_values = jnp.concatenate([q, batch.bootstrap_value[None]], axis=0)
    targets = n_step_returns(batch.reward, batch.discount,
                             jax.lax.stop_gradient(next_values), cfg.td_steps)
    critic_loss = common.value_loss(q, targets)
    dist = actor.apply(params["actor"], batch.obs)
    log_prob = dist.log_prob(common.flat_action(batch.action, env_spec))
    weight = q
    if cfg.advantage:
        weight = q - (jax.lax.stop_gradient(dist.probs) * q_all).sum(-1)
    pg_loss = common.policy_gradient_loss(log_prob, weight)
    entropy = dist.entropy().mean()
    loss = pg_loss + critic_loss - cfg.ent_coef * entropy
    return loss, {"loss/actor": pg_loss, "loss/critic": critic_loss,
                  "loss/entropy": entropy, "critic/q_mean": q.mean()}


def make(cfg: Config, env_spec: EnvSpec, num_updates: int | None = None) -> Agent:
    """Build Q actor-critic's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(
            f"expected purerl.algos.actor_critic.Config, got {type(cfg).__name__}")
    num_updates = common.updates_of(num_updates, RUN)
    discrete = isinstance(env_spec.action_space, Discrete)
    if cfg.advantage and not discrete:
        raise ValueError("Config.advantage needs a Discrete action space (Σ_a π Q is "
                         f"exact only there), got {type(env_spec.action_space).__name__}")
    obs_ndim = len(env_spec.obs_shape)
    actor = common.make_actor(cfg, env_spec)
    num_q = env_spec.action_space.n if discrete else 1
    critic = QNet(cfg.hidden_sizes, num_q, cfg.activation, obs_ndim=obs_ndim)
    clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    opt = common.flat_optimizer(optax.chain(*clip, optax.scale_by_adam()))

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        act0 = None if discrete else jnp.zeros(env_spec.action_space.shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs),
                  "critic": critic.init(k_critic, obs, act0)}
        return State(params, opt.init(params), jnp.int32(0))

    def act(state, obs, key, eval=False):
        action, _ = common.sample(actor.apply(state.params["actor"], obs), key, env_spec,
                                  eval)
        return action, {}

    def value(state, obs):
        """V(s) = E_π Q(s, ·): exact for discrete actions, Q(s, mode) for continuous."""
        dist = actor.apply(state.params["actor"], obs)
        if discrete:
            return (dist.probs * critic.apply(state.params["critic"], obs)).sum(-1)
        return critic.apply(state.params["critic"], obs, dist.mode())

    def update(state, batch: Transition, key):
        del key  # the update is deterministic given the rollout
        grads, metrics = jax.grad(q_actor_critic_loss, has_aux=True)(
            state.params, batch, actor, critic, cfg, env_spec)
        frac = common.linear_lr(1.0, state.iteration, num_updates, cfg.anneal_lr)
        rates = common.group_rates(
            state.params, {"actor": cfg.lr * frac, "critic": cfg.critic_lr * frac})
        params, opt_state, grad_norm = opt.step(state.params, grads, state.opt_state, rates)
        metrics.update({"opt/grad_norm": grad_norm, "opt/lr_fraction": frac})
        return State(params, opt_state, state.iteration + 1), metrics

    return stateless(init, act, update, value)


SPEC = AlgoSpec(
    name="actor_critic", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    check_run=check_run,
    needs_num_updates=True,
)
