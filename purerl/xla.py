"""The XLA flag purerl sets on import for CPU: no concurrency-optimised scheduling.

On CPU, XLA's thunk runtime runs independent kernels of one program concurrently on
its intra-op thread pool, and by default it schedules the program (and assigns its
buffers) to make room for that (``--xla_cpu_enable_concurrency_optimized_scheduler``).
A training loop of small networks is a long chain of kernels of a few microseconds
each with short independent branches (actor and critic, the straight-line threefry
of ``purerl.prng``), so what that concurrency mostly buys is handing a kernel to the
other core and waiting for it to come back; pinning XLA's default to one core
(``taskset -c 0``) recovers the speed, so the cost is the cross-core hand-offs. It is
not a free flag for every program (rejax's PPO gets slower with it), so it is
purerl's setting, not a benchmark-wide one: ``benchmarks/run_throughput.py`` runs the
peers on XLA's default and keeps a purerl row without the flag
(``benchmarks/results/ppo_throughput.md``).

The flag changes the order kernels run in and which buffers they share, not what
they compute: results are bit-identical (``tests/test_xla.py``).

XLA reads ``XLA_FLAGS`` once, when jax starts its first backend, so purerl adds the
flag on import only if no backend has started yet, and never overrides a value you
set yourself. Set ``PURERL_XLA_DEFAULT_SCHEDULER=1`` to keep XLA's default. The flag
is process-wide (and inherited by subprocesses through the environment); it only
concerns CPU programs.
"""

import os

ENV_VAR = "PURERL_XLA_DEFAULT_SCHEDULER"
FLAG_NAME = "xla_cpu_enable_concurrency_optimized_scheduler"
FLAG = f"--{FLAG_NAME}=false"


def apply_default() -> bool:
    """What ``import purerl`` does. Returns True if it added the flag to XLA_FLAGS."""
    if os.environ.get(ENV_VAR, "") == "1":
        return False
    current = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in current:
        return False  # the user's own setting wins
    try:
        from jax._src import xla_bridge

        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        return False  # jax's internals moved: cannot tell, so leave XLA's flags alone
    if started:
        return False  # XLA has read its flags already; setting them now does nothing
    os.environ["XLA_FLAGS"] = f"{current} {FLAG}".strip()
    return True


def without_flag(environ: dict) -> dict:
    """``environ`` with purerl's flag (``FLAG``, however it got there) removed from
    XLA_FLAGS, for subprocesses that must run with XLA's defaults, such as the peers'
    benchmarks."""
    flags = [f for f in environ.get("XLA_FLAGS", "").split() if f != FLAG]
    out = {k: v for k, v in environ.items() if k != "XLA_FLAGS"}
    if flags:
        out["XLA_FLAGS"] = " ".join(flags)
    return out
