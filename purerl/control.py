"""Control flow that stays cheap under ``vmap``: used by the driver, the algorithms
and the envs alike."""

import jax
import jax.numpy as jnp


def when(fn):
    """``when(fn)(pred, operand, default)``: ``fn(operand)`` if ``pred`` else
    ``default``, a ``lax.cond`` that stays one under ``vmap``.

    ``vmap`` turns a ``cond`` with a batched predicate into a select that runs ``fn``
    every time. The runs of a vmapped batch (seeds, a sweep) share their iteration
    counter, so this batching rule runs ``fn`` on the whole batch when any member's
    predicate holds and keeps the other members' defaults: the same results, with
    the cost only when needed. Traced values ``fn`` closes over (a swept
    hyperparameter) become explicit operands first (``jax.closure_convert``); without
    any, ``fn`` runs as written.
    """

    def call(pred, operand, default):
        converted, consts = jax.closure_convert(fn, operand)
        if not any(isinstance(c, jax.core.Tracer) for c in consts):
            return _cond(lambda args: fn(args[0]))(pred, (operand, ()), default)
        return _cond(lambda args: converted(args[0], *args[1]))(
            pred, (operand, tuple(consts)), default)

    return call


def _cond(fn):
    """The cond of ``when``; ``fn`` closes over no tracer."""

    @jax.custom_batching.custom_vmap
    def cond(pred, operand, default):
        return jax.lax.cond(pred, fn, lambda _: default, operand)

    @cond.def_vmap
    def rule(axis_size, in_batched, pred, operand, default):
        def batched(x, b):
            return x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))

        args = jax.tree.map(batched, (pred, operand, default), tuple(in_batched))
        pred, operand, default = args
        new = _cond(jax.vmap(fn))(pred.any(), operand, default)
        out = jax.tree.map(
            lambda n, d: jnp.where(pred.reshape(-1, *[1] * (d.ndim - 1)), n, d),
            new,
            default,
        )
        return out, jax.tree.map(lambda _: True, out)

    return cond
