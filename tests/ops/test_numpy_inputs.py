"""Every public primitive takes numpy and jax arrays alike: called eagerly, inside
``jax.jit`` with numpy arrays closed over (constants, which a traced index cannot
index), and under ``jax.vmap``, it gives the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import ops

RNG = np.random.default_rng(0)
T, B = 6, 3
R = RNG.normal(size=(T, B)).astype(np.float32)
D = (0.9 * (RNG.random((T, B)) > 0.2)).astype(np.float32)
V = RNG.normal(size=(T + 1, B)).astype(np.float32)
RHO = RNG.uniform(0.5, 1.5, size=(T, B)).astype(np.float32)
IMG = RNG.integers(0, 255, size=(2, 8, 8, 3)).astype(np.uint8)
SHIFTS = np.array([[1, -2], [0, 3]], np.int32)
M = RNG.normal(size=(4, 4)).astype(np.float32)
SPD = (M @ M.T + 4 * np.eye(4)).astype(np.float32)
G = RNG.normal(size=(4, 3)).astype(np.float32)
SPD3 = SPD[:3, :3].copy()
X = RNG.normal(size=(5, 3)).astype(np.float32)
DY = RNG.normal(size=(5, 2)).astype(np.float32)
K = RNG.normal(size=(3, 2)).astype(np.float32)
BIAS = RNG.normal(size=(2,)).astype(np.float32)
P = {"w": RNG.normal(size=(3,)).astype(np.float32)}


def _quadratic_kl(p):
    return 0.5 * jnp.sum((p["w"] - P["w"]) ** 2 * np.array([1.0, 2.0, 3.0], np.float32))


def _loss_and_kl(p):
    return jnp.sum(p["w"] ** 2), _quadratic_kl(p)


# name -> (function of numpy arrays only, a vmap-able version over a leading axis or None)
CALLS = {
    "discounted_returns": lambda: ops.discounted_returns(R, D, V[-1]),
    "n_step_returns": lambda: ops.n_step_returns(R, D, V, 3),
    "lambda_returns": lambda: ops.lambda_returns(R, D, V, 0.9),
    "gae": lambda: ops.gae(R, D, V, 0.95),
    "vtrace": lambda: ops.vtrace(R, D, V, RHO),
    "shift_images": lambda: ops.shift_images(IMG, SHIFTS, pad=4),
    "random_shift": lambda: ops.random_shift(jax.random.key(0), IMG, pad=4),
    "symmetric_eigh": lambda: ops.symmetric_eigh(SPD),
    "kron_precondition": lambda: ops.kron_precondition(G, SPD, SPD3, 0.1),
    "kron_precondition_eigen": lambda: ops.kron_precondition_eigen(
        G, *np.linalg.eigh(SPD), *np.linalg.eigh(SPD3), 0.1),
    "dense_factors": lambda: ops.dense_factors(X, DY),
    "ema": lambda: ops.ema({"a": X}, {"a": 2 * X}, 0.9),
    "fold_bias": lambda: ops.fold_bias(K, BIAS),
    "unfold_bias": lambda: ops.unfold_bias(np.concatenate([K, BIAS[None]], 0)),
    "trust_region_scale": lambda: ops.trust_region_scale(P, P, 1.0, 0.01),
    "conjugate_gradient": lambda: ops.conjugate_gradient(
        lambda v: jax.tree.map(lambda x: np.float32(2.0) * x, v), P, num_iters=5),
    "fisher_vector_product": lambda: ops.fisher_vector_product(_quadratic_kl, P, 0.1)(P),
    "backtracking_line_search": lambda: ops.backtracking_line_search(
        _loss_and_kl, P, {"w": -0.5 * P["w"]}, np.float32(1.0), 0.5),
    "sinkhorn_knopp": lambda: ops.sinkhorn_knopp(X / 0.1, 3),
    "knn_distances": lambda: ops.knn_distances(X, X, 2),
    "knn_entropy": lambda: ops.knn_entropy(X, 2),
}


def test_every_primitive_is_listed():
    assert set(CALLS) == set(ops.__all__)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_numpy_inputs_eager_and_under_jit(name):
    call = CALLS[name]
    eager = call()
    jitted = jax.jit(call)()
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, fn, args", [
    ("n_step_returns", lambda r, d, v: ops.n_step_returns(r, d, v, 3), (R, D, V)),
    ("gae", lambda r, d, v: ops.gae(r, d, v, 0.95), (R, D, V)),
    ("discounted_returns", lambda r, d, v: ops.discounted_returns(r, d, v[-1]), (R, D, V)),
    ("shift_images", lambda im: ops.shift_images(im, SHIFTS, pad=2), (IMG,)),
])
def test_numpy_batch_under_vmap(name, fn, args):
    """vmap over a new leading axis of numpy arrays equals a loop over it."""
    stacked = [np.stack([a, a[::-1].copy()]) for a in args]
    got = jax.vmap(fn)(*stacked)
    for i in range(2):
        want = fn(*[s[i] for s in stacked])
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
