"""The DeepMind Control Suite in pure JAX, on MuJoCo XLA (``mjx:<domain>-<task>`` ids).

    env = purerl.envs.make("mjx:cartpole-swingup")             # dm_control's solver
    env = purerl.envs.make("mjx:walker-walk", solver="fast", action_repeat=2)

Each task is dm_control's own (Tassa et al. 2018, "DeepMind Control Suite",
arXiv:1801.00690; code: dm_control 1.0.50, ``dm_control/suite/<domain>.py``): the
model is loaded from the suite (``suite.load(domain, task).physics.model``) and put on
the device with ``mujoco.mjx.put_model`` (mujoco-mjx 3.17.0, its JAX implementation);
the initial-state distribution, the observation and the reward are written here in
JAX, line for line after the suite's ``initialize_episode``, ``get_observation`` and
``get_reward``. The tests compare rollouts against dm_control step by step.

What matches dm_control:

* **Physics step.** One control step sets ``ctrl`` to the action (MuJoCo clamps it to
  ``ctrlrange``), runs ``n_sub_steps`` ``mjx.step`` calls (walker: 10, the others: 1)
  and then recomputes the position- and velocity-dependent quantities that the
  observation and reward read (kinematics; for cheetah and walker also the subtree
  linear velocity of ``torso_subtreelinvel``), as dm_control's legacy step ends with
  ``mj_step1``.
* **Episodes.** 1000 control steps (the suite's time limit over its control timestep),
  cut by truncation, never terminated (these tasks have no terminal state). With
  ``action_repeat`` k an agent step runs k control steps and sums their rewards; the
  episode still ends at control step 1000 (the last agent step runs fewer when k does
  not divide 1000), so ``spec.max_episode_steps = ceil(1000 / k)``, as
  ``purerl.envs.make_host("dmc:...", action_repeat=k)``.
* **Observations**: dm_control's observation dict flattened in sorted key order, as
  the ``dmc:`` host envs do, so ``mjx:`` and ``dmc:`` ids of a task share a layout.
* **Resets**: a fresh draw of the task's initial-state distribution at every reset
  (MuJoCo's ``mj_resetData`` state, then the task's randomisation, then a forward
  pass). Cheetah lets its random pose settle for 200 physics steps, as dm_control
  does (its legacy step: the first of them takes its forces from the reset's
  forward pass at qpos0, see ``make_mjx``). Under ``vmap`` the reset runs only when some env needs one
  (``purerl.control.when``): cheetah's settling costs 200 steps per episode, not
  per step.

The random draws are not dm_control's (JAX's PRNG, not NumPy's): the distributions
are the same, the samples are not.

Solvers (``solver=``):

* ``"dmc"`` (default): the model's own options, as dm_control runs it (Newton,
  100 iterations, 50 line-search iterations, tolerance 1e-8).
* ``"fast"``: a stated deviation for throughput: ``FAST_SOLVER`` (Newton, 4
  iterations, 8 line-search iterations; on the tasks with contacts, cheetah and
  walker, at most 4 contact points, the deepest, MJX's ``max_contact_points``), the
  kind of setting MuJoCo Playground uses for its suite ports. It changes only steps
  with active constraints (joint limits, contacts); ``benchmarks/results/
  mjx_fidelity.md`` gives the measured reward and observation error of both settings
  against dm_control over 1000 steps.

Observation and rewards are float32 unless ``jax_enable_x64`` is on when the env is
made (then the physics runs in float64, as MuJoCo itself).
"""

import contextlib
import copy
import dataclasses
import functools
import importlib
import io
import math
import os
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import purerl.types as T
from purerl.control import when
from purerl.envs.core import Env

PREFIX = "mjx:"
EPISODE_CONTROL_STEPS = 1000
FAST_SOLVER = {"iterations": 4, "ls_iterations": 8, "max_contact_points": 4}
SOLVERS = ("dmc", "fast")


# --- dm_control's reward shaping, in JAX -------------------------------------------


