"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905; ALGORITHMS.md §9).

    critic:      y = r + γ(1 − terminated) [min_i Q̄_i(s′, a′) − α log π(a′|s′)],  a′ ~ π(·|s′)
    actor:       E[α log π(ã|s) − min_i Q_i(s, ã)],  ã = tanh(μ + σε) reparameterised
    temperature: E[−log α · (log π(ã|s) + H̄)] on log α,  H̄ = −|A|

Twin Q networks (one vmapped module, parameters stacked on a leading axis of 2) with
Polyak-averaged targets; a tanh-squashed Gaussian actor whose log-prob uses the stable
log(1 − tanh²u) = 2(log 2 − u − softplus(−2u)) (§0.4, checked against distrax in the
tests). Actions in [−1, 1] are mapped affinely to the env's bounds (the constant
log-det of that map is left out of log π, as SB3 does).

Off-policy through the generic driver: the replay buffer lives in the agent state.
Each driver iteration (``num_steps`` steps of ``num_envs`` envs) adds its transitions
and then takes ``gradient_steps`` updates once ``learning_starts`` steps have been
collected; before that ``act`` samples uniform random actions (warm-up). The TD
target bootstraps from the true next observation (``batch.next_obs``, the final
observation at an episode end) with the discount zeroed only on *termination*, so
time-limit truncation is bootstrapped without the driver's reward folding (``value``
is None).

Pixels (DrQ, Kostrikov et al. 2020, arXiv:2004.13649; DrQ-v2, Yarats et al. 2021,
arXiv:2107.09645) are selected by the spec: a ``uint8`` observation ``[H, W, C]``
(frames stacked on channels). A conv encoder (``networks.ConvEncoder``, parameter group
``"encoder"``) maps frames to one feature read by both heads. The critic is a trunk
(``networks.Trunk``) shared by the twin Q heads, and its loss alone trains the encoder;
the actor has its own trunk and reads the feature under ``stop_gradient``. The target
critic (trunk and heads) is a Polyak copy, and next-observation features come from the
online encoder, held fixed. Every gradient step shifts ``obs`` and ``next_obs``
independently by up to ±``augment_pad`` pixels (``purerl.ops.random_shift``); ``act``
sees unshifted frames. The replay keeps frames ``uint8`` (4x smaller than float32).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from purerl import buffers
from purerl.algos import common
from purerl.algos.base import Agent
from purerl.config import check_range, config
from purerl.networks import MLP, ConvEncoder, QNet, Trunk
from purerl.ops import random_shift
from purerl.types import EnvSpec, Transition

ACTION_SPACES = ("Box",)


@config
class Config:
    """SAC hyperparameters. Defaults: SB3 / Haarnoja et al. v2 (ALGORITHMS.md §9)."""

    total_steps: int = 20_000
    """Environment steps per seed (summed over the parallel envs)."""
    num_envs: int = 1
    """Parallel environments per seed."""
    num_steps: int = 1
    """Env steps per env between updates (update every num_steps steps)."""
    num_evals: int = 10
    """Evaluations over the run (the last one at the end)."""
    num_eval_envs: int = 8
    """Evaluation episodes per evaluation (deterministic policy: tanh of the mean)."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (an env wrapper)."""
    gradient_steps: int = 1
    """Gradient steps per update."""
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
    """The driver multiplies rewards by this before the update."""
    lr: float = 3e-4
    """Adam learning rate of the actor, the critics and the temperature."""
    init_alpha: float = 1.0
    """Initial temperature α."""
    target_entropy_scale: float = 1.0
    """Target entropy H̄ = −scale · |A| (1: the paper's −|A|)."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log-std (squashed into [min, max] by tanh)."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log-std."""
    hidden_sizes: tuple = (256, 256)
    """Hidden layer widths of the actor and of each critic."""
    activation: str = "relu"
    """Hidden activation: tanh, relu, elu or silu."""
    feature_dim: int = 50
    """Pixels only: width of the actor's and the critic's trunk (DrQ-v2: 50)."""
    augment_pad: int = 4
    """Pixels only: largest random shift in pixels (DrQ: 4; 0 turns it off)."""

    def __post_init__(self):
        common.check_loop_fields(self)
        for name in ("gradient_steps", "batch_size", "buffer_size"):
            check_range(self, name, 1)
        check_range(self, "learning_starts", 0)
        check_range(self, "tau", 0.0, 1.0, low_open=True)
        check_range(self, "init_alpha", 0.0, low_open=True)
        check_range(self, "target_entropy_scale", 0.0)
        check_range(self, "feature_dim", 1)
        check_range(self, "augment_pad", 0)
        if self.buffer_size < self.num_envs * self.num_steps:
            raise ValueError(f"Config.buffer_size must be >= num_envs * num_steps = "
                             f"{self.num_envs * self.num_steps}, got {self.buffer_size}")


