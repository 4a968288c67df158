"""jax's threefry2x32 PRNG lowered to straight-line code on CPU.

jax lowers its default PRNG, threefry2x32, differently per platform: on GPU/TPU as 20
straight-line rounds, on CPU as a ``fori_loop`` of 5 trips over 4 rounds
(``jax/_src/random/threefry2x32.py``, ``use_rolled_loops=True``), to keep large
programs small. In purerl's programs every rollout step draws random bits a few
times (action sampling, env auto-reset), each a few numbers, so on CPU each draw
costs an XLA ``while`` loop: about 90 thunks, half of a CartPole rollout step. The
straight-line form fuses into a few kernels. ``benchmarks/run_throughput.py`` keeps a
row on jax's own lowering so the gain is measured with every run
(``benchmarks/results/ppo_throughput.md``).

The random numbers are bit-identical: both lowerings compute the same 20 rounds
(checked in ``tests/test_prng.py`` against the Threefry known-answer vectors and
against the rolled lowering in a separate process).

``purerl`` applies this when it is imported, for the whole process (the lowering is
global to jax). Set ``PURERL_ROLLED_THREEFRY=1`` before importing purerl to keep jax's
own CPU lowering. It uses jax internals, so if they move it does nothing and
``unroll_threefry_on_cpu`` returns False.
"""

import os
from functools import partial

ENV_VAR = "PURERL_ROLLED_THREEFRY"


def unroll_threefry_on_cpu() -> bool:
    """Register the straight-line threefry2x32 lowering for the CPU platform.

    Returns True if it was registered, False if jax's internals are not where this
    expects them (nothing is changed then).
    """
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as threefry
    except ImportError:
        return False
    lowering = getattr(threefry, "_threefry2x32_lowering", None)
    primitive = getattr(threefry, "threefry2x32_p", None)
    if lowering is None or primitive is None:
        return False
    rule = mlir.lower_fun(partial(lowering, use_rolled_loops=False),
                          multiple_results=True)
    mlir.register_lowering(primitive, rule, platform="cpu")
    return True


def apply_default() -> bool:
    """What ``import purerl`` does: unroll unless ``PURERL_ROLLED_THREEFRY=1``."""
    if os.environ.get(ENV_VAR, "") == "1":
        return False
    return unroll_threefry_on_cpu()
