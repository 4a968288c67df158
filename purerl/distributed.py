"""Runs across processes and hosts (``jax.distributed``).

Every process runs the same program on its own devices; after ``initialize``,
``jax.devices()`` lists all processes' devices, so the seed axis that ``Trainer`` (and
``purerl.sweep``) shard over the devices is sharded over every process's devices, and
each device computes exactly what it would in one process with as many devices: a run
on 2 processes x 2 devices is the run on 1 process x 4 devices, to the bit (tested).
Process 0 alone writes the run directory (metrics, checkpoints, results, snapshot); the
others take part in the gathers and stay quiet.

Start each process with the coordinator's address, the number of processes and its id:

    JAX_COORDINATOR_ADDRESS=10.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
        python experiments/ppo.py --num-seeds 8 --out runs/shared
    JAX_COORDINATOR_ADDRESS=10.0.0.1:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 \\
        python experiments/ppo.py --num-seeds 8 --out runs/shared

or, under a cluster manager JAX recognises (SLURM, Open MPI), set only
``PURERL_DISTRIBUTED=1`` and let ``jax.distributed.initialize()`` find the rest. On CPU
the processes exchange arrays through gloo (``jax_cpu_collectives_implementation``).
See https://docs.jax.dev/en/latest/multi_process.html (jax 0.10).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize() -> bool:
    """Join the multi-process run the environment describes; False if it describes none.
    Call it before any other JAX work. A partial description is a ``ValueError``
    naming the missing variables."""
    given = {k: os.environ.get(k) for k in ENV_VARS if os.environ.get(k)}
    auto = os.environ.get("PURERL_DISTRIBUTED") == "1"
    if not given and not auto:
        return False
    if jax.distributed.is_initialized():
        return True
    if given and len(given) < len(ENV_VARS):
        missing = [k for k in ENV_VARS if k not in given]
        raise ValueError(f"a multi-process run needs {', '.join(ENV_VARS)}; "
                         f"{', '.join(missing)} not set")
    kwargs = {}
    if given:
        try:
            kwargs = {"coordinator_address": given["JAX_COORDINATOR_ADDRESS"],
                      "num_processes": int(given["JAX_NUM_PROCESSES"]),
                      "process_id": int(given["JAX_PROCESS_ID"])}
        except ValueError:
            raise ValueError("JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers, got "
                             f"{given['JAX_NUM_PROCESSES']!r} and "
                             f"{given['JAX_PROCESS_ID']!r}") from None
        if not 0 <= kwargs["process_id"] < kwargs["num_processes"]:
            raise ValueError(f"JAX_PROCESS_ID must be in [0, JAX_NUM_PROCESSES), got "
                             f"{kwargs['process_id']} of {kwargs['num_processes']}")
    # CPU processes need a collectives backend to gather across processes.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_main() -> bool:
    """True on the process that writes files (process 0)."""
    return jax.process_index() == 0


def is_key(x) -> bool:
    """True for a typed PRNG key array (which numpy and orbax cannot hold as such)."""
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def seed_sharding(num_seeds: int, shard: bool = True):
    """The ``NamedSharding`` of a leading seed axis over all devices (every process's),
    or None when there is one device, ``shard`` is off or the seeds do not divide
    evenly; across processes the seeds must divide (each process holds a shard)."""
    devices = jax.devices()
    if is_multiprocess() and num_seeds % len(devices):
        raise ValueError(f"num_seeds ({num_seeds}) must be a multiple of the "
                         f"{len(devices)} devices of the {jax.process_count()} "
                         f"processes: each process holds a shard of the seeds")
    if not shard or len(devices) == 1 or num_seeds % len(devices):
        return None
    return NamedSharding(Mesh(np.array(devices), ("seed",)), PartitionSpec("seed"))


def to_host(tree):
    """``tree``'s arrays whole, as numpy, on every process (typed PRNG keys stay keys).
    In one process this is ``jax.device_get``; across processes every process must
    call it (it gathers the shards the others hold)."""
    if not is_multiprocess():
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def gather(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return jax.device_get(x)
        if is_key(x):
            data = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return multihost_utils.process_allgather(x, tiled=True)

    return jax.tree.map(gather, tree)


def to_global(tree, sharding):
    """Place a tree that every process holds whole (the same values) on ``sharding``,
    which may span other processes' devices; arrays already global are kept."""
    def put(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x  # global already
        if is_key(x):
            data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(np.asarray(x), sharding)

    if not is_multiprocess():
        return jax.device_put(tree, sharding)
    return jax.tree.map(put, tree)


def broadcast_text(text: str | None) -> str:
    """Process 0's ``text`` on every process (``text`` is ignored elsewhere)."""
    if not is_multiprocess():
        return text
    from jax.experimental import multihost_utils

    data = np.zeros(4096, np.uint8)
    if is_main():
        raw = text.encode()[:4096]
        data[:len(raw)] = np.frombuffer(raw, np.uint8)
    data = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(data[data > 0]).decode()


def barrier(name: str) -> None:
    """Wait until every process reaches ``name``."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def shard_mean_grad(loss_fn, axis_name: str):
    """``value_and_grad`` of the mean of ``loss_fn(params, *batch)`` over the shards of
    ``axis_name``, for use inside ``jax.shard_map`` (with its default vma checking)
    when ``params`` are replicated and the batch is sharded: the gradient of one
    device's loss on the whole batch.

    The mean is taken of the loss, before differentiating: under vma checking the
    gradient of a replicated parameter is already summed over the shards (the
    transpose of its implicit broadcast), so the familiar ``pmean`` of per-shard
    gradients returns the sum of the shards' gradients, N times the mean gradient
    on N devices (tested; "Efficient transposition of replication-type collectives",
    https://docs.jax.dev/en/latest/notebooks/shard_map.html, jax 0.10)."""
    def value_and_grad(params, *batch):
        def mean_loss(p):
            return jax.lax.pmean(loss_fn(p, *batch), axis_name)

        return jax.value_and_grad(mean_loss)(params)

    return value_and_grad
