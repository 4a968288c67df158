"""PPO: contracts (stability, determinism, seeds, vmap), learning on probes, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import chex

import purerl
from purerl import checkpoint
from purerl.algos import ppo
from purerl.testing import as_numpy, leaves_equal, split_config, train_fn
from purerl.types import Transition

SMALL = dict(total_steps=4 * 32 * 4, num_envs=4, num_steps=32, num_minibatches=4,
             num_epochs=2, num_evals=2, num_eval_envs=2)


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


@pytest.fixture(scope="module")
def small_train(cartpole):
    return jax.jit(train_fn(ppo, cartpole, **SMALL))


def test_config_validation_names_the_field(cartpole):
    with pytest.raises(ValueError, match=r"Config\.lr must be in \(0"):
        ppo.Config(lr=-1.0)
    with pytest.raises(ValueError, match=r"Config\.objective must be one of \['clip', 'kl'\]"):
        ppo.Config(objective="trust")
    with pytest.raises(ValueError, match=r"Config\.num_minibatches must divide RunConfig\."):
        purerl.make_train(ppo, cartpole, ppo.Config(num_minibatches=3))
    with pytest.raises(ValueError, match=r"Config\.gamma"):
        ppo.Config(gamma=1.5)
    with pytest.raises(ValueError, match="minibatches of 1"):
        train_fn(ppo, cartpole, num_envs=1, num_steps=4, num_minibatches=4, total_steps=64)
    with pytest.raises(ValueError, match=r"RunConfig\.total_steps must be >= "):
        train_fn(ppo, cartpole, num_envs=4, num_steps=32, num_minibatches=4, total_steps=64)


def random_batch(spec, run, key):
    T, B = run.num_steps, run.num_envs
    k1, k2, k3 = jax.random.split(key, 3)
    if hasattr(spec.action_space, "n"):
        action = jax.random.randint(k1, (T, B), 0, spec.action_space.n)
    else:
        action = jax.random.normal(k1, (T, B, *spec.action_space.shape))
    done = jax.random.bernoulli(k2, 0.05, (T, B))
    return Transition(
        obs=jax.random.normal(k3, (T, B, *spec.obs_shape)),
        action=action,
        reward=jax.random.normal(k2, (T, B)),
        discount=0.99 * (1.0 - done),
        terminated=done,
        truncated=jnp.zeros((T, B), bool),
        extras={"log_prob": -jnp.ones((T, B)), "value": jnp.zeros((T, B))},
        bootstrap_value=jnp.zeros(B),
    )


@pytest.mark.parametrize("env_id,objective", [("CartPole-v1", "clip"), ("Pendulum-v1", "kl")])
def test_update_is_stable_and_compiles_once(env_id, objective):
    env = purerl.envs.make(env_id)
    cfg, run = split_config(ppo, **SMALL, objective=objective)
    agent = ppo.make(cfg, env.spec, num_updates=purerl.loops.schedule(run).num_updates)
    state = agent.init(jax.random.key(0))
    update = jax.jit(agent.update)
    batch = random_batch(env.spec, run, jax.random.key(1))
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    newer_state, _ = update(new_state, batch, jax.random.key(3))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
    assert int(newer_state.iteration) == 2
    # Parameters moved.
    assert not leaves_equal(state.params, newer_state.params)


def test_act_shapes_and_eval_mode():
    env = purerl.envs.make("Pendulum-v1")
    agent = ppo.make(split_config(ppo, **SMALL)[0], env.spec, num_updates=4)
    state = agent.init(jax.random.key(0))
    obs = jnp.ones((5, 3))
    carry, first = agent.init_carry(5), jnp.zeros(5, bool)
    action, carry, extras = agent.act(state, carry, obs, first, jax.random.key(1))
    assert carry == ()
    assert action.shape == (5, 1) and extras["log_prob"].shape == (5,)
    assert agent.value(state, obs).shape == (5,)
    a1, _, _ = agent.act(state, carry, obs, first, jax.random.key(1), eval=True)
    a2, _, _ = agent.act(state, carry, obs, first, jax.random.key(2), eval=True)
    np.testing.assert_array_equal(a1, a2)


def test_same_key_same_result_different_keys_differ(small_train):
    out1 = small_train(jax.random.key(0))
    out2 = small_train(jax.random.key(0))
    out3 = small_train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)


def test_vmap_over_seeds_equals_separate_runs(cartpole, small_train):
    keys = jax.random.split(jax.random.key(7), 4)
    train = train_fn(ppo, cartpole, **SMALL)
    batched = jax.jit(jax.vmap(train))(keys)
    for i in range(4):
        single = small_train(keys[i])
        for x, y in zip(as_numpy(single), as_numpy(batched)):
            np.testing.assert_allclose(x, y[i], rtol=2e-5, atol=2e-6)


def train_mean_eval(env_id, num_seeds=2, **overrides):
    env = purerl.envs.make(env_id)
    cfg, run = split_config(ppo, **overrides)
    train = jax.jit(jax.vmap(purerl.make_train(ppo, env, cfg, run)))
    runner, metrics = train(jax.random.split(jax.random.key(0), num_seeds))
    return runner, metrics, cfg, env


def test_learns_contextual_bandit_clip_and_kl():
    for objective in ("clip", "kl"):
        _, metrics, _, _ = train_mean_eval(
            "Probe-Bandit-v0", total_steps=8192, num_envs=8, num_steps=16, num_evals=4,
            lr=3e-3, objective=objective, anneal_lr=False,
        )
        final = np.asarray(metrics["eval/return"][:, -1])
        assert final.min() == 1.0, (objective, metrics["eval/return"])


def test_learns_continuous_bandit():
    _, metrics, _, _ = train_mean_eval(
        "Probe-ContinuousBandit-v0", total_steps=32768, num_envs=16, num_steps=16,
        num_evals=4, lr=3e-3, ent_coef=0.0, anneal_lr=False,
    )
    final = np.asarray(metrics["eval/return"][:, -1])
    assert final.mean() > -0.05, metrics["eval/return"]


def test_time_limit_bootstrapping_gives_the_infinite_horizon_value():
    # Reward 1 forever, cut every 20 steps: V must be 1 / (1 - gamma) = 10, not the
    # ≈ 6.4 average of truncated sums a driver that treats the limit as terminal learns.
    runner, _, cfg, env = train_mean_eval(
        "Probe-Truncation-v0", total_steps=16384, num_envs=8, num_steps=32, gamma=0.9,
        gae_lambda=0.9, lr=3e-3, clip_value=False, anneal_lr=False, num_evals=2,
    )
    agent = ppo.make(cfg, env.spec)
    values = jax.vmap(agent.value, in_axes=(0, None))(runner.agent, jnp.ones((1, 1)))
    np.testing.assert_allclose(values, 10.0, rtol=0.05)


def test_learns_cartpole_quickly():
    _, metrics, _, _ = train_mean_eval(
        "CartPole-v1", total_steps=65536, num_envs=8, num_steps=64, num_evals=4, lr=1e-3
    )
    final = np.asarray(metrics["eval/return"][:, -1])
    assert final.mean() > 150.0, metrics["eval/return"]


def test_trainer_resume_is_bit_identical(tmp_path, cartpole):
    cfg, run = split_config(ppo, **{**SMALL, "num_evals": 4, "total_steps": 4 * 32 * 4})
    trainer = purerl.Trainer(ppo, cartpole, cfg, run, num_seeds=2)
    assert trainer.num_blocks == 4
    straight, metrics = trainer.run(trainer.init(jax.random.key(3)))
    assert metrics["eval/return"].shape == (4, 2)

    runner = trainer.init(jax.random.key(3))
    runner, _ = trainer.run(runner, 2, checkpoint_dir=str(tmp_path / "ckpt"))
    del runner
    restored, pointer = checkpoint.restore(str(tmp_path / "ckpt"), trainer.init(jax.random.key(99)))
    assert pointer["step"] == 2 and int(restored.block[0]) == 2
    resumed, rest = trainer.run(restored)
    assert rest["eval/return"].shape == (2, 2)
    assert leaves_equal(straight, resumed)
    np.testing.assert_array_equal(rest["eval/return"], metrics["eval/return"][2:])
