"""k-nearest-neighbour distances and the Kozachenko-Leonenko entropy estimate.

Proto-RL (Yarats et al. 2021, arXiv:2102.11271, §4.2) rewards a state by the
Euclidean distance from its embedding to the k-th nearest of a queue of candidate
embeddings (k = 3); APT (Liu & Abbeel 2021, arXiv:2103.04551) uses a particle-based
entropy built on the same distances. The differential entropy of a sample is
estimated by Kozachenko & Leonenko (1987), in the form of Kraskov, Stögbauer &
Grassberger (2004, arXiv:cond-mat/0305641, eq. 20):

    Ĥ = ψ(N) − ψ(k) + log V_d + (d / N) Σ_i log ε_i

with ε_i the distance from sample i to its k-th nearest other sample, ψ the digamma
function and V_d = π^{d/2} / Γ(d/2 + 1) the volume of the unit d-ball.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import digamma, gammaln

Array = jax.Array


# Up to this many features, knn_distances ranks on exact differences ([B, N, d] work,
# fused by XLA into the reduction) instead of the matrix-product expansion.
EXACT_MAX_FEATURES = 8


def _check_points(name: str, x: Array) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, d] (points x features), got shape "
                         f"{x.shape}; vmap for more batch axes")


def knn_distances(queries: Array, points: Array, k: int) -> Array:
    """Euclidean distance from each query to its ``k``-th nearest point.

    A query that is also one of ``points`` counts itself, at distance 0 (as
    Proto-RL's reward does: the batch's own candidates are in the queue it queries).

    With more than ``EXACT_MAX_FEATURES`` features, the ``k`` nearest are selected on
    squared distances computed as ``|q|² + |p|² − 2 q·p`` (one matrix product,
    ``[B, N]`` memory), and their distances are then recomputed from the differences,
    so the result does not suffer that form's cancellation for close points (the
    selection can still swap neighbours closer than about ``sqrt(eps · |q|²)``,
    harmless for Proto-RL's unit-norm embeddings). With fewer features, the
    selection is on the differences too, exact.

    Args:
      queries: ``[B, d]``.
      points: ``[N, d]`` with ``N >= k``.
      k: which neighbour, 1-based (static).

    Returns:
      ``[B]`` distances, in the promoted float dtype of the inputs.

    Raises:
      ValueError: on inputs that are not 2-D, feature sizes that differ, or ``k``
        outside ``[1, N]``.
    """
    queries, points = jnp.asarray(queries), jnp.asarray(points)
    _check_points("queries", queries)
    _check_points("points", points)
    if queries.shape[1] != points.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but points have "
                         f"{points.shape[1]}")
    if not 1 <= int(k) <= points.shape[0]:
        raise ValueError(f"k must be in [1, {points.shape[0]}] (the number of "
                         f"points), got {k}")
    dtype = jnp.promote_types(jnp.result_type(queries, points), jnp.float32)
    queries, points = queries.astype(dtype), points.astype(dtype)
    if queries.shape[1] <= EXACT_MAX_FEATURES:
        # Few features: the differences cost no more than the product, and they rank
        # close points exactly (states in a maze, clustered far from the origin).
        squared = jnp.sum((queries[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    else:
        squared = (jnp.sum(queries**2, axis=1, keepdims=True)
                   + jnp.sum(points**2, axis=1) - 2.0 * queries @ points.T)
    _, nearest = jax.lax.top_k(-squared, int(k))
    diffs = points[nearest] - queries[:, None, :]
    return jnp.max(jnp.sqrt(jnp.sum(diffs**2, axis=-1)), axis=-1)


def knn_entropy(samples: Array, k: int = 3) -> Array:
    """Kozachenko-Leonenko estimate of the differential entropy of ``samples``, in nats.

    Each sample's neighbours exclude itself. The estimate is biased for small ``N``
    and large ``d`` (it is consistent, not unbiased); duplicated samples give
    ``-inf``.

    Args:
      samples: ``[N, d]`` draws of a d-dimensional density, ``N > k``.
      k: neighbour order (static, >= 1). 3 is a common choice (Kraskov et al.).

    Returns:
      A scalar: the estimate in nats.

    Raises:
      ValueError: if ``samples`` is not 2-D or ``k`` is outside ``[1, N - 1]``.
    """
    samples = jnp.asarray(samples)
    _check_points("samples", samples)
    n, d = samples.shape
    if not 1 <= int(k) <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}] (the number of samples minus "
                         f"one), got {k}")
    # Each sample is its own nearest point: the k-th other sample is the (k+1)-th.
    eps = knn_distances(samples, samples, int(k) + 1)
    log_unit_ball = 0.5 * d * jnp.log(jnp.pi) - gammaln(0.5 * d + 1.0)
    return (digamma(float(n)) - digamma(float(k)) + log_unit_ball
            + d * jnp.mean(jnp.log(eps)))
