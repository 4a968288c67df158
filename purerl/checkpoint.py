"""Save and restore a whole runner pytree with orbax, atomically.

Each save writes a fresh directory ``<root>/block_<n>`` (orbax writes to a temporary
path and renames it when complete), then points ``<root>/LATEST`` at it with an atomic
``os.replace``, then deletes older checkpoints. A crash at any moment leaves ``LATEST``
naming a complete checkpoint. Across processes (``purerl.distributed``) every process
calls ``save`` (the arrays are gathered) and process 0 alone writes; ``restore`` reads
on every process.
"""

import json
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from purerl import distributed


def _to_saveable(tree):
    # orbax stores plain arrays: typed PRNG keys go as their uint32 data. It refuses
    # empty arrays (an MJX model without actuator activations has ``data.act`` of
    # shape (0,)): they go as one zero; ``restore`` takes their shape from ``like``.
    def saveable(x):
        if distributed.is_key(x):
            return jax.random.key_data(x)
        if np.size(x) == 0:
            return np.zeros(1, np.asarray(x).dtype)
        return x

    return jax.tree.map(saveable, tree)


def _checkpointer():
    # This process alone: orbax would otherwise wait for every process at its barriers.
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}))


def save(root: str, runner: Any, step: int, metadata: dict | None = None) -> str:
    """Write ``runner`` as checkpoint ``step`` under ``root``; return its path."""
    runner = distributed.to_host(runner)
    root = os.path.abspath(root)
    if not distributed.is_main():
        return os.path.join(root, f"block_{int(step)}")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"block_{int(step)}")
    if os.path.exists(path):
        shutil.rmtree(path)
    checkpointer = _checkpointer()
    # numpy leaves: orbax refuses a host-local jax.Array when several processes run.
    checkpointer.save(path, jax.tree.map(np.asarray, _to_saveable(runner)))
    checkpointer.wait_until_finished()
    checkpointer.close()
    pointer = {"path": os.path.basename(path), "step": int(step), **(metadata or {})}
    tmp = os.path.join(root, "LATEST.tmp")
    with open(tmp, "w") as f:
        json.dump(pointer, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, "LATEST"))
    for name in os.listdir(root):
        if name.startswith("block_") and name != os.path.basename(path):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return path


def latest(root: str) -> dict | None:
    """The ``LATEST`` pointer of ``root`` (with ``path`` and ``step``), or None."""
    pointer = os.path.join(os.path.abspath(root), "LATEST")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        return json.load(f)


def restore(root: str, like: Any) -> tuple[Any, dict]:
    """Restore the latest checkpoint under ``root`` into the structure of ``like``.

    Args:
      root: the directory given to ``save``.
      like: a runner of the same structure, shapes and dtypes (e.g. a fresh
        ``trainer.init(key)``), which supplies the pytree structure and key types.

    Returns:
      ``(runner, pointer)``.
    """
    pointer = latest(root)
    if pointer is None:
        raise FileNotFoundError(f"no checkpoint under {root!r} (no LATEST file)")
    path = os.path.join(os.path.abspath(root), pointer["path"])
    # numpy targets restore numpy arrays, on every process alike.
    abstract = jax.tree.map(np.asarray, _to_saveable(distributed.to_host(like)))
    checkpointer = _checkpointer()
    data = checkpointer.restore(path, abstract)
    checkpointer.close()
    def unpack(x, ref):
        if distributed.is_key(ref):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
        if np.size(ref) == 0:
            return jnp.zeros(np.shape(ref), np.asarray(x).dtype)
        return jnp.asarray(x)

    restored = jax.tree.map(unpack, data, like)
    return restored, pointer
