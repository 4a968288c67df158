"""Save and restore a whole runner pytree with orbax, atomically; keep the one before.

Each save writes a fresh directory ``<root>/block_<n>`` (orbax writes to a temporary
path and renames it when complete; the pointer ``{path, step, **metadata}`` goes in it
as orbax's custom metadata), then points ``<root>/LATEST`` at it with an atomic
``os.replace``, then deletes the checkpoints older than the one before it: the newest
two are kept, so a checkpoint damaged after it was written (a truncated file, a lost
``_METADATA``) still leaves the previous one. ``restore`` takes the newest checkpoint
that restores: ``LATEST``'s, then the others newest first (``LATEST`` itself may be
missing or unreadable). Across processes (``purerl.distributed``) every process calls
``save`` (the arrays are gathered) and process 0 alone writes; ``restore`` reads on
every process.
"""

import json
import os
import re
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from purerl import distributed

_BLOCK = re.compile(r"block_(\d+)")  # a committed checkpoint (orbax's temporary: .-tmp)


class NoCheckpoint(FileNotFoundError):
    """No checkpoint under a root restores; the message names each one and why not."""


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
    """Write ``runner`` as checkpoint ``step`` under ``root`` (with ``metadata``, a
    JSON-able dict that ``latest`` and ``restore`` return); return its path."""
    runner = distributed.to_host(runner)
    root = os.path.abspath(root)
    name = f"block_{int(step)}"
    path = os.path.join(root, name)
    if not distributed.is_main():
        return path
    os.makedirs(root, exist_ok=True)
    if os.path.exists(path):
        shutil.rmtree(path)
    pointer = {"path": name, "step": int(step), **(metadata or {})}
    checkpointer = _checkpointer()
    # numpy leaves: orbax refuses a host-local jax.Array when several processes run.
    checkpointer.save(path, jax.tree.map(np.asarray, _to_saveable(runner)),
                      custom_metadata=pointer)
    checkpointer.wait_until_finished()
    checkpointer.close()
    tmp = os.path.join(root, "LATEST.tmp")
    with open(tmp, "w") as f:
        json.dump(pointer, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, "LATEST"))
    older = [f"block_{s}" for s in _steps(root) if s < step]
    keep = {name, *older[:1]}  # this one and the one before
    for other in os.listdir(root):
        # Orbax's leftover temporary directories go too (a save cut short).
        if other.startswith("block_") and other not in keep:
            shutil.rmtree(os.path.join(root, other), ignore_errors=True)
    return path


def _steps(root: str) -> list[int]:
    """The steps of the committed checkpoints under ``root``, newest first."""
    names = os.listdir(root) if os.path.isdir(root) else []
    steps = [int(m.group(1)) for m in map(_BLOCK.fullmatch, names) if m]
    return sorted(steps, reverse=True)


def _read_latest(root: str) -> tuple[dict | None, str | None]:
    """``(LATEST's pointer, None)`` if it reads and names a checkpoint directory, else
    ``(None, why not)``."""
    try:
        with open(os.path.join(root, "LATEST")) as f:
            pointer = json.load(f)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as e:
        return None, _one_line(e)
    if not isinstance(pointer, dict) or not os.path.isdir(
            os.path.join(root, str(pointer.get("path")))):
        return None, f"names no checkpoint directory: {str(pointer)[:60]}"
    return pointer, None


def _candidates(root: str) -> list[dict]:
    """The pointers of the checkpoints under ``root`` in the order ``restore`` tries
    them: ``LATEST``'s, then the others newest first (with their path and step only:
    ``restore`` reads their metadata from the checkpoint)."""
    root = os.path.abspath(root)
    first, _ = _read_latest(root)
    rest = [{"path": f"block_{s}", "step": s} for s in _steps(root)]
    if first is None:
        return rest
    return [first] + [p for p in rest if p["path"] != first["path"]]


def latest(root: str) -> dict | None:
    """The pointer (``path``, ``step`` and the saved metadata) of the newest checkpoint
    under ``root``, or None. Its data is not read: ``restore`` checks that."""
    found = _candidates(root)
    return found[0] if found else None


def restore(root: str, like: Any) -> tuple[Any, dict]:
    """Restore the newest checkpoint under ``root`` that restores, into the structure
    of ``like``.

    Args:
      root: the directory given to ``save``.
      like: a runner of the same structure, shapes and dtypes (e.g. a fresh
        ``trainer.init(key)``), which supplies the pytree structure and key types.

    Returns:
      ``(runner, pointer)``; ``pointer["skipped"]`` lists, as ``{"path", "error"}``,
      what was passed over: the newer checkpoints that did not restore, and ``LATEST``
      if it is missing or unreadable (empty when ``LATEST``'s checkpoint restored).

    Raises:
      NoCheckpoint: there is none, or none restores (the message names each and why).
    """
    root = os.path.abspath(root)
    found = _candidates(root)
    if not found:
        raise NoCheckpoint(f"no checkpoint under {root}")
    _, problem = _read_latest(root)
    skipped = [] if problem is None else [{"path": "LATEST", "error": problem}]
    _quiet_closed_loop()
    for pointer in found:
        try:
            runner, saved = _restore_one(os.path.join(root, pointer["path"]), like)
        except Exception as e:  # noqa: BLE001 - damage shows as any error of orbax's
            skipped.append({"path": pointer["path"], "error": _one_line(e)})
            continue
        return runner, {**(saved or pointer), "skipped": skipped}
    raise NoCheckpoint(f"no checkpoint under {root} restores ({describe(skipped)})")


def _restore_one(path: str, like: Any) -> tuple[Any, dict | None]:
    """One checkpoint directory: ``(runner, its saved pointer or None)``."""
    ref = _to_saveable(distributed.to_host(like))
    # numpy targets restore numpy arrays, on every process alike.
    abstract = jax.tree.map(np.asarray, ref)
    checkpointer = _checkpointer()
    try:
        data = checkpointer.restore(path, abstract)
        try:
            saved = checkpointer.metadata(path).custom_metadata
        except Exception:  # noqa: BLE001 - the pointer is optional; the data is not
            saved = None
    finally:
        checkpointer.close()

    def check(x, r):  # orbax restores a saved shape that differs from the target's
        if np.shape(x) != np.shape(r):
            raise ValueError(f"a leaf has shape {np.shape(x)}, expected {np.shape(r)}")

    jax.tree.map(check, data, abstract)

    def unpack(x, ref):
        if distributed.is_key(ref):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
        if np.size(ref) == 0:
            return jnp.zeros(np.shape(ref), np.asarray(x).dtype)
        return jnp.asarray(x)

    return jax.tree.map(unpack, data, like), saved


def _quiet_closed_loop() -> None:
    """Drop the tracebacks of orbax's reads still in flight when one of a damaged
    checkpoint's failed: each completes on the event loop the failure closed and
    prints "RuntimeError: Event loop is closed" through ``sys.unraisablehook``; the
    failure itself is reported once, by ``restore``."""
    previous = sys.unraisablehook
    if getattr(previous, "quiet_closed_loop", False):
        return

    def hook(unraisable):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook.quiet_closed_loop = True
    sys.unraisablehook = hook


def describe(skipped: list[dict]) -> str:
    """``restore``'s ``skipped`` as one line."""
    return "; ".join(f"{s['path']}: {s['error']}" for s in skipped)


def _one_line(error: Exception) -> str:
    """An error as one short line (orbax's run over several, with JSON specs)."""
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 120 else text[:117] + "..."
