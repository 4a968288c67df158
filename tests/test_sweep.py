"""purerl.sweep: a grid of float hyperparameters crossed with seeds in one program,
each point bit-equal to its own run (a ``Trainer`` with that value); non-float fields
refused by name."""

import dataclasses

import jax
import numpy as np
import pytest

import purerl
from purerl import sweep
from purerl.algos import ppo, sac
from purerl.testing import leaves_equal, split_config


def test_grid_is_the_cartesian_product():
    points = sweep.grid(lr=[1e-4, 1e-3], ent_coef=[0.0, 0.01, 0.1])
    np.testing.assert_allclose(points["lr"], [1e-4] * 3 + [1e-3] * 3, rtol=1e-6)
    np.testing.assert_allclose(points["ent_coef"], [0.0, 0.01, 0.1] * 2, rtol=1e-6)


@pytest.mark.parametrize("algo,env_id,fields", [
    (ppo, "CartPole-v1", dict(total_steps=256, num_envs=4, num_steps=16, num_evals=2,
                              num_eval_envs=2, hidden_sizes=(8, 8))),
    (sac, "Pendulum-v1", dict(total_steps=48, num_envs=2, num_steps=2, num_evals=2,
                              num_eval_envs=2, batch_size=8, buffer_size=64,
                              learning_starts=8, hidden_sizes=(8, 8))),
])
def test_each_point_is_its_own_run_to_the_bit(algo, env_id, fields):
    env = purerl.envs.make(env_id)
    cfg, run = split_config(algo, **fields)
    points = sweep.grid(lr=[1e-4, 1e-3, 1e-2])
    runner, metrics = sweep.run(algo, env, cfg, run, points, seeds=2, seed=3)
    assert np.shape(metrics["eval/return"])[:2] == (3, 2)
    for p, lr in enumerate([1e-4, 1e-3, 1e-2]):
        # The separate run: what the experiment scripts do, block by block.
        trainer = purerl.Trainer(algo, env, dataclasses.replace(cfg, lr=lr), run,
                                 num_seeds=2)
        alone, alone_metrics = trainer.run(trainer.init(jax.random.key(3)))
        point = jax.tree.map(lambda x: x[p], runner)
        assert leaves_equal(point, alone)
        np.testing.assert_array_equal(metrics["eval/return"][p],
                                      np.moveaxis(alone_metrics["eval/return"], 0, 1))
    # The points differ: the learning rate reaches the updates.
    params = jax.tree.leaves(runner.agent.params)[0]
    assert np.abs(params[0, 0] - params[2, 0]).max() > 1e-3


def test_batched_points_agree_to_float32_rounding():
    env = purerl.envs.make("CartPole-v1")
    cfg, run = split_config(ppo, total_steps=256, num_envs=4, num_steps=16, num_evals=2,
                            num_eval_envs=2, hidden_sizes=(8, 8))
    points = sweep.grid(lr=[1e-4, 1e-3, 1e-2])
    exact, _ = sweep.run(ppo, env, cfg, run, points, seeds=2, seed=3)
    batched, _ = sweep.run(ppo, env, cfg, run, points, seeds=2, seed=3, batch_points=3)
    for x, y in zip(jax.tree.leaves(exact.agent.params), jax.tree.leaves(batched.agent.params)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="batch_points must be >= 1"):
        sweep.program(ppo, env, cfg, run, points, seeds=2, batch_points=0)


def test_only_float_fields_can_be_swept():
    env = purerl.envs.make("CartPole-v1")
    cfg, run = split_config(ppo, total_steps=256, num_envs=4, num_steps=16)
    with pytest.raises(ValueError, match="Config.num_epochs is int: it fixes shapes"):
        sweep.train_fn(ppo, env, cfg, run, ["num_epochs"])
    with pytest.raises(ValueError, match="has no field 'learning_rate'; float fields"):
        sweep.train_fn(ppo, env, cfg, run, ["learning_rate"])
    assert "lr" in sweep.float_fields(ppo) and "hidden_sizes" not in sweep.float_fields(ppo)
