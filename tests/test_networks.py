"""networks: the LAPACK-free orthogonal initialiser against numpy's QR."""

import jax
import numpy as np
import pytest

from purerl.networks import orthogonal


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (3, 5, 7)])
def test_orthogonal_matches_sign_corrected_qr(shape):
    key = jax.random.key(0)
    w = np.asarray(jax.jit(orthogonal(2.0), static_argnums=1)(key, shape))
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    n, m = max(rows, cols), min(rows, cols)
    a = np.asarray(jax.random.normal(key, (n, m)), np.float64)
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    np.testing.assert_allclose(w.reshape(rows, cols), 2.0 * q, atol=2e-5)
    flat = w.reshape(rows, cols) / 2.0
    gram = flat.T @ flat if rows >= cols else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(m), atol=2e-5)


def test_orthogonal_vmaps_over_keys():
    keys = jax.random.split(jax.random.key(1), 8)
    ws = jax.jit(jax.vmap(lambda k: orthogonal()(k, (64, 64))))(keys)
    assert ws.shape == (8, 64, 64)
    for i in range(8):
        np.testing.assert_allclose(ws[i], orthogonal()(keys[i], (64, 64)), atol=1e-6)
