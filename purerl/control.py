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
    the cost only when needed. ``fn`` must not close over traced values.
    """

    @jax.custom_batching.custom_vmap
    def cond(pred, operand, default):
        return jax.lax.cond(pred, fn, lambda _: default, operand)

    @cond.def_vmap
    def rule(axis_size, in_batched, pred, operand, default):
        def batched(x, b):
            return x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))

        args = jax.tree.map(batched, (pred, operand, default), tuple(in_batched))
        pred, operand, default = args
        new = when(jax.vmap(fn))(pred.any(), operand, default)
        out = jax.tree.map(
            lambda n, d: jnp.where(pred.reshape(-1, *[1] * (d.ndim - 1)), n, d),
            new,
            default,
        )
        return out, jax.tree.map(lambda _: True, out)

    return cond
