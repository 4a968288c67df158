"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", arXiv:1812.05905; defaults of Stable-Baselines3 2.x ``SAC``).

    critic:      y = r + γ(1 − terminated) [min_i Q̄_i(s′, a′) − α log π(a′|s′)],  a′ ~ π(·|s′)
    actor:       E[α log π(ã|s) − min_i Q_i(s, ã)],  ã = tanh(μ + σε) reparameterised
    temperature: E[−log α · (log π(ã|s) + H̄)] on log α,  H̄ = −|A|

Twin Q networks (one vmapped module, parameters stacked on a leading axis of 2) with
Polyak-averaged targets; a tanh-squashed Gaussian actor (stable log-prob, checked
against distrax in the tests) whose actions in [−1, 1] are mapped affinely to the
env's bounds (that map's constant log-det is left out of log π, as SB3 does). The
actor's head is DrQ's and Yarats' ``pytorch_sac``, not SB3's: an output layer scaled
by 0.01 and the log-std squashed by tanh into [−5, 2], so the first policy has σ ≈
0.22 everywhere; SB3 clips the log-std into [−20, 2] and starts near σ = 1, exploring
more widely (``log_std_mode="clip"`` with ``log_std_min=-20``).

The loop owns the replay (``replay(config)``: ``buffer_size`` flat transitions,
uniform random actions for the first ``learning_starts`` steps); ``update`` is one
gradient step. The TD target bootstraps from the true next observation with the
discount zeroed only on *termination*, so the critic itself bootstraps time-limit
truncation (``value`` is None: the loop folds nothing in). The losses and the learner
step are module-level functions over ``Nets``, so Proto-RL and SMM ("SAC on another
reward plus one more loss") compose them instead of copying.

Pixels (DrQ, Kostrikov et al. 2020, arXiv:2004.13649; DrQ-v2, Yarats et al. 2021,
arXiv:2107.09645) are selected by a ``uint8`` ``[H, W, C]`` observation (frames
stacked on channels, kept uint8 in the replay). A conv encoder (group ``"encoder"``)
feeds both heads; the critic's trunk is shared by the twin Q heads and its loss alone
trains the encoder; the actor has its own trunk and reads the feature under
``stop_gradient``. Target features come from the online encoder, held fixed. Every
gradient step shifts ``obs`` and ``next_obs`` independently by up to ±``augment_pad``
pixels (``purerl.ops.random_shift``); ``act`` sees unshifted frames.
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_choice, check_range, config
from purerl.memory import Replay
from purerl.networks import MLP, ConvEncoder, QNet, Trunk
from purerl.ops import random_shift
from purerl.types import EnvSpec, Transition

# One env, one gradient step per env step (SB3's train_freq 1).
RUN = RunConfig(total_steps=20_000, num_envs=1, num_steps=1, num_evals=10)


@config
class Config:
    """SAC hyperparameters. Defaults: Stable-Baselines3 2.x ``SAC`` (Haarnoja et al.
    2018's v2 algorithm, with automatic temperature)."""

    updates_per_round: int = 1
    """Updates (one gradient step each) per training round, one round per loop
    iteration (SB3's gradient_steps, the old name here)."""
    _renamed = {"gradient_steps": "updates_per_round"}  # not a field: no annotation
    batch_size: int = 256
    """Transitions per gradient step."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (per seed)."""
    learning_starts: int = 100
    """Env steps of uniform random actions before the first update."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak coefficient of the target critics."""
    reward_scale: float = 1.0
    """The loop multiplies rewards by this before the update."""
    lr: float = 3e-4
    """Adam learning rate of the actor, the critics and the temperature."""
    init_alpha: float = 1.0
    """Initial temperature α."""
    autotune_alpha: bool = True
    """Tune α towards the target entropy (Haarnoja et al. 2018b); False keeps α at
    init_alpha (SAC v1, as the SMM reference's rlkit SAC with α = 1)."""
    target_entropy_scale: float = 1.0
    """Target entropy H̄ = −scale · |A| (1: the paper's −|A|)."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log-std."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log-std."""
    log_std_mode: str = "squash"
    """'squash': tanh into [min, max], σ ≈ 0.22 at the start (DrQ, pytorch_sac);
    'clip': clipped into [min, max], σ ≈ 1 at the start (SB3, with min −20)."""
    hidden_sizes: tuple = (256, 256)
    """Hidden layer widths of the actor and of each critic."""
    activation: str = "relu"
    """Hidden activation: tanh, relu, elu or silu."""
    feature_dim: int = 50
    """Pixels only: width of the actor's and the critic's trunk (DrQ-v2: 50)."""
    augment_pad: int = 4
    """Pixels only: largest random shift in pixels (DrQ: 4; 0 turns it off)."""

    def __post_init__(self):
        common.check_common_fields(self)
        for name in ("updates_per_round", "batch_size", "buffer_size", "feature_dim"):
            check_range(self, name, 1)
        for name in ("learning_starts", "target_entropy_scale", "augment_pad"):
            check_range(self, name, 0)
        check_range(self, "tau", 0.0, 1.0, low_open=True)
        check_range(self, "init_alpha", 0.0, low_open=True)
        check_choice(self, "log_std_mode", ("squash", "clip"))
        check_range(self, "log_std_max", self.log_std_min)


def replay(cfg: Config) -> Replay:
    """The loop's replay for SAC: flat transitions."""
    return Replay(capacity=cfg.buffer_size, batch_size=cfg.batch_size,
                  updates=cfg.updates_per_round, learning_starts=cfg.learning_starts)


class State(NamedTuple):
    # {"actor": ..., "critic": stacked twin Q, "log_alpha": scalar}; on pixels
    # "critic" is {"trunk": ..., "q": stacked twin Q} and "encoder" is added.
    params: dict
    target_critic: dict  # Polyak average of params["critic"]
    opt_state: dict  # one Adam state per group
    iteration: jax.Array  # int32, gradient steps done


class TanhGaussianActor(nn.Module):
    """Mean and log-std of u; the action is tanh(u). With ``feature_dim > 0`` the
    input (encoded pixels) first goes through the actor's own trunk (DrQ-v2)."""

    action_dim: int
    hidden: tuple
    activation: str
    log_std_min: float
    log_std_max: float
    obs_ndim: int = 1
    feature_dim: int = 0
    log_std_mode: str = "squash"

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(*obs.shape[: obs.ndim - self.obs_ndim], -1)
        if self.feature_dim:
            x = Trunk(self.feature_dim)(x)
        out = MLP(self.hidden, 2 * self.action_dim, self.activation, out_scale=0.01)(x)
        mean, raw = jnp.split(out, 2, axis=-1)
        if self.log_std_mode == "clip":  # SB3
            return mean, jnp.clip(raw, self.log_std_min, self.log_std_max)
        # tanh rescaling keeps the log-std bounded with a nonzero gradient (DrQ).
        lo, hi = self.log_std_min, self.log_std_max
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(raw) + 1.0)


