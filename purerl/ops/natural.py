"""Natural-gradient primitives for NPG and TRPO: CG, Fisher-vector products and a
backtracking line search.

Conventions: parameters, gradients and steps are arbitrary pytrees of floating arrays
with matching structure; inner products sum over every leaf. Losses are *minimised*:
a surrogate objective to maximise enters as its negation. Everything here is pure and
safe under ``jit`` and ``vmap`` (early exits are ``lax.while_loop``s, which under
``vmap`` run until every batch member is done and freeze the finished ones).

References: Kakade (2001), "A natural policy gradient"; Schulman et al. (2015), "Trust
region policy optimization", appendix C; OpenAI baselines ``common/cg.py`` and
``trpo_mpi``; joschu/modular_rl ``trpo.py::linesearch``.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any


def _vdot(x: PyTree, y: PyTree) -> Array:
    """Sum over leaves of <x_leaf, y_leaf>."""
    pairs = zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
    return sum((jnp.vdot(a, b) for a, b in pairs), jnp.zeros(()))


def _axpy(alpha: Array, x: PyTree, y: PyTree) -> PyTree:
    """alpha * x + y, leafwise."""
    return jax.tree.map(lambda a, b: (alpha * a + b).astype(b.dtype), x, y)


def conjugate_gradient(
    matvec: Callable[[PyTree], PyTree],
    b: PyTree,
    num_iters: int = 10,
    tol: float = 1e-10,
    x0: PyTree | None = None,
) -> PyTree:
    """Solve ``matvec(x) = b`` for a symmetric positive-definite operator by CG.

    The iteration of baselines ``common/cg.py`` (Hestenes & Stiefel 1952): start at
    ``x = 0`` (or ``x0``), at most ``num_iters`` matvecs, stop as soon as the squared
    residual norm ``|b - matvec(x)|^2`` drops to ``tol`` or below. TRPO uses 10
    iterations and ``tol = 1e-10``; NPG in mjrl warm-starts at ``x0 = b``.

    Args:
      matvec: linear, symmetric, positive-definite map from pytrees to pytrees of the
        same structure as ``b``, e.g. ``fisher_vector_product(...)``.
      b: right-hand side pytree (for TRPO/NPG, the policy gradient).
      num_iters: maximum number of iterations (static).
      tol: stop when the squared residual norm is ``<= tol``.
      x0: optional starting point, same structure as ``b``; costs one extra matvec.

    Returns:
      ``x``, a pytree like ``b`` with ``matvec(x) ≈ b``.
    """
    if int(num_iters) < 0:
        raise ValueError(f"num_iters must be >= 0, got {num_iters}")
    if x0 is None:
        x = jax.tree.map(jnp.zeros_like, b)
        r = b
    else:
        x = x0
        r = _axpy(-1.0, matvec(x0), b)
    rr = _vdot(r, r)

    def cond(carry):
        i, _, _, _, rr = carry
        # Strictly greater: with tol = 0 an exact solve stops instead of dividing 0/0.
        return (i < num_iters) & (rr > tol)

    def body(carry):
        i, x, r, p, rr = carry
        ap = matvec(p)
        pap = _vdot(p, ap)
        # A zero curvature p·Ap can only come from a non-PD operator; take no step.
        alpha = jnp.where(pap != 0, rr / jnp.where(pap != 0, pap, 1.0), 0.0)
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rr_new = _vdot(r, r)
        p = _axpy(rr_new / rr, p, r)  # rr > tol >= 0 here, so the ratio is finite
        return i + 1, x, r, p, rr_new

    carry = (jnp.zeros((), jnp.int32), x, r, r, rr)
    _, x, _, _, _ = jax.lax.while_loop(cond, body, carry)
    return x


def fisher_vector_product(
    kl_fn: Callable[[PyTree], Array], params: PyTree, damping: float | Array
) -> Callable[[PyTree], PyTree]:
    """The map ``v -> (H + damping·I) v``, ``H`` the Hessian of ``kl_fn`` at ``params``.

    With ``kl_fn(theta) = mean_s KL(pi_old(.|s) || pi_theta(.|s))`` and ``pi_old`` held
    fixed (computed from ``params`` under ``stop_gradient``, or passed in as constants),
    ``H`` at ``theta = theta_old`` is the Fisher information matrix of the policy, so
    this is the damped Fisher-vector product of TRPO/NPG: ``fvp(v) = ∇(∇KL · v) + λv``.
    At ``theta_old`` both KL directions share this Hessian (the KL and its gradient are
    zero there; only the curvature is used).

    The Hessian is never formed: ``jax.linearize`` of ``jax.grad(kl_fn)`` evaluates the
    forward and backward pass once, and each call of the returned function is one
    forward-over-reverse Hessian-vector product (cost about one gradient).

    Args:
      kl_fn: scalar function of a params pytree.
      params: the point at which the Hessian is taken (``theta_old``).
      damping: ``λ >= 0``, added times the identity (baselines ``cg_damping``).

    Returns:
      ``fvp(v)`` for pytrees ``v`` with the structure of ``params``.
    """
    _, hvp = jax.linearize(jax.grad(kl_fn), params)

    def fvp(v: PyTree) -> PyTree:
        return _axpy(damping, v, hvp(v))

    return fvp


def backtracking_line_search(
    loss_and_kl_fn: Callable[[PyTree], tuple[Array, Array]],
    params: PyTree,
    full_step: PyTree,
    expected_improve: Array,
    max_kl: float | Array,
    max_backtracks: int = 10,
    accept_ratio: float | Array = 0.1,
    backtrack_coef: float | Array = 0.5,
) -> tuple[PyTree, dict[str, Array]]:
    """TRPO's backtracking line search on ``params + f · full_step``, ``f = coef^i``.

    Tries ``i = 0, 1, ..., max_backtracks - 1`` in order and accepts the first candidate
    whose loss and KL are finite and that satisfies all of

      improvement = loss(params) - loss(candidate) > 0,
      improvement > accept_ratio · f · expected_improve,   (Armijo, modular_rl)
      kl(candidate) <= max_kl.                             (baselines trpo_mpi)

    If none passes, the old ``params`` come back unchanged (forgetting this restore is
    a classic TRPO bug). Baselines' rule is ``accept_ratio = 0`` with
    ``max_kl = 1.5 · delta``; modular_rl's is ``accept_ratio = 0.1`` with
    ``max_kl = inf``. Candidates are evaluated one at a time in a ``lax.while_loop``,
    so the usual case (full step accepted) costs two loss evaluations.

    Args:
      loss_and_kl_fn: ``theta -> (loss, kl)``, both scalars: the loss to minimise
        (e.g. the negated surrogate advantage) and the mean ``KL(pi_old || pi_theta)``.
      params: current parameters ``theta_old`` (pytree).
      full_step: the largest step to try, e.g. ``beta · s`` with ``s`` the CG
        direction and ``beta = sqrt(2 delta / s^T F s)`` (pytree like ``params``).
      expected_improve: the first-order predicted decrease of the loss for the full
        step, ``-grad(loss) · full_step`` (> 0 for a descent direction).
      max_kl: the largest accepted KL.
      max_backtracks: number of candidates tried (static, >= 1).
      accept_ratio: minimum actual/expected improvement ratio; 0 disables the test.
      backtrack_coef: step shrink factor per backtrack, in (0, 1).

    Returns:
      ``(new_params, info)``. ``info`` describes the returned parameters: ``accepted``
      (bool), ``step_fraction`` (``f`` of the accepted step, 0 if none),
      ``num_backtracks`` (int32, index of the accepted candidate, ``max_backtracks``
      if none), ``loss``, ``improvement`` (0 if none) and ``kl`` (at the returned
      params, i.e. the KL of the old params when nothing was accepted).
    """
    if int(max_backtracks) < 1:
        raise ValueError(f"max_backtracks must be >= 1, got {max_backtracks}")
    old_loss, old_kl = loss_and_kl_fn(params)

    def candidate(i):
        frac = jnp.asarray(backtrack_coef, old_loss.dtype) ** i
        return frac, _axpy(frac, full_step, params)

    def accepts(frac, loss, kl):
        improve = old_loss - loss
        finite = jnp.isfinite(loss) & jnp.isfinite(kl)
        armijo = improve > accept_ratio * frac * expected_improve
        return finite & (improve > 0) & armijo & (kl <= max_kl)

    def cond(carry):
        i, accepted, _, _ = carry
        return (i < max_backtracks) & ~accepted

    def body(carry):
        i, _, _, _ = carry
        frac, theta = candidate(i)
        loss, kl = loss_and_kl_fn(theta)
        return i + 1, accepts(frac, loss, kl), loss, kl

    init = (jnp.zeros((), jnp.int32), jnp.zeros((), bool), old_loss, old_kl)
    i, accepted, loss, kl = jax.lax.while_loop(cond, body, init)
    index = jnp.where(accepted, i - 1, max_backtracks)
    frac, theta = candidate(i - 1)
    new_params = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), theta, params)
    loss = jnp.where(accepted, loss, old_loss)
    info = {
        "accepted": accepted,
        "step_fraction": jnp.where(accepted, frac, 0.0),
        "num_backtracks": index.astype(jnp.int32),
        "loss": loss,
        "improvement": old_loss - loss,
        "kl": jnp.where(accepted, kl, old_kl),
    }
    return new_params, info
