"""Shared by purerl's throughput benchmarks (``purerl_ppo.py``, ``purerl_sac.py``):
build ``jit(train)``, ``jit(vmap(train))`` or the seed-sharded variant, compile it
ahead of time and time it on fresh keys. Runs in purerl's environment only (the peers'
scripts live in their own virtual environments and cannot import it)."""

import os
import resource
import time


def use_host_devices(devices: int) -> None:
    """Split the CPU into ``devices`` XLA host devices; call before importing jax."""
    if devices > 1:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={devices}"
        )


def compile_and_time(train, args):
    """Compile ``train`` for ``args.num_seeds`` keys and run it ``args.repeats`` times.

    ``args`` carries ``num_seeds``, ``seed``, ``repeats``, ``devices`` and ``no_vmap``.
    Returns a dict: ``runner`` and ``metrics`` of the last run, ``compile_seconds``,
    ``walls`` (each timed run, ``jax.block_until_ready`` inside), ``wall`` (their
    median, the lower middle), ``sharded`` and ``peak_rss_mb``.
    """
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharded = args.devices > 1 and args.num_seeds % args.devices == 0
    if args.no_vmap:
        fn = jax.jit(train)
    elif sharded:
        mesh = Mesh(np.array(jax.devices()), ("seed",))
        sharding = NamedSharding(mesh, PartitionSpec("seed"))
        fn = jax.jit(jax.vmap(train), in_shardings=sharding, out_shardings=sharding)
    else:
        fn = jax.jit(jax.vmap(train))

    def keys(seed):
        k = jax.random.split(jax.random.key(seed), args.num_seeds)
        return k[0] if args.no_vmap else k

    t0 = time.perf_counter()
    compiled = fn.lower(keys(args.seed)).compile()
    compile_seconds = time.perf_counter() - t0
    walls = []
    for r in range(args.repeats):
        k = jax.block_until_ready(keys(args.seed + 1 + r))
        t0 = time.perf_counter()
        runner, metrics = jax.block_until_ready(compiled(k))
        walls.append(time.perf_counter() - t0)
    return {
        "runner": runner,
        "metrics": metrics,
        "compile_seconds": compile_seconds,
        "walls": walls,
        "wall": sorted(walls)[(len(walls) - 1) // 2],
        "sharded": sharded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
