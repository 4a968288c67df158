"""networks: the LAPACK-free orthogonal initialiser against numpy's QR; conv2d's
custom gradients against lax's own."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import (ConvEncoder, ConvTranspose, conv2d, conv_general,
                             conv_transpose2d, orthogonal)


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


def _lax_conv(x, w, strides):
    return jax.lax.conv_general_dilated(x, w, strides, "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _loss(conv, strides):
    # A non-linear read-out so that the output gradient is not constant.
    return lambda x, w: jnp.sin(conv(x, w, strides)).sum()


# Strides 1, 2 and (3, 2) on sizes that leave 0, 1 or 2 rows unreached by the stride.
@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("size", [(9, 10), (10, 11), (11, 9)])
def test_conv2d_values_and_gradients_match_lax(strides, size):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, *size, 5))
    w = jax.random.normal(kw, (3, 2, 5, 4))
    np.testing.assert_allclose(jax.jit(conv2d, static_argnums=2)(x, w, strides),
                               _lax_conv(x, w, strides), rtol=1e-5, atol=1e-5)
    got = jax.jit(jax.grad(_loss(conv2d, strides), argnums=(0, 1)))(x, w)
    want = jax.grad(_loss(_lax_conv, strides), argnums=(0, 1))(x, w)
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_conv2d_gradients_under_vmap_and_scan():
    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (3, 2, 12, 12, 4))  # 3 "seeds", each its own batch
    w = jax.random.normal(kw, (3, 3, 3, 4, 6))
    grad = jax.grad(_loss(conv2d, (2, 2)), argnums=(0, 1))

    def in_scan(x, w):  # like SAC's gradient steps: inside a loop body
        return jax.lax.scan(lambda c, _: (c, grad(x, w)), 0, None, length=1)[1]

    got = jax.jit(jax.vmap(in_scan))(x, w)
    for i in range(3):
        want = jax.grad(_loss(_lax_conv, (2, 2)), argnums=(0, 1))(x[i], w[i])
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g[i, 0], r, rtol=1e-4, atol=1e-4)


def _lax_conv_transpose(x, w, strides):
    return jax.lax.conv_transpose(x, w, strides, "VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  transpose_kernel=True)


# Dreamer's decoder layers (1 -> 5 -> 13 -> 30 -> 64), a stride-1 and an uneven stride.
@pytest.mark.parametrize("size,kernel,strides", [(1, 5, (2, 2)), (5, 5, (2, 2)),
                                                 (13, 6, (2, 2)), (7, 3, (1, 1)),
                                                 (6, 4, (3, 2))])
def test_conv_transpose2d_values_and_gradients_match_lax(size, kernel, strides):
    kx, kw = jax.random.split(jax.random.key(2))
    x = jax.random.normal(kx, (2, size, size, 5))
    w = jax.random.normal(kw, (kernel, kernel, 3, 5))
    got = jax.jit(conv_transpose2d, static_argnums=2)(x, w, strides)
    np.testing.assert_allclose(got, _lax_conv_transpose(x, w, strides), rtol=1e-5, atol=1e-5)
    assert got.shape == (2, (size - 1) * strides[0] + kernel, (size - 1) * strides[1] + kernel, 3)
    got = jax.jit(jax.grad(_loss(conv_transpose2d, strides), argnums=(0, 1)))(x, w)
    want = jax.grad(_loss(_lax_conv_transpose, strides), argnums=(0, 1))(x, w)
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


def test_conv_transpose_layer_gradient_under_vmap_in_a_loop_is_canonical():
    """Dreamer's decoder trains inside the loop's scans: its gradient, vmapped over
    seeds, matches lax's per seed, and every convolution compiled for it is in the
    fast NHWC/HWIO layout."""
    layer = ConvTranspose(3, 5, 2)
    x = jax.random.normal(jax.random.key(3), (2, 4, 5, 5, 6))  # 2 seeds
    params = jax.vmap(layer.init)(jax.random.split(jax.random.key(4), 2), x)
    loss = lambda p, x: jnp.sin(layer.apply(p, x)).sum()  # noqa: E731

    def in_scan(p, x):
        return jax.lax.scan(lambda c, _: (c, jax.grad(loss)(p, x)), 0, None, length=1)[1]

    fn = jax.jit(jax.vmap(in_scan))
    got = fn(params, x)
    for i in range(2):
        p = jax.tree.map(lambda a, i=i: a[i], params)
        w, b = p["params"]["kernel"], p["params"]["bias"]
        want = jax.grad(lambda w, b: jnp.sin(_lax_conv_transpose(x[i], w, (2, 2)) + b).sum(),
                        argnums=(0, 1))(w, b)
        np.testing.assert_allclose(got["params"]["kernel"][i, 0], want[0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["params"]["bias"][i, 0], want[1], rtol=1e-4, atol=1e-4)
    hlo = fn.lower(params, x).compile().as_text()
    labels = set(re.findall(r"convolution\(.*dim_labels=([\w>-]+)", hlo))
    assert labels == {"b01f_01io->b01f"}, labels


def test_encoder_gradient_in_a_loop_compiles_to_canonical_convolutions():
    """The reason conv2d exists: every convolution XLA:CPU compiles for the
    encoder's gradient inside a loop body is in the NHWC/HWIO layout its fast path
    takes (autodiff of lax's convolution gives f01b/i01o ones there instead)."""
    enc = ConvEncoder(width=8)
    x = jnp.zeros((4, 20, 20, 3), jnp.uint8)
    params = enc.init(jax.random.key(0), x[0])
    grad = jax.grad(lambda p: enc.apply(p, x).sum())

    def in_scan(p):
        return jax.lax.scan(lambda c, _: (c, grad(p)), 0, None, length=2)[1]

    hlo = jax.jit(in_scan).lower(params).compile().as_text()
    labels = re.findall(r"convolution\(.*dim_labels=([\w>-]+)", hlo)
    assert len(labels) >= 4 + 4 + 3  # forward, kernel grads, input grads (not layer 1)
    assert set(labels) == {"b01f_01io->b01f"}, labels


@pytest.mark.parametrize("kwargs", [dict(padding="SAME", strides=2),
                                    dict(padding=((1, 0), (2, 1))),
                                    dict(padding="VALID", kernel_dilation=2),
                                    dict(padding="VALID", feature_group_count=2)])
def test_flax_conv_hook_matches_flax_default(kwargs):
    x = jax.random.normal(jax.random.key(2), (2, 9, 9, 4))
    plain = nn.Conv(6, (3, 3), **kwargs)
    hooked = nn.Conv(6, (3, 3), conv_general_dilated=conv_general, **kwargs)
    params = plain.init(jax.random.key(3), x)
    np.testing.assert_allclose(hooked.apply(params, x), plain.apply(params, x),
                               rtol=1e-5, atol=1e-5)
    g_hooked = jax.grad(lambda p: jnp.sin(hooked.apply(p, x)).sum())(params)
    g_plain = jax.grad(lambda p: jnp.sin(plain.apply(p, x)).sum())(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                 g_hooked, g_plain)
