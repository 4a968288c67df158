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
from purerl.types import Box, EnvSpec

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


# ---- pixels (DrQ): a tiny uint8 image spec, two stacked RGB frames ----

PIXELS = EnvSpec(obs_shape=(16, 16, 6), obs_dtype="uint8",
                 action_space=Box(low=(-2.0,), high=(2.0,), shape=(1,)),
                 max_episode_steps=None, name="TinyPixels")
PIXEL_CFG = dict(num_envs=2, num_steps=4, batch_size=8, buffer_size=64,
                 learning_starts=0, hidden_sizes=(32, 32), feature_dim=16)


def pixel_batch(key, T=4, B=2):
    k_batch, k_obs = jax.random.split(key)
    frames = jax.random.randint(k_obs, (T + 1, B, *PIXELS.obs_shape), 0, 256, jnp.int32)
    frames = frames.astype(jnp.uint8)
    return random_batch(PIXELS, k_batch, T=T, B=B)._replace(obs=frames[:-1],
                                                            next_obs=frames[1:])


@pytest.fixture(scope="module")
def pixel_agent():
    """The agent, one initial state and its jitted update, shared: compiles are slow."""
    agent = sac.make(sac.Config(**PIXEL_CFG), PIXELS)
    return agent, jax.jit(agent.init)(jax.random.key(0)), jax.jit(agent.update)


def test_pixel_path_is_selected_by_the_observation_type(pixel_agent):
    _, state, _ = pixel_agent
    assert set(state.params) == {"encoder", "actor", "critic", "log_alpha"}
    assert set(state.opt_state) == set(state.params)
    assert set(state.target_critic) == {"trunk", "q"}
    assert state.replay.data["obs"].dtype == jnp.uint8
    assert state.replay.data["next_obs"].dtype == jnp.uint8
    # A float image-shaped observation is a state: flattened into the MLPs, no encoder.
    floats = EnvSpec((4, 4, 2), "float32", PIXELS.action_space, None)
    state = sac.make(sac.Config(**PIXEL_CFG), floats).init(jax.random.key(0))
    assert "encoder" not in state.params
    assert state.replay.data["obs"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"Config\.augment_pad must be in"):
        sac.Config(augment_pad=-1)
    with pytest.raises(ValueError, match=r"Config\.feature_dim must be in"):
        sac.Config(feature_dim=0)


def test_pixel_update_compiles_once_keeps_uint8_and_trains_the_encoder(pixel_agent):
    _, state, update = pixel_agent
    tau = sac.Config(**PIXEL_CFG).tau
    batch = pixel_batch(jax.random.key(1))
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    next_batch = pixel_batch(jax.random.key(3))
    newer_state, _ = update(new_state, next_batch, jax.random.key(4))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
    # The frames are stored as they came, uint8.
    stored = newer_state.replay.data
    assert stored["obs"].dtype == jnp.uint8 and stored["next_obs"].dtype == jnp.uint8
    np.testing.assert_array_equal(stored["obs"][:8], batch.obs.reshape(8, 16, 16, 6))
    np.testing.assert_array_equal(stored["next_obs"][:8],
                                  batch.next_obs.reshape(8, 16, 16, 6))
    for group in ("encoder", "actor", "critic"):
        assert not leaves_equal(state.params[group], new_state.params[group]), group
    # Target critic (trunk and heads): Polyak averaging only.
    expect = jax.tree.map(lambda t, c: (1 - tau) * t + tau * c,
                          state.target_critic, new_state.params["critic"])
    chex.assert_trees_all_close(expect, new_state.target_critic, rtol=1e-5, atol=1e-7)


def test_pixel_actor_loss_does_not_reach_the_encoder(pixel_agent):
    # With gamma = 0 the critic's target is the reward, so the only way the actor's
    # parameters could change the encoder's update is a gradient of the actor loss
    # leaking into it. Two states that differ only in the actor must update their
    # encoders identically.
    _, state_a, _ = pixel_agent
    agent = sac.make(sac.Config(**{**PIXEL_CFG, "gamma": 0.0, "gradient_steps": 2}),
                     PIXELS)
    other = jax.tree.map(lambda p: 1.5 * p + 0.01, state_a.params["actor"])
    state_b = state_a._replace(params={**state_a.params, "actor": other})
    update = jax.jit(agent.update)
    batch = pixel_batch(jax.random.key(2))
    new_a, _ = update(state_a, batch, jax.random.key(3))
    new_b, _ = update(state_b, batch, jax.random.key(3))
    assert not leaves_equal(state_a.params["encoder"], new_a.params["encoder"])
    assert leaves_equal(new_a.params["encoder"], new_b.params["encoder"])
    assert leaves_equal(new_a.params["critic"], new_b.params["critic"])
    assert not leaves_equal(new_a.params["actor"], new_b.params["actor"])


def test_pixel_augmentation_is_applied_in_the_update(pixel_agent):
    _, state, update = pixel_agent  # augment_pad = 4
    unshifted = sac.make(sac.Config(**{**PIXEL_CFG, "augment_pad": 0}), PIXELS)
    batch = pixel_batch(jax.random.key(1))
    shifted_state, _ = update(state, batch, jax.random.key(2))
    plain_state, _ = jax.jit(unshifted.update)(state, batch, jax.random.key(2))
    assert not leaves_equal(shifted_state.params["critic"],
                            plain_state.params["critic"])


def test_pixel_act_in_bounds_and_deterministic_per_key(pixel_agent):
    agent, state, _ = pixel_agent
    state = state._replace(env_steps=jnp.int32(100))  # past warm-up: the policy acts
    act = jax.jit(agent.act, static_argnames="eval")
    obs = pixel_batch(jax.random.key(1)).obs[0]  # [2, 16, 16, 6] uint8
    obs = jnp.concatenate([obs, obs[::-1], obs], axis=0)  # [6, ...]
    a1, _ = act(state, obs, jax.random.key(2))
    a2, _ = act(state, obs, jax.random.key(2))
    a3, _ = act(state, obs, jax.random.key(3))
    assert a1.shape == (6, 1) and a1.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(a1)) <= 2.0)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)
    e1, _ = act(state, obs, jax.random.key(4), eval=True)
    e2, _ = act(state, obs, jax.random.key(5), eval=True)
    np.testing.assert_array_equal(e1, e2)
    # Equal frames get equal eval actions: act sees the frames unshifted.
    np.testing.assert_array_equal(e1[0], e1[3])
    single, _ = act(state, obs[0], jax.random.key(6), eval=True)
    assert single.shape == (1,)
    np.testing.assert_allclose(single, e1[0], rtol=1e-5, atol=1e-6)
