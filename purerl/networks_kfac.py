"""Capture what K-FAC needs from every ``nn.Dense`` of a flax model, unmodified.

K-FAC (``purerl.ops.kfac``) needs, per dense layer, its inputs ``x`` and the gradient
``g = ∂loss/∂s`` of a loss with respect to its pre-activation outputs ``s = x W + b``.
Rather than rewriting networks to return these, ``capture_dense_stats`` runs the
model under a flax method interceptor (``nn.intercept_methods``) that, around every
``nn.Dense.__call__``:
  - ``sow``s the input ``x`` into a ``"kfac_inputs"`` collection, and
  - passes the output through ``Module.perturb``, which adds a zero variable in the
    ``"perturbations"`` collection; the gradient of the loss with respect to that
    variable is ``∂loss/∂s``.
Both collections mirror the module tree, so the returned statistics sit at the same
paths as the layers' ``kernel``/``bias`` in the params (``{"MLP_0": {"Dense_1":
DenseStats}}`` next to ``params["MLP_0"]["Dense_1"]``).

This is the only flax-dependent piece of K-FAC, kept out of ``purerl.ops`` (plain
arrays).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any

_INPUTS = "kfac_inputs"  # sow collection holding each Dense call's input
_PERTURB = "perturbations"  # flax's default perturbation collection
_SOW_NAME = "dense_inputs"


class DenseStats(NamedTuple):
    """One dense layer's K-FAC statistics; rows are examples (leading dims flattened).

    If the layer is called several times in one forward pass (shared weights), the
    calls are stacked as extra rows, so ``inputs.T @ out_grads`` is still the kernel
    gradient.
    """

    inputs: Array  # [N, d_in]   the layer's inputs x
    out_grads: Array  # [N, d_out]  ∂loss/∂s of the loss given to capture_dense_stats


def _perturb_name(k: int) -> str:
    return f"dense_out_{k}"


def _interceptor(next_fun, args, kwargs, context):
    """Record the input and perturb the output of every ``nn.Dense.__call__``."""
    module = context.module
    if not (isinstance(module, nn.Dense) and context.method_name == "__call__"):
        return next_fun(*args, **kwargs)
    x = args[0] if args else kwargs["inputs"]
    # Count earlier calls of this layer (shared weights) so each call gets its own
    # perturbation; sow appends to a tuple.
    calls = module.get_variable(_INPUTS, _SOW_NAME, ())
    module.sow(_INPUTS, _SOW_NAME, x)
    out = next_fun(*args, **kwargs)
    return module.perturb(_perturb_name(len(calls)), out)


def _collect(inputs: dict, out_grads: dict) -> dict:
    """Pair the sown inputs with the perturbation gradients, module by module."""
    stats = {}
    for name, node in inputs.items():
        if name == _SOW_NAME:
            continue
        stats[name] = _collect(node, out_grads[name])
    if _SOW_NAME in inputs:
        xs = inputs[_SOW_NAME]
        gs = [out_grads[_perturb_name(k)] for k in range(len(xs))]
        stats = DenseStats(
            inputs=jnp.concatenate([x.reshape(-1, x.shape[-1]) for x in xs]),
            out_grads=jnp.concatenate([g.reshape(-1, g.shape[-1]) for g in gs]),
        )
    return stats


def capture_dense_stats(
    model: nn.Module,
    params: PyTree,
    loss_fn: Callable[[Any], Array],
    *args,
    **kwargs,
) -> tuple[Array, PyTree, dict]:
    """A loss of a flax model, with every ``nn.Dense``'s inputs and output gradients.

    Evaluates ``loss = loss_fn(model.apply({"params": params}, *args, **kwargs))`` and
    captures, for every ``nn.Dense`` inside ``model``, its inputs and
    ``∂loss/∂(its outputs)``.

    ``out_grads`` are gradients of the loss *as given*: for a batch-mean loss they are
    per-example gradients divided by the number of examples ``N``, so that
    ``stats.inputs.T @ stats.out_grads`` equals the kernel gradient (and
    ``out_grads.sum(0)`` the bias gradient). ``purerl.ops.kfac.dense_factors`` wants
    per-example gradients: pass ``N * out_grads`` for a mean loss.

    Args:
      model: a flax linen module (e.g. ``purerl.networks.MLP`` or ``PolicyNet``).
      params: its ``"params"`` collection.
      loss_fn: scalar function of the model's output (for ACKTR's Fisher statistics,
        ``-mean log π(â|s)`` at actions ``â`` sampled from the policy).
      *args, **kwargs: passed to ``model.apply``.

    Returns:
      ``(loss, param_grads, stats)``: the loss, its gradient with respect to
      ``params`` (a by-product of the same backward pass), and a nested dict with a
      ``DenseStats`` at the path of each dense layer.
    """

    def apply(params, perturbations):
        variables = {"params": params, **perturbations}
        with nn.intercept_methods(_interceptor):
            out, state = model.apply(variables, *args, mutable=[_INPUTS], **kwargs)
        return loss_fn(out), state[_INPUTS]

    # Zero perturbations of the right shapes, without running the model.
    def init(params):
        with nn.intercept_methods(_interceptor):
            _, state = model.apply(
                {"params": params}, *args, mutable=[_PERTURB, _INPUTS], **kwargs
            )
        return {_PERTURB: state[_PERTURB]}

    shapes = jax.eval_shape(init, params)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    grad_fn = jax.value_and_grad(apply, argnums=(0, 1), has_aux=True)
    (loss, inputs), (param_grads, pert_grads) = grad_fn(params, zeros)
    return loss, param_grads, _collect(inputs, pert_grads[_PERTURB])