def tolerance(x, bounds=(0.0, 0.0), margin=0.0, sigmoid="gaussian",
              value_at_margin=0.1):
    """1 where ``bounds[0] <= x <= bounds[1]``, falling off outside with ``sigmoid``
    to ``value_at_margin`` at distance ``margin``: ``dm_control.utils.rewards.
    tolerance`` (dm_control 1.0.50) for the sigmoids the suite's tasks use
    (gaussian, linear, quadratic). ``bounds``, ``margin`` and ``sigmoid`` are Python
    constants."""
    lower, upper = bounds
    in_bounds = (lower <= x) & (x <= upper)
    if margin == 0:
        return jnp.where(in_bounds, 1.0, 0.0)
    d = jnp.where(x < lower, lower - x, x - upper) / margin
    if sigmoid == "gaussian":
        scale = math.sqrt(-2 * math.log(value_at_margin))
        value = jnp.exp(-0.5 * (d * scale) ** 2)
    elif sigmoid == "linear":
        scaled = d * (1 - value_at_margin)
        value = jnp.where(jnp.abs(scaled) < 1, 1 - scaled, 0.0)
    elif sigmoid == "quadratic":
        scaled = d * math.sqrt(1 - value_at_margin)
        value = jnp.where(jnp.abs(scaled) < 1, 1 - scaled**2, 0.0)
    else:
        raise ValueError(f"sigmoid must be gaussian, linear or quadratic, got {sigmoid!r}")
    return jnp.where(in_bounds, 1.0, value)


# --- the tasks ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Task:
    """One suite task.

    ``init(key, info)`` returns ``(qpos, qvel, target)``: the task's draw of the
    initial state after ``mj_resetData`` (``target`` is the reacher's target position
    in the plane, zeros elsewhere). ``observe(d, target, info)`` and
    ``reward(d, target, info)`` read the MJX data after a control step. ``info`` holds
    static model facts (``ModelInfo``). ``settle_steps`` physics steps with zero
    control follow the draw (cheetah). ``subtree_vel``: the observation or reward
    reads a body's subtree linear velocity.
    """

    domain: str
    task: str
    init: Callable
    observe: Callable
    reward: Callable
    settle_steps: int = 0
    subtree_vel: bool = False
    geom_size: dict | None = None  # {geom name: first size} set on the model (reacher)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Static facts of a loaded model that tasks read (numpy, by name)."""

    qpos0: np.ndarray
    nv: int
    jnt_type: np.ndarray
    jnt_limited: np.ndarray
    jnt_range: np.ndarray
    jnt_qposadr: np.ndarray
    body: dict  # name -> id
    geom: dict  # name -> id
    geom_size: np.ndarray


def _randomize_joints(key, info: ModelInfo, limited_only: bool = False):
    """``qpos`` with dm_control's ``randomize_limited_and_rotational_joints``: limited
    hinges and slides uniform in their range, unlimited hinges uniform in [-π, π]
    (skipped with ``limited_only``, cheetah's own rule); the suite's tasks used here
    have no ball or free joints."""
    qpos = jnp.asarray(info.qpos0)
    keys = jax.random.split(key, len(info.jnt_type))
    for j, (kind, limited) in enumerate(zip(info.jnt_type, info.jnt_limited)):
        if kind not in (2, 3):  # mjJNT_SLIDE, mjJNT_HINGE
            raise NotImplementedError("ball and free joints are not randomised here")
        if limited:
            low, high = info.jnt_range[j]
        elif kind == 3 and not limited_only:
            low, high = -np.pi, np.pi
        else:
            continue
        value = jax.random.uniform(keys[j], (), minval=low, maxval=high)
        qpos = qpos.at[int(info.jnt_qposadr[j])].set(value)
    return qpos


def _zeros_target():
    return jnp.zeros(2)


def _control_cost(ctrl):
    return tolerance(ctrl, margin=1, value_at_margin=0, sigmoid="quadratic")


# Cartpole (dm_control/suite/cartpole.py, one pole).
def _cartpole_init(swing_up):
    def init(key, info):
        k1, k2, k3 = jax.random.split(key, 3)
        qpos = jnp.asarray(info.qpos0)
        if swing_up:
            qpos = qpos.at[0].set(0.01 * jax.random.normal(k1))
            qpos = qpos.at[1].set(jnp.pi + 0.01 * jax.random.normal(k2))
        else:
            qpos = qpos.at[0].set(jax.random.uniform(k1, (), minval=-0.1, maxval=0.1))
            qpos = qpos.at[1:].set(
                jax.random.uniform(k2, (info.nv - 1,), minval=-0.034, maxval=0.034))
        qvel = 0.01 * jax.random.normal(k3, (info.nv,))
        return qpos, qvel, _zeros_target()

    return init


