"""Flax (linen) modules shared by the algorithms."""

import functools
from collections.abc import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purerl.types import Box, Discrete

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "silu": nn.silu}


def orthogonal(scale: float = 1.0):
    """Orthogonal initialiser (Saxe et al. 2014) without LAPACK.

    Same distribution as ``flax.linen.initializers.orthogonal`` (the Q factor, with a
    positive-diagonal R, of a Gaussian matrix), computed by twice-repeated classical
    Gram–Schmidt in plain XLA ops. Why: jax 0.10.2's batched CPU QR (what vmapping
    ``init`` over seeds produces) runs its batch on XLA's intra-op thread pool and waits
    for it from inside that pool; two QRs running at once on a 2-core machine take
    both pool threads and deadlock (seen here as intermittent hangs of training runs
    and tests; gdb showed both threads in ``lapack_sgeqrf_ffi``/``ParallelBatchMap``).
    """

    def init(key, shape, dtype=jnp.float32):
        rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
        n, m = max(rows, cols), min(rows, cols)
        a = jax.random.normal(key, (n, m), jnp.float32)

        def add_column(j, q):
            v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
            for _ in range(2):  # re-orthogonalise once: CGS2 is as stable as Householder
                v = v - q @ (q.T @ v)  # columns >= j of q are still zero
            return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

        q = jax.lax.fori_loop(0, m, add_column, jnp.zeros((n, m), jnp.float32))
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


