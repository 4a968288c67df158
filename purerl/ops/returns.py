"""Return and advantage estimators over time-major trajectories.

Conventions: arrays are time-major, ``[T, ...]`` with any trailing batch
dims. ``rewards[t]`` is the reward for the action taken in ``obs[t]``;
``discounts[t] = gamma * (1 - terminated[t])`` is the discount applied to whatever
follows step ``t``; ``values`` has length ``T + 1`` and ``values[T]`` is the
bootstrap value of the state after the last step. A zero discount ends the
recursion, so one stream may hold several episodes back to back.

In rlax's Sutton–Barto indexing these are ``r_t = rewards``,
``discount_t = discounts`` and ``v_t = values[1:]``.
"""

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def _inputs(rewards, discounts, values=None):
    """The arrays as jax arrays (numpy inputs are indexed with traced indices below),
    with their shapes checked."""
    rewards, discounts = jnp.asarray(rewards), jnp.asarray(discounts)
    chex.assert_rank(rewards, discounts.ndim)
    chex.assert_equal_shape([rewards, discounts])
    if values is None:
        return rewards, discounts
    values = jnp.asarray(values)
    if values.shape != (rewards.shape[0] + 1, *rewards.shape[1:]):
        raise ValueError(
            f"values must have shape (T + 1, ...) = "
            f"{(rewards.shape[0] + 1, *rewards.shape[1:])}, got {values.shape}"
        )
    return rewards, discounts, values


def discounted_returns(rewards: Array, discounts: Array, bootstrap: Array) -> Array:
    """Discounted sum of future rewards, G_t = r_t + discounts_t * G_{t+1}, G_T = bootstrap.

    Args:
      rewards: ``[T, ...]``.
      discounts: ``[T, ...]``, ``gamma * (1 - terminated)``.
      bootstrap: ``[...]``, the value of the state after step ``T - 1`` (zeros for pure
        Monte Carlo).

    Returns:
      ``[T, ...]`` returns.
    """
    rewards, discounts = _inputs(rewards, discounts)
    bootstrap = jnp.asarray(bootstrap)
    chex.assert_shape(bootstrap, rewards.shape[1:])

    def step(g_next, inputs):
        r, d = inputs
        g = r + d * g_next
        return g, g

    _, returns = jax.lax.scan(step, bootstrap, (rewards, discounts), reverse=True)
    return returns


def n_step_returns(rewards: Array, discounts: Array, values: Array, n: int) -> Array:
    """n-step bootstrapped returns (Sutton & Barto 2018, eq. 7.1).

    G_t = r_t + d_t r_{t+1} + ... + (d_t ... d_{t+n-2}) r_{t+n-1}
          + (d_t ... d_{t+n-1}) values[t+n],
    where steps past the end of the trajectory are cut and bootstrapped from
    ``values[T]``, as in A2C / A3C.

    Args:
      rewards: ``[T, ...]``.
      discounts: ``[T, ...]``.
      values: ``[T + 1, ...]``.
      n: the number of steps (static, >= 1).

    Returns:
      ``[T, ...]`` returns.
    """
    rewards, discounts, values = _inputs(rewards, discounts, values)
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    T = rewards.shape[0]
    n = min(int(n), T)
    pad = [(0, n)] + [(0, 0)] * (rewards.ndim - 1)
    # Past T the rewards are 0 and the discounts 1, so the extra steps change nothing.
    r = jnp.pad(rewards, pad)
    d = jnp.pad(discounts, pad, constant_values=1.0)
    returns = values[jnp.minimum(jnp.arange(T) + n, T)]
    for k in reversed(range(n)):
        returns = r[k : k + T] + d[k : k + T] * returns
    return returns


def lambda_returns(rewards: Array, discounts: Array, values: Array, lam) -> Array:
    """λ-returns, G_t = r_t + d_t [(1 - λ) values[t+1] + λ G_{t+1}], G_T = values[T].

    λ = 1 gives the Monte Carlo return bootstrapped from ``values[T]``; λ = 0 gives the
    one-step TD target. Used for TD(λ) critics and Dreamer's V_λ (Hafner et al. 2020,
    eq. 6).

    Args:
      rewards: ``[T, ...]``.
      discounts: ``[T, ...]``.
      values: ``[T + 1, ...]``.
      lam: scalar or ``[T, ...]`` mixing coefficient in [0, 1].

    Returns:
      ``[T, ...]`` returns.
    """
    rewards, discounts, values = _inputs(rewards, discounts, values)
    lam = jnp.broadcast_to(jnp.asarray(lam, rewards.dtype), rewards.shape)

    def step(g_next, inputs):
        r, d, v_next, l = inputs
        g = r + d * ((1.0 - l) * v_next + l * g_next)
        return g, g

    _, returns = jax.lax.scan(
        step, values[-1], (rewards, discounts, values[1:], lam), reverse=True
    )
    return returns