def _cartpole_observe(d, target, info):
    pole = d.xmat[2:]
    position = jnp.concatenate([d.qpos[:1], jnp.stack([pole[:, 2, 2], pole[:, 0, 2]], -1).ravel()])
    return jnp.concatenate([position, d.qvel])


def _cartpole_reward(sparse):
    def reward(d, target, info):
        cart = d.qpos[0]
        cosine = d.xmat[2:, 2, 2]
        if sparse:
            return tolerance(cart, (-0.25, 0.25)) * tolerance(cosine, (0.995, 1)).prod()
        upright = (cosine + 1) / 2
        centered = (1 + tolerance(cart, margin=2)) / 2
        small_control = (4 + _control_cost(d.ctrl)[0]) / 5
        small_velocity = (1 + tolerance(d.qvel[1:], margin=5).min()) / 2
        return upright.mean() * small_control * small_velocity * centered

    return reward


# Pendulum (dm_control/suite/pendulum.py).
def _pendulum_init(key, info):
    qpos = jnp.asarray(info.qpos0).at[0].set(
        jax.random.uniform(key, (), minval=-jnp.pi, maxval=jnp.pi))
    return qpos, jnp.zeros(info.nv), _zeros_target()


def _pendulum_observe(d, target, info):
    pole = d.xmat[info.body["pole"]]
    return jnp.concatenate([jnp.stack([pole[2, 2], pole[0, 2]]), d.qvel])


def _pendulum_reward(d, target, info):
    return tolerance(d.xmat[info.body["pole"], 2, 2], (math.cos(math.radians(8)), 1))


# Point mass (dm_control/suite/point_mass.py, easy: fixed gains).
def _joints_init(key, info):
    return _randomize_joints(key, info), jnp.zeros(info.nv), _zeros_target()


def _position_velocity(d, target, info):
    return jnp.concatenate([d.qpos, d.qvel])


def _point_mass_reward(d, target, info):
    size = float(info.geom_size[info.geom["target"], 0])
    distance = jnp.linalg.norm(d.geom_xpos[info.geom["target"]]
                               - d.geom_xpos[info.geom["pointmass"]])
    near_target = tolerance(distance, bounds=(0, size), margin=size)
    small_control = (_control_cost(d.ctrl).mean() + 4) / 5
    return near_target * small_control


# Reacher (dm_control/suite/reacher.py). The target is a geom of the world body with
# contacts off: its position is state here instead of a model field.
def _reacher_init(key, info):
    k1, k2, k3 = jax.random.split(key, 3)
    qpos = _randomize_joints(k1, info)
    angle = jax.random.uniform(k2, (), minval=0.0, maxval=2 * jnp.pi)
    radius = jax.random.uniform(k3, (), minval=0.05, maxval=0.20)
    target = jnp.stack([radius * jnp.sin(angle), radius * jnp.cos(angle)])
    return qpos, jnp.zeros(info.nv), target


def _finger_to_target(d, target, info):
    return target - d.geom_xpos[info.geom["finger"], :2]


def _reacher_observe(d, target, info):
    return jnp.concatenate([d.qpos, _finger_to_target(d, target, info), d.qvel])


def _reacher_reward(d, target, info):
    radii = float(info.geom_size[info.geom["target"], 0]
                  + info.geom_size[info.geom["finger"], 0])
    return tolerance(jnp.linalg.norm(_finger_to_target(d, target, info)), (0, radii))


# Cheetah (dm_control/suite/cheetah.py).
def _cheetah_init(key, info):
    qpos = _randomize_joints(key, info, limited_only=True)
    return qpos, jnp.zeros(info.nv), _zeros_target()


def _cheetah_observe(d, target, info):
    return jnp.concatenate([d.qpos[1:], d.qvel])


def _cheetah_reward(d, target, info):
    speed = _subtree_linvel(d, info.body["torso"])[0]
    return tolerance(speed, bounds=(10, float("inf")), margin=10, value_at_margin=0,
                     sigmoid="linear")


