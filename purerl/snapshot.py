"""Agent snapshots and training phases (pre-train, then fine-tune from a snapshot).

A snapshot is an agent's state alone (parameters and optimiser states; never the
loop's replay, env state or keys) plus ``snapshot.json`` naming what produced it: the
algorithm, the env, its observation shape and dtype, its action space, the Config.
It is written with orbax's array format (no pickle) into a temporary directory that
is renamed into place, so a snapshot directory is always complete.

A phase starts from a snapshot with fresh memory: ``restore_groups`` copies chosen
parameter groups (keys of ``state.params``; a state field ``target_<name>`` follows
group ``<name>``, e.g. SAC's target critic) into a fresh agent, and ``freeze`` makes
an ``update`` keep chosen groups as they are (the optimiser still runs; its result for
those groups is dropped).
"""

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl import checkpoint, distributed
from purerl.algos.base import spec_of

META = "snapshot.json"


class Phase(NamedTuple):
    """One phase of an algorithm's protocol (its module's ``PHASES[name]``)."""

    config: dict = {}  # Config fields the phase sets (e.g. which reward to learn from)
    from_snapshot: bool = False  # starts from a snapshot of an earlier phase
    restore: tuple | None = None  # parameter groups taken from it (None: all)
    freeze: tuple = ()  # parameter groups no update of the phase changes


def describe(algo, spec, config) -> dict:
    """What a snapshot records of its origin, and what a phase checks it against."""
    algo = spec_of(algo)
    return {
        "algo": algo.name,
        "env": spec.name,
        "obs_shape": list(spec.obs_shape),
        "obs_dtype": str(spec.obs_dtype),
        "action_space": repr(spec.action_space),
        "config": dataclasses.asdict(config),
    }


def save(path: str, agent_state: Any, algo, spec, config) -> str:
    """Write ``agent_state``, a batch of seeds' (leading seed axis), as a snapshot at
    ``path``, replacing any snapshot there; returns the path."""
    path = os.path.abspath(path)
    agent_state = distributed.to_host(agent_state)  # every process gathers, one writes
    if not distributed.is_main():
        return path
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    checkpoint.save(os.path.join(tmp, "agent"), agent_state, step=0)
    meta = describe(algo, spec, config)
    meta["num_seeds"] = int(np.shape(jax.tree.leaves(agent_state)[0])[0])
    with open(os.path.join(tmp, META), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def check(path: str, algo, spec) -> dict:
    """The snapshot's metadata, or a one-line ``ValueError`` saying why it cannot start
    a phase of ``algo`` on an env with ``spec``."""
    algo = spec_of(algo)
    meta_path = os.path.join(path, META)
    if not os.path.exists(path):
        raise ValueError(f"snapshot {path} does not exist")
    if not os.path.exists(meta_path):
        inner = os.path.join(path, "snapshot")
        if os.path.exists(os.path.join(inner, META)):  # a run directory given
            raise ValueError(f"{path} is a run directory: its snapshot is {inner}")
        raise ValueError(f"{path} is not a snapshot (no {META}; a run writes its "
                         f"snapshot to <run dir>/snapshot)")
    with open(meta_path) as f:
        meta = json.load(f)
    want = {"algo": algo.name, "obs_shape": list(spec.obs_shape),
            "obs_dtype": str(spec.obs_dtype), "action_space": repr(spec.action_space)}
    names = {"algo": "algorithm", "obs_shape": "observation shape",
             "obs_dtype": "observation dtype", "action_space": "action space"}
    if meta.get("algo") != want["algo"]:
        raise ValueError(f"snapshot {path} holds a {meta.get('algo')} agent; this run is "
                         f"{want['algo']}")
    for key, label in names.items():
        if meta.get(key) != want[key]:
            raise ValueError(f"snapshot {path} holds a {meta.get('algo')} agent for "
                             f"{meta.get('env') or 'an env'} with {label} {meta.get(key)}, "
                             f"but this run needs {label} {want[key]}")
    return meta


def load(path: str, like: Any, algo, spec) -> Any:
    """The agent states of the snapshot at ``path`` for a batch of seeds shaped like
    ``like`` (fresh agent states, leading seed axis): seed ``i`` starts from the
    snapshot's seed ``i mod`` its number of seeds."""
    meta = check(path, algo, spec)
    saved = meta["num_seeds"]
    template = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], (saved, *x.shape[1:])), like)
    state, _ = checkpoint.restore(os.path.join(path, "agent"), template)
    seeds = np.shape(jax.tree.leaves(like)[0])[0]
    return jax.tree.map(lambda x: x[np.arange(seeds) % saved], state)


def _tied(state, group: str, filled: bool = True) -> list[str]:
    """The state fields that go with parameter group ``group``: ``target_<group>``
    (an EMA or target copy) and, with ``filled``, ``<group>_<name>`` (state that the
    group's outputs fill, e.g. Proto-RL's ``encoder_queue`` of embeddings: restored
    with the group, but still filled while the group is frozen)."""
    return [f for f in state._fields
            if f == f"target_{group}" or (filled and f.startswith(f"{group}_"))]


def check_groups(algo, groups, names: Sequence[str], what: str) -> None:
    """A one-line ``ValueError`` (``"<what>: ppo has no parameter group 'x'; its
    groups: actor, critic"``) for the first of ``names`` not among ``groups``."""
    algo = spec_of(algo)
    for name in names:
        if name not in groups:
            raise ValueError(f"{what}: {algo.name} has no parameter "
                             f"group {name!r}; its groups: {', '.join(groups)}")


def restore_groups(state, snapshot_state, groups: Sequence[str] | None = None):
    """``state`` with parameter groups ``groups`` (all of ``state.params`` when None)
    taken from ``snapshot_state``, and the fields tied to them (``_tied``) with them.
    Optimiser states start fresh."""
    params = dict(state.params)
    groups = list(params) if groups is None else list(groups)
    unknown = [g for g in groups if g not in params]
    if unknown:
        raise ValueError(f"unknown parameter groups {unknown}; this agent has {list(params)}")
    changes = {}
    for g in groups:
        params[g] = snapshot_state.params[g]
        changes.update({f: getattr(snapshot_state, f) for f in _tied(state, g)})
    return state._replace(params=params, **changes)


def freeze(update, groups: Sequence[str]):
    """``update`` that leaves parameter groups ``groups``, their ``target_`` fields and
    their optimiser states (``opt_state[group]``, where the state keeps one per group)
    unchanged. It cannot stop the update from using the stepped values inside its own
    step: an algorithm whose update reads a group's new parameters (Proto-RL's reward)
    says how to skip that step (``proto.Config.train_representation``)."""
    groups = tuple(groups)
    if not groups:
        return update

    def frozen(state, batch, key):
        new, metrics = update(state, batch, key)
        params = {**new.params, **{g: state.params[g] for g in groups}}
        changes = {f: getattr(state, f) for g in groups for f in _tied(state, g, False)}
        opt = getattr(state, "opt_state", None)
        if isinstance(opt, dict) and all(g in opt for g in groups):
            changes["opt_state"] = {**new.opt_state, **{g: opt[g] for g in groups}}
        return new._replace(params=params, **changes), metrics

    return frozen
