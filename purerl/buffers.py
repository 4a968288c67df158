"""Functional replay buffers: fixed-capacity rings held in a pytree.

A buffer is a NamedTuple of arrays plus pure ``init`` / ``add`` / ``sample``
functions, so it lives inside a ``lax.scan`` carry, works under ``jax.jit``, and
``jax.vmap`` over seeds gives every seed its own buffer (every field then has a
leading seed axis). Capacity and item shapes are static; the write index ``pos``
and the fill level ``size`` are traced int32 scalars.

Two kinds:

* **Flat** (``flat_*``): independent items, e.g. transitions
  ``(obs, action, reward, discount, next_obs)`` or a whole fixed-shape rollout
  segment. Storage is ``[capacity, *item_shape]``; samples are i.i.d. uniform
  over the written items.
* **Sequence** (``seq_*``): one time-major stream per env, storage
  ``[capacity, num_envs, *step_shape]``, one time step (for all envs) added at a
  time. Samples are contiguous windows ``[length, batch_size, ...]``
  (time-major, like every trajectory in purerl), for Dreamer-style world models
  and n-step / lambda-return learners.

Both rings write at ``pos`` and advance it modulo ``capacity``; once full, the
oldest entries are overwritten. Slots are written in order from 0, so the
written slots are always ``[0, size)``. Item dtypes are kept (pixels stay
``uint8``), which matters for memory: a float32 copy of pixels is 4x larger.

Episode boundaries are the caller's business: store a per-step flag such as
``is_first`` (True on the first step of an episode) or ``done`` in the item.
A sampled window may cross an episode boundary; the flag tells the learner where
to reset its recurrent state or cut its returns. The buffer never reads it.

Example::

    state = seq_init({"obs": obs_spec, "is_first": jnp.bool_(False)}, 1000, num_envs)
    state = seq_add(state, {"obs": obs, "is_first": is_first})  # leaves [num_envs, ...]
    batch = seq_sample(state, key, batch_size=16, length=50)    # leaves [50, 16, ...]
"""

import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
PyTree = Any


class FlatState(NamedTuple):
    """A ring of independent items."""

    data: PyTree  # leaves [capacity, *item_shape], item dtype
    pos: Array  # int32 [], next slot to write
    size: Array  # int32 [], number of written slots, <= capacity


class SeqState(NamedTuple):
    """A ring of time steps, one time-major stream per env."""

    data: PyTree  # leaves [capacity, num_envs, *step_shape], step dtype
    pos: Array  # int32 [], next time index to write
    size: Array  # int32 [], number of written time steps, <= capacity


def _spec(leaf) -> tuple[tuple[int, ...], jnp.dtype]:
    """Shape and dtype of an array, a ShapeDtypeStruct or a Python scalar."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(leaf.shape), jnp.dtype(leaf.dtype)
    leaf = jnp.asarray(leaf)
    return tuple(leaf.shape), leaf.dtype


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def nbytes(example: PyTree, capacity: int) -> int:
    """Bytes of storage for ``capacity`` items shaped like ``example``."""
    sizes = [math.prod(shape) * dtype.itemsize
             for shape, dtype in map(_spec, jax.tree.leaves(example))]
    return int(capacity) * sum(sizes)


def _check_fits(example: PyTree, capacity: int) -> None:
    """A clear error, instead of an allocation failure deep in XLA, when the storage
    alone would not fit in this machine's memory."""
    need = nbytes(example, capacity)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no check
        return
    if need > have:
        raise ValueError(
            f"a replay of capacity {capacity} needs {need / 2**30:.1f} GiB "
            f"({need // int(capacity):,} bytes per item) but this machine has "
            f"{have / 2**30:.1f} GiB: lower the capacity (e.g. Config.buffer_size)"
        )


def _zeros(example: PyTree, lead: tuple[int, ...]) -> PyTree:
    def zeros(leaf):
        shape, dtype = _spec(leaf)
        return jnp.zeros(lead + shape, dtype)

    return jax.tree.map(zeros, example)