# Walker (dm_control/suite/walker.py).
def _walker_observe(d, target, info):
    height = d.xpos[info.body["torso"], 2:3]
    orientations = jnp.stack([d.xmat[1:, 0, 0], d.xmat[1:, 0, 2]], -1).ravel()
    return jnp.concatenate([height, orientations, d.qvel])  # sorted keys


def _walker_reward(move_speed):
    def reward(d, target, info):
        torso = info.body["torso"]
        standing = tolerance(d.xpos[torso, 2], bounds=(1.2, float("inf")), margin=0.6)
        upright = (1 + d.xmat[torso, 2, 2]) / 2
        stand_reward = (3 * standing + upright) / 4
        if move_speed == 0:
            return stand_reward
        move = tolerance(_subtree_linvel(d, torso)[0], bounds=(move_speed, float("inf")),
                         margin=move_speed / 2, value_at_margin=0.5, sigmoid="linear")
        return stand_reward * (5 * move + 1) / 6

    return reward


def _subtree_linvel(d, body):
    return d._impl.subtree_linvel[body]


TASKS = {
    f"{t.domain}-{t.task}": t
    for t in (
        Task("cartpole", "balance", _cartpole_init(False), _cartpole_observe,
             _cartpole_reward(False)),
        Task("cartpole", "balance_sparse", _cartpole_init(False), _cartpole_observe,
             _cartpole_reward(True)),
        Task("cartpole", "swingup", _cartpole_init(True), _cartpole_observe,
             _cartpole_reward(False)),
        Task("cartpole", "swingup_sparse", _cartpole_init(True), _cartpole_observe,
             _cartpole_reward(True)),
        Task("pendulum", "swingup", _pendulum_init, _pendulum_observe, _pendulum_reward),
        Task("point_mass", "easy", _joints_init, _position_velocity, _point_mass_reward),
        Task("reacher", "easy", _reacher_init, _reacher_observe, _reacher_reward,
             geom_size={"target": 0.05}),
        Task("reacher", "hard", _reacher_init, _reacher_observe, _reacher_reward,
             geom_size={"target": 0.015}),
        Task("cheetah", "run", _cheetah_init, _cheetah_observe, _cheetah_reward,
             settle_steps=200, subtree_vel=True),
        Task("walker", "stand", _joints_init, _walker_observe, _walker_reward(0)),
        Task("walker", "walk", _joints_init, _walker_observe, _walker_reward(1),
             subtree_vel=True),
        Task("walker", "run", _joints_init, _walker_observe, _walker_reward(8),
             subtree_vel=True),
    )
}


def mjx_ids() -> tuple[str, ...]:
    return tuple(PREFIX + name for name in TASKS)


# --- loading -----------------------------------------------------------------------


