"""purerl.prng: the straight-line CPU lowering of threefry2x32 gives jax's numbers."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

import purerl  # noqa: F401  (importing purerl applies the lowering)
from purerl import prng

# Known-answer vectors of Threefry-2x32 with 20 rounds (Salmon et al. 2011, Random123's
# kat_vectors), as jax's own tests use them: (key, counter) -> output.
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]

DRAWS = """
import json, sys, jax, jax.numpy as jnp
import purerl
k = jax.random.key(42)
out = {
    "bits": jax.jit(lambda k: jax.random.bits(k, (3, 5)))(k).tolist(),
    "uniform": jax.jit(lambda k: jax.random.uniform(k, (7,)))(k).tolist(),
    "split": jax.random.key_data(jax.jit(lambda k: jax.random.split(k, 4))(k)).tolist(),
    "vmapped": jax.jit(jax.vmap(lambda k: jax.random.normal(k, (2,))))(
        jax.random.split(k, 3)).tolist(),
}
print(json.dumps(out))
"""


def draws(rolled: bool) -> dict:
    env = {**os.environ, prng.ENV_VAR: "1" if rolled else "0"}
    out = subprocess.run([sys.executable, "-c", DRAWS], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_lowering_is_applied_and_has_no_loop():
    assert prng.unroll_threefry_on_cpu()
    hlo = jax.jit(lambda k: jax.random.bits(k, (4,))).lower(jax.random.key(0)).as_text()
    assert "while" not in hlo


def test_known_answer_vectors():
    from jax.extend.random import threefry_2x32

    for key, count, expected in KAT:
        key = jnp.asarray(key, jnp.uint32)
        count = jnp.asarray(count, jnp.uint32)
        for fn in (threefry_2x32, jax.jit(threefry_2x32)):
            np.testing.assert_array_equal(np.asarray(fn(key, count)),
                                          np.asarray(expected, np.uint32))


def test_bit_identical_to_the_rolled_lowering():
    unrolled, rolled = draws(rolled=False), draws(rolled=True)
    assert unrolled == rolled