def _check_items(data: PyTree, items: PyTree, flat: bool, what: str) -> PyTree:
    """Check items against storage at trace time; return them as arrays.

    Flat items are ``[n, *item_shape]`` against storage ``[capacity, *item_shape]``;
    a sequence step is ``[num_envs, *step_shape]`` against storage
    ``[capacity, num_envs, *step_shape]``. Dtypes must match exactly: a silent
    cast would, e.g., wrap float pixels into uint8 storage.
    """
    if jax.tree.structure(items) != jax.tree.structure(data):
        raise ValueError(
            f"{what} has tree structure {jax.tree.structure(items)}, "
            f"the buffer stores {jax.tree.structure(data)}"
        )
    items = jax.tree.map(jnp.asarray, items)
    paths = jax.tree_util.tree_flatten_with_path(items)[0]
    for (path, item), stored in zip(paths, jax.tree.leaves(data), strict=True):
        name = jax.tree_util.keystr(path) or "<root>"
        if flat and item.ndim == 0:
            raise ValueError(f"{what} leaf {name} needs a leading batch axis [n, ...]")
        want = item.shape[:1] + stored.shape[1:] if flat else stored.shape[1:]
        if item.shape != want:
            raise ValueError(
                f"{what} leaf {name} has shape {item.shape}, expected {want}"
            )
        if item.dtype != stored.dtype:
            raise ValueError(
                f"{what} leaf {name} has dtype {item.dtype}, expected {stored.dtype}"
            )
    return items


def _capacity_and_count(state, new: PyTree, what: str, count: str) -> tuple[int, int]:
    """The ring's capacity and the leading size of ``new``, which must agree across
    its leaves and fit in the ring."""
    capacity = jax.tree.leaves(state.data)[0].shape[0]
    counts = {leaf.shape[0] for leaf in jax.tree.leaves(new)}
    if len(counts) != 1:
        raise ValueError(f"{what} leaves disagree on {count}: {counts}")
    (n,) = counts
    if n > capacity:
        raise ValueError(f"cannot add {n} {what} to a buffer of capacity {capacity}")
    return capacity, n


# ---- flat items ----


def flat_init(example: PyTree, capacity: int) -> FlatState:
    """An empty ring of ``capacity`` items shaped like ``example``.

    Args:
      example: a pytree of ONE item (arrays, ``jax.ShapeDtypeStruct`` or scalars);
        only shapes and dtypes are used.
      capacity: number of items kept (static).

    Returns:
      ``FlatState`` with zero storage ``[capacity, *item_shape]`` in each leaf's
      dtype, ``pos = size = 0``.
    """
    _check_positive("capacity", capacity)
    _check_fits(example, capacity)
    return FlatState(
        data=_zeros(example, (int(capacity),)),
        pos=jnp.int32(0),
        size=jnp.int32(0),
    )


def flat_add(state: FlatState, items: PyTree) -> FlatState:
    """Write ``n`` items at ``pos, pos + 1, ...`` modulo capacity.

    Args:
      state: the buffer.
      items: pytree like the example, each leaf ``[n, *item_shape]`` with the
        stored dtype; ``n`` is static and at most ``capacity``.

    Returns:
      The buffer with the items written (overwriting the oldest when full),
      ``pos`` advanced by ``n`` modulo capacity and ``size`` capped at capacity.

    Raises:
      ValueError: at trace time, on a structure, shape or dtype mismatch (naming
        the leaf), or when ``n > capacity``.
    """
    items = _check_items(state.data, items, flat=True, what="items")
    capacity, n = _capacity_and_count(state, items, "items", "the batch size n")
    # n <= capacity, so the n slots are distinct and no write clobbers another.
    index = (state.pos + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda d, x: d.at[index].set(x), state.data, items)
    return FlatState(
        data=data,
        pos=(state.pos + n) % capacity,
        size=jnp.minimum(state.size + n, capacity).astype(jnp.int32),
    )


def flat_sample(state: FlatState, key: Array, batch_size: int) -> PyTree:
    """Sample ``batch_size`` items uniformly, with replacement, from written slots.

    Only slots ``[0, size)`` are drawn. An empty buffer (``size == 0``) has no
    valid item; it returns slot 0, i.e. zeros, rather than failing inside jit.
    Callers warm up first (check ``can_sample(state)``, or mask the update).

    Args:
      state: the buffer.
      key: PRNG key.
      batch_size: number of items (static).

    Returns:
      Pytree like the items, leaves ``[batch_size, *item_shape]``.
    """
    _check_positive("batch_size", batch_size)
    high = jnp.maximum(state.size, 1)
    index = jax.random.randint(key, (int(batch_size),), 0, high, dtype=jnp.int32)
    return jax.tree.map(lambda d: d[index], state.data)


def can_sample(state: FlatState | SeqState, length: int = 1) -> Array:
    """Whether ``length`` steps have been written: a bool scalar (traced).

    Use ``can_sample(flat_state)`` before ``flat_sample`` and
    ``can_sample(seq_state, length)`` before ``seq_sample``; sampling earlier
    returns unwritten (zero) slots.
    """
    return state.size >= length


# ---- sequences ----


