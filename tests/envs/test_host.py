"""Host environments (gymnasium:, dmc:) and the host on-policy loop.

Run: .venv/bin/python -m pytest -p no:xdist tests/envs/test_host.py
"""

import importlib.util
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from purerl import host_loop, loops
from purerl.algos import a2c, ppo, sac
from purerl.envs import make_host
from purerl.testing import split_config
from purerl.types import Box, Discrete

# --- Gymnasium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole():
    env = make_host("gymnasium:CartPole-v1", num_envs=2, seed=0)
    yield env
    env.close()


def test_gymnasium_spec(cartpole):
    spec = cartpole.spec
    assert spec.obs_shape == (4,)
    assert spec.obs_dtype == "float32"
    assert spec.action_space == Discrete(2)
    assert spec.max_episode_steps == 500
    assert spec.name == "gymnasium:CartPole-v1"
    assert cartpole.num_envs == 2


def test_gymnasium_reset(cartpole):
    ts = cartpole.reset(seed=3)
    assert ts.obs.shape == (2, 4) and ts.obs.dtype == np.float32
    assert ts.reward.shape == (2,) and ts.reward.dtype == np.float32
    assert not ts.terminated.any() and not ts.truncated.any()
    np.testing.assert_array_equal(ts.info["final_obs"], ts.obs)
    np.testing.assert_array_equal(ts.info["episode_return"], 0.0)
    np.testing.assert_array_equal(ts.info["episode_length"], 0)
    # Seeded resets are reproducible, and the two envs get different seeds.
    np.testing.assert_array_equal(cartpole.reset(seed=3).obs, ts.obs)
    assert (ts.obs[0] != ts.obs[1]).any()


def test_gymnasium_termination_keeps_final_obs(cartpole):
    """Always pushing left ends CartPole episodes by termination (pole or cart out of
    bounds): the ending step keeps the true last observation and restarts the env."""
    cartpole.reset(seed=0)
    actions = np.zeros(2, np.int32)
    for t in range(1, 100):
        ts = cartpole.step(actions)
        done = ts.terminated | ts.truncated
        if done.any():
            break
        np.testing.assert_array_equal(ts.info["final_obs"], ts.obs)
        np.testing.assert_array_equal(ts.info["episode_length"], t)
    else:
        pytest.fail("no CartPole episode ended in 100 steps")
    assert ts.terminated[done].all() and not ts.truncated.any()
    for i in np.flatnonzero(done):
        final = ts.info["final_obs"][i]
        assert abs(final[0]) > 2.4 or abs(final[2]) > 12 * 2 * math.pi / 360
        assert (final != ts.obs[i]).any()  # obs is the next episode's first
        assert np.abs(ts.obs[i]).max() <= 0.05  # CartPole starts in [-0.05, 0.05]
    np.testing.assert_array_equal(ts.info["episode_length"], t)
    np.testing.assert_array_equal(ts.info["episode_return"], float(t))
    nxt = cartpole.step(actions)
    np.testing.assert_array_equal(nxt.info["episode_length"][done], 1)
    np.testing.assert_array_equal(nxt.info["episode_return"][done], 1.0)


def test_gymnasium_truncation_is_not_termination():
    env = make_host("gymnasium:CartPole-v1", num_envs=2, seed=1, max_episode_steps=5)
    assert env.spec.max_episode_steps == 5
    env.reset()
    for t in range(1, 6):
        ts = env.step(np.array([t % 2, (t + 1) % 2]))  # alternate: stays upright
    assert ts.truncated.all() and not ts.terminated.any()
    np.testing.assert_array_equal(ts.info["episode_length"], 5)
    np.testing.assert_array_equal(ts.info["episode_return"], 5.0)
    assert (ts.info["final_obs"] != ts.obs).any(axis=1).all()
    ts = env.step(np.array([0, 1]))
    np.testing.assert_array_equal(ts.info["episode_length"], 1)
    assert not (ts.truncated | ts.terminated).any()
    env.close()


