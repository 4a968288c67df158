"""The control suite in JAX (``mjx:`` ids) against dm_control itself.

Oracles: dm_control 1.0.50's own tasks (rewards, observations, initial states and
whole rollouts from the same state and actions) and ``dm_control.utils.rewards``.
The 1000-step comparison of both solver settings is a benchmark
(``benchmarks/run_mjx_fidelity.py``), not a test.
"""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("dm_control") is None
    or importlib.util.find_spec("mujoco.mjx") is None,
    reason="needs the [dmc] extra (dm_control, mujoco-mjx)")

from purerl import checkpoint  # noqa: E402
from purerl.envs import known_ids, make, vectorize  # noqa: E402
from purerl.envs import mjx as M  # noqa: E402
from purerl.testing import leaves_equal, mjx_against_dm_control  # noqa: E402

# The tasks the issue names (the sparse cartpoles share their physics with the dense
# ones: their rewards are checked on states below).
ROLLOUT_TASKS = ("cartpole-balance", "cartpole-swingup", "pendulum-swingup",
                 "point_mass-easy", "reacher-easy", "cheetah-run", "walker-walk")


def dm_env(name, seed=0):
    from dm_control import suite

    task = M.TASKS[name]
    return suite.load(task.domain, task.task, task_kwargs={"random": seed})


# --- rewards.tolerance ---------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(bounds=(-0.25, 0.25)),
    dict(margin=2),
    dict(bounds=(0.995, 1)),
    dict(margin=1, value_at_margin=0, sigmoid="quadratic"),
    dict(bounds=(10, float("inf")), margin=10, value_at_margin=0, sigmoid="linear"),
    dict(bounds=(1.2, float("inf")), margin=0.6),
    dict(bounds=(1, float("inf")), margin=0.5, value_at_margin=0.5, sigmoid="linear"),
    dict(bounds=(0, 0.015), margin=0.015),
])
def test_tolerance_equals_dm_control(kwargs):
    from dm_control.utils import rewards

    x = np.random.default_rng(0).normal(0, 3, (7, 64)).astype(np.float32)
    x[0, :3] = [-0.25, 0.25, 1.2]  # bounds themselves
    expected = rewards.tolerance(x.astype(np.float64), **kwargs)
    got = jax.jit(jax.vmap(lambda v: M.tolerance(v, **kwargs)))(x)
    np.testing.assert_allclose(got, expected, atol=2e-6)


# --- rewards and observations on states ----------------------------------------------


def sample_state(name, physics, rng):
    """A state where the task's reward is informative: near the goal as often as not
    (upright poles, the point mass near its target, a walker at standing height, the
    reacher's target near its finger, fast cheetahs)."""
    nq, nv = physics.model.nq, physics.model.nv
    qpos = physics.model.qpos0 + rng.normal(0, 0.3, nq) * rng.choice([0.1, 1.0])
    qvel = rng.normal(0, 1.0, nv) * rng.choice([0.1, 1.0, 5.0])
    if name.startswith("point_mass"):
        qpos = rng.normal(0, 0.02, nq)
    if name.startswith("cheetah"):
        qvel[0] = rng.uniform(0, 20)
    if name.startswith("walker"):
        qpos[0] = rng.uniform(-0.6, 0.2)  # rootz: torso from 0.7 to 1.5
        qvel[1] = rng.uniform(-1, 10)  # rootx: the walking speed
    ctrl = rng.uniform(-1.2, 1.2, physics.model.nu)
    return qpos, qvel, ctrl


