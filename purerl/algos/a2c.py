"""A2C: synchronous advantage actor-critic (Mnih et al. 2016, arXiv:1602.01783).

The synchronous form of A3C, as OpenAI baselines' ``a2c`` runs it: ``num_envs`` envs
step together for ``num_steps`` (t_max) steps, then one gradient step on

    L = E[−Â_t log π(a_t|s_t)] − c_ent E[H(π(·|s_t))] + c_vf · E[(V(s_t) − R_t)²]

R_t is the discounted return bootstrapped with V(s_{t_max}) at the end of the rollout
(cut at episode ends), i.e. an (t_max − t)-step return, and Â_t = R_t − V(s_t)
(baselines ``a2c/runner.py``). With ``use_gae`` the advantages are GAE(λ) instead and the value
target is Â_t + V(s_t). No advantage normalisation, as in baselines.

the value term without a ½, as baselines' ``mean_squared_error`` (ACKTR's is the same).
RMSProp as TensorFlow 1's ``RMSPropOptimizer``, which baselines uses: ε *inside* the
square root and the mean square started at 1, not 0 (``optax.scale_by_rms(decay, eps,
initial_scale=1.0, eps_in_sqrt=True)``); started at 0 (PyTorch's, optax's default:
``rms_initial_scale=0``) the first steps are one to two orders of magnitude larger.
Learning rate decayed linearly to 0. Actor and critic are separate MLPs (baselines shares one torso on Atari; separate
networks are the usual choice for low-dimensional states).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_range, config
from purerl.networks import ValueNet
from purerl.ops.returns import discounted_returns, gae
from purerl.types import EnvSpec, Transition

# baselines' A2C: 16 envs x 5 steps.
RUN = RunConfig(total_steps=1_000_000, num_envs=16, num_steps=5)


@config
class Config:
    """A2C hyperparameters. Defaults: baselines' ``a2c.learn``."""

    gamma: float = 0.99
    """Discount factor."""
    use_gae: bool = False
    """Use GAE(λ) advantages instead of n-step returns minus V."""
    gae_lambda: float = 1.0
    """GAE λ (with use_gae; λ = 1 equals the n-step form)."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    lr: float = 7e-4
    """RMSProp learning rate (decayed linearly to 0 if anneal_lr)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    rms_decay: float = 0.99
    """RMSProp decay α."""
    rms_eps: float = 1e-5
    """RMSProp ε, added inside the square root."""
    rms_initial_scale: float = 1.0
    """RMSProp's initial mean square: 1 as TensorFlow 1 (baselines), 0 as PyTorch."""
    vf_coef: float = 0.5
    """Value-loss coefficient."""
    ent_coef: float = 0.01
    """Entropy-bonus coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip over actor and critic together."""
    hidden_sizes: tuple = (64, 64)
    """Hidden layer widths of the actor and of the critic (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""

    def __post_init__(self):
        common.check_common_fields(self)
        check_range(self, "gae_lambda", 0.0, 1.0)
        check_range(self, "rms_decay", 0.0, 1.0, high_open=True)
        check_range(self, "rms_eps", 0.0, low_open=True)
        check_range(self, "rms_initial_scale", 0.0)
        check_range(self, "vf_coef", 0.0)


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    opt_state: optax.OptState
    iteration: jax.Array  # int32


def advantages_and_targets(batch: Transition, use_gae: bool, lam):
    """(Â_t, value targets) from a rollout whose extras hold V(s_t)."""
    values = batch.extras["value"]
    if use_gae:
        all_values = jnp.concatenate([values, batch.bootstrap_value[None]], axis=0)
        adv = gae(batch.reward, batch.discount, all_values, lam)
        return adv, adv + values
    returns = discounted_returns(batch.reward, batch.discount, batch.bootstrap_value)
    return returns - values, returns


def actor_critic_loss(params, batch, adv, targets, actor, critic, cfg, env_spec):
    """The A2C loss of one rollout (advantages and targets precomputed)."""
    dist = actor.apply(params["actor"], batch.obs)
    log_prob = dist.log_prob(common.flat_action(batch.action, env_spec))
    pg_loss = common.policy_gradient_loss(log_prob, adv)
    v_loss = common.squared_error(critic.apply(params["critic"], batch.obs), targets)
    entropy = dist.entropy().mean()
    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    return loss, {"loss/total": loss, "loss/actor": pg_loss, "loss/value": v_loss,
                  "loss/entropy": entropy}


def make(cfg: Config, env_spec: EnvSpec, num_updates: int | None = None) -> Agent:
    """Build A2C's pure functions for an environment spec; ``num_updates`` (the
    run's number of updates; default: those of ``RUN``) is what ``anneal_lr`` decays over."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.a2c.Config, got {type(cfg).__name__}")
    num_updates = common.updates_of(num_updates, RUN)
    actor = common.make_actor(cfg, env_spec)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=len(env_spec.obs_shape))
    opt = common.flat_optimizer(optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.scale_by_rms(decay=cfg.rms_decay, eps=cfg.rms_eps,
                           initial_scale=cfg.rms_initial_scale, eps_in_sqrt=True),
    ))

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "critic": critic.init(k_critic, obs)}
        return State(params, opt.init(params), jnp.int32(0))

    def act(state, obs, key, eval=False):
        action, _ = common.sample(actor.apply(state.params["actor"], obs), key, env_spec,
                                  eval)
        return action, {}

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    def update(state, batch: Transition, key):
        del key  # the update is deterministic given the rollout
        adv, targets = advantages_and_targets(batch, cfg.use_gae, cfg.gae_lambda)
        grads, metrics = jax.grad(actor_critic_loss, has_aux=True)(
            state.params, batch, adv, targets, actor, critic, cfg, env_spec)
        lr = common.linear_lr(cfg.lr, state.iteration, num_updates, cfg.anneal_lr)
        params, opt_state, grad_norm = opt.step(state.params, grads, state.opt_state, lr)
        metrics.update({"opt/grad_norm": grad_norm, "opt/lr": lr})
        return State(params, opt_state, state.iteration + 1), metrics

    return stateless(init, act, update, value)


SPEC = AlgoSpec(
    name="a2c", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    needs_num_updates=True,
)
