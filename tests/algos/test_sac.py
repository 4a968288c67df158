"""SAC: the squashed-Gaussian log-prob oracle, contracts, and a short learning test."""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl.algos import sac
from purerl.testing import as_numpy, leaves_equal, random_batch

SMALL = dict(total_steps=256, num_envs=2, num_steps=4, num_evals=2, num_eval_envs=2,
             batch_size=16, buffer_size=128, learning_starts=32, hidden_sizes=(32, 32))


@pytest.fixture(scope="module")
def pendulum():
    return purerl.envs.make("Pendulum-v1")


@pytest.fixture(scope="module")
def small_train(pendulum):
    return jax.jit(purerl.make_train(sac, pendulum, sac.Config(**SMALL)))


def test_tanh_gaussian_log_prob_matches_distrax():
    key = jax.random.key(0)
    mean = jax.random.normal(key, (64, 3)) * 2.0
    log_std = jax.random.uniform(jax.random.key(1), (64, 3), minval=-3.0, maxval=1.0)
    action, log_prob = jax.jit(sac.tanh_gaussian_sample)(mean, log_std, jax.random.key(2))
    dist = distrax.Independent(
        distrax.Transformed(distrax.Normal(mean, jnp.exp(log_std)), distrax.Tanh()), 1)
    # Compare away from |a| = 1, where float32 atanh loses the sample.
    ok = np.all(np.abs(np.asarray(action)) < 0.999, axis=-1)
    want = dist.log_prob(action)
    np.testing.assert_allclose(np.asarray(log_prob)[ok], np.asarray(want)[ok], rtol=1e-3,
                               atol=1e-3)
    assert ok.mean() > 0.5


def test_config_validation_and_action_space_errors():
    with pytest.raises(ValueError, match=r"Config\.tau must be in"):
        sac.Config(tau=0.0)
    with pytest.raises(ValueError, match=r"Config\.buffer_size must be >="):
        sac.Config(buffer_size=2, num_envs=4)
    with pytest.raises(ValueError, match="supports action spaces"):
        purerl.make_train(sac, purerl.envs.make("CartPole-v1"), sac.Config(**SMALL))


def test_update_is_stable_and_compiles_once(pendulum):
    cfg = sac.Config(**{**SMALL, "learning_starts": 0})
    agent = sac.make(cfg, pendulum.spec)
    state = agent.init(jax.random.key(0))
    update = jax.jit(agent.update)
    batch = random_batch(pendulum.spec, jax.random.key(1), T=4, B=2)
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    newer_state, _ = update(new_state, batch, jax.random.key(3))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
    assert int(newer_state.replay.size) == 16 and int(newer_state.env_steps) == 16
    assert not leaves_equal(state.params["actor"], newer_state.params["actor"])
    # Targets move by Polyak averaging only: a τ-fraction of the way to the critics.
    tau = cfg.tau
    expect = jax.tree.map(lambda t, c: (1 - tau) * t + tau * c, state.target_critic,
                          new_state.params["critic"])
    for x, y in zip(jax.tree.leaves(expect), jax.tree.leaves(new_state.target_critic)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    # act: env-shaped actions within bounds, eval deterministic.
    obs = batch.obs[0]
    action, _ = agent.act(newer_state, obs, jax.random.key(4))
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2.0)
    a1, _ = agent.act(newer_state, obs, jax.random.key(5), eval=True)
    a2, _ = agent.act(newer_state, obs, jax.random.key(6), eval=True)
    np.testing.assert_array_equal(a1, a2)


def test_no_update_before_learning_starts(pendulum):
    cfg = sac.Config(**{**SMALL, "learning_starts": 1000})
    agent = sac.make(cfg, pendulum.spec)
    state = agent.init(jax.random.key(0))
    new_state, _ = jax.jit(agent.update)(
        state, random_batch(pendulum.spec, jax.random.key(1), T=4, B=2), jax.random.key(2))
    assert leaves_equal(state.params, new_state.params)
    assert int(new_state.replay.size) == 8


def test_same_key_same_result_different_keys_differ(small_train):
    out1 = small_train(jax.random.key(0))
    out2 = small_train(jax.random.key(0))
    out3 = small_train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)


def test_vmap_over_seeds_equals_separate_runs(pendulum, small_train):
    keys = jax.random.split(jax.random.key(7), 4)
    batched = jax.jit(jax.vmap(purerl.make_train(sac, pendulum, sac.Config(**SMALL))))(keys)
    for i in range(4):
        for x, y in zip(as_numpy(small_train(keys[i])), as_numpy(batched)):
            np.testing.assert_allclose(x, y[i], rtol=2e-5, atol=2e-6)


def test_learns_continuous_bandit():
    env = purerl.envs.make("Probe-ContinuousBandit-v0")
    cfg = sac.Config(total_steps=3000, num_envs=4, num_steps=1, num_evals=2,
                     num_eval_envs=16, batch_size=64, buffer_size=4096,
                     learning_starts=200, lr=3e-3, hidden_sizes=(64, 64))
    _, metrics = jax.jit(jax.vmap(purerl.make_train(sac, env, cfg)))(
        jax.random.split(jax.random.key(0), 2))
    final = np.asarray(metrics["eval/return"][:, -1])
    assert final.mean() > -0.05, metrics["eval/return"]
