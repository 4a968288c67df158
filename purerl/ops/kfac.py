"""Kronecker-factored (K-FAC) preconditioning of dense layers, as in ACKTR.

For a dense layer ``s = a W`` with the bias folded into ``W`` (a ``[d_in + 1, d_out]``
matrix in flax's kernel layout, the bias as its last row, ``a = [x, 1]``), the
per-example gradient is ``∇W = a gᵀ`` with ``g = ∂ℓ/∂s``. Flattening row-major,
``vec(a gᵀ) = a ⊗ g``, so the layer's Fisher block is

    F = E[vec(∇W) vec(∇W)ᵀ] = E[(a aᵀ) ⊗ (g gᵀ)] ≈ E[a aᵀ] ⊗ E[g gᵀ] = A ⊗ S

(Martens & Grosse 2015), exact for a single example. ACKTR (Wu et al. 2017) keeps
``A`` and ``S`` as running averages and preconditions the gradient with
``(A ⊗ S + damping·I)^{-1}``, applied exactly through the eigendecompositions of the
two small factors (baselines ``acktr/kfac.py`` with ``factored_damping=False``), then
caps the step with a trust region on ``Δθᵀ F Δθ``. The flax side (capturing each
layer's ``x`` and ``g``) lives in ``purerl.networks_kfac``; this module is plain arrays.

Why ``symmetric_eigh`` and not ``jnp.linalg.eigh`` directly: on CPU, jax 0.10.2 lowers
a *batched* ``eigh`` (which ``vmap`` over seeds or layers produces) to one LAPACK call
that farms the batch out to XLA's intra-op thread pool and blocks until it is done.
When seeds are sharded over host devices (``--xla_force_host_platform_device_count=2``,
how purerl uses a 2-core machine), both devices make that call at once, both pool
threads block, and the program deadlocks: measured here, 3 of 3 runs of 16 seeds x 4
eigendecompositions of 64x64 hung, as did the same program with QR (the hang
``purerl.networks.orthogonal`` avoids). An *unbatched* call runs inline, so
``symmetric_eigh`` gives ``eigh`` a custom ``vmap`` rule that loops over the batch
with ``lax.map``: the same LAPACK routine and results, one matrix per call; the same
sharded program then ran without hanging.
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any


@jax.custom_batching.custom_vmap
def symmetric_eigh(m: Array) -> tuple[Array, Array]:
    """Eigendecomposition of a symmetric ``[n, n]`` matrix, safe to ``vmap`` on CPU.

    Same result as ``jnp.linalg.eigh`` (ascending eigenvalues ``w [n]``, orthonormal
    eigenvectors as the columns of ``q [n, n]``, ``m = q diag(w) qᵀ``), but a batch
    (from ``vmap``) is decomposed one matrix at a time, never as one batched LAPACK
    call; see the module docstring for the deadlock this avoids. Not differentiable
    with respect to ``m`` (K-FAC factors are statistics, treated as constants).
    """
    w, q = jnp.linalg.eigh(m)
    return w, q


@symmetric_eigh.def_vmap
def _symmetric_eigh_vmap(axis_size, in_batched, m):
    del axis_size, in_batched  # m is the only input, so it is the batched one
    return jax.lax.map(symmetric_eigh, m), (True, True)


def kron_precondition_eigen(
    grad: Array,
    evals_a: Array,
    evecs_a: Array,
    evals_s: Array,
    evecs_s: Array,
    damping: float | Array,
) -> Array:
    """``kron_precondition`` from precomputed eigendecompositions of ``A`` and ``S``.

    With ``A = Q_A diag(λ_A) Q_Aᵀ`` and ``S = Q_S diag(λ_S) Q_Sᵀ``, the system
    ``A X S + damping·X = G`` becomes elementwise in the eigenbases:
    ``X = Q_A [(Q_Aᵀ G Q_S) / (λ_A λ_Sᵀ + damping)] Q_Sᵀ``. Lets a caller reuse one
    eigendecomposition for several steps (K-FAC's inverse update period).
    Eigenvalues are clipped at 0: the factors are PSD, and round-off must not push a
    denominator below ``damping``.

    Args:
      grad: ``[d_in, d_out]``.
      evals_a, evecs_a: ``[d_in]``, ``[d_in, d_in]`` from ``symmetric_eigh(A)``.
      evals_s, evecs_s: ``[d_out]``, ``[d_out, d_out]`` from ``symmetric_eigh(S)``.
      damping: ``> 0``.

    Returns:
      ``[d_in, d_out]`` preconditioned gradient.
    """
    chex.assert_rank([grad, evals_a, evecs_a, evals_s, evecs_s], [2, 1, 2, 1, 2])
    chex.assert_equal_shape_prefix([grad, evals_a, evecs_a], 1)
    chex.assert_shape(evals_s, (grad.shape[1],))
    chex.assert_shape(evecs_s, (grad.shape[1], grad.shape[1]))
    rotated = evecs_a.T @ grad @ evecs_s
    denom = jnp.outer(jnp.maximum(evals_a, 0.0), jnp.maximum(evals_s, 0.0)) + damping
    return evecs_a @ (rotated / denom) @ evecs_s.T


def kron_precondition(grad: Array, A: Array, S: Array, damping: float | Array) -> Array:
    """Solve ``(A ⊗ S + damping·I) vec(X) = vec(grad)`` exactly.

    ``vec`` is the row-major flattening of a ``[d_in, d_out]`` matrix
    (``vec(X)[i·d_out + j] = X[i, j]``, numpy's ``ravel``), for which
    ``(A ⊗ S) vec(X) = vec(A X Sᵀ)``; with symmetric factors the system is
    ``A X S + damping·X = grad``. That is the ordering in which ``A ⊗ S`` approximates
    the Fisher block of a flax kernel (see the module docstring), so
    ``np.linalg.solve(np.kron(A, S) + damping·I, grad.ravel())`` is the oracle.

    Args:
      grad: ``[d_in, d_out]`` gradient in flax kernel layout (bias row folded in by
        the caller, see ``fold_bias``).
      A: ``[d_in, d_in]`` symmetric PSD input factor ``E[a aᵀ]``.
      S: ``[d_out, d_out]`` symmetric PSD output-gradient factor ``E[g gᵀ]``.
      damping: Tikhonov damping ``ε > 0`` added to the full Kronecker product
        (baselines ACKTR: 0.01).

    Returns:
      ``X``, ``[d_in, d_out]``.
    """
    chex.assert_rank([grad, A, S], 2)
    chex.assert_shape(A, (grad.shape[0], grad.shape[0]))
    chex.assert_shape(S, (grad.shape[1], grad.shape[1]))
    evals_a, evecs_a = symmetric_eigh(A)
    evals_s, evecs_s = symmetric_eigh(S)
    return kron_precondition_eigen(grad, evals_a, evecs_a, evals_s, evecs_s, damping)


def dense_factors(
    inputs: Array, grads: Array, bias: bool = True
) -> tuple[Array, Array]:
    """K-FAC factors ``A = E[a aᵀ]`` and ``S = E[g gᵀ]`` of one dense layer.

    Convention: ``grads`` are *per-example* gradients ``g_n = ∂ℓ_n/∂s_n`` of the
    pre-activations ``s_n``. Gradients of a batch-*mean* loss ``(1/N) Σ ℓ_n`` are
    ``g_n / N``: multiply them by ``N`` first (as baselines does), or ``S`` comes out
    ``N²`` times too small. With this convention and one example, ``A ⊗ S`` is exactly
    ``vec(∇W) vec(∇W)ᵀ`` for the folded weight ``W`` (``fold_bias`` layout).

    Args:
      inputs: ``[..., d_in]`` layer inputs ``x``; leading dims are examples.
      grads: ``[..., d_out]`` per-example pre-activation gradients, same leading dims.
      bias: append the homogeneous coordinate ``a = [x, 1]`` (layers with a bias).

    Returns:
      ``A``: ``[d_in + 1, d_in + 1]`` (``[d_in, d_in]`` without bias) and
      ``S``: ``[d_out, d_out]``, both averaged over the examples.
    """
    chex.assert_equal_shape_prefix([inputs, grads], inputs.ndim - 1)
    a = inputs.reshape(-1, inputs.shape[-1])
    g = grads.reshape(-1, grads.shape[-1])
    if bias:
        a = jnp.concatenate([a, jnp.ones_like(a[:, :1])], axis=1)
    n = a.shape[0]
    return a.T @ a / n, g.T @ g / n


def ema(old: PyTree, new: PyTree, decay: float | Array) -> PyTree:
    """Running average ``decay·old + (1 - decay)·new``, leafwise (ACKTR: 0.99)."""
    return jax.tree.map(lambda o, n: decay * o + (1.0 - decay) * n, old, new)


def fold_bias(kernel: Array, bias: Array) -> Array:
    """Stack a kernel (or its gradient) and its bias into one folded weight.

    ``[d_in, d_out]`` and ``[d_out]`` -> ``[d_in + 1, d_out]``, the bias the last row,
    matching the homogeneous coordinate ``a = [x, 1]`` of ``dense_factors``.
    """
    chex.assert_rank([kernel, bias], [2, 1])
    chex.assert_shape(bias, (kernel.shape[1],))
    return jnp.concatenate([kernel, bias[None, :]], axis=0)


def unfold_bias(folded: Array) -> tuple[Array, Array]:
    """Inverse of ``fold_bias``.

    ``[d_in + 1, d_out]`` -> ``(kernel [d_in, d_out], bias [d_out])``.
    """
    chex.assert_rank(folded, 2)
    return folded[:-1], folded[-1]


def trust_region_scale(
    step: PyTree, fisher_step: PyTree, eta_max: float | Array, delta: float | Array
) -> Array:
    """ACKTR's step size ``η = min(η_max, sqrt(2δ / (Δθᵀ F Δθ)))``.

    Keeps the predicted KL of the update ``η Δθ``, ``½ η² Δθᵀ F Δθ``, at most ``δ``
    (Wu et al. 2017, eq. 8). ``fisher_step`` is ``F Δθ``; for a preconditioned step
    ``Δθ = (F + εI)^{-1} g`` pass the raw gradient ``g`` (``F Δθ`` up to damping), which
    is what baselines does (``Σ g·Δθ``). Baselines' ``kfac_clip`` is ``2δ`` and its
    ``lr`` is ``η_max``. A non-positive ``Δθᵀ F Δθ`` (a zero step) gives ``η_max``.

    Args:
      step: ``Δθ``, a pytree.
      fisher_step: ``F Δθ`` (or the gradient ``g``), same structure.
      eta_max: the largest step size (the learning rate).
      delta: the KL trust region ``δ``.

    Returns:
      scalar ``η``.
    """
    leaves = zip(jax.tree.leaves(step), jax.tree.leaves(fisher_step), strict=True)
    quad = sum(jnp.vdot(s, f) for s, f in leaves)
    safe = jnp.where(quad > 0, quad, 1.0)
    eta = jnp.where(quad > 0, jnp.sqrt(2.0 * delta / safe), jnp.inf)
    return jnp.minimum(eta_max, eta)