def tanh_gaussian_sample(mean, log_std, key):
    """ã = tanh(u), u ~ N(mean, exp(log_std)²), and log π(ã) with the stable tanh
    correction log(1 − tanh²u) = 2(log 2 − u − softplus(−2u))."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    log_normal = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), (log_normal - log_det).sum(-1)


class Nets(NamedTuple):
    """SAC's modules, the env's action bounds, the target entropy and the optimiser."""

    actor: TanhGaussianActor
    critic: QNet
    encoder: ConvEncoder | None  # pixels only
    trunk: Trunk | None  # the critic's trunk, shared by the twins (pixels; Proto-RL)
    low: jax.Array  # [action_dim] env bounds, flat
    high: jax.Array
    action_dim: int
    target_entropy: float
    adam: optax.GradientTransformation
    pixels: bool  # shift obs and next_obs in learner_step (DrQ)


def is_pixels(env_spec: EnvSpec) -> bool:
    """A ``uint8`` ``[H, W, C]`` observation: frames, for the conv encoder."""
    return env_spec.obs_dtype == "uint8" and len(env_spec.obs_shape) == 3


def make_nets(cfg: Config, env_spec: EnvSpec, trunk: bool | None = None) -> Nets:
    """SAC's networks for ``env_spec``. ``trunk`` (default: on pixels) puts a trunk of
    ``feature_dim`` in front of the actor and the twin critics: Proto-RL feeds them its
    own encoder's feature, a flat float ``env_spec``."""
    space = env_spec.action_space
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError("SAC needs finite Box action bounds (actions are tanh-squashed)")
    pixels = is_pixels(env_spec)
    # On pixels both heads read the encoder's flat feature, so their input is 1-d.
    obs_ndim = 1 if pixels else len(env_spec.obs_shape)
    trunk = pixels if trunk is None else trunk
    action_dim = int(np.prod(space.shape))
    bound = lambda b: jnp.asarray(b, jnp.float32).reshape(-1)  # noqa: E731 - flat tuples
    actor = TanhGaussianActor(action_dim, cfg.hidden_sizes, cfg.activation,
                              cfg.log_std_min, cfg.log_std_max, obs_ndim,
                              feature_dim=cfg.feature_dim if trunk else 0,
                              log_std_mode=cfg.log_std_mode)
    return Nets(actor, QNet(cfg.hidden_sizes, 1, cfg.activation, obs_ndim=obs_ndim),
                ConvEncoder() if pixels else None,
                Trunk(cfg.feature_dim) if trunk else None,
                bound(space.low), bound(space.high), action_dim,
                -cfg.target_entropy_scale * action_dim, optax.adam(cfg.lr), pixels)


