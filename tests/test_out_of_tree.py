"""An algorithm written outside the library (``tests/out_of_tree/dqn.py``) against the
public contract only: ``purerl.AlgoSpec``, ``purerl.Agent``, ``purerl.Replay``. It
passes ``check_contract``, reads env steps for its schedules, and trains through
``make_train`` and through its own command line."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import loops
from purerl.loops import block_metrics
from purerl.testing import check_contract, split_config

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "out_of_tree", "dqn.py")
_spec = importlib.util.spec_from_file_location("dqn", SCRIPT)
dqn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dqn)

TINY = dict(total_steps=64, num_envs=2, num_steps=2, num_evals=2, num_eval_envs=2,
            batch_size=8, buffer_size=64, learning_starts=8, hidden_sizes=(8, 8),
            target_every=4, eps_steps=32)


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


def test_dqn_keeps_the_contract():
    check_contract(dqn.SPEC, "CartPole-v1", *split_config(dqn.SPEC, **TINY))


def test_the_driver_passes_env_steps_to_act_and_update(cartpole):
    """ε in the block metrics is the schedule at each training round's env steps,
    averaged over the rounds that trained only (the warm-up's skipped rounds are not
    zeros in the mean); a block that did not train reports NaN, not 0."""
    fields = dict(TINY, total_steps=96, num_evals=3, learning_starts=40, eps_steps=64)
    cfg, run = split_config(dqn.SPEC, **fields)
    init, block, _ = loops.make_block(dqn.SPEC, cartpole, cfg, run)
    runner = init(jax.random.key(0))
    block = jax.jit(block)
    per_block = run.total_steps // 3
    for b in range(3):
        runner, metrics = block(runner)
        # Rounds follow iterations of 4 env steps; a round trains from 40 steps on.
        steps = np.arange(b * per_block + 4, (b + 1) * per_block + 1, 4)
        trained = steps[steps >= 40]
        assert int(metrics["train/rounds"]) == len(trained)
        if len(trained):
            want = np.mean(np.clip(1 - trained / 64, 0, 1) * 0.95 + 0.05)
            np.testing.assert_allclose(metrics["explore/epsilon"], want, rtol=1e-6)
        else:
            assert np.isnan(metrics["explore/epsilon"])
            assert np.isnan(metrics["loss/td"])


def test_epsilon_and_target_copies_are_in_env_steps(cartpole):
    cfg = dqn.Config(hidden_sizes=(8,), target_every=500, eps_steps=1000)
    agent = dqn.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (4000, 4))
    first = jnp.zeros(4000, bool)
    greedy, _, _ = agent.act(state, (), obs, first, jax.random.key(2), eval=True)
    for env_steps, eps in ((0, 1.0), (500, 0.525), (5000, 0.05)):
        action, _, _ = agent.act(state, (), obs, first, jax.random.key(3),
                                 env_steps=jnp.int32(env_steps))
        # A random action equals the greedy one half the time (2 actions).
        assert abs(np.mean(action != greedy) - eps / 2) < 0.03, env_steps
    batch = purerl.memory.to_batch(
        agent, state,
        {"obs": obs[:8], "next_obs": obs[8:16], "action": jnp.zeros(8, jnp.int32),
         "reward": jnp.ones(8), "terminated": jnp.zeros(8, bool),
         "truncated": jnp.zeros(8, bool), "first": first[:8], "extras": {}},
        dqn.SPEC.discounting(cfg), time_major=False, env_steps=jnp.int32(499))
    stepped, _ = agent.update(state, batch, jax.random.key(4))
    assert not np.allclose(stepped.params["q"]["params"]["Dense_0"]["kernel"],
                           stepped.params["target_q"]["params"]["Dense_0"]["kernel"])
    copied, _ = agent.update(stepped, batch._replace(env_steps=jnp.int32(500)),
                             jax.random.key(5))
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(copied.params["q"]), jax.tree.leaves(copied.params["target_q"])))
    assert int(copied.synced_at) == 500


def test_dqn_learns_cartpole_through_make_train(cartpole):
    run = dataclasses.replace(dqn.RUN, total_steps=40_000, num_evals=4)
    cfg = dqn.Config(eps_steps=16_000, learning_starts=2_000, target_every=200)
    train = purerl.make_train(dqn.SPEC, cartpole, cfg, run)
    _, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    final = np.asarray(metrics["eval/return"])[:, -1]
    # A uniform policy scores about 22 on CartPole-v1.
    assert final.min() > 100, final


def test_dqn_runs_from_its_own_command_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, SCRIPT, "--total-steps", "2000", "--num-seeds", "2",
           "--num-evals", "2", "--learning-starts", "500", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dqn on CartPole-v1 (no preset)" in proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["algo"] == "dqn" and results["preset"] is None
    assert np.asarray(results["eval_returns"], float).shape == (2, 2)


def test_block_metrics_leave_untrained_rounds_out():
    """Three iterations, the first skipped: the loss is the mean of the two that
    trained; a block where none trained reports NaN."""
    sums = {"loss": jnp.array([0.0, 2.0, 4.0]), "train/rounds": jnp.array([0, 1, 1]),
            "train/episodes": jnp.zeros(3, jnp.int32), "train/return_sum": jnp.zeros(3),
            "train/length_sum": jnp.zeros(3, jnp.int32), "env/coverage": jnp.ones(3)}
    out = block_metrics(sums, jnp.int32(3))
    assert float(out["loss"]) == 3.0 and int(out["train/rounds"]) == 2
    assert float(out["env/coverage"]) == 1.0
    none = block_metrics({**sums, "train/rounds": jnp.zeros(3, jnp.int32)}, jnp.int32(3))
    assert np.isnan(none["loss"])
