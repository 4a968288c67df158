"""Damaged checkpoints: ``save`` keeps the newest two, ``restore`` falls back to the
newest one that restores and says what it passed over, and when none restores says
so in one line. (The CLI's side, ``--resume`` on a real run directory, is
tests/experiments/test_scripts.py's.)"""

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import checkpoint


class Runner(NamedTuple):
    agent: Any
    key: jax.Array


def runner(value: float) -> Runner:
    return Runner({"w": jnp.full(256, value), "b": (jnp.ones(3), jnp.zeros((0,)))},
                  jax.random.key(int(value)))


def truncate_data(path) -> None:
    """Cut every array data file of a checkpoint (orbax's OCDBT store, in d/) to half."""
    for d, _, files in os.walk(path):
        for name in files if os.path.basename(d) == "d" else ():
            name = os.path.join(d, name)
            with open(name, "r+b") as f:
                f.truncate(os.path.getsize(name) // 2)


DAMAGE = {
    "truncated data file": lambda root: truncate_data(root / "block_10"),
    "_METADATA deleted": lambda root: os.remove(root / "block_10" / "_METADATA"),
    "LATEST deleted": lambda root: os.remove(root / "LATEST"),
    "LATEST emptied": lambda root: open(root / "LATEST", "w").close(),
}


@pytest.fixture
def saved(tmp_path):
    root = tmp_path / "checkpoint"
    for step in (5, 10):
        checkpoint.save(str(root), runner(step), step=step,
                        metadata={"parts": list(range(5, step + 1, 5))})
    return root


def test_an_intact_checkpoint_restores_with_its_metadata(saved):
    restored, pointer = checkpoint.restore(str(saved), runner(0))
    assert float(restored.agent["w"][0]) == 10.0
    assert restored.agent["b"][1].shape == (0,)
    assert pointer == {"path": "block_10", "step": 10, "parts": [5, 10], "skipped": []}
    assert checkpoint.latest(str(saved)) == {"path": "block_10", "step": 10,
                                             "parts": [5, 10]}


@pytest.mark.parametrize("damage", ["truncated data file", "_METADATA deleted"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(saved, damage):
    DAMAGE[damage](saved)
    restored, pointer = checkpoint.restore(str(saved), runner(0))
    assert float(restored.agent["w"][0]) == 5.0
    assert (pointer["path"], pointer["step"], pointer["parts"]) == ("block_5", 5, [5])
    [skipped] = pointer["skipped"]
    assert skipped["path"] == "block_10" and "\n" not in skipped["error"]
    np.testing.assert_array_equal(jax.random.key_data(restored.key),
                                  jax.random.key_data(runner(5).key))


@pytest.mark.parametrize("damage", ["LATEST deleted", "LATEST emptied"])
def test_a_lost_latest_finds_the_newest_checkpoint(saved, damage):
    DAMAGE[damage](saved)
    assert checkpoint.latest(str(saved))["path"] == "block_10"  # no JSONDecodeError
    restored, pointer = checkpoint.restore(str(saved), runner(0))
    assert float(restored.agent["w"][0]) == 10.0
    assert pointer["parts"] == [5, 10]  # the metadata saved in the checkpoint itself
    [skipped] = pointer["skipped"]
    assert skipped["path"] == "LATEST"
    assert skipped["error"] == ("missing" if damage == "LATEST deleted" else
                                "JSONDecodeError: Expecting value: line 1 column 1 (char 0)")


def test_when_every_checkpoint_is_broken_one_line_names_each(saved):
    truncate_data(saved / "block_10")
    os.remove(saved / "block_5" / "_METADATA")
    with pytest.raises(checkpoint.NoCheckpoint) as info:
        checkpoint.restore(str(saved), runner(0))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"no checkpoint under {saved} "
                                                      f"restores (block_10: ValueError")
    assert "; block_5: ValueError" in message
    with pytest.raises(checkpoint.NoCheckpoint, match="no checkpoint under"):
        checkpoint.restore(str(saved.parent / "nothing"), runner(0))


def test_a_checkpoint_of_other_shapes_does_not_restore(saved):
    # orbax itself restores the saved shape into a target of another one.
    like = Runner({"w": jnp.zeros(300), "b": (jnp.ones(3), jnp.zeros((0,)))},
                  jax.random.key(0))
    with pytest.raises(checkpoint.NoCheckpoint, match="a leaf has shape"):
        checkpoint.restore(str(saved), like)


def test_a_save_keeps_the_one_before_until_the_next_is_written(saved):
    assert sorted(os.listdir(saved)) == ["LATEST", "block_10", "block_5"]
    os.makedirs(saved / "block_15.orbax-checkpoint-tmp-1")  # a save cut short
    checkpoint.save(str(saved), runner(15), step=15)
    assert sorted(os.listdir(saved)) == ["LATEST", "block_10", "block_15"]
    assert json.loads((saved / "LATEST").read_text()) == {"path": "block_15", "step": 15}
