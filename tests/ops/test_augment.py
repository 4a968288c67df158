"""purerl.ops.augment against a numpy pad-and-slice oracle, under jit and vmap."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.ops import random_shift, shift_images

N, H, W, C = 5, 7, 9, 3


def oracle(images, shifts, pad):
    """np.pad in edge mode, then one H × W slice per image (a Python loop)."""
    images = np.asarray(images)
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(np.asarray(shifts)):
        out[i] = padded[i, dy : dy + h, dx : dx + w]
    return out


def make_images(seed, dtype, n=N, h=H, w=W, c=C):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    return rng.normal(size=(n, h, w, c)).astype(dtype)


def recover_shift(image, original, pad):
    """The shifts in [0, 2 pad]² whose oracle output equals ``image`` (searched)."""
    return [
        (dy, dx)
        for dy, dx in itertools.product(range(2 * pad + 1), repeat=2)
        if np.array_equal(oracle(original[None], [(dy, dx)], pad)[0], image)
    ]


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def jitted(request):
    return request.param


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("pad", [1, 4])
def test_shift_images_matches_oracle(dtype, pad, jitted):
    images = make_images(0, dtype)
    rng = np.random.default_rng(1)
    shifts = rng.integers(0, 2 * pad + 1, (N, 2)).astype(np.int32)
    # Include the extreme corners, where the replicated border is widest.
    shifts[0] = (0, 0)
    shifts[1] = (2 * pad, 2 * pad)
    fn = jax.jit(shift_images, static_argnums=2) if jitted else shift_images
    out = fn(images, shifts, pad)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(np.asarray(out), oracle(images, shifts, pad))


def test_hand_computed_one_pixel_shift():
    image = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)
    # Window starting at (0, 2) in the 1-padded image: down by one row (the top
    # row repeated), left by one column (the right column repeated).
    out = np.asarray(shift_images(image, np.array([[0, 2]]), pad=1))[0, ..., 0]
    np.testing.assert_array_equal(out, [[1, 2, 2], [1, 2, 2], [4, 5, 5]])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_centre_shift_is_identity(dtype):
    images = make_images(2, dtype)
    shifts = np.full((N, 2), 4, np.int32)
    out = shift_images(images, shifts, pad=4)
    np.testing.assert_array_equal(np.asarray(out), images)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_shift_shape_dtype_and_pad_zero(dtype, jitted):
    images = make_images(3, dtype)
    fn = jax.jit(random_shift, static_argnums=2) if jitted else random_shift
    out = fn(jax.random.key(0), images, 4)
    assert out.shape == images.shape and out.dtype == images.dtype
    same = fn(jax.random.key(0), images, 0)
    assert same.dtype == images.dtype
    np.testing.assert_array_equal(np.asarray(same), images)
    unshifted = shift_images(images, np.zeros((N, 2), np.int32), 0)
    np.testing.assert_array_equal(np.asarray(unshifted), images)


def test_random_shift_is_per_sample_and_in_range():
    n, pad = 32, 2
    # Distinct pixel values, so every shift in range gives a different image.
    base = np.arange(H * W, dtype=np.float32).reshape(1, H, W, 1)
    images = np.repeat(base, n, axis=0)
    out = np.asarray(jax.jit(random_shift, static_argnums=2)(jax.random.key(4), images,
                                                             pad))
    found = []
    for i in range(n):
        matches = recover_shift(out[i], images[i], pad)
        assert len(matches) == 1, (i, matches)
        found.append(matches[0])
    assert len(set(found)) > 1, found
    # Both axes are drawn independently: each takes more than one value.
    assert len({dy for dy, _ in found}) > 1 and len({dx for _, dx in found}) > 1


def test_random_shift_deterministic_per_key_and_varies_across_keys():
    images = make_images(5, np.uint8, n=16)
    a = random_shift(jax.random.key(7), images)
    b = random_shift(jax.random.key(7), images)
    c = random_shift(jax.random.key(8), images)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_vmap_over_keys_and_images_equals_separate_calls():
    images = np.stack([make_images(s, np.uint8) for s in range(3)])  # [3, N, H, W, C]
    keys = jax.random.split(jax.random.key(9), 3)
    batched = jax.jit(jax.vmap(random_shift, in_axes=(0, 0, None)), static_argnums=2)(
        keys, images, 4)
    assert batched.shape == images.shape and batched.dtype == jnp.uint8
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(batched[i]),
                                      np.asarray(random_shift(keys[i], images[i], 4)))


def test_extra_leading_axes_flatten_into_the_batch():
    images = make_images(6, np.float32, n=6).reshape(2, 3, H, W, C)
    shifts = np.random.default_rng(0).integers(0, 9, (2, 3, 2)).astype(np.int32)
    out = np.asarray(shift_images(images, shifts, 4))
    want = oracle(images.reshape(6, H, W, C), shifts.reshape(6, 2), 4)
    np.testing.assert_array_equal(out, want.reshape(images.shape))


def test_errors_name_the_shape():
    with pytest.raises(ValueError, match=r"\[N, H, W, C\].*\(7, 9, 3\)"):
        random_shift(jax.random.key(0), jnp.zeros((H, W, C), jnp.uint8))
    with pytest.raises(ValueError, match=r"\(7, 9\)"):
        shift_images(jnp.zeros((H, W)), jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"shifts must have shape \(5, 2\)"):
        shift_images(make_images(0, np.uint8), jnp.zeros((4, 2), jnp.int32))
    with pytest.raises(ValueError, match="integers"):
        shift_images(make_images(0, np.uint8), jnp.zeros((N, 2)))
    with pytest.raises(ValueError, match="pad must be >= 0"):
        random_shift(jax.random.key(0), make_images(0, np.uint8), -1)