def encode(nets: Nets, params, obs):
    """What the heads read: conv features of pixels, else the float observation."""
    if nets.encoder is not None:
        return nets.encoder.apply(params["encoder"], obs)
    return obs.astype(jnp.float32)


def q_values(nets: Nets, critic_params, x, action):
    """Twin Q(x, action) -> [2, ...]; after the critic's shared trunk if it has one."""
    if nets.trunk is not None:
        x = nets.trunk.apply(critic_params["trunk"], x)
        critic_params = critic_params["q"]
    return jax.vmap(nets.critic.apply, in_axes=(0, None, None))(critic_params, x, action)


def critic_loss(trained, params, target_critic, batch, key, nets: Nets, gamma):
    """½ Σ_i E[(Q_i(s, a) − y)²], y the soft TD target from the target critics.

    ``trained`` holds the groups this loss trains (``critic``; ``encoder`` on pixels),
    ``params`` the rest. ``batch``: obs, action (in [−1, 1]), reward, terminated
    (float), next_obs. Returns ``(loss, (mean Q, features of obs))``.
    """
    params = {**params, **trained}
    x = encode(nets, params, batch["obs"])
    # The online encoder, held fixed, encodes next_obs for the target (DrQ-v2).
    next_x = jax.lax.stop_gradient(encode(nets, params, batch["next_obs"]))
    mean, log_std = nets.actor.apply(params["actor"], next_x)
    next_a, next_logp = tanh_gaussian_sample(mean, log_std, key)
    alpha = jnp.exp(params["log_alpha"])
    next_q = q_values(nets, target_critic, next_x, next_a).min(0)
    target = batch["reward"] + gamma * (1.0 - batch["terminated"]) * (
        next_q - alpha * next_logp)
    q = q_values(nets, params["critic"], x, batch["action"])
    loss = 0.5 * ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum()
    return loss, (q.mean(), x)


def actor_loss(actor_params, params, x, key, nets: Nets):
    """E[α log π(ã|x) − min_i Q_i(x, ã)] with α held constant; returns (loss, log π)."""
    mean, log_std = nets.actor.apply(actor_params, x)
    a, logp = tanh_gaussian_sample(mean, log_std, key)
    q = q_values(nets, params["critic"], x, a).min(0)
    alpha = jnp.exp(params["log_alpha"])
    return (jax.lax.stop_gradient(alpha) * logp - q).mean(), logp


def temperature_loss(log_alpha, logp, target_entropy):
    """E[−log α · (log π + H̄)] with log π held constant: α grows while the policy's
    entropy is below H̄."""
    return -(log_alpha * jax.lax.stop_gradient(logp + target_entropy)).mean()


def apply_adam(nets: Nets, params, opt_state, name, grads):
    """One Adam step on parameter group ``name``."""
    updates, new_opt = nets.adam.update(grads, opt_state[name])
    return ({**params, name: optax.apply_updates(params[name], updates)},
            {**opt_state, name: new_opt})


