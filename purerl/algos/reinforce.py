"""REINFORCE: Monte-Carlo policy gradient (Williams 1992; Sutton & Barto §13.3–13.4).

    θ ← θ + α_θ · w_t · (G_t − b(S_t)) · ∇log π(A_t|S_t)
    b(S_t) = v̂(S_t, w) with a baseline, else 0;   w ← w + α_w (G_t − v̂(S_t)) ∇v̂(S_t)

G_t is the return-to-go of the complete episode: its spec declares ``episodic``, so the
driver resets the envs each iteration and hands over one whole episode per env (steps
after its end masked by ``extras["mask"]``); no return is cut at a rollout boundary.
Episodes cut by the time limit are bootstrapped with γ·v̂(final obs) when a baseline
exists, and otherwise end there (there is no value to bootstrap from).

Options, off by default because they are not the textbook algorithm:
  * ``discount_weighting``: the γᵗ factor w_t of the episodic policy-gradient theorem
    (S&B eq. 13.8). Deep-RL code drops it (w_t = 1), which is what the default does.
  * ``normalize_returns``: standardise G_t − b over the batch's live steps, a
    variance-reduction trick (it also rescales the step size).
The loss averages over live steps (not a per-episode sum), which only rescales α.
The baseline's gradient never reaches the actor: the weight is held constant.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_choice, config
from purerl.networks import ValueNet
from purerl.ops.returns import discounted_returns
from purerl.types import EnvSpec, Transition

# Episodic rollouts: one complete episode per env per update; num_steps is unused.
RUN = RunConfig(total_steps=1_000_000, num_envs=8)


@config
class Config:
    """REINFORCE hyperparameters."""

    baseline: bool = True
    """Subtract a learned state-value baseline v̂(S_t) from G_t."""
    discount_weighting: bool = False
    """Multiply step t's term by γᵗ, as in the episodic policy-gradient theorem."""
    normalize_returns: bool = False
    """Standardise the weights G_t − b over the batch (variance reduction)."""
    gamma: float = 0.99
    """Discount factor."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    optimizer: str = "adam"
    """'adam' or 'sgd' (plain gradient ascent, as in the textbook)."""
    lr: float = 1e-3
    """Actor learning rate α_θ."""
    critic_lr: float = 1e-3
    """Baseline learning rate α_w."""
    ent_coef: float = 0.0
    """Entropy-bonus coefficient (0: plain REINFORCE)."""
    max_grad_norm: float = 0.0
    """Global gradient-norm clip; 0 disables it."""
    hidden_sizes: tuple = (64, 64)
    """Hidden layer widths of the policy and of the baseline (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""

    def __post_init__(self):
        common.check_common_fields(self)
        check_choice(self, "optimizer", ("adam", "sgd"))


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}; the critic is unused without baseline
    opt_state: optax.OptState
    iteration: jax.Array  # int32


def reinforce_loss(params, batch, actor, critic, cfg, env_spec):
    """The REINFORCE loss of a batch of complete episodes ``[T, B]`` and diagnostics."""
    mask = batch.extras["mask"]
    returns = discounted_returns(batch.reward, batch.discount, jnp.zeros_like(batch.bootstrap_value))
    dist = actor.apply(params["actor"], batch.obs)
    log_prob = dist.log_prob(common.flat_action(batch.action, env_spec))
    weight = returns
    metrics = {}
    if cfg.baseline:
        value = critic.apply(params["critic"], batch.obs)
        weight = returns - value
        metrics["loss/value"] = common.value_loss(value, returns, mask)
    if cfg.normalize_returns:
        weight = common.standardize(weight, mask)
    if cfg.discount_weighting:
        # Every episode starts at t = 0 of the batch (episodic rollouts).
        t = jnp.arange(batch.reward.shape[0], dtype=jnp.float32)
        weight = weight * (cfg.gamma**t)[:, None]
    pg_loss = common.policy_gradient_loss(log_prob, weight, mask)
    entropy = common.masked_mean(dist.entropy(), mask)
    loss = pg_loss - cfg.ent_coef * entropy + metrics.get("loss/value", 0.0)
    metrics.update({"loss/actor": pg_loss, "loss/entropy": entropy,
                    "train/mc_return": common.masked_mean(returns, mask)})
    return loss, metrics


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build REINFORCE's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.reinforce.Config, got {type(cfg).__name__}")
    actor = common.make_actor(cfg, env_spec)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=len(env_spec.obs_shape))
    steps = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    steps += [optax.scale_by_adam()] if cfg.optimizer == "adam" else []
    opt = common.flat_optimizer(optax.chain(*steps) if steps else optax.identity())

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "critic": critic.init(k_critic, obs)}
        return State(params, opt.init(params), jnp.int32(0))

    def act(state, obs, key, eval=False):
        action, log_prob = common.sample(actor.apply(state.params["actor"], obs), key,
                                         env_spec, eval)
        return action, ({} if eval else {"log_prob": log_prob})

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    def update(state, batch: Transition, key):
        del key  # REINFORCE's update is deterministic given the episodes
        grads, metrics = jax.grad(reinforce_loss, has_aux=True)(
            state.params, batch, actor, critic, cfg, env_spec)
        rates = common.group_rates(state.params, {"actor": cfg.lr, "critic": cfg.critic_lr})
        params, opt_state, grad_norm = opt.step(state.params, grads, state.opt_state, rates)
        metrics["opt/grad_norm"] = grad_norm
        return State(params, opt_state, state.iteration + 1), metrics

    return stateless(init, act, update, value if cfg.baseline else None)


SPEC = AlgoSpec(
    name="reinforce", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    episodic=True,
)