@pytest.mark.parametrize("name", list(M.TASKS))
def test_reward_and_observation_equal_dm_controls_on_states(name):
    from purerl.envs.host import _flatten

    env = dm_env(name)
    env.reset()  # sets the task's model fields (the reacher's target size)
    physics, task = env.physics, M.TASKS[name]
    model, _, _, info = M.load_physics(name)
    template = M.import_mjx().make_data(model, impl="jax")
    rng = np.random.default_rng(1)
    states, rewards, observations, targets = [], [], [], []
    for _ in range(64):
        qpos, qvel, ctrl = sample_state(name, physics, rng)
        with physics.reset_context():
            physics.data.qpos[:] = qpos
            physics.data.qvel[:] = qvel
        target = np.zeros(2)
        if task.domain == "reacher":  # near the finger half the time
            finger = physics.named.data.geom_xpos["finger", :2]
            target = finger + rng.normal(0, 0.06, 2) * rng.choice([0.3, 1.0])
            physics.named.model.geom_pos["target", :2] = target
        physics.data.ctrl[:] = np.clip(ctrl, -1, 1)
        physics.forward()
        states.append((qpos, qvel, np.clip(ctrl, -1, 1)))
        targets.append(target)
        rewards.append(env.task.get_reward(physics))
        observations.append(_flatten(env.task.get_observation(physics)))

    def ours(qpos, qvel, ctrl, target):
        d = template.replace(qpos=qpos, qvel=qvel, ctrl=ctrl)
        d = M.kinematics(model, d, task)
        return task.reward(d, target, info), task.observe(d, target, info)

    qpos, qvel, ctrl = (jnp.asarray(np.stack(x), jnp.float32) for x in zip(*states))
    reward, obs = jax.jit(jax.vmap(ours))(qpos, qvel, ctrl, jnp.asarray(targets, jnp.float32))
    rewards = np.asarray(rewards)
    # The states reach the reward's informative range, not only its floor or ceiling.
    assert ((rewards > 0.01) & (rewards < 0.99)).any() or len(np.unique(rewards)) > 1
    np.testing.assert_allclose(reward, rewards, atol=1e-5)
    np.testing.assert_allclose(obs, np.stack(observations), atol=1e-5, rtol=1e-5)
    env.close()


# --- rollouts from the same state and actions ----------------------------------------


def _start_upright(physics):
    # The pole points up at 0; the pendulum's reward is 1 within 8 degrees of it.
    physics.named.data.qpos[-1] = 0.03


def _start_near_target(physics):
    physics.named.data.qpos[:] = (0.012, -0.004)  # the target sits at the origin


def _target_under_finger(physics):
    physics.named.model.geom_pos["target", :2] = physics.named.data.geom_xpos["finger", :2]


# Starts where the sparse rewards are informative within 30 steps (random ones rarely
# reach them); the other tasks start from dm_control's own draw.
REWARDING_STARTS = {"cartpole-swingup": _start_upright, "pendulum-swingup": _start_upright,
                    "point_mass-easy": _start_near_target,
                    "reacher-easy": _target_under_finger}


@pytest.mark.parametrize("name", ROLLOUT_TASKS)
def test_rollout_equals_dm_controls_in_float32(name):
    out = mjx_against_dm_control("mjx:" + name, 30, hold=5,
                                 prepare=REWARDING_STARTS.get(name))
    assert (out["reward_dmc"] > 0.01).sum() >= 3, out["reward_dmc"]
    np.testing.assert_allclose(out["reward"], out["reward_dmc"], atol=1e-4)
    # Velocities of the contact tasks reach tens; 30 steps of float32 drift.
    assert out["obs_error"].max() < 5e-3, out["obs_error"]
    assert not out["truncated"].any() and not out["truncated_dmc"].any()


