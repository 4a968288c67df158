"""sinkhorn_knopp, knn_distances and knn_entropy against independent oracles
(POT, an explicit numpy loop, scipy's cKDTree and closed-form Gaussian entropies),
under jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from purerl.ops import knn_distances, knn_entropy, sinkhorn_knopp


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def cosine_scores(seed, b=64, k=16, d=8):
    rng = np.random.default_rng(seed)
    return unit(rng.normal(size=(b, d))) @ unit(rng.normal(size=(k, d))).T


def numpy_sinkhorn(logits, num_iters):
    """The SwAV / Proto-RL iteration written as an explicit float64 loop."""
    q = np.exp(np.asarray(logits, np.float64)).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(num_iters):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


@pytest.mark.parametrize("num_iters", [1, 3])
def test_sinkhorn_matches_numpy_loop(num_iters, variant):
    logits = cosine_scores(0) / 0.1
    out = variant(sinkhorn_knopp, static_argnums=1)(jnp.asarray(logits, jnp.float32),
                                                     num_iters)
    np.testing.assert_allclose(out, numpy_sinkhorn(logits, num_iters), rtol=2e-5,
                               atol=1e-7)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)


def test_converged_sinkhorn_is_the_entropic_transport_plan_of_pot():
    import ot  # POT, in the test extra only
    jax.config.update("jax_enable_x64", True)
    try:
        scores = cosine_scores(1, b=48, k=12)
        temperature = 0.1
        out = jax.jit(sinkhorn_knopp, static_argnums=1)(
            jnp.asarray(scores / temperature, jnp.float64), 200)
        b, k = scores.shape
        plan = ot.sinkhorn(np.full(b, 1 / b), np.full(k, 1 / k), -scores,
                           reg=temperature, numItermax=10_000, stopThr=1e-14)
        np.testing.assert_allclose(np.asarray(out), b * plan, atol=1e-10)
        np.testing.assert_allclose(np.asarray(out).sum(0), b / k, rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_three_iterations_are_only_roughly_balanced():
    # The prototype marginal after 3 iterations is close to B/K, but not equal.
    b, k = 256, 16
    out = np.asarray(sinkhorn_knopp(jnp.asarray(cosine_scores(2, b, k) / 0.1), 3))
    deviation = np.abs(out.sum(0) / b - 1 / k).max()
    assert 1e-5 < deviation < 0.03


def test_sinkhorn_under_vmap_and_stable_for_large_logits():
    logits = jnp.stack([cosine_scores(s) / 0.1 for s in range(3)]).astype(jnp.float32)
    out = jax.vmap(sinkhorn_knopp)(logits)
    for i in range(3):
        np.testing.assert_allclose(out[i], sinkhorn_knopp(logits[i]), rtol=1e-6)
    big = sinkhorn_knopp(jnp.asarray(cosine_scores(3) / 1e-3, jnp.float32))
    assert np.isfinite(np.asarray(big)).all()


def test_sinkhorn_bad_input():
    with pytest.raises(ValueError, match="logits must be"):
        sinkhorn_knopp(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="num_iters"):
        sinkhorn_knopp(jnp.zeros((2, 3)), 0)


@pytest.mark.parametrize("d", [5, 16])  # the exact ranking and the matrix product's
@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_distances_match_cKDTree(k, d, variant):
    rng = np.random.default_rng(k)
    points = rng.normal(size=(300, d)).astype(np.float32)
    queries = np.concatenate([rng.normal(size=(40, d)), points[:10]]).astype(np.float32)
    out = variant(knn_distances, static_argnums=2)(queries, points, k)
    expected = cKDTree(points).query(queries, k=[k])[0][:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    if k == 1:  # a query that is also a point counts itself
        np.testing.assert_array_equal(np.asarray(out)[-10:], 0.0)


def test_knn_distances_exact_for_close_points_far_from_the_origin():
    # |q|² + |p|² − 2q·p loses the distance in float32 here; the recomputed one does not.
    points = np.float32(1000.0) + np.float32(1e-3) * np.arange(8, dtype=np.float32)[:, None]
    exact = np.float32(points[1, 0] - points[0, 0])
    squared = points[0] @ points[0] + points[1] @ points[1] - 2 * points[0] @ points[1]
    assert abs(np.sqrt(max(squared, 0)) - exact) > 0.1 * exact  # the naive form is off
    np.testing.assert_allclose(knn_distances(points[:1], points, 2), exact, rtol=1e-6)


def test_knn_distances_rank_a_tight_cluster_far_from_the_origin_exactly():
    # Positions in a maze: a point pushed against a wall, dithered by 1e-3, 15 cells
    # from the origin. The product form's rounding (~1e-5 in squared distance) is
    # larger than the squared gaps, so it would pick the neighbours at random.
    rng = np.random.default_rng(0)
    points = (np.float32([15.0, 4.0]) + rng.uniform(-1e-3, 1e-3, (200, 2))).astype(np.float32)
    out = jax.jit(knn_distances, static_argnums=2)(points, points, 4)
    expected = cKDTree(points.astype(np.float64)).query(points, k=[4])[0][:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-3)


def test_knn_distances_under_vmap():
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(3, 20, 4)).astype(np.float32)
    points = rng.normal(size=(3, 50, 4)).astype(np.float32)
    out = jax.vmap(knn_distances, in_axes=(0, 0, None))(queries, points, 3)
    for i in range(3):
        expected = cKDTree(points[i]).query(queries[i], k=[3])[0][:, 0]
        np.testing.assert_allclose(out[i], expected, rtol=1e-5)


def test_knn_bad_input():
    with pytest.raises(ValueError, match="k must be in"):
        knn_distances(jnp.zeros((2, 3)), jnp.zeros((4, 3)), 5)
    with pytest.raises(ValueError, match="features"):
        knn_distances(jnp.zeros((2, 3)), jnp.zeros((4, 2)), 1)
    with pytest.raises(ValueError, match="queries must be"):
        knn_distances(jnp.zeros(3), jnp.zeros((4, 3)), 1)
    with pytest.raises(ValueError, match="k must be in"):
        knn_entropy(jnp.zeros((4, 3)), 4)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_knn_entropy_of_gaussians_within_015_nats(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    samples = rng.multivariate_normal(np.zeros(d), cov, size=2000).astype(np.float32)
    closed_form = 0.5 * np.log((2 * np.pi * np.e) ** d * np.linalg.det(cov))
    estimate = float(jax.jit(knn_entropy, static_argnums=1)(samples, 3))
    assert abs(estimate - closed_form) < 0.15, (estimate, closed_form)


def test_knn_entropy_matches_the_formula_with_scipy_neighbours():
    from scipy.special import digamma, gammaln

    rng = np.random.default_rng(7)
    samples = rng.uniform(size=(500, 3)).astype(np.float64)
    n, d, k = 500, 3, 4
    eps = cKDTree(samples).query(samples, k=[k + 1])[0][:, 0]
    expected = (digamma(n) - digamma(k) + d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
                + d * np.log(eps).mean())
    out = jax.vmap(knn_entropy, in_axes=(0, None))(
        jnp.asarray(np.stack([samples, samples]), jnp.float32), k)
    np.testing.assert_allclose(out, expected, rtol=1e-4)