class MLP(nn.Module):
    """Dense layers with orthogonal init (gain √2 on hidden layers), then a linear head.

    ``out_scale`` is the orthogonal gain of the head: 0.01 for policy logits/means so
    the initial policy is near uniform, 1.0 for values (Engstrom et al. 2020; PPO2).
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "tanh"
    out_scale: float = 1.0
    kernel_init: Callable | None = None
    """If given, every layer's kernel init instead (e.g. Keras' Glorot uniform)."""

    @nn.compact
    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        init = lambda gain: self.kernel_init or orthogonal(gain)  # noqa: E731
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=init(np.sqrt(2.0)))(x))
        return nn.Dense(self.out_dim, kernel_init=init(self.out_scale))(x)


class ValueNet(nn.Module):
    """State-value function V(s): ``[..., *obs_shape] -> [...]``."""

    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(*obs.shape[: obs.ndim - self.obs_ndim], -1)
        return MLP(self.hidden, 1, self.activation, out_scale=1.0)(x)[..., 0]

    obs_ndim: int = 1


class PolicyNet(nn.Module):
    """π(·|s) as a distrax distribution.

    Discrete actions: a categorical over logits. Continuous actions: a diagonal
    Gaussian with a state-independent learned log-std (PPO/TRPO for MuJoCo); samples
    are unbounded and the environment adapter clips them to the action bounds.
    """

    action_space: Discrete | Box
    hidden: Sequence[int]
    activation: str = "tanh"
    log_std_init: float = 0.0
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(*obs.shape[: obs.ndim - self.obs_ndim], -1)
        if isinstance(self.action_space, Discrete):
            logits = MLP(self.hidden, self.action_space.n, self.activation, 0.01)(x)
            return distrax.Categorical(logits=logits)
        dim = int(np.prod(self.action_space.shape))
        mean = MLP(self.hidden, dim, self.activation, 0.01)(x)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.log_std_init), (dim,)
        )
        std = jnp.broadcast_to(jnp.exp(log_std), mean.shape)
        return distrax.MultivariateNormalDiag(mean, std)


def eval_action(dist):
    """The deterministic action used for evaluation: the mode (argmax or mean)."""
    return dist.mode()


class QNet(nn.Module):
    """Action values.

    Discrete actions: ``Q(s, ·)``, ``[..., *obs_shape] -> [..., n]`` (call with
    ``action=None``). Continuous actions: ``Q(s, a)``, the flattened action concatenated
    to the flattened observation, ``-> [...]``.
    """

    hidden: Sequence[int]
    num_outputs: int = 1
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs, action=None):
        x = obs.reshape(*obs.shape[: obs.ndim - self.obs_ndim], -1)
        if action is not None:
            a = action.reshape(*x.shape[:-1], -1).astype(x.dtype)
            x = jnp.concatenate([x, a], axis=-1)
        q = MLP(self.hidden, self.num_outputs, self.activation, out_scale=1.0)(x)
        return q if action is None else q[..., 0]


_NHWC = ("NHWC", "HWIO", "NHWC")


def _valid_conv(x, w, strides, padding=((0, 0), (0, 0)), lhs_dilation=(1, 1),
                rhs_dilation=(1, 1)):
    return jax.lax.conv_general_dilated(x, w, strides, padding, lhs_dilation,
                                        rhs_dilation, _NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, w, strides=(1, 1)):
    """VALID 2-d convolution, NHWC images and HWIO kernels, whose gradients stay fast
    inside loops and conditionals on CPU.

    Same values and gradients as ``lax.conv_general_dilated(x, w, strides, "VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"))``. Why a custom VJP: XLA:CPU runs a
    convolution on its fast (Eigen) path only in the canonical NHWC/HWIO layout, and
    it rewrites other layouts into that one only in the top-level computation
    (jax-ml/jax#12868). The convolutions that autodiff emits for the backward pass
    are non-canonical, so inside a ``lax.scan`` or ``lax.cond`` (SAC's gradient
    steps are both) they fell back to a naive loop: 113 s instead of 2.8 s for the
    DrQ encoder's gradient at batch 128 on this 2-core machine. Here both backward
    convolutions are written in the canonical layout, with explicit transposes that
    an optimisation barrier keeps XLA from folding back into the convolution.

    Args:
      x: ``[N, H, W, C_in]`` images (float).
      w: ``[kh, kw, C_in, C_out]`` kernel.
      strides: ``(sh, sw)``, static.

    Returns:
      ``[N, (H − kh) // sh + 1, (W − kw) // sw + 1, C_out]``.
    """
    return _valid_conv(x, w, tuple(strides))


def _conv2d_fwd(x, w, strides):
    return _valid_conv(x, w, tuple(strides)), (x, w)


def _conv_input_grad(g, w, in_hw, strides):
    """The gradient of a VALID strided convolution with respect to its input
    (``[N, *in_hw, C_in]``) for the output gradient ``g``: the stride-dilated ``g``,
    fully padded, convolved with the spatially flipped kernel whose in/out channels
    are swapped."""
    (kh, kw), (H, W), (Ho, Wo) = w.shape[:2], in_hw, g.shape[1:3]
    sh, sw = strides
    # Rows/columns at the far edge that the strided forward never reached.
    rh, rw = H - ((Ho - 1) * sh + kh), W - ((Wo - 1) * sw + kw)
    w_flip = jax.lax.optimization_barrier(jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2))
    return _valid_conv(g, w_flip, (1, 1), ((kh - 1, kh - 1 + rh), (kw - 1, kw - 1 + rw)),
                       lhs_dilation=(sh, sw))


def _conv_kernel_grad(x, g, kernel_hw, strides):
    """The gradient of a VALID strided convolution with respect to its kernel:
    dw[i, j, c, o] = Σ_{n,h,w} x[n, sh·h + i, sw·w + j, c] g[n, h, w, o], a
    convolution with channels as the batch, the batch as channels and g as the
    kernel, dilated by the stride."""
    kh, kw = kernel_hw
    barrier = jax.lax.optimization_barrier
    x_t = barrier(x.transpose(3, 1, 2, 0))  # [C_in, H, W, N]
    g_t = barrier(g.transpose(1, 2, 0, 3))  # [Ho, Wo, N, C_out]
    dw = _valid_conv(x_t, g_t, (1, 1), rhs_dilation=strides)[:, :kh, :kw, :]
    return dw.transpose(1, 2, 0, 3)


def _conv2d_bwd(strides, residuals, g):
    x, w = residuals
    dx = _conv_input_grad(g, w, x.shape[1:3], strides)
    dw = _conv_kernel_grad(x, g, w.shape[:2], strides)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose2d(x, w, strides=(1, 1)):
    """VALID transposed convolution (the adjoint of :func:`conv2d` in its input), NHWC,
    with gradients on XLA:CPU's fast path inside loops, as :func:`conv2d`'s.

    ``w`` is the kernel of the forward convolution it transposes, ``[kh, kw, C_out,
    C_in]`` (HWIO of a convolution from ``C_out`` to ``C_in`` channels), so
    ``conv_transpose2d(x, w, s)`` equals ``lax.conv_transpose(x, w, s, "VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)``: TensorFlow's
    ``Conv2DTranspose`` with VALID padding (Dreamer's image decoder). Both backward
    passes are convolutions in the canonical layout: the input gradient is
    ``conv2d(g, w, s)`` and the kernel gradient is ``conv2d``'s kernel gradient with
    the roles of input and output gradient swapped.

    Args:
      x: ``[N, Ho, Wo, C_in]``.
      w: ``[kh, kw, C_out, C_in]``.
      strides: ``(sh, sw)``, static.

    Returns:
      ``[N, (Ho − 1) sh + kh, (Wo − 1) sw + kw, C_out]``.
    """
    return _conv_transpose_fwd(x, w, strides)[0]


def _conv_transpose_fwd(x, w, strides):
    strides = tuple(strides)
    (kh, kw), (Ho, Wo) = w.shape[:2], x.shape[1:3]
    out_hw = ((Ho - 1) * strides[0] + kh, (Wo - 1) * strides[1] + kw)
    return _conv_input_grad(x, w, out_hw, strides).astype(x.dtype), (x, w)


def _conv_transpose_bwd(strides, residuals, g):
    x, w = residuals
    strides = tuple(strides)
    dx = _valid_conv(g, w, strides)
    dw = _conv_kernel_grad(g, x, w.shape[:2], strides)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv_transpose2d.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_general(x, w, strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None):
    """``nn.Conv``'s ``conv_general_dilated`` hook: :func:`conv2d` for plain NHWC
    convolutions (any padding, applied first), ``lax`` for everything else."""
    plain = (x.ndim == 4 and feature_group_count == 1 and precision is None
             and all(d in (None, (1, 1)) for d in (lhs_dilation, rhs_dilation))
             and dimension_numbers == jax.lax.conv_dimension_numbers(
                 x.shape, w.shape, _NHWC))
    if not plain:
        return jax.lax.conv_general_dilated(
            x, w, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    return conv2d(x, w, tuple(strides))


class ConvEncoder(nn.Module):
    """DrQ / DrQ-v2 image encoder: ``[..., H, W, C]`` pixels -> ``[..., F]`` features.

    Pixels (``uint8`` in [0, 255]) are scaled to ``obs / 255 − 0.5``, then pass four
    3×3 convolutions of ``width`` filters (stride 2, then 1, 1, 1; VALID padding)
    with ReLU, and are flattened: with the default four layers
    ``F = width · (⌈H/2⌉ − 7) · (⌈W/2⌉ − 7)`` (32 · 35 · 35 for 84 × 84 frames).
    Kernels are orthogonal with the ReLU gain √2, as in DrQ-v2's ``weight_init``.
    The convolutions are :func:`conv2d`, whose gradients stay on XLA:CPU's fast path
    inside SAC's scanned and conditional gradient steps.
    """

    width: int = 32
    num_layers: int = 4

    @nn.compact
    def __call__(self, obs):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        for i in range(self.num_layers):
            x = nn.Conv(self.width, (3, 3), strides=2 if i == 0 else 1,
                        padding="VALID", kernel_init=orthogonal(np.sqrt(2.0)),
                        conv_general_dilated=conv_general)(x)
            x = nn.relu(x)
        return x.reshape(*lead, -1)


class ConvTranspose(nn.Module):
    """A VALID transposed convolution layer (:func:`conv_transpose2d`) with a bias:
    ``[N, H, W, C]`` -> ``[N, (H − 1) s + k, (W − 1) s + k, features]``. Glorot-uniform
    kernel (Keras' ``Conv2DTranspose`` default)."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.xavier_uniform(in_axis=-1, out_axis=-2)
        w = self.param("kernel", init, (self.kernel, self.kernel, self.features, x.shape[-1]))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return conv_transpose2d(x, w, (self.stride, self.stride)) + b


class Trunk(nn.Module):
    """Dense(feature_dim) → LayerNorm → tanh: DrQ-v2's projection of the conv
    features, one per head (actor, critic), trained by that head's loss."""

    feature_dim: int = 50

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.feature_dim, kernel_init=orthogonal(1.0))(x)
        return jnp.tanh(nn.LayerNorm()(x))