def test_walker_rollout_in_float64_equals_dm_controls_to_float32_rounding():
    """With ``jax_enable_x64`` the physics is float64, as MuJoCo's; what remains is the
    rounding of the float32 observation and reward. (Its own process: x64 is
    process-wide.)"""
    script = (
        "import json, numpy as np\n"
        "from purerl.testing import mjx_against_dm_control\n"
        "out = mjx_against_dm_control('mjx:walker-walk', 30)\n"
        "print(json.dumps([float(np.abs(out['reward'] - out['reward_dmc']).max()),"
        " float(out['obs_error'].max())]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, JAX_ENABLE_X64="1"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reward_error, obs_error = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reward_error < 1e-6 and obs_error < 1e-5, (reward_error, obs_error)


# --- initial states --------------------------------------------------------------------


@pytest.mark.parametrize("name", ROLLOUT_TASKS)
def test_initial_states_are_drawn_like_dm_controls(name):
    """Two-sample Kolmogorov-Smirnov test per coordinate of the initial (qpos, qvel)
    (and the reacher's target) between 200 resets of each."""
    from scipy import stats

    env = make("mjx:" + name)
    states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(3), 200))
    ours = np.concatenate([states.data.qpos, states.data.qvel, states.target], axis=1)
    dmc = dm_env(name, seed=5)
    theirs = []
    for _ in range(200):
        dmc.reset()
        physics = dmc.physics
        target = (physics.named.model.geom_pos["target", :2] if name.startswith("reacher")
                  else np.zeros(2))
        theirs.append(np.concatenate([physics.data.qpos, physics.data.qvel, target]))
    theirs = np.asarray(theirs)
    dmc.close()
    for j in range(ours.shape[1]):
        if np.ptp(theirs[:, j]) == 0:
            np.testing.assert_allclose(ours[:, j], theirs[0, j], atol=1e-6)
            continue
        p = stats.ks_2samp(ours[:, j], theirs[:, j]).pvalue
        assert p > 1e-4, (j, p)