def test_gymnasium_box_actions_are_clipped():
    spec_env = make_host("gymnasium:Pendulum-v1", num_envs=1, seed=2)
    assert spec_env.spec.action_space == Box(low=(-2.0,), high=(2.0,), shape=(1,))
    big = make_host("gymnasium:Pendulum-v1", num_envs=1, seed=2)
    spec_env.reset(), big.reset()
    a = spec_env.step(np.array([[2.0]], np.float32))
    b = big.step(np.array([[50.0]], np.float32))
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.reward, b.reward)
    spec_env.close(), big.close()


def test_errors(cartpole, monkeypatch):
    with pytest.raises(ValueError, match="gymnasium:.*dmc:"):
        make_host("CartPole-v1")
    with pytest.raises(ValueError, match="unknown gymnasium id 'NoSuchEnv-v0'"):
        make_host("gymnasium:NoSuchEnv-v0")
    with pytest.raises(ValueError, match="dm_control options"):
        make_host("gymnasium:CartPole-v1", pixels=True)
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        make_host("gymnasium:CartPole-v1", num_envs=0)
    cartpole.reset()
    with pytest.raises(ValueError, match=r"actions must have shape \(2,\)"):
        cartpole.step(np.zeros(3, np.int32))
    fresh = make_host("gymnasium:CartPole-v1")
    with pytest.raises(RuntimeError, match="reset"):
        fresh.step(np.zeros(1, np.int32))
    fresh.close()
    find_spec = importlib.util.find_spec

    def no_dm_control(name, *args):
        return None if name == "dm_control" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_dm_control)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[dmc\]'"):
        make_host("dmc:cartpole-swingup")


# --- run_host ----------------------------------------------------------------------

A2C_CONFIG, A2C_RUN = split_config(a2c, num_envs=2, num_steps=8, total_steps=2 * 8 * 4,
                                   hidden_sizes=(16,))


def test_run_host_num_envs_mismatch():
    env = make_host("gymnasium:CartPole-v1", num_envs=3)
    match = r"num_envs \(3\) must equal RunConfig.num_envs \(2\)"
    with pytest.raises(ValueError, match=match):
        host_loop.run_host(a2c, env, A2C_CONFIG, jax.random.key(0), A2C_RUN)
    env.close()


def test_run_host_a2c():
    env = make_host("gymnasium:CartPole-v1", num_envs=2, seed=0)
    seen = []
    state, history = host_loop.run_host(a2c, env, A2C_CONFIG, jax.random.key(0), A2C_RUN,
                                    callback=lambda i, m: seen.append(i))
    env.close()
    assert seen == [0, 1, 2, 3]
    np.testing.assert_array_equal(history["env_steps"], [16, 32, 48, 64])
    for name in ("loss/actor", "loss/value", "loss/entropy", "opt/grad_norm"):
        assert history[name].shape == (4,) and np.isfinite(history[name]).all(), name
    assert int(state.iteration) == 4
    # 64 random-policy CartPole steps finish a few episodes (about 20 steps each).
    episodes = history["train/episodes"]
    assert episodes.sum() >= 1
    # Raw per-iteration sums: the mean return of an iteration's finished episodes is
    # at least 8 (CartPole lasts 8+ steps), and nothing is summed where none finished.
    return_sum, length_sum = history["train/return_sum"], history["train/length_sum"]
    finished = return_sum[episodes > 0] / episodes[episodes > 0]
    assert np.isfinite(finished).all() and (finished >= 8).all()
    np.testing.assert_array_equal(return_sum[episodes == 0], 0)
    np.testing.assert_array_equal(length_sum[episodes == 0], 0)
    np.testing.assert_allclose(return_sum, length_sum)  # CartPole: reward 1 per step
    block = loops.block_metrics(history, 4)
    np.testing.assert_allclose(block["train/episode_return"],
                               return_sum.sum() / episodes.sum(), rtol=1e-6)