def gae(rewards: Array, discounts: Array, values: Array, lam) -> Array:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16).

    δ_t = r_t + d_t values[t+1] - values[t];  A_t = δ_t + d_t λ A_{t+1};  A_T = 0.
    ``gae(...) + values[:-1] == lambda_returns(...)``.

    Args:
      rewards: ``[T, ...]``.
      discounts: ``[T, ...]``.
      values: ``[T + 1, ...]``.
      lam: scalar or ``[T, ...]`` GAE λ in [0, 1].

    Returns:
      ``[T, ...]`` advantages.
    """
    rewards, discounts, values = _inputs(rewards, discounts, values)
    lam = jnp.broadcast_to(jnp.asarray(lam, rewards.dtype), rewards.shape)
    deltas = rewards + discounts * values[1:] - values[:-1]

    def step(a_next, inputs):
        delta, d, l = inputs
        a = delta + d * l * a_next
        return a, a

    _, advantages = jax.lax.scan(
        step, jnp.zeros_like(values[-1]), (deltas, discounts, lam), reverse=True
    )
    return advantages


def vtrace(rewards: Array, discounts: Array, values: Array, rhos: Array, lam=1.0,
           clip_rho=1.0, clip_c=1.0) -> tuple[Array, Array]:
    """V-trace: importance-corrected TD(λ) targets for off-policy data (Espeholt et al.
    2018, eq. 1), and the matching policy-gradient advantages.

        δ_t = ρ̄_t (r_t + d_t V_{t+1} − V_t),            ρ̄_t = min(clip_rho, ρ_t)
        v_t = V_t + δ_t + d_t λ c_t (v_{t+1} − V_{t+1}),  c_t = min(clip_c, ρ_t),  v_T = V_T
        A_t = ρ̄_t (r_t + d_t [λ v_{t+1} + (1 − λ) V_{t+1}] − V_t)

    ρ_t = π(a_t|s_t) / b(a_t|s_t) is the per-step importance ratio. With ρ ≡ 1 (on-policy
    data) v_t is the TD(λ) λ-return and A_t = v_t − V_t is GAE(λ). (The advantage mixes
    v_{t+1} with V_{t+1} by λ, as rlax's ``vtrace_td_error_and_advantage`` does; IMPALA's
    paper uses λ = 1 there.) ``clip_rho`` and
    ``clip_c`` truncate the ratios (``jnp.inf`` disables truncation: per-decision
    importance sampling, unbiased but with unbounded variance). The outputs carry no
    gradient to ``rhos`` or ``values``: they are targets and weights.

    Args:
      rewards, discounts, rhos: ``[T, ...]``.
      values: ``[T + 1, ...]``, V(s_0..s_T) with the bootstrap last.
      lam: trace-decay λ.

    Returns:
      ``(targets v_t, advantages A_t)``, each ``[T, ...]``.
    """
    rewards, discounts, values = _inputs(rewards, discounts, values)
    rhos = jnp.asarray(rhos)
    chex.assert_equal_shape([rewards, rhos])
    rhos, values = jax.lax.stop_gradient(rhos), jax.lax.stop_gradient(values)
    rho_bar = jnp.minimum(clip_rho, rhos)
    c = lam * jnp.minimum(clip_c, rhos)
    deltas = rho_bar * (rewards + discounts * values[1:] - values[:-1])

    def step(acc, inputs):  # acc = v_{t+1} - V_{t+1}
        delta, d, c_t = inputs
        acc = delta + d * c_t * acc
        return acc, acc

    _, corrections = jax.lax.scan(
        step, jnp.zeros_like(values[-1]), (deltas, discounts, c), reverse=True
    )
    targets = values[:-1] + corrections
    next_targets = jnp.concatenate([targets[1:], values[-1:]], axis=0)
    next_mix = lam * next_targets + (1.0 - lam) * values[1:]
    advantages = rho_bar * (rewards + discounts * next_mix - values[:-1])
    return targets, advantages