class State(NamedTuple):
    # {"actor": ..., "critic": stacked twin Q, "log_alpha": scalar}; on pixels
    # "critic" is {"trunk": ..., "q": stacked twin Q} and "encoder" is added.
    params: dict
    target_critic: dict  # Polyak average of params["critic"]
    opt_state: dict  # one Adam state per group
    # obs (spec dtype: uint8 pixels), action (in [-1, 1]), reward, terminated, next_obs
    replay: buffers.FlatState
    env_steps: jax.Array  # int32, transitions added so far
    iteration: jax.Array  # int32, updates done


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

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(*obs.shape[: obs.ndim - self.obs_ndim], -1)
        if self.feature_dim:
            x = Trunk(self.feature_dim)(x)
        out = MLP(self.hidden, 2 * self.action_dim, self.activation, out_scale=0.01)(x)
        mean, raw = jnp.split(out, 2, axis=-1)
        # tanh rescaling keeps the log-std bounded with a nonzero gradient (DrQ).
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            jnp.tanh(raw) + 1.0)
        return mean, log_std


def tanh_gaussian_sample(mean, log_std, key):
    """ã = tanh(u), u ~ N(mean, exp(log_std)²), and log π(ã) with the stable tanh
    correction log(1 − tanh²u) = 2(log 2 − u − softplus(−2u))."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    log_normal = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), (log_normal - log_det).sum(-1)


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build SAC's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.sac.Config, got {type(cfg).__name__}")
    space = env_spec.action_space
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError("SAC needs finite Box action bounds (actions are tanh-squashed)")
    pixels = env_spec.obs_dtype == "uint8" and len(env_spec.obs_shape) == 3
    obs_dtype = jnp.dtype(env_spec.obs_dtype)
    # On pixels both heads read the encoder's flat feature, so their input is 1-d.
    obs_ndim = 1 if pixels else len(env_spec.obs_shape)
    action_dim = int(np.prod(space.shape))
    low = jnp.asarray(np.broadcast_to(space.low, space.shape), jnp.float32).reshape(-1)
    high = jnp.asarray(np.broadcast_to(space.high, space.shape), jnp.float32).reshape(-1)
    actor = TanhGaussianActor(action_dim, cfg.hidden_sizes, cfg.activation,
                              cfg.log_std_min, cfg.log_std_max, obs_ndim,
                              feature_dim=cfg.feature_dim if pixels else 0)
    critic = QNet(cfg.hidden_sizes, 1, cfg.activation, obs_ndim=obs_ndim)
    twin_q = jax.vmap(critic.apply, in_axes=(0, None, None))  # -> [2, ...]
    encoder, trunk = ConvEncoder(), Trunk(cfg.feature_dim)  # used on pixels only
    adam = optax.adam(cfg.lr)
    target_entropy = -cfg.target_entropy_scale * action_dim
    example = {
        "obs": jax.ShapeDtypeStruct(env_spec.obs_shape, obs_dtype),
        "action": jax.ShapeDtypeStruct((action_dim,), jnp.float32),
        "reward": jax.ShapeDtypeStruct((), jnp.float32),
        "terminated": jax.ShapeDtypeStruct((), jnp.float32),
        "next_obs": jax.ShapeDtypeStruct(env_spec.obs_shape, obs_dtype),
    }

    def to_env(a):
        action = low + 0.5 * (a + 1.0) * (high - low)
        return action.reshape(*a.shape[:-1], *space.shape)

    def encode(params, obs):
        """What the heads read: conv features of pixels, else the float observation."""
        if pixels:
            return encoder.apply(params["encoder"], obs)
        return obs.astype(jnp.float32)

    def q_values(critic_params, x, action):
        """Twin Q(x, action) -> [2, ...]; on pixels after the critic's shared trunk."""
        if pixels:
            x = trunk.apply(critic_params["trunk"], x)
            critic_params = critic_params["q"]
        return twin_q(critic_params, x, action)

    def init_critic(key, x):
        """Twin Q parameters stacked on a leading axis of 2; on pixels, behind a
        trunk that the twins share (DrQ-v2)."""
        act0 = jnp.zeros((action_dim,), jnp.float32)
        if pixels:
            key, k_trunk = jax.random.split(key)
            trunk_params = trunk.init(k_trunk, x)
            x = trunk.apply(trunk_params, x)
        twin = jax.vmap(lambda k: critic.init(k, x, act0))(jax.random.split(key, 2))
        return {"trunk": trunk_params, "q": twin} if pixels else twin

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, obs_dtype)
        params = {}
        if pixels:
            k_critic, k_encoder = jax.random.split(k_critic)
            params["encoder"] = encoder.init(k_encoder, obs)
        x = encode(params, obs)
        critic_params = init_critic(k_critic, x)
        params.update({"actor": actor.init(k_actor, x), "critic": critic_params,
                       "log_alpha": jnp.log(jnp.asarray(cfg.init_alpha, jnp.float32))})
        opt_state = {k: adam.init(v) for k, v in params.items()}
        return State(params, critic_params, opt_state, buffers.flat_init(example,
                     cfg.buffer_size), jnp.int32(0), jnp.int32(0))

    def act(state, obs, key, eval=False):
        mean, log_std = actor.apply(state.params["actor"], encode(state.params, obs))
        if eval:
            return to_env(jnp.tanh(mean)), {}
        k_pi, k_rand = jax.random.split(key)
        a, _ = tanh_gaussian_sample(mean, log_std, k_pi)
        random = jax.random.uniform(k_rand, a.shape, a.dtype, -1.0, 1.0)
        a = jnp.where(state.env_steps < cfg.learning_starts, random, a)
        return to_env(a), {}

    def critic_loss(trained, params, target_critic, batch, key):
        # trained: {"critic"}, plus {"encoder"} on pixels: only this loss shapes it.
        params = {**params, **trained}
        x = encode(params, batch["obs"])
        # The online encoder, held fixed, encodes next_obs for the target (DrQ-v2).
        next_x = jax.lax.stop_gradient(encode(params, batch["next_obs"]))
        mean, log_std = actor.apply(params["actor"], next_x)
        next_a, next_logp = tanh_gaussian_sample(mean, log_std, key)
        alpha = jnp.exp(params["log_alpha"])
        next_q = q_values(target_critic, next_x, next_a).min(0)
        target = batch["reward"] + cfg.gamma * (1.0 - batch["terminated"]) * (
            next_q - alpha * next_logp)
        q = q_values(params["critic"], x, batch["action"])
        loss = 0.5 * ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum()
        return loss, (q.mean(), x)

    def actor_loss(actor_params, params, x, key):
        mean, log_std = actor.apply(actor_params, x)
        a, logp = tanh_gaussian_sample(mean, log_std, key)
        q = q_values(params["critic"], x, a).min(0)
        alpha = jnp.exp(params["log_alpha"])
        return (jax.lax.stop_gradient(alpha) * logp - q).mean(), logp

    def apply_adam(params, opt_state, name, grads):
        updates, new_opt = adam.update(grads, opt_state[name])
        return ({**params, name: optax.apply_updates(params[name], updates)},
                {**opt_state, name: new_opt})

    def gradient_step(replay, carry, key):
        params, target_critic, opt_state = carry
        if pixels:
            key, k_obs, k_next = jax.random.split(key, 3)
        k_sample, k_critic, k_actor = jax.random.split(key, 3)
        batch = buffers.flat_sample(replay, k_sample, cfg.batch_size)
        if pixels:  # fresh, independent shifts for obs and next_obs each step (DrQ)
            pad = cfg.augment_pad
            batch = {**batch, "obs": random_shift(k_obs, batch["obs"], pad),
                     "next_obs": random_shift(k_next, batch["next_obs"], pad)}
        trained = {k: params[k] for k in ("critic", "encoder") if k in params}
        (c_loss, (q_mean, x)), g = jax.value_and_grad(critic_loss, has_aux=True)(
            trained, params, target_critic, batch, k_critic)
        for name in trained:
            params, opt_state = apply_adam(params, opt_state, name, g[name])
        # The actor reuses the critic's features, detached so that its loss never
        # reaches the encoder (DrQ-v2).
        (a_loss, logp), g = jax.value_and_grad(actor_loss, has_aux=True)(
            params["actor"], params, jax.lax.stop_gradient(x), k_actor)
        params, opt_state = apply_adam(params, opt_state, "actor", g)
        # Temperature: d/d log α of −log α · (log π + H̄).
        g_alpha = -(jax.lax.stop_gradient(logp) + target_entropy).mean()
        params, opt_state = apply_adam(params, opt_state, "log_alpha", g_alpha)
        target_critic = optax.incremental_update(params["critic"], target_critic, cfg.tau)
        metrics = {"loss/critic": c_loss, "loss/actor": a_loss, "sac/q_mean": q_mean,
                   "sac/alpha": jnp.exp(params["log_alpha"]), "sac/entropy": -logp.mean()}
        return (params, target_critic, opt_state), metrics

    def learn(operand):
        """``gradient_steps`` gradient steps on batches from the replay."""
        carry, replay, key = operand
        keys = jax.random.split(key, cfg.gradient_steps)
        step = lambda c, k: gradient_step(replay, c, k)  # noqa: E731
        carry, metrics = jax.lax.scan(step, carry, keys)
        return carry, jax.tree.map(jnp.mean, metrics)

    def update(state, batch: Transition, key):
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 - [T, B] -> [T*B]
        items = {
            "obs": flat(batch.obs).astype(obs_dtype),
            # Back to the policy's [-1, 1] space, where the critics see actions.
            "action": flat(2.0 * (batch.action.reshape(*batch.action.shape[:2], -1) - low)
                           / (high - low) - 1.0),
            "reward": flat(batch.reward),
            "terminated": flat(batch.terminated).astype(jnp.float32),
            "next_obs": flat(batch.next_obs).astype(obs_dtype),
        }
        replay = buffers.flat_add(state.replay, items)
        env_steps = state.env_steps + items["reward"].shape[0]
        # `when` keeps the warm-up a real cond under vmap over seeds (they share
        # env_steps): a plain cond would become a select that runs every gradient step
        # during warm-up too.
        operand = ((state.params, state.target_critic, state.opt_state), replay, key)
        shapes = jax.eval_shape(learn, operand)[1]
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        (params, target_critic, opt_state), metrics = common.when(learn)(
            env_steps >= jnp.maximum(cfg.learning_starts, 1), operand,
            (operand[0], zeros))
        new = State(params, target_critic, opt_state, replay, env_steps,
                    state.iteration + 1)
        return new, metrics

    return Agent(init=init, act=act, update=update, value=None)