def learner_step(state: State, batch, key, nets: Nets, cfg: Config):
    """One SAC gradient step: critic (and encoder), actor, temperature, targets;
    ``batch`` as for ``critic_loss`` (pixels are shifted here). ``(state, metrics)``."""
    params, opt_state = state.params, state.opt_state
    if nets.pixels:  # fresh, independent shifts for obs and next_obs each step (DrQ)
        key, k_obs, k_next = jax.random.split(key, 3)
        batch = {**batch, "obs": random_shift(k_obs, batch["obs"], cfg.augment_pad),
                 "next_obs": random_shift(k_next, batch["next_obs"], cfg.augment_pad)}
    k_critic, k_actor = jax.random.split(key)
    trained = {k: params[k] for k in ("critic", "encoder") if k in params}
    (c_loss, (q_mean, x)), g = jax.value_and_grad(critic_loss, has_aux=True)(
        trained, params, state.target_critic, batch, k_critic, nets, cfg.gamma)
    for name in trained:
        params, opt_state = apply_adam(nets, params, opt_state, name, g[name])
    # The actor reuses the critic's features, detached so that its loss never
    # reaches the encoder (DrQ-v2).
    (a_loss, logp), g = jax.value_and_grad(actor_loss, has_aux=True)(
        params["actor"], params, jax.lax.stop_gradient(x), k_actor, nets)
    params, opt_state = apply_adam(nets, params, opt_state, "actor", g)
    if cfg.autotune_alpha:
        t_loss, g = jax.value_and_grad(temperature_loss)(params["log_alpha"], logp,
                                                        nets.target_entropy)
        params, opt_state = apply_adam(nets, params, opt_state, "log_alpha", g)
    else:
        t_loss = jnp.zeros((), jnp.float32)
    target_critic = optax.incremental_update(params["critic"], state.target_critic,
                                             cfg.tau)
    metrics = {"loss/critic": c_loss, "loss/actor": a_loss, "loss/temperature": t_loss,
               "sac/q_mean": q_mean, "sac/alpha": jnp.exp(params["log_alpha"]),
               "sac/entropy": -logp.mean()}
    return State(params, target_critic, opt_state, state.iteration + 1), metrics


def init_params(key, nets: Nets, env_spec: EnvSpec, cfg: Config) -> dict:
    """Actor, twin critics (behind a shared trunk on pixels), log α, encoder."""
    k_actor, k_critic, k_trunk, k_encoder = jax.random.split(key, 4)
    obs = jnp.zeros(env_spec.obs_shape, jnp.dtype(env_spec.obs_dtype))
    has_encoder, has_trunk = nets.encoder is not None, nets.trunk is not None
    params = {"encoder": nets.encoder.init(k_encoder, obs)} if has_encoder else {}
    x = encode(nets, params, obs)
    trunk = nets.trunk.init(k_trunk, x) if has_trunk else None
    xq = nets.trunk.apply(trunk, x) if has_trunk else x
    act0 = jnp.zeros((nets.action_dim,), jnp.float32)
    twin = jax.vmap(lambda k: nets.critic.init(k, xq, act0))(jax.random.split(k_critic, 2))
    params["critic"] = {"trunk": trunk, "q": twin} if has_trunk else twin
    params["actor"] = nets.actor.init(k_actor, x)
    params["log_alpha"] = jnp.log(jnp.asarray(cfg.init_alpha, jnp.float32))
    return params


def to_policy_batch(batch: Transition, nets: Nets) -> dict:
    """A loop batch as the losses take it: actions back in [−1, 1], flat."""
    action = batch.action.reshape(*batch.reward.shape, -1)
    return {
        "obs": batch.obs, "next_obs": batch.next_obs, "reward": batch.reward,
        "action": 2.0 * (action - nets.low) / (nets.high - nets.low) - 1.0,
        "terminated": batch.terminated.astype(jnp.float32),
    }


def policy(nets: Nets, params, x, key, eval, action_shape):
    """The action for features ``x``: a sample of the tanh-Gaussian, or its mode
    (tanh of the mean) in eval mode, mapped from [−1, 1] to the env's bounds."""
    mean, log_std = nets.actor.apply(params["actor"], x)
    a = jnp.tanh(mean) if eval else tanh_gaussian_sample(mean, log_std, key)[0]
    action = nets.low + 0.5 * (a + 1.0) * (nets.high - nets.low)
    return action.reshape(*a.shape[:-1], *action_shape)


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build SAC's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.sac.Config, got {type(cfg).__name__}")
    nets = make_nets(cfg, env_spec)

    def init(key):
        params = init_params(key, nets, env_spec, cfg)
        opt_state = {k: nets.adam.init(v) for k, v in params.items()}
        return State(params, params["critic"], opt_state, jnp.int32(0))

    def act(state, obs, key, eval=False):
        x = encode(nets, state.params, obs)
        return policy(nets, state.params, x, key, eval, env_spec.action_space.shape), {}

    def update(state, batch: Transition, key):
        return learner_step(state, to_policy_batch(batch, nets), key, nets, cfg)

    return stateless(init, act, update, None)


SPEC = AlgoSpec(
    name="sac", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Box",),
    replay=replay,
)