def import_mjx():
    """``mujoco.mjx``, without the lines its optional Warp backend prints to stdout
    when Warp is not installed (purerl uses the JAX backend)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco import mjx
    except ImportError as e:
        raise _missing_extra(e) from None
    return mjx


def _missing_extra(e: ImportError) -> ImportError:
    return ImportError("mjx: environments need the [dmc] extra: pip install -e '.[dmc]' "
                       f"(dm_control, mujoco and mujoco-mjx), missing: {e.name}")


@functools.cache
def load_physics(name: str, solver: str = "dmc", x64: bool = False):
    """``(mjx_model, mj_model, n_sub_steps, info)`` of task ``name``
    (``"<domain>-<task>"``) with a solver setting; ``x64`` keys the cache (the device
    model's floats follow ``jax_enable_x64``). Needs dm_control (the ``[dmc]`` extra)
    for the model files, mujoco-mjx for the device model."""
    mjx = import_mjx()
    if "dm_control._render" not in sys.modules:
        # dm_control only loads the model files here; rendering is never used, and its
        # default (GLFW) warns on a machine without DISPLAY. The choice is fixed at
        # dm_control's import: a later dmc: pixel env in this process then says so.
        os.environ.setdefault("MUJOCO_GL", "disable")
    try:
        import mujoco
        from dm_control import suite
    except ImportError as e:
        raise _missing_extra(e) from None
    task = TASKS[name]
    env = suite.load(task.domain, task.task)
    model = copy.deepcopy(env.physics.model._model)  # a copy we may edit
    n_sub_steps = int(env._n_sub_steps)
    step_limit = env._step_limit
    env.physics.free()
    contacts = not model.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    if solver == "fast" and contacts:
        # MJX's contact cap is a model's custom numeric: compile the suite's XML again
        # with it (the same compiler dm_control's Physics.from_xml_string calls).
        xml, assets = importlib.import_module(
            f"dm_control.suite.{task.domain}").get_model_and_assets()
        spec = mujoco.MjSpec.from_string(xml, assets)
        spec.add_numeric(name="max_contact_points",
                         data=[FAST_SOLVER["max_contact_points"]])
        model = spec.compile()
    if task.settle_steps and model.opt.integrator != mujoco.mjtIntegrator.mjINT_EULER:
        # The settle's first step (see make_mjx) is written for Euler's mj_step2.
        raise NotImplementedError(f"{name}: settling is written for the Euler integrator")
    if not math.isclose(step_limit, EPISODE_CONTROL_STEPS):
        raise AssertionError(f"{name}: dm_control's step limit is {step_limit}")
    names = {
        "body": {model.body(i).name: i for i in range(model.nbody)},
        "geom": {model.geom(i).name: i for i in range(model.ngeom)},
    }
    for geom, size in (task.geom_size or {}).items():
        model.geom_size[names["geom"][geom], 0] = size
    # The energy flag only adds diagnostics (mjData.energy), which MJX does not compute.
    model.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_ENERGY)
    if solver == "fast":
        model.opt.iterations = FAST_SOLVER["iterations"]
        model.opt.ls_iterations = FAST_SOLVER["ls_iterations"]
    info = ModelInfo(
        qpos0=np.array(model.qpos0), nv=int(model.nv),
        jnt_type=np.array(model.jnt_type), jnt_limited=np.array(model.jnt_limited),
        jnt_range=np.array(model.jnt_range), jnt_qposadr=np.array(model.jnt_qposadr),
        body=names["body"], geom=names["geom"], geom_size=np.array(model.geom_size),
    )
    return mjx.put_model(model, impl="jax"), model, n_sub_steps, info


# --- the environment ---------------------------------------------------------------


def kinematics(model, d, task: Task):
    """What dm_control's step ends with (``mj_step1``), as far as ``task`` reads it:
    body and geom poses, and the subtree linear velocities if the task needs them."""
    mjx = import_mjx()
    d = mjx.kinematics(model, d)
    if task.subtree_vel:
        d = mjx.subtree_vel(model, mjx.com_vel(model, mjx.com_pos(model, d)))
    return d



@struct.dataclass
class MJXState:
    data: object  # mujoco.mjx.Data
    target: jax.Array  # [2] the reacher's target position; zeros for other tasks
    steps: jax.Array  # int32 control steps taken in this episode
    episode_return: jax.Array  # float32 running return of the current episode
    episode_length: jax.Array  # int32 agent steps in the current episode


def make_mjx(env_id: str, *, solver: str = "dmc", action_repeat: int = 1) -> Env:
    """``mjx:<domain>-<task>`` as a purerl ``Env`` (see the module docstring).

    Args:
      env_id: one of ``mjx_ids()``.
      solver: ``"dmc"`` (dm_control's solver options) or ``"fast"``
        (``FAST_SOLVER``, a deviation for throughput).
      action_repeat: control steps per agent step, rewards summed.

    Raises:
      ValueError: an unknown id, solver or a bad action repeat.
    """
    mjx = import_mjx()
    name = env_id[len(PREFIX):] if env_id.startswith(PREFIX) else env_id
    if name not in TASKS:
        raise ValueError(f"unknown mjx id {env_id!r}; known ids: {', '.join(mjx_ids())}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if isinstance(action_repeat, bool) or int(action_repeat) != action_repeat \
            or action_repeat < 1:
        raise ValueError(f"action_repeat must be an integer >= 1, got {action_repeat!r}")
    action_repeat = int(action_repeat)
    task = TASKS[name]
    model, mj_model, n_sub_steps, info = load_physics(
        name, solver, bool(jax.config.jax_enable_x64))
    template = mjx.make_data(model, impl="jax")
    float_dtype = template.qpos.dtype
    low, high = mj_model.actuator_ctrlrange.T

    def sync(d):
        return kinematics(model, d, task)

    def physics_steps(d, n):
        return jax.lax.fori_loop(0, n, lambda _, x: mjx.step(model, x), d)

    def observe(d, target):
        return task.observe(d, target, info).astype(jnp.float32)

    def start(key):
        qpos, qvel, target = task.init(key, info)
        d = template.replace(qpos=qpos.astype(float_dtype), qvel=qvel.astype(float_dtype))
        if task.settle_steps:
            # dm_control's legacy step finishes the step that the last mj_step1 began:
            # the first settling step takes its forces from the pose the reset's forward
            # pass saw (qpos0, at rest) and integrates the randomised pose with them.
            rest = mjx.forward(model, template)
            d = mjx.euler(model, rest.replace(qpos=d.qpos, qvel=d.qvel))
            d = physics_steps(d, task.settle_steps - 1).replace(
                time=jnp.zeros((), float_dtype))
        # What observe and reward read (poses, subtree velocities), not a whole forward
        # pass: the next mjx.step begins with its own forward from qpos, qvel and ctrl
        # (and reads qacc_warmstart, which forward does not write), so the physics is
        # the same, and every copy of the reset (init, and each rollout's auto-reset)
        # compiles without a second constraint solver.
        return sync(d), target.astype(float_dtype)

    spec = T.EnvSpec(
        obs_shape=jax.eval_shape(lambda k: observe(*start(k)), jax.random.key(0)).shape,
        obs_dtype="float32",
        action_space=T.Box(low=tuple(float(x) for x in low),
                           high=tuple(float(x) for x in high), shape=(mj_model.nu,)),
        max_episode_steps=math.ceil(EPISODE_CONTROL_STEPS / action_repeat),
        name=PREFIX + name,
    )

    def reset(key):
        d, target = start(key)
        state = MJXState(d, target, jnp.int32(0), jnp.float32(0.0), jnp.int32(0))
        obs = observe(d, target)
        info_ = {"final_obs": obs, "episode_return": state.episode_return,
                 "episode_length": state.episode_length}
        return state, T.TimeStep(obs, jnp.float32(0.0), jnp.bool_(False),
                                 jnp.bool_(False), info_)

    # A fresh episode where one ended; under vmap it runs only when some env needs it.
    restart = when(lambda k: MJXState(*start(k), jnp.int32(0), jnp.float32(0.0), jnp.int32(0)))

    def step(state, action, key):
        action = jnp.clip(jnp.asarray(action, float_dtype).reshape(spec.action_space.shape),
                          low, high)

        def control_step(carry, _):
            d, steps, total = carry
            new = sync(physics_steps(d, n_sub_steps))
            reward = task.reward(new, state.target, info).astype(jnp.float32)
            if EPISODE_CONTROL_STEPS % action_repeat == 0:  # every agent step runs k
                return (new, steps + 1, total + reward), None
            live = steps < EPISODE_CONTROL_STEPS  # the last agent step may run fewer
            d = jax.tree.map(lambda a, b: jnp.where(live, a, b), new, d)
            return (d, steps + live, total + jnp.where(live, reward, 0.0)), None

        (d, steps, reward), _ = jax.lax.scan(
            control_step, (state.data.replace(ctrl=action), state.steps, jnp.float32(0.0)),
            None, length=action_repeat)
        final_obs = observe(d, state.target)
        truncated = steps >= EPISODE_CONTROL_STEPS
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        after = MJXState(d, state.target, steps, jnp.where(truncated, 0.0, episode_return),
                         jnp.where(truncated, 0, episode_length))
        new_state = restart(truncated, key, after)
        ts = T.TimeStep(
            observe(new_state.data, new_state.target), reward, jnp.bool_(False),
            truncated,
            {"final_obs": final_obs, "episode_return": episode_return,
             "episode_length": episode_length},
        )
        return new_state, ts

    # jit, so that MJX's long Python trace is done once per shape of one env: the
    # training and the evaluation rollouts (vmapped over different env counts) and
    # init then batch the same cached jaxpr instead of tracing MJX again (the program
    # is the same; XLA inlines the call).
    return Env(reset=jax.jit(reset), step=jax.jit(step), spec=spec)
