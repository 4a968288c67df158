"""Image augmentation for pixel-based RL.

DrQ (Kostrikov, Yarats & Fergus 2020, "Image Augmentation Is All You Need",
arXiv:2004.13649) pads each ``H × W`` frame by 4 pixels on every side, replicating
the border pixels, and takes a random ``H × W`` crop. That is an integer shift of
the image by up to ±4 pixels in each direction, with the edge rows and columns
repeated into the uncovered border. DrQ-v2 (Yarats et al. 2021, arXiv:2107.09645)
keeps the same augmentation.

Images are channels-last, ``[N, H, W, C]`` (frames stacked on ``C``), of any dtype;
``uint8`` stays ``uint8``, so augmentation can run on replay samples before they are
converted to float.
"""

import jax
import jax.numpy as jnp

Array = jax.Array


def _check(images: Array, pad: int) -> None:
    if images.ndim < 4:
        raise ValueError(
            f"images must be [N, H, W, C] (channels last, with at least one batch "
            f"axis), got shape {images.shape}"
        )
    if int(pad) < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")


def shift_images(images: Array, shifts: Array, pad: int = 4) -> Array:
    """Shift each image by an integer offset, replicating its border (DrQ).

    Each image is padded by ``pad`` pixels on both sides of H and W with its edge
    values, then the ``H × W`` window whose top-left corner is ``shifts[i]`` is cut
    out::

        out[i, h, w] = images[i, clip(h + shifts[i, 0] - pad, 0, H - 1),
                                 clip(w + shifts[i, 1] - pad, 0, W - 1)]

    so ``shifts[i] = (pad, pad)`` leaves image ``i`` unchanged.

    Args:
      images: ``[N, H, W, C]``, any dtype; extra leading batch axes
        ``[..., N, H, W, C]`` are allowed.
      shifts: integer ``[N, 2]`` (or ``[..., N, 2]``), the (row, column) corner of
        the window in the padded image, each in ``[0, 2 * pad]``. Values outside
        that range are clamped to it (``lax.dynamic_slice`` semantics).
      pad: border width in pixels (static, >= 0).

    Returns:
      ``[N, H, W, C]`` shifted images, same shape and dtype as ``images``.

    Raises:
      ValueError: if ``images`` has fewer than 4 axes, ``shifts`` is not
        ``[*images.shape[:-3], 2]``, or ``pad < 0``.
    """
    images = jnp.asarray(images)
    shifts = jnp.asarray(shifts)
    _check(images, pad)
    lead, (H, W, C) = images.shape[:-3], images.shape[-3:]
    if shifts.shape != (*lead, 2):
        raise ValueError(
            f"shifts must have shape {(*lead, 2)} for images of shape "
            f"{images.shape}, got {shifts.shape}"
        )
    if not jnp.issubdtype(shifts.dtype, jnp.integer):
        raise ValueError(f"shifts must be integers, got dtype {shifts.dtype}")
    flat = images.reshape(-1, H, W, C)
    widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    padded = jnp.pad(flat, widths, mode="edge")  # [N, H + 2 pad, W + 2 pad, C]

    def crop(image, shift):
        start = (shift[0], shift[1], jnp.zeros((), shift.dtype))
        return jax.lax.dynamic_slice(image, start, (H, W, C))

    out = jax.vmap(crop)(padded, shifts.reshape(-1, 2))
    return out.reshape(images.shape)


def random_shift(key: Array, images: Array, pad: int = 4) -> Array:
    """DrQ augmentation: shift every image by its own random offset in ±``pad``.

    Equivalent to DrQ's replicate-pad by ``pad`` followed by a random ``H × W``
    crop. The row and column offsets are drawn independently and uniformly from
    the ``2 * pad + 1`` integers in ``[-pad, pad]``, independently per image.

    Args:
      key: PRNG key.
      images: ``[N, H, W, C]`` (or ``[..., N, H, W, C]``), any dtype.
      pad: the largest shift in pixels (static, >= 0; DrQ uses 4 for 84 × 84
        frames). ``pad = 0`` returns ``images`` unchanged.

    Returns:
      Images of the same shape and dtype.

    Example::

        obs = random_shift(jax.random.key(0), obs_uint8)  # [B, 84, 84, 9] uint8
    """
    images = jnp.asarray(images)
    _check(images, pad)
    if pad == 0:
        return images
    shape = (*images.shape[:-3], 2)
    shifts = jax.random.randint(key, shape, 0, 2 * pad + 1, dtype=jnp.int32)
    return shift_images(images, shifts, pad)
