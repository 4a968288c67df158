"""The functional env protocol: TimeStep semantics, auto-reset, wrappers, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl.envs import make, normalize_obs, vectorize
from purerl.types import Box, Discrete


@pytest.mark.parametrize(
    "env_id,space",
    [
        ("CartPole-v1", Discrete),
        ("Acrobot-v1", Discrete),
        ("Pendulum-v1", Box),
        ("MountainCarContinuous-v0", Box),
        ("Breakout-MinAtar", Discrete),
    ],
)
def test_make_and_step(env_id, space):
    env = make(env_id)
    assert isinstance(env.spec.action_space, space)
    state, ts = env.reset(jax.random.key(0))
    assert ts.obs.shape == env.spec.obs_shape and ts.obs.dtype == jnp.float32
    if space is Discrete:
        action = jnp.int32(0)
    else:
        action = jnp.zeros(env.spec.action_space.shape, jnp.float32)
    state, ts = jax.jit(env.step)(state, action, jax.random.key(1))
    assert ts.obs.shape == env.spec.obs_shape
    assert ts.reward.dtype == jnp.float32 and ts.reward.shape == ()
    assert ts.terminated.dtype == jnp.bool_ and ts.truncated.dtype == jnp.bool_
    assert set(ts.info) >= {"final_obs", "episode_return", "episode_length"}


def test_unknown_id_lists_known_ids():
    with pytest.raises(ValueError, match="unknown env id 'CartPole-v0'.*CartPole-v1"):
        make("CartPole-v0")


def test_make_takes_every_gymnax_id_the_adapter_steps():
    import gymnax

    from purerl.envs import GYMNAX_IDS, known_ids

    # gymnax's whole registry but the one that downloads a dataset when made.
    assert set(gymnax.registered_envs) - set(GYMNAX_IDS) == {"MNISTBandit-bsuite"}
    for env_id in GYMNAX_IDS:
        assert env_id in known_ids()
        env = make(env_id)
        state, ts = env.reset(jax.random.key(0))
        space = env.spec.action_space
        action = (jnp.zeros(space.shape) if isinstance(space, Box)
                  else jnp.asarray(space.n - 1, jnp.int32))
        state, ts = env.step(state, action, jax.random.key(1))
        assert ts.obs.shape == env.spec.obs_shape and ts.obs.dtype == jnp.float32, env_id


def test_bad_env_parameter():
    with pytest.raises(ValueError, match="bad parameters for CartPole-v1"):
        make("CartPole-v1", no_such_param=3)


def run_episode_steps(env, num_steps, action, key=0):
    state, ts = env.reset(jax.random.key(key))

    def step(carry, key):
        state, _ = carry
        state, ts = env.step(state, action, key)
        return (state, ts), ts

    keys = jax.random.split(jax.random.key(key + 1), num_steps)
    _, traj = jax.jit(lambda s, t: jax.lax.scan(step, (s, t), keys))(state, ts)
    return traj


def test_time_limit_is_truncation_with_final_obs():
    # Pendulum never terminates: every 200th step is truncated, and auto-resets.
    env = make("Pendulum-v1")
    traj = run_episode_steps(env, 450, jnp.zeros(1))
    truncated = np.asarray(traj.truncated)
    assert not np.asarray(traj.terminated).any()
    np.testing.assert_array_equal(np.flatnonzero(truncated), [199, 399])
    t = 199
    # final_obs is the true last observation, obs already the next episode's first.
    assert not np.allclose(traj.info["final_obs"][t], traj.obs[t])
    np.testing.assert_allclose(traj.info["final_obs"][t - 1], traj.obs[t - 1])
    assert int(traj.info["episode_length"][t]) == 200
    np.testing.assert_allclose(
        traj.info["episode_return"][t], traj.reward[: t + 1].sum(), rtol=1e-5
    )
    # The next episode's statistics start from zero.
    assert int(traj.info["episode_length"][t + 1]) == 1
    np.testing.assert_allclose(traj.info["episode_return"][t + 1], traj.reward[t + 1])


def test_termination_is_not_truncation():
    # CartPole pushed one way falls over long before its 500-step limit.
    env = make("CartPole-v1")
    traj = run_episode_steps(env, 100, jnp.int32(1))
    terminated = np.asarray(traj.terminated)
    assert terminated.any() and not np.asarray(traj.truncated).any()
    t = int(np.flatnonzero(terminated)[0])
    assert int(traj.info["episode_length"][t]) == t + 1
    # The terminal observation is outside the angle bound, the next one is a reset.
    assert abs(float(traj.info["final_obs"][t][2])) > 0.2095
    assert abs(float(traj.obs[t][2])) <= 0.05


def test_vectorize_independent_copies():
    env = vectorize(make("CartPole-v1"), 5)
    state, ts = env.reset(jax.random.key(0))
    assert ts.obs.shape == (5, 4)
    assert len(np.unique(np.asarray(ts.obs[:, 0]))) == 5
    state, ts = jax.jit(env.step)(state, jnp.zeros(5, jnp.int32), jax.random.key(1))
    assert ts.reward.shape == (5,) and ts.info["final_obs"].shape == (5, 4)
    with pytest.raises(ValueError, match="already vectorised"):
        vectorize(env, 2)


def test_normalize_obs_statistics_and_eval_sync():
    raw = vectorize(make("Pendulum-v1"), 8)
    env = normalize_obs(raw)
    state, ts = env.reset(jax.random.key(0))

    def step(carry, key):
        state, _ = carry
        state, ts = env.step(state, jnp.ones((8, 1)), key)
        return (state, ts), state.raw_obs

    keys = jax.random.split(jax.random.key(1), 300)
    (state, ts), raw_obs = jax.jit(lambda s, t: jax.lax.scan(step, (s, t), keys))(state, ts)
    seen = np.concatenate([np.asarray(raw_obs).reshape(-1, 3)], 0)
    # The running statistics are those of every raw observation seen (reset included).
    np.testing.assert_allclose(state.mean, seen.mean(0), atol=0.05)
    np.testing.assert_allclose(state.var, seen.var(0), rtol=0.1)
    np.testing.assert_allclose(ts.obs, (state.raw_obs - state.mean) / np.sqrt(state.var + 1e-8),
                               rtol=1e-4, atol=1e-4)
    # Eval envs take the training statistics, frozen, and renormalise their reset obs.
    eval_env = normalize_obs(vectorize(make("Pendulum-v1"), 3))
    e_state, e_ts = eval_env.reset(jax.random.key(2))
    e_state, e_ts = eval_env.sync_eval(state, e_state, e_ts)
    np.testing.assert_allclose(e_state.mean, state.mean)
    np.testing.assert_allclose(
        e_ts.obs, (e_state.raw_obs - state.mean) / np.sqrt(state.var + 1e-8), rtol=1e-4, atol=1e-4
    )
    e_state2, _ = eval_env.step(e_state, jnp.ones((3, 1)), jax.random.key(3))
    np.testing.assert_allclose(e_state2.mean, state.mean)
    with pytest.raises(ValueError, match="vectorised env"):
        normalize_obs(make("Pendulum-v1"))


def test_probes_registered():
    for env_id in ("Probe-Truncation-v0", "Probe-Bandit-v0", "Probe-ContinuousBandit-v0"):
        assert env_id in purerl.envs.known_ids()
        env = make(env_id)
        state, ts = env.reset(jax.random.key(0))
        assert ts.obs.shape == (1,)


def test_delayed_reward_probe_pays_the_returns_its_docstring_says():
    env = purerl.envs.make("Probe-DelayedReward-v0")
    step = jax.jit(env.step)

    def episode(actions):
        state, ts = env.reset(jax.random.key(0))
        total = 0.0
        for i, a in enumerate(actions):
            state, ts = step(state, jnp.full((1,), a, jnp.float32), jax.random.key(i))
            total += float(ts.reward)
        return total, bool(ts.terminated)

    right, ended = episode([1, 1, 1, 1, 1])
    np.testing.assert_allclose(right, 0.7, atol=1e-6)
    assert ended
    np.testing.assert_allclose(episode([-1, -1, -1, -1, 1])[0], -0.3, atol=1e-6)
    assert not episode([1, 1, 1, 1])[1]  # four steps do not end it
