"""purerl.buffers: ring semantics, valid-slot sampling, errors, jit and vmap.

Payloads are insertion counters starting at 1, so every sampled value says which
write it came from and whether that write is still in the buffer, and an unwritten
(zero) slot can never pass for a written one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.buffers import (
    FlatState,
    SeqState,
    can_sample,
    flat_add,
    flat_init,
    flat_sample,
    nbytes,
    seq_add,
    seq_extend,
    seq_init,
    seq_sample,
)

CAPACITY, NUM_ENVS, LENGTH = 7, 3, 3
EXAMPLE = {
    "counter": jnp.int32(0),
    "pixels": jax.ShapeDtypeStruct((2, 2), jnp.uint8),
    "x": jnp.zeros(3),
}


def items(first, n):
    """n flat items whose counters run first, first + 1, ..."""
    counter = jnp.arange(first, first + n, dtype=jnp.int32)
    return {
        "counter": counter,
        "pixels": jnp.broadcast_to(counter[:, None, None] % 256, (n, 2, 2)).astype(
            jnp.uint8
        ),
        "x": jnp.broadcast_to(counter[:, None], (n, 3)).astype(jnp.float32),
    }


def step(t):
    """Time step t of every env: counter = 100 * env + t, is_first every 4 steps."""
    env = jnp.arange(NUM_ENVS, dtype=jnp.int32)
    return {
        "counter": 100 * env + t,
        "is_first": jnp.full(NUM_ENVS, t % 4 == 0),
        "pixels": jnp.full((NUM_ENVS, 2, 2), t, jnp.uint8),
    }


SEQ_EXAMPLE = jax.tree.map(lambda x: x[0], step(0))


def fill_flat(add, sizes, capacity=CAPACITY):
    state, first = flat_init(EXAMPLE, capacity), 1
    for n in sizes:
        state, first = add(state, items(first, n)), first + n
    return state


def fill_seq(add, num_steps):
    state = seq_init(SEQ_EXAMPLE, CAPACITY, NUM_ENVS)
    for t in range(1, num_steps + 1):
        state = add(state, step(t))
    return state


# ---- flat ----
def test_flat_init_keeps_dtypes():
    state = flat_init(EXAMPLE, CAPACITY)
    assert isinstance(state, FlatState)
    assert state.data["pixels"].shape == (CAPACITY, 2, 2)
    assert state.data["pixels"].dtype == jnp.uint8
    assert state.data["counter"].dtype == jnp.int32
    assert state.data["x"].shape == (CAPACITY, 3)
    assert state.pos.dtype == state.size.dtype == jnp.int32
    assert int(state.pos) == int(state.size) == 0


def test_flat_add_wraps(variant):
    add = variant(flat_add)
    state = fill_flat(add, [3, 3])
    assert (int(state.pos), int(state.size)) == (6, 6)
    state = add(state, items(7, 3))  # counters 7, 8, 9 -> slots 6, 0, 1
    assert (int(state.pos), int(state.size)) == (2, CAPACITY)
    np.testing.assert_array_equal(state.data["counter"], [8, 9, 3, 4, 5, 6, 7])
    assert state.data["pixels"].dtype == jnp.uint8
    np.testing.assert_array_equal(state.data["pixels"][:, 0, 0], [8, 9, 3, 4, 5, 6, 7])
    state = add(state, items(10, CAPACITY))  # a full lap lands on the same pos
    assert (int(state.pos), int(state.size)) == (2, CAPACITY)
    np.testing.assert_array_equal(state.data["counter"], [15, 16, 10, 11, 12, 13, 14])


@pytest.mark.parametrize("sizes", [[1], [2, 3], [3, 3, 3, 2]])
def test_flat_sample_only_written(variant, sizes):
    add = variant(flat_add)
    sample = variant(flat_sample, static_argnames="batch_size")
    state = fill_flat(add, sizes)
    total = sum(sizes)
    batch = sample(state, jax.random.key(0), batch_size=500)
    valid = set(range(max(1, total + 1 - CAPACITY), total + 1))  # still in the ring
    assert set(np.asarray(batch["counter"]).tolist()) == valid  # all, and only these
    np.testing.assert_array_equal(batch["x"][:, 0], batch["counter"])  # one item
    assert batch["pixels"].dtype == jnp.uint8


def test_flat_sample_empty_returns_zeros():
    state = flat_init(EXAMPLE, CAPACITY)
    assert not bool(can_sample(state))
    batch = flat_sample(state, jax.random.key(0), batch_size=4)
    np.testing.assert_array_equal(batch["counter"], np.zeros(4))
    assert bool(can_sample(flat_add(state, items(1, 1))))


def test_flat_add_errors(variant):
    add = variant(flat_add)
    state = flat_init(EXAMPLE, CAPACITY)
    bad_shape = dict(items(0, 2), x=jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\['x'\].*\(2, 4\).*expected \(2, 3\)"):
        add(state, bad_shape)
    bad_dtype = dict(items(0, 2), pixels=jnp.zeros((2, 2, 2), jnp.float32))
    with pytest.raises(ValueError, match=r"\['pixels'\].*float32.*expected uint8"):
        add(state, bad_dtype)
    with pytest.raises(ValueError, match="capacity"):
        add(state, items(0, CAPACITY + 1))
    with pytest.raises(ValueError, match="structure"):
        add(state, {"counter": jnp.zeros(2, jnp.int32)})
    with pytest.raises(ValueError, match="leading batch axis"):
        add(state, dict(items(0, 2), counter=jnp.int32(0)))
    with pytest.raises(ValueError, match="disagree"):
        add(state, dict(items(0, 2), x=jnp.zeros((3, 3))))
    with pytest.raises(ValueError, match="capacity"):
        flat_init(EXAMPLE, 0)


# ---- sequences ----
def test_seq_add_wraps(variant):
    state = fill_seq(variant(seq_add), CAPACITY + 2)
    assert isinstance(state, SeqState)
    assert state.data["counter"].shape == (CAPACITY, NUM_ENVS)
    assert state.data["pixels"].shape == (CAPACITY, NUM_ENVS, 2, 2)
    assert state.data["pixels"].dtype == jnp.uint8
    assert (int(state.pos), int(state.size)) == (2, CAPACITY)
    np.testing.assert_array_equal(state.data["counter"][:, 0], [8, 9, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(state.data["counter"][0], [8, 108, 208])


@pytest.mark.parametrize("num_steps", [LENGTH, 5, CAPACITY, CAPACITY + 2, 3 * CAPACITY])
def test_seq_windows_consecutive_and_uniform(variant, num_steps):
    state = fill_seq(variant(seq_add), num_steps)
    sample = variant(seq_sample, static_argnames=("batch_size", "length"))
    batch = sample(state, jax.random.key(num_steps), batch_size=3000, length=LENGTH)
    counter = np.asarray(batch["counter"])
    assert counter.shape == (LENGTH, 3000)  # time-major
    env, t = counter // 100, counter % 100
    # One env per window, consecutive steps: never across the write pointer.
    assert (env == env[:1]).all()
    np.testing.assert_array_equal(t - t[:1], np.arange(LENGTH)[:, None] + 0 * t)
    # Only steps still in the ring.
    oldest = max(1, num_steps + 1 - CAPACITY)
    assert t.min() >= oldest and t.max() <= num_steps
    # Uniform over (env, start): every valid window appears about equally often.
    starts = range(oldest, num_steps - LENGTH + 2)
    windows = list(zip(env[0].tolist(), t[0].tolist(), strict=True))
    counts = {(e, s): windows.count((e, s)) for e in range(NUM_ENVS) for s in starts}
    assert len(set(windows)) == len(counts)
    expected = 3000 / len(counts)
    assert all(0.75 * expected < c < 1.25 * expected for c in counts.values()), counts
    # The stored flag travels with its step, marking boundaries inside windows.
    np.testing.assert_array_equal(batch["is_first"], t % 4 == 0)
    np.testing.assert_array_equal(batch["pixels"][..., 0, 0], t)


def test_seq_can_sample():
    state = fill_seq(seq_add, LENGTH - 1)
    assert not bool(can_sample(state, LENGTH))
    assert bool(can_sample(seq_add(state, step(LENGTH)), LENGTH))


def test_seq_errors(variant):
    add = variant(seq_add)
    state = seq_init(SEQ_EXAMPLE, CAPACITY, NUM_ENVS)
    wrong_envs = jax.tree.map(lambda x: x[:2], step(0))
    with pytest.raises(ValueError, match=r"\['counter'\].*\(2,\).*expected \(3,\)"):
        add(state, wrong_envs)
    with pytest.raises(ValueError, match=r"\['is_first'\].*int32.*expected bool"):
        add(state, dict(step(0), is_first=jnp.zeros(NUM_ENVS, jnp.int32)))
    with pytest.raises(ValueError, match="capacity"):
        seq_sample(state, jax.random.key(0), batch_size=2, length=CAPACITY + 1)
    with pytest.raises(ValueError, match="length"):
        seq_sample(state, jax.random.key(0), batch_size=2, length=0)
    with pytest.raises(ValueError, match="num_envs"):
        seq_init(SEQ_EXAMPLE, CAPACITY, 0)


# ---- vmap over seeds ----
SEEDS = 4


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_flat_vmap_over_seeds_matches_per_seed():
    # Seeds start at different fill levels, so pos and size differ along the seed axis.
    states = [fill_flat(flat_add, [2] * k) for k in range(SEEDS)]
    new = [items(100 * k, 3) for k in range(SEEDS)]
    keys = jax.random.split(jax.random.key(1), SEEDS)

    def add_sample(state, new, key):
        state = flat_add(state, new)
        return state, flat_sample(state, key, batch_size=8)

    got = jax.jit(jax.vmap(add_sample))(stack(states), stack(new), keys)
    want = stack([add_sample(*args) for args in zip(states, new, keys, strict=True)])
    assert_trees_equal(got, want)
    init = jax.vmap(lambda _: flat_init(EXAMPLE, CAPACITY))(keys)
    assert init.data["pixels"].shape == (SEEDS, CAPACITY, 2, 2)
    assert init.pos.shape == (SEEDS,)


def test_seq_vmap_over_seeds_matches_per_seed():
    states = [fill_seq(seq_add, 2 * k + 3) for k in range(SEEDS)]
    new = [step(50 + k) for k in range(SEEDS)]
    keys = jax.random.split(jax.random.key(2), SEEDS)

    def add_sample(state, new, key):
        state = seq_add(state, new)
        return state, seq_sample(state, key, batch_size=8, length=LENGTH)

    got = jax.jit(jax.vmap(add_sample))(stack(states), stack(new), keys)
    want = stack([add_sample(*args) for args in zip(states, new, keys, strict=True)])
    assert_trees_equal(got, want)
    assert got[1]["counter"].shape == (SEEDS, LENGTH, 8)


def test_vmap_init_add_in_scan():
    """The intended use: a buffer in a scan carry, one per seed."""

    def run(key):
        def body(state, t):
            return seq_add(state, step(t)), None

        state = seq_init(SEQ_EXAMPLE, CAPACITY, NUM_ENVS)
        state, _ = jax.lax.scan(body, state, jnp.arange(10))
        return seq_sample(state, key, batch_size=5, length=LENGTH)

    keys = jax.random.split(jax.random.key(3), SEEDS)
    got = jax.jit(jax.vmap(run))(keys)
    assert_trees_equal(got, stack([run(k) for k in keys]))


def test_storage_that_cannot_fit_is_a_clear_error():
    frame = jax.ShapeDtypeStruct((84, 84, 9), jnp.uint8)
    assert nbytes({"obs": frame, "r": jnp.float32(0)}, 10) == 10 * (84 * 84 * 9 + 4)
    with pytest.raises(ValueError, match=r"a replay of capacity 100000000 needs .* GiB "
                                         r"\(63,504 bytes per item\)"):
        flat_init({"obs": frame}, 100_000_000)
    with pytest.raises(ValueError, match="lower the capacity"):
        seq_init({"obs": frame}, 10_000_000, 10)


def test_seq_extend_equals_seq_add_step_by_step():
    example = {"obs": jnp.zeros((2,), jnp.float32), "first": jnp.bool_(False)}
    state = seq_init(example, capacity=5, num_envs=3)
    steps = {"obs": jnp.arange(4 * 3 * 2, dtype=jnp.float32).reshape(4, 3, 2),
             "first": jnp.arange(12).reshape(4, 3) % 2 == 0}
    want = state
    for _ in range(2):  # twice: the second write wraps around the ring
        for t in range(4):
            want = seq_add(want, jax.tree.map(lambda x, t=t: x[t], steps))
    got = jax.jit(seq_extend)(jax.jit(seq_extend)(state, steps), steps)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="cannot add 6 steps to a buffer of capacity 5"):
        seq_extend(state, jax.tree.map(lambda x: jnp.concatenate([x, x[:2]]), steps))
