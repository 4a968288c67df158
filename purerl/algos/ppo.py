"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

Two objectives, chosen by ``Config.objective``:
  * ``"clip"``: L = E[min(ρÂ, clip(ρ, 1-ε, 1+ε)Â)] - c₁ L_VF + c₂ H   (paper eq. 7, 9)
  * ``"kl"``:   L = E[ρÂ - β KL(π_old ‖ π)] - c₁ L_VF + c₂ H, with β halved when the
    measured KL d < d_targ / 1.5 and doubled when d > 1.5 d_targ (paper §4).

Details follow OpenAI baselines' ``ppo2`` (and CleanRL's ``ppo.py``): GAE, advantages normalised per
minibatch, value loss optionally clipped with the same ε, Adam ε = 1e-5, one global
gradient-norm clip over actor and critic, optional linear learning-rate annealing,
orthogonal initialisation. Old log-probs come from the rollout, i.e. before any update.

Metrics: ``ppo/approx_kl`` (½ E[(log π_old − log π)²], PPO2's ``approxkl``) and
``ppo/clip_frac``, means over the update's minibatches, for both objectives; the
adaptive-KL objective also reports the KL(π_old ‖ π_new) its update made over the
rollout (``ppo/kl``, what β adapts on) and the new β (``ppo/kl_beta``). The clip
objective computes no KL beyond ``approx_kl``, so it costs nothing extra.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_choice, check_range, config
from purerl.networks import PolicyNet, ValueNet
from purerl.ops.returns import gae
from purerl.types import EnvSpec, Transition

# PPO2's Atari geometry scaled to classic control, as PureJaxRL's CartPole config.
RUN = RunConfig(total_steps=500_000, num_envs=4, num_steps=128)


@config
class Config:
    """PPO hyperparameters. Defaults: CleanRL's ``ppo.py`` (v1.0.0) for classic
    control, which PureJaxRL's CartPole config repeats: lr 2.5e-4 annealed, 4 epochs
    of 4 minibatches, clip 0.2, GAE λ 0.95, c₁ 0.5, c₂ 0.01, gradient clip 0.5
    (PPO2's Atari setting differs: clip 0.1, 8 envs)."""

    objective: str = "clip"
    """'clip' (clipped surrogate) or 'kl' (adaptive KL penalty)."""
    num_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch; the minibatch size is num_envs * num_steps / this."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE λ."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update (values learn the scaled
    return; reported episode returns are unscaled)."""
    lr: float = 2.5e-4
    """Adam learning rate (annealed linearly to 0 if anneal_lr)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over the run."""
    adam_eps: float = 1e-5
    """Adam ε (PPO2 uses 1e-5)."""
    clip_eps: float = 0.2
    """Clip range ε of the surrogate (and of the value, if clip_value)."""
    clip_value: bool = True
    """Clip the value update around the rollout's values, as PPO2 does."""
    vf_coef: float = 0.5
    """Value-loss coefficient c₁."""
    ent_coef: float = 0.01
    """Entropy-bonus coefficient c₂."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip over actor and critic together."""
    normalize_advantages: bool = True
    """Standardise advantages within each minibatch."""
    kl_target: float = 0.01
    """d_targ of the adaptive-KL objective."""
    kl_beta_init: float = 1.0
    """Initial β of the adaptive-KL objective."""
    hidden_sizes: tuple = (64, 64)
    """Hidden layer widths of the actor and of the critic (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""

    def __post_init__(self):
        for name in ("num_epochs", "num_minibatches"):
            check_range(self, name, 1)
        check_choice(self, "objective", ("clip", "kl"))
        check_choice(self, "activation", ("tanh", "relu", "elu", "silu"))
        check_range(self, "gamma", 0.0, 1.0)
        check_range(self, "gae_lambda", 0.0, 1.0)
        check_range(self, "reward_scale", 0.0, low_open=True)
        check_range(self, "lr", 0.0, low_open=True)
        check_range(self, "adam_eps", 0.0, low_open=True)
        check_range(self, "clip_eps", 0.0, low_open=True)
        check_range(self, "vf_coef", 0.0)
        check_range(self, "ent_coef", 0.0)
        check_range(self, "max_grad_norm", 0.0, low_open=True)
        check_range(self, "kl_target", 0.0, low_open=True)
        check_range(self, "kl_beta_init", 0.0)


def check_run(cfg: Config, run: RunConfig) -> None:
    """Minibatches cut each rollout of ``run.batch_size`` steps evenly."""
    if run.batch_size % cfg.num_minibatches:
        raise ValueError(
            f"Config.num_minibatches must divide RunConfig.num_envs * num_steps = "
            f"{run.batch_size}, got {cfg.num_minibatches}"
        )
    if run.batch_size // cfg.num_minibatches < 2 and cfg.normalize_advantages:
        raise ValueError(
            "Config.num_minibatches leaves minibatches of 1 sample; advantage "
            "normalisation needs at least 2 (set normalize_advantages=False)"
        )


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    opt_state: optax.OptState  # over the flat parameter vector (see make)
    kl_beta: jax.Array  # float32, β of the adaptive-KL objective
    iteration: jax.Array  # int32, updates done so far


def ppo_loss(params, batch, old_actor_params, kl_beta, actor, critic, cfg):
    """The PPO loss of one minibatch (to be minimised) and its diagnostics.

    ``batch`` holds flat ``[N, ...]`` arrays: obs, action, log_prob (rollout policy),
    value (rollout critic), advantage, target.
    """
    dist = actor.apply(params["actor"], batch["obs"])
    log_prob = dist.log_prob(batch["action"])
    log_ratio = log_prob - batch["log_prob"]
    ratio = jnp.exp(log_ratio)
    adv = batch["advantage"]
    if cfg.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    if cfg.objective == "clip":
        clipped = jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps)
        pg_loss = -jnp.minimum(ratio * adv, clipped * adv).mean()
    else:
        old_dist = actor.apply(jax.lax.stop_gradient(old_actor_params), batch["obs"])
        pg_loss = -(ratio * adv).mean() + kl_beta * old_dist.kl_divergence(dist).mean()

    value = critic.apply(params["critic"], batch["obs"])
    v_loss = (value - batch["target"]) ** 2
    if cfg.clip_value:
        v_clipped = batch["value"] + jnp.clip(
            value - batch["value"], -cfg.clip_eps, cfg.clip_eps
        )
        v_loss = jnp.maximum(v_loss, (v_clipped - batch["target"]) ** 2)
    v_loss = 0.5 * v_loss.mean()
    entropy = dist.entropy().mean()
    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    metrics = {
        "loss/total": loss,
        "loss/actor": pg_loss,
        "loss/value": v_loss,
        "loss/entropy": entropy,
        "ppo/approx_kl": 0.5 * (log_ratio**2).mean(),
        "ppo/clip_frac": (jnp.abs(ratio - 1.0) > cfg.clip_eps).mean(),
    }
    return loss, metrics


def make(cfg: Config, env_spec: EnvSpec, num_updates: int | None = None) -> Agent:
    """Build PPO's pure functions for an environment spec; ``num_updates`` (the run's
    number of updates; default: those of ``RUN``) is what ``anneal_lr`` decays over."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.ppo.Config, got {type(cfg).__name__}")
    num_updates = common.updates_of(num_updates, RUN)
    obs_ndim = len(env_spec.obs_shape)
    actor = PolicyNet(env_spec.action_space, cfg.hidden_sizes, cfg.activation,
                      cfg.log_std_init, obs_ndim=obs_ndim)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=obs_ndim)
    # The learning rate is applied by hand so that it stays a traced, vmappable leaf.
    # The optimiser sees the parameters as one flat vector: on CPU, Adam and the global
    # norm then run as a few large XLA ops instead of a few per layer (faster updates
    # for small MLPs on CPU).
    tx = optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.scale_by_adam(eps=cfg.adam_eps),
    )

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs), "critic": critic.init(k_critic, obs)}
        opt_state = tx.init(ravel_pytree(params)[0])
        return State(params, opt_state, jnp.float32(cfg.kl_beta_init), jnp.int32(0))

    def act(state, obs, key, eval=False):
        # The driver adds extras["value"] from `value`, batched over the rollout.
        action, log_prob = common.sample(actor.apply(state.params["actor"], obs), key,
                                         env_spec, eval)
        return action, {} if eval else {"log_prob": log_prob}

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    def minibatch_step(carry, mb, unravel):
        flat, opt_state, old_actor, kl_beta, lr = carry

        def loss(flat):
            return ppo_loss(unravel(flat), mb, old_actor, kl_beta, actor, critic, cfg)

        grads, metrics = jax.grad(loss, has_aux=True)(flat)
        updates, opt_state = tx.update(grads, opt_state, flat)
        metrics["opt/grad_norm"] = jnp.linalg.norm(grads)
        return (flat - lr * updates, opt_state, old_actor, kl_beta, lr), metrics

    def update(state, batch: Transition, key):
        values = batch.extras["value"]
        all_values = jnp.concatenate([values, batch.bootstrap_value[None]], axis=0)
        advantages = gae(batch.reward, batch.discount, all_values, cfg.gae_lambda)
        data = {
            "obs": batch.obs,
            "action": common.flat_action(batch.action, env_spec),
            "log_prob": batch.extras["log_prob"],
            "value": values,
            "advantage": advantages,
            "target": advantages + values,
        }
        batch_size = batch.reward.size
        minibatch_size = batch_size // cfg.num_minibatches
        data = jax.tree.map(lambda x: x.reshape(batch_size, *x.shape[2:]), data)
        lr = common.linear_lr(cfg.lr, state.iteration, num_updates, cfg.anneal_lr)

        flat_params, unravel = ravel_pytree(state.params)

        def epoch(carry, key):
            # One argsort of uniform noise (a stable sort, so ties still give a
            # permutation) instead of jax.random.permutation's several sort rounds,
            # which cost ~25% of the update when vmapped over seeds on CPU.
            perm = jnp.argsort(jax.random.uniform(key, (batch_size,)))
            mbs = jax.tree.map(
                lambda x: x[perm].reshape(cfg.num_minibatches, minibatch_size,
                                          *x.shape[1:]),
                data,
            )
            return jax.lax.scan(partial(minibatch_step, unravel=unravel), carry, mbs)

        carry = (flat_params, state.opt_state, state.params["actor"], state.kl_beta, lr)
        keys = jax.random.split(key, cfg.num_epochs)
        (flat_params, opt_state, *_), metrics = jax.lax.scan(epoch, carry, keys)
        params = unravel(flat_params)
        metrics = jax.tree.map(jnp.mean, metrics)

        kl_beta = state.kl_beta
        if cfg.objective == "kl":
            # The KL the update made over the rollout; β adapts on it (paper §4).
            old = actor.apply(state.params["actor"], data["obs"])
            kl = old.kl_divergence(actor.apply(params["actor"], data["obs"])).mean()
            kl_beta = jnp.where(kl < cfg.kl_target / 1.5, kl_beta / 2.0, kl_beta)
            kl_beta = jnp.where(kl > cfg.kl_target * 1.5, kl_beta * 2.0, kl_beta)
            metrics.update({"ppo/kl": kl, "ppo/kl_beta": kl_beta})
        metrics["opt/lr"] = lr
        metrics["value/explained_variance"] = 1.0 - jnp.var(
            data["target"] - data["value"]
        ) / (jnp.var(data["target"]) + 1e-8)
        new_state = State(params, opt_state, kl_beta, state.iteration + 1)
        return new_state, metrics

    return stateless(init, act, update, value)


SPEC = AlgoSpec(
    name="ppo", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    check_run=check_run,
    needs_num_updates=True,
)