def test_cheetah_settles_like_dm_controls_from_the_same_pose():
    """dm_control's cheetah lets its random pose fall for 200 legacy steps
    (``physics.step(nstep=200)``), the first of which takes its forces from the
    reset's forward pass at qpos0. From dm_control's own draw (caught as the settle
    begins), our reset reaches dm_control's settled state, in float64 (its own
    process). Stepping from the drawn pose's own forces instead misses it by about
    0.04."""
    script = (
        "import json, dataclasses, numpy as np, jax, jax.numpy as jnp\n"
        "from dm_control import suite\n"
        "from purerl.envs import mjx as M\n"
        "task, errors = M.TASKS['cheetah-run'], []\n"
        "def reset_from(qpos):  # one compiled reset for every seed's pose\n"
        "    M.TASKS['cheetah-run'] = dataclasses.replace(task, init=lambda key, info: (\n"
        "        qpos, jnp.zeros(info.nv), jnp.zeros(2)))\n"
        "    return M.make_mjx('mjx:cheetah-run').reset(jax.random.key(0))[0]\n"
        "reset_from = jax.jit(reset_from)\n"
        "for seed in (1, 2, 3):\n"
        "    env = suite.load('cheetah', 'run', task_kwargs={'random': seed})\n"
        "    physics, drawn = env.physics, []\n"
        "    settle = physics.step\n"
        "    def step(nstep=1):\n"
        "        drawn.append(np.array(physics.data.qpos))\n"
        "        return settle(nstep)\n"
        "    physics.step = step\n"
        "    env.reset()\n"
        "    want = np.concatenate([physics.data.qpos, physics.data.qvel])\n"
        "    state = reset_from(jnp.asarray(drawn[0]))\n"
        "    got = np.concatenate([state.data.qpos, state.data.qvel])\n"
        "    errors.append([float(np.abs(got - want).max()),\n"
        "                   float(np.abs(want[:9] - drawn[0]).max())])\n"
        "print(json.dumps(errors))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, JAX_ENABLE_X64="1"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for error, moved in json.loads(proc.stdout.strip().splitlines()[-1]):
        assert moved > 0.01  # the pose did fall: the check is not of an unmoved state
        assert error < 1e-9, error


# --- TimeStep semantics ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pendulum_repeat3():
    """Two pendulums with an action repeat of 3: 334 agent steps an episode, the last
    one a single control step."""
    env = vectorize(make("mjx:pendulum-swingup", action_repeat=3), 2)

    def rollout(key):
        state, first = env.reset(key)

        def body(state, k):
            state, ts = env.step(state, jnp.full((2, 1), 0.3), k)
            return state, (ts, state.steps)

        state, out = jax.lax.scan(body, state, jax.random.split(key, 340))
        return first, out

    return env, jax.jit(rollout)(jax.random.key(0))


def test_spec_and_ids():
    env = make("mjx:cartpole-swingup")
    assert env.spec.obs_shape == (5,) and env.spec.obs_dtype == "float32"
    assert env.spec.action_space.shape == (1,) and env.spec.max_episode_steps == 1000
    assert make("mjx:walker-walk", action_repeat=8).spec.max_episode_steps == 125
    assert {"mjx:" + n for n in ROLLOUT_TASKS} <= set(known_ids())


def test_truncation_after_1000_control_steps_with_the_final_observation(pendulum_repeat3):
    env, (first, (ts, steps)) = pendulum_repeat3
    assert env.spec.max_episode_steps == 334
    truncated = np.asarray(ts.truncated)
    assert not np.asarray(ts.terminated).any()
    ends = np.flatnonzero(truncated[:, 0])
    assert list(ends) == [333] and truncated[333].all()  # both envs, agent step 334
    np.testing.assert_array_equal(steps[332], 999)  # the last agent step ran one
    np.testing.assert_array_equal(steps[333], 0)  # control step: a new episode began
    np.testing.assert_array_equal(ts.info["episode_length"][333], 334)
    np.testing.assert_allclose(ts.info["episode_return"][333],
                               np.asarray(ts.reward)[:334].sum(0), rtol=1e-4)
    # The ending step keeps the episode's last observation; obs is the next episode's.
    final, obs = np.asarray(ts.info["final_obs"][333]), np.asarray(ts.obs[333])
    assert not np.allclose(final, obs)
    np.testing.assert_array_equal(ts.info["final_obs"][:333], ts.obs[:333])
    # A fresh random start each episode, different across envs.
    assert not np.allclose(obs, np.asarray(first.obs))
    assert not np.allclose(obs[0], obs[1])
    np.testing.assert_array_equal(ts.info["episode_length"][334], 1)


def test_bad_options_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown mjx id 'mjx:cartpole-run'"):
        make("mjx:cartpole-run")
    with pytest.raises(ValueError, match=r"solver must be one of \('dmc', 'fast'\)"):
        make("mjx:cartpole-swingup", solver="exact")
    with pytest.raises(ValueError, match="action_repeat must be an integer >= 1"):
        make("mjx:cartpole-swingup", action_repeat=0)
    with pytest.raises(ValueError, match="mjx envs take solver and action_repeat"):
        make("mjx:cartpole-swingup", pixels=True)


def test_fast_solver_changes_only_the_solver_iterations_and_contact_cap():
    exact, fast = (M.load_physics("walker-walk", s)[1] for s in ("dmc", "fast"))
    assert (exact.opt.iterations, exact.opt.ls_iterations) == (100, 50)
    assert (fast.opt.iterations, fast.opt.ls_iterations) == (
        M.FAST_SOLVER["iterations"], M.FAST_SOLVER["ls_iterations"])
    assert exact.nnumeric == 0 and fast.nnumeric == 1
    assert fast.numeric_data[0] == M.FAST_SOLVER["max_contact_points"]
    for field in ("body_mass", "geom_size", "geom_friction", "jnt_range", "actuator_gear",
                  "dof_damping", "qpos0"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(exact, field))
    assert exact.opt.timestep == fast.opt.timestep and exact.opt.solver == fast.opt.solver


def test_env_state_checkpoints_with_its_empty_arrays(tmp_path):
    """MJX data holds empty arrays (no actuator activations): the checkpoint keeps
    them by shape."""
    state, _ = jax.jit(make("mjx:pendulum-swingup").reset)(jax.random.key(0))
    assert state.data.act.size == 0
    checkpoint.save(str(tmp_path), state, step=1)
    restored, _ = checkpoint.restore(str(tmp_path), state)
    assert restored.data.act.shape == state.data.act.shape
    assert leaves_equal(restored, state)
