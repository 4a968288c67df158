"""Snapshots and phases: save/load across seed counts, restored and frozen parameter
groups, the mismatch errors, and a two-phase protocol through the experiment CLI."""

import dataclasses
import json

import jax
import numpy as np
import pytest

import purerl
from purerl import experiment, snapshot
from purerl.algos import a2c, ppo
from purerl.testing import leaves_equal, split_config

TINY = dict(total_steps=256, num_envs=4, num_steps=16, num_evals=2, num_eval_envs=2,
            hidden_sizes=(8, 8))


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


@pytest.fixture(scope="module")
def trained(cartpole):
    cfg, run = split_config(a2c, **TINY)
    trainer = purerl.Trainer(a2c, cartpole, cfg, run, num_seeds=2)
    runner, _ = trainer.run(trainer.init(jax.random.key(0)))
    return cfg, run, runner


def test_save_load_and_seed_counts(tmp_path, cartpole, trained):
    cfg, run, runner = trained
    path = snapshot.save(str(tmp_path / "snap"), runner.agent, a2c, cartpole.spec, cfg)
    meta = json.loads((tmp_path / "snap" / "snapshot.json").read_text())
    assert meta["algo"] == "a2c" and meta["num_seeds"] == 2 and meta["obs_shape"] == [4]
    fresh = purerl.Trainer(a2c, cartpole, cfg, run, num_seeds=3).init(jax.random.key(9))
    loaded = snapshot.load(path, fresh.agent, a2c, cartpole.spec)
    # Seed i starts from the saved seed i mod 2.
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        assert leaves_equal(jax.tree.map(lambda x, i=i: x[i], loaded),
                            jax.tree.map(lambda x, j=j: x[j], runner.agent))


def test_mismatches_are_one_line_errors(tmp_path, cartpole, trained):
    cfg, _, runner = trained
    path = snapshot.save(str(tmp_path / "snap"), runner.agent, a2c, cartpole.spec, cfg)
    with pytest.raises(ValueError, match="holds a a2c agent; this run is ppo"):
        snapshot.check(path, ppo, cartpole.spec)
    acrobot = purerl.envs.make("Acrobot-v1")
    with pytest.raises(ValueError, match=r"observation shape \[4\], but this run needs "
                                         r"observation shape \[6\]"):
        snapshot.check(path, a2c, acrobot.spec)
    with pytest.raises(ValueError, match="is not a snapshot"):
        snapshot.check(str(tmp_path), a2c, cartpole.spec)
    with pytest.raises(ValueError, match="unknown parameter groups"):
        snapshot.restore_groups(runner.agent, runner.agent, ["encoder"])


def test_restored_and_frozen_groups(cartpole, trained):
    cfg, run, runner = trained
    trainer = purerl.Trainer(a2c, cartpole, cfg, run, num_seeds=2, freeze=("critic",))
    start = trainer.init(jax.random.key(5))
    saved = jax.tree.map(np.array, runner.agent)  # the trainer donates its runner
    start = start._replace(agent=snapshot.restore_groups(start.agent, saved, ["critic"]))
    start = jax.tree.map(jax.numpy.asarray, start)
    assert leaves_equal(start.agent.params["critic"], saved.params["critic"])
    assert not leaves_equal(start.agent.params["actor"], saved.params["actor"])
    actor_before = jax.tree.map(np.array, start.agent.params["actor"])
    end, _ = trainer.run(start)
    # The frozen critic never moved; the actor learned.
    assert leaves_equal(end.agent.params["critic"], saved.params["critic"])
    assert not leaves_equal(end.agent.params["actor"], actor_before)
    with pytest.raises(ValueError, match="freeze: a2c has no parameter group .encoder.; "
                                         "its groups: actor, critic"):
        purerl.Trainer(a2c, cartpole, cfg, run, freeze=("encoder",))


# A two-phase protocol: pre-train everything, then fine-tune with the critic frozen.
phased = dataclasses.replace(a2c.SPEC, phases={
    "pretrain": snapshot.Phase(config={"ent_coef": 0.05}),
    "finetune": snapshot.Phase(config={"ent_coef": 0.0}, from_snapshot=True,
                               freeze=("critic",)),
})
ARGS = ["--total-steps", "256", "--num-seeds", "2", "--num-envs", "4", "--num-steps", "16",
        "--num-evals", "2", "--num-eval-envs", "2", "--hidden-sizes", "8,8",
        "--no-progress"]


def test_phases_through_the_experiment_contract(tmp_path, capsys):
    out = tmp_path / "run"
    assert experiment.main(phased, {}, argv=[*ARGS, "--phase", "both", "--out", str(out)]) == 0
    pre = json.loads((out / "pretrain" / "results.json").read_text())
    fine = json.loads((out / "finetune" / "results.json").read_text())
    assert pre["phase"] == "pretrain" and pre["config"]["ent_coef"] == 0.05
    assert fine["phase"] == "finetune" and fine["config"]["ent_coef"] == 0.0
    assert fine["snapshot_from"].endswith("pretrain/snapshot")
    like = purerl.Trainer(a2c, purerl.envs.make("CartPole-v1"),
                          *split_config(a2c, **TINY), num_seeds=2).init(jax.random.key(0))
    spec = purerl.envs.make("CartPole-v1").spec
    before = snapshot.load(str(out / "pretrain" / "snapshot"), like.agent, a2c, spec)
    after = snapshot.load(str(out / "finetune" / "snapshot"), like.agent, a2c, spec)
    assert leaves_equal(before.params["critic"], after.params["critic"])
    assert not leaves_equal(before.params["actor"], after.params["actor"])
    # A fine-tuning phase without a snapshot is a usage error, and writes nothing.
    capsys.readouterr()
    lone = tmp_path / "lone"
    assert experiment.main(phased, {}, argv=[*ARGS, "--phase", "finetune", "--out",
                                             str(lone)]) == 2
    assert "--phase finetune starts from a snapshot" in capsys.readouterr().err
    assert not lone.exists()
    # Algorithms without phases have no --phase flag.
    assert experiment.main(a2c, {}, argv=[*ARGS, "--phase", "pretrain"]) == 2