def test_run_host_ppo_learns_cartpole():
    env = make_host("gymnasium:CartPole-v1", num_envs=4, seed=0)
    # 16 iterations of 512 steps: returns go from ~30 to ~150 (seeds 0-2).
    config, run = split_config(ppo, num_envs=4, num_steps=128, total_steps=4 * 128 * 16,
                               lr=1e-3)
    _, history = host_loop.run_host(ppo, env, config, jax.random.key(0), run)
    env.close()
    assert len(history["env_steps"]) == 16
    episodes = history["train/episodes"]
    # Each iteration's mean return over its finished episodes (NaN if none).
    returns = np.where(episodes > 0, history["train/return_sum"] / np.maximum(episodes, 1),
                       np.nan)
    early, late = np.nanmean(returns[:4]), np.nanmean(returns[-4:])
    assert late > early + 50, (early, late)


# --- HostLoop: seeds, off-policy agents, evaluation ----------------------------------

SAC_CONFIG, SAC_RUN = split_config(sac, total_steps=48, num_envs=1, num_steps=2,
                                   batch_size=8, buffer_size=64, learning_starts=8,
                                   hidden_sizes=(16,), num_eval_envs=2)


def _sac_loop(num_seeds, seed=0):
    make = lambda n, s: make_host("gymnasium:Pendulum-v1", num_envs=n, seed=s,  # noqa: E731
                                  max_episode_steps=20)
    return host_loop.HostLoop(sac, make(num_seeds, seed), SAC_CONFIG, SAC_RUN,
                          num_seeds=num_seeds, eval_env=make(2 * num_seeds, seed + 100))


def _close(loop):
    loop.host_env.close()
    loop.eval_env.close()


def test_host_loop_sac_seeds_and_evaluation():
    loop = _sac_loop(num_seeds=2)
    runner = loop.init(jax.random.key(0))
    runner, history = loop.run(runner, 12)
    # Two independent agents: per-seed metrics, per-seed replay and evaluation.
    assert history["loss/critic"].shape == (12, 2)
    np.testing.assert_array_equal(history["env_steps"][-1], [24, 24])
    assert int(runner.env_steps) == 24 and int(runner.iteration) == 12
    np.testing.assert_array_equal(runner.memory.size, [24, 24])  # the loop's replay
    # Updates start once learning_starts=8 transitions are in (iteration 3 adds them).
    assert (history["loss/critic"][:3] == 0).all()
    assert (history["loss/critic"][3:] != 0).all()
    actor = jax.tree.leaves(runner.agent.params["actor"])[0]
    assert not np.allclose(actor[0], actor[1])
    # 12 iterations x 2 steps = 24 steps: one 20-step episode ended per seed.
    np.testing.assert_array_equal(history["train/episodes"].sum(0), [1, 1])
    returns = loop.evaluate(runner)
    assert returns.shape == (2,) and np.isfinite(returns).all() and (returns < 0).all()
    _close(loop)


