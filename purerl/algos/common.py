"""What the policy-gradient modules share: config checks, heads, losses, the optimiser.

One piece of code per idea: REINFORCE, Q actor-critic, A2C and Off-PAC build their
losses from these functions instead of each writing its own policy-gradient term.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from purerl.config import check_choice, check_range
from purerl import control
from purerl.networks import PolicyNet
from purerl.types import Box, EnvSpec

ACTIVATIONS = ("tanh", "relu", "elu", "silu")
when = control.when  # the agents' name for it: common.when


def check_common_fields(cfg) -> None:
    """Validate the knobs the policy-gradient Configs share."""
    check_range(cfg, "gamma", 0.0, 1.0)
    check_range(cfg, "reward_scale", 0.0, low_open=True)
    check_choice(cfg, "activation", ACTIVATIONS)
    for name in ("lr", "critic_lr"):
        if hasattr(cfg, name):
            check_range(cfg, name, 0.0, low_open=True)
    for name in ("ent_coef", "max_grad_norm"):
        if hasattr(cfg, name):
            check_range(cfg, name, 0.0)


def make_actor(cfg, env_spec: EnvSpec) -> PolicyNet:
    return PolicyNet(env_spec.action_space, cfg.hidden_sizes, cfg.activation,
                     getattr(cfg, "log_std_init", 0.0), obs_ndim=len(env_spec.obs_shape))


def sample(dist, key, env_spec: EnvSpec, eval: bool):
    """An action from ``dist`` (its mode in eval mode), shaped as the env expects,
    and its log-probability (``None`` in eval mode)."""
    if eval:
        action, log_prob = dist.mode(), None
    else:
        action = dist.sample(seed=key)
        log_prob = dist.log_prob(action)
    if isinstance(env_spec.action_space, Box):
        action = action.reshape(*action.shape[:-1], *env_spec.action_space.shape)
    return action, log_prob


def flat_action(action, env_spec: EnvSpec):
    """The inverse of ``sample``'s reshape: Box actions as the policy's flat vectors."""
    if isinstance(env_spec.action_space, Box):
        nd = len(env_spec.action_space.shape)
        return action.reshape(*action.shape[: action.ndim - nd], -1)
    return action


def masked_mean(x, mask=None):
    """Mean of ``x`` over the entries where ``mask`` is 1 (all entries if None)."""
    if mask is None:
        return x.mean()
    mask = mask.astype(x.dtype)
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def policy_gradient_loss(log_prob, weight, mask=None):
    """−E[w · log π(a|s)] with the weight (return, Q, advantage, ρ·δ) held constant:
    the gradient is E[w ∇log π], never ∇w (a critic or an importance ratio must not
    be trained through the actor's loss)."""
    return -masked_mean(jax.lax.stop_gradient(weight) * log_prob, mask)


def squared_error(prediction, target, mask=None):
    """E[(prediction − target)²] with the target held constant (semi-gradient TD):
    baselines' ``mean_squared_error`` value loss (A2C, ACKTR)."""
    return masked_mean((prediction - jax.lax.stop_gradient(target)) ** 2, mask)


def value_loss(prediction, target, mask=None):
    """½ E[(prediction − target)²] with the target held constant (semi-gradient TD)."""
    return 0.5 * squared_error(prediction, target, mask)


def standardize(x, mask=None):
    """(x − mean) / std over the masked entries (a variance-reduction option)."""
    mean = masked_mean(x, mask)
    std = jnp.sqrt(masked_mean((x - mean) ** 2, mask))
    return (x - mean) / (std + 1e-8)


def linear_lr(lr, iteration, num_updates: int | None, anneal: bool):
    """``lr`` decayed linearly over ``num_updates`` updates if ``anneal``: update ``i``
    (from 0) uses ``lr * (1 - i / num_updates)``, so the last of the run's updates uses
    ``lr / num_updates`` (PPO2's and CleanRL's schedule, counted over the updates the
    run really makes)."""
    if not anneal:
        return jnp.asarray(lr, jnp.float32)
    return lr * jnp.maximum(1.0 - iteration / num_updates, 0.0)


def updates_of(num_updates: int | None, run) -> int:
    """The number of updates an annealed learning rate decays over: ``num_updates``
    as the driver passes it (the iterations the run really makes), or, when ``make``
    is called without it, the iterations of the algorithm's default loop ``run``."""
    if num_updates is None:
        return max(run.total_steps // run.batch_size, 1)
    if num_updates < 1:
        raise ValueError(f"num_updates must be >= 1, got {num_updates}")
    return num_updates


class FlatOptimizer(NamedTuple):
    """An optax transformation applied to all parameters as one flat vector.

    On CPU the optimiser then runs as a few large XLA ops instead of a few per layer.
    The learning rate is applied by hand (``params - lr * update``) so it stays a traced
    value: a scalar, or a pytree like ``params`` for per-network rates (``group_rates``).
    """

    init: callable
    step: callable


def flat_optimizer(tx: optax.GradientTransformation) -> FlatOptimizer:
    def init(params):
        return tx.init(ravel_pytree(params)[0])

    def step(params, grads, opt_state, lr):
        flat, unravel = ravel_pytree(params)
        flat_grads = ravel_pytree(grads)[0]
        updates, opt_state = tx.update(flat_grads, opt_state, flat)
        rate = ravel_pytree(lr)[0] if isinstance(lr, dict) else lr
        return unravel(flat - rate * updates), opt_state, jnp.linalg.norm(flat_grads)

    return FlatOptimizer(init, step)


def group_rates(params: dict, rates: dict):
    """A pytree like ``params`` holding ``rates[group]`` for every leaf of
    ``params[group]``: separate learning rates for actor and critic in one flat
    optimiser (Adam is invariant to loss scale, so a loss coefficient cannot do this)."""
    return {
        group: jax.tree.map(lambda p, r=rates[group]: jnp.full_like(p, r), sub)
        for group, sub in params.items()
    }


def fit_value(critic, opt: FlatOptimizer, params, opt_state, obs, targets, lr, key,
              num_epochs: int, minibatch_size: int):
    """Regress V(obs) on fixed ``targets`` by minibatch passes of ``opt``.

    ``num_epochs`` passes over the batch, each in a fresh random order cut into
    minibatches of ``minibatch_size`` samples, the last partial minibatch dropped: how
    baselines ``trpo_mpi`` (``vf_iters`` epochs of Adam, minibatch 64, on TD(λ)
    returns) and mjrl ``MLPBaseline.fit`` (``epochs`` of Adam, minibatch 64) fit the
    value function of TRPO and NPG, apart from the policy step.

    Args:
      critic: flax module, ``obs [N, *obs_shape] -> V [N]``.
      opt: a ``FlatOptimizer`` (e.g. ``flat_optimizer(optax.scale_by_adam())``).
      params: the critic's parameters; opt_state: ``opt``'s state for them.
      obs: ``[N, *obs_shape]``; targets: ``[N]``, held constant.
      lr: learning rate, a scalar (may be traced).
      key: PRNG key for the shuffles.
      num_epochs: passes over the batch (static).
      minibatch_size: samples per step (static, ``<= N``).

    Returns:
      ``(params, opt_state, loss)``, ``loss`` the mean over all steps of the
      minibatch loss ½ E[(V − target)²] before each step.
    """
    n = targets.shape[0]
    num_minibatches = n // minibatch_size

    def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(
            lambda p: value_loss(critic.apply(p, obs[idx]), targets[idx]))(params)
        params, opt_state, _ = opt.step(params, grads, opt_state, lr)
        return (params, opt_state), loss

    def epoch(carry, key):
        # argsort of uniform noise: one sort, cheaper than random.permutation on CPU.
        order = jnp.argsort(jax.random.uniform(key, (n,)))
        batches = order[: num_minibatches * minibatch_size].reshape(num_minibatches, -1)
        return jax.lax.scan(step, carry, batches)

    keys = jax.random.split(key, num_epochs)
    (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, losses.mean()