def seq_init(example_step: PyTree, capacity: int, num_envs: int) -> SeqState:
    """An empty ring of ``capacity`` time steps for each of ``num_envs`` envs.

    Args:
      example_step: a pytree of ONE step of ONE env (arrays,
        ``jax.ShapeDtypeStruct`` or scalars); include an episode-boundary flag
        such as ``is_first`` so learners can reset at boundaries.
      capacity: time steps kept per env (static).
      num_envs: number of parallel envs (static).

    Returns:
      ``SeqState`` with zero storage ``[capacity, num_envs, *step_shape]``.
    """
    _check_positive("capacity", capacity)
    _check_positive("num_envs", num_envs)
    _check_fits(example_step, int(capacity) * int(num_envs))
    return SeqState(
        data=_zeros(example_step, (int(capacity), int(num_envs))),
        pos=jnp.int32(0),
        size=jnp.int32(0),
    )


def seq_add(state: SeqState, step: PyTree) -> SeqState:
    """Write one time step of every env at time index ``pos``.

    Args:
      state: the buffer.
      step: pytree like the example step, leaves ``[num_envs, *step_shape]``
        with the stored dtype.

    Returns:
      The buffer with the step written (overwriting the oldest when full),
      ``pos`` advanced by one modulo capacity and ``size`` capped at capacity.

    Raises:
      ValueError: at trace time, on a structure, shape or dtype mismatch.
    """
    step = _check_items(state.data, step, flat=False, what="step")
    capacity = jax.tree.leaves(state.data)[0].shape[0]

    def write(d, x):
        return jax.lax.dynamic_update_index_in_dim(d, x, state.pos, axis=0)

    return SeqState(
        data=jax.tree.map(write, state.data, step),
        pos=(state.pos + 1) % capacity,
        size=jnp.minimum(state.size + 1, capacity).astype(jnp.int32),
    )


def seq_extend(state: SeqState, steps: PyTree) -> SeqState:
    """Write ``T`` consecutive time steps of every env: ``seq_add`` for each of them
    in order, as one scatter.

    Args:
      state: the buffer.
      steps: pytree like the example step, leaves ``[T, num_envs, *step_shape]``
        with the stored dtype; ``T`` is static and at most ``capacity``.

    Returns:
      The buffer with the steps written at ``pos, pos + 1, ...`` modulo capacity.
    """
    capacity, t = _capacity_and_count(state, steps, "steps", "the number of steps T")
    _check_items(state.data, jax.tree.map(lambda x: x[0], steps), flat=False, what="steps")
    index = (state.pos + jnp.arange(t, dtype=jnp.int32)) % capacity
    return SeqState(
        data=jax.tree.map(lambda d, x: d.at[index].set(x.astype(d.dtype)), state.data, steps),
        pos=(state.pos + t) % capacity,
        size=jnp.minimum(state.size + t, capacity).astype(jnp.int32),
    )


def seq_sample(state: SeqState, key: Array, batch_size: int, length: int) -> PyTree:
    """Sample contiguous windows of ``length`` steps, time-major.

    Each window is ``length`` consecutive steps of one env. Its env and its
    start are drawn independently and uniformly (with replacement), the start
    over the ``size - length + 1`` windows that lie inside the written data in
    time order. So a window never straddles the write pointer (it never joins
    the newest step to the oldest one across the ring seam) and never reads an
    unwritten slot. Windows may cross episode boundaries; the stored
    ``is_first``/``done`` flag marks them.

    If ``size < length`` there is no valid window; the result then starts at the
    oldest step and includes unwritten (zero) slots. Check
    ``can_sample(state, length)`` first.

    Args:
      state: the buffer.
      key: PRNG key.
      batch_size: number of windows (static).
      length: steps per window (static, ``1 <= length <= capacity``).

    Returns:
      Pytree like the steps, leaves ``[length, batch_size, *step_shape]``.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("length", length)
    capacity, num_envs = jax.tree.leaves(state.data)[0].shape[:2]
    if length > capacity:
        raise ValueError(f"length={length} exceeds the buffer capacity {capacity}")
    env_key, start_key = jax.random.split(key)
    env = jax.random.randint(env_key, (batch_size,), 0, num_envs, dtype=jnp.int32)
    num_starts = jnp.maximum(state.size - length + 1, 1)
    start = jax.random.randint(start_key, (batch_size,), 0, num_starts, jnp.int32)
    # Starts count from the oldest step, which sits at pos once the ring is full
    # and at 0 before: (pos - size) mod capacity covers both.
    oldest = (state.pos - state.size) % capacity
    time = (oldest + start[None, :] + jnp.arange(length)[:, None]) % capacity
    return jax.tree.map(lambda d: d[time, env[None, :]], state.data)