def test_host_loop_is_deterministic_and_continues_in_chunks():
    whole = _sac_loop(num_seeds=1)
    runner_a, hist_a = whole.run(whole.init(jax.random.key(3)), 10)
    chunks = _sac_loop(num_seeds=1)
    runner_b = chunks.init(jax.random.key(3))
    runner_b, first = chunks.run(runner_b, 4)
    runner_b, rest = chunks.run(runner_b, 6)
    for a, b in zip(jax.tree.leaves((runner_a.agent, runner_a.memory)),
                    jax.tree.leaves((runner_b.agent, runner_b.memory)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        hist_a["loss/critic"], np.concatenate([first["loss/critic"], rest["loss/critic"]]))
    _close(whole)
    _close(chunks)


def test_host_loop_checks_env_counts():
    env = make_host("gymnasium:Pendulum-v1", num_envs=3)
    with pytest.raises(ValueError, match=r"num_envs \(3\) must equal RunConfig.num_envs "
                                         r"\(1\) x num_seeds \(2\)"):
        host_loop.HostLoop(sac, env, SAC_CONFIG, SAC_RUN, num_seeds=2)
    with pytest.raises(ValueError, match=r"eval_env.num_envs \(3\) must equal "
                                         r"RunConfig.num_eval_envs \(2\) x 1 seeds"):
        host_loop.HostLoop(sac, make_host("gymnasium:Pendulum-v1"), SAC_CONFIG, SAC_RUN,
                       num_seeds=1, eval_env=env)
    with pytest.raises(ValueError, match="supports action spaces"):
        host_loop.HostLoop(sac, make_host("gymnasium:CartPole-v1"), SAC_CONFIG, SAC_RUN)
    env.close()


def test_host_loop_sac_pixels_keep_uint8_frames():
    pytest.importorskip("dm_control")
    try:
        env = make_host("dmc:cartpole-swingup", num_envs=2, pixels=True, image_size=32,
                        frame_stack=2, action_repeat=8)
    except RuntimeError as e:
        pytest.skip(f"no OpenGL renderer here: {e}")
    config, run = split_config(sac, total_steps=12, batch_size=4, buffer_size=16,
                               learning_starts=4, hidden_sizes=(16,), feature_dim=8,
                               num_eval_envs=1)
    loop = host_loop.HostLoop(sac, env, config, run, num_seeds=2)
    runner, history = loop.run(loop.init(jax.random.key(0)), 6)
    env.close()
    frames = runner.memory.data["obs"]  # the loop's replay
    assert frames.dtype == np.uint8 and frames.shape == (2, 16, 32, 32, 6)
    assert np.asarray(frames[:, :6]).max() > 0 and not np.asarray(frames[:, 6:]).any()
    assert "encoder" in runner.agent.params
    critic = history["loss/critic"]
    assert critic.shape == (6, 2) and np.isfinite(critic).all() and (critic[3:] > 0).all()


# --- dm_control --------------------------------------------------------------------


def test_dmc_state_obs_and_truncation():
    pytest.importorskip("dm_control")
    env = make_host("dmc:cartpole-swingup", num_envs=2, seed=0, action_repeat=8)
    spec = env.spec
    assert spec.obs_shape == (5,) and spec.obs_dtype == "float32"
    assert spec.action_space == Box(low=(-1.0,), high=(1.0,), shape=(1,))
    assert spec.max_episode_steps == 1000 // 8
    ts = env.reset()
    assert ts.obs.shape == (2, 5) and ts.obs.dtype == np.float32
    # The observation dict flattened in sorted key order, env i seeded with seed + i.
    from dm_control import suite

    first = suite.load("cartpole", "swingup", task_kwargs={"random": 1}).reset()
    expected = np.concatenate([first.observation[k] for k in ("position", "velocity")])
    np.testing.assert_allclose(ts.obs[1], expected, rtol=1e-6)
    rng = np.random.default_rng(0)
    for t in range(1, 126):
        ts = env.step(rng.uniform(-1.5, 1.5, (2, 1)))
        assert not ts.terminated.any()
        assert ts.truncated.all() == (t == 125), t
    np.testing.assert_array_equal(ts.info["episode_length"], 125)
    assert (ts.info["final_obs"] != ts.obs).any(axis=1).all()
    assert np.isfinite(ts.info["episode_return"]).all()
    ts = env.step(np.zeros((2, 1)))
    np.testing.assert_array_equal(ts.info["episode_length"], 1)
    env.close()


def test_dmc_action_repeat_sums_rewards():
    pytest.importorskip("dm_control")
    once = make_host("dmc:cartpole-swingup", num_envs=1, seed=4)
    twice = make_host("dmc:cartpole-swingup", num_envs=1, seed=4, action_repeat=2)
    np.testing.assert_array_equal(once.reset().obs, twice.reset().obs)
    for action in (0.7, -0.3, 1.0):
        a = np.array([[action]])
        first, second = once.step(a), once.step(a)
        ts = twice.step(a)
        np.testing.assert_allclose(ts.reward, first.reward + second.reward, rtol=1e-6)
        np.testing.assert_array_equal(ts.obs, second.obs)
    once.close(), twice.close()


def test_dmc_state_frame_stack():
    pytest.importorskip("dm_control")
    env = make_host("dmc:cartpole-swingup", num_envs=1, frame_stack=2)
    assert env.spec.obs_shape == (10,)
    ts = env.reset()
    np.testing.assert_array_equal(ts.obs[:, :5], ts.obs[:, 5:])
    nxt = env.step(np.ones((1, 1)))
    np.testing.assert_array_equal(nxt.obs[:, :5], ts.obs[:, 5:])
    env.close()


def test_dmc_pixels():
    pytest.importorskip("dm_control")
    try:
        env = make_host("dmc:cartpole-swingup", num_envs=1, pixels=True, frame_stack=3)
    except RuntimeError as e:
        pytest.skip(f"no OpenGL renderer here: {e}")
    assert env.spec.obs_shape == (84, 84, 9) and env.spec.obs_dtype == "uint8"
    ts = env.reset()
    assert ts.obs.shape == (1, 84, 84, 9) and ts.obs.dtype == np.uint8
    assert ts.obs.max() > 0
    # At a reset the first frame fills the stack; a step shifts in one new frame.
    np.testing.assert_array_equal(ts.obs[..., :3], ts.obs[..., 6:])
    nxt = env.step(np.ones((1, 1)))
    np.testing.assert_array_equal(nxt.obs[..., :6], ts.obs[..., 3:])
    assert (nxt.obs[..., 6:] != ts.obs[..., 6:]).any()
    env.close()


def test_dmc_unknown_domain_and_task():
    pytest.importorskip("dm_control")
    with pytest.raises(ValueError, match="unknown dm_control domain 'nosuch'.*walker"):
        make_host("dmc:nosuch-run")
    with pytest.raises(ValueError, match="unknown dm_control task 'fly'.*swingup"):
        make_host("dmc:cartpole-fly")
    with pytest.raises(ValueError, match="unknown dm_control options"):
        make_host("dmc:cartpole-swingup", max_episode_steps=5)


def test_dmc_missing_renderer_is_a_clear_error(monkeypatch):
    pytest.importorskip("dm_control")
    make_host("dmc:cartpole-swingup").close()  # dm_control imported, renderer chosen
    # What dm_control's import leaves when MUJOCO_GL=disable or no backend loads.
    monkeypatch.setattr(sys.modules["dm_control._render"], "BACKEND", "off")
    match = r"need an OpenGL renderer.*MUJOCO_GL=egl.*libosmesa6"
    with pytest.raises(RuntimeError, match=match):
        make_host("dmc:cartpole-swingup", pixels=True)


def test_dmc_pixels_after_dm_control_chose_glfw_without_a_display_is_a_clear_error():
    """dm_control imported before purerl chose a renderer takes GLFW; without a display
    rendering with it can kill the process, so the pixel env refuses first."""
    pytest.importorskip("dm_control")
    code = (
        "import os\n"
        "os.environ.pop('MUJOCO_GL', None); os.environ.pop('DISPLAY', None)\n"
        "os.environ.pop('WAYLAND_DISPLAY', None)\n"
        "from dm_control import suite\n"
        "from purerl.envs import make_host\n"
        "try:\n"
        "    make_host('dmc:cartpole-swingup', pixels=True)\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "refused: dm_control was imported before purerl chose a renderer" in proc.stdout
    assert "DISPLAY is not set" in proc.stdout and "MUJOCO_GL=egl" in proc.stdout
