"""The uniform-random baseline: actions uniform over the action space, in training
and in evaluation, the same bits for the same key."""

import jax
import numpy as np
from scipy import stats

import purerl
from purerl.algos import uniform


def test_actions_are_uniform_in_the_bounds_and_deterministic():
    spec = purerl.envs.make("Maze-Open-v0").spec
    agent = uniform.make(uniform.Config(), spec)
    state = agent.init(jax.random.key(0))
    act = jax.jit(agent.act, static_argnames="eval")
    obs = np.zeros((4000, 2), np.float32)
    first = np.ones(4000, bool)
    a, _, _ = act(state, (), obs, first, jax.random.key(1))
    b, _, _ = act(state, (), obs, first, jax.random.key(1), eval=True)
    assert np.array_equal(a, b) and a.shape == (4000, 2)
    for dim in range(2):
        assert stats.kstest(np.asarray(a[:, dim]), "uniform", args=(-1, 2)).pvalue > 1e-3
    discrete = uniform.make(uniform.Config(), purerl.envs.make("CartPole-v1").spec)
    d, _, _ = discrete.act(state, (), np.zeros((4000, 4), np.float32), first,
                           jax.random.key(2))
    assert set(np.unique(np.asarray(d))) == {0, 1}


def test_a_run_reports_the_maze_coverage():
    env = purerl.envs.make("Maze-Open-v0")
    run = purerl.RunConfig(total_steps=400, num_envs=2, num_steps=1, num_evals=2,
                           num_eval_envs=2)
    _, metrics = jax.jit(purerl.make_train(uniform, env, uniform.Config(), run))(
        jax.random.key(0))
    coverage = np.asarray(metrics["env/coverage/last"])
    assert coverage.shape == (2,) and 0.0 < coverage[0] <= coverage[1] <= 1.0
