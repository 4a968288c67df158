"""Host environments: Gymnasium vector envs and dm_control suite tasks, run in Python.

    host = purerl.envs.make_host("gymnasium:CartPole-v1", num_envs=4)
    host = purerl.envs.make_host("dmc:walker-walk", num_envs=4, pixels=True)
    ts = host.reset()          # TimeStep of numpy arrays, batch-first [num_envs, ...]
    ts = host.step(actions)    # auto-resets, like the JAX envs

They keep the TimeStep semantics of ``purerl.envs.gymnax`` exactly: ``terminated`` and
``truncated`` are separate (a step that is both counts as terminated); an env whose
episode ended has already been reset, its true last observation is in
``info["final_obs"]`` (equal to ``obs`` for the others); ``info["episode_return"]`` and
``info["episode_length"]`` are the running totals including this step, i.e. the
finished episode's at a step that ended one. Observations are float32, except pixel
observations, which stay uint8 (channels-last, frames stacked on the channel axis).
Box actions are clipped to their bounds.

dm_control renders with ``MUJOCO_GL``: if it is unset, the first of ``egl`` and
``osmesa`` that can render (tried once per process, in a subprocess) is set before
dm_control is imported.
"""

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np

import purerl.types as T

PREFIXES = ("gymnasium:", "dmc:")


class HostEnv:
    """``num_envs`` environments that run on the host, one batched TimeStep at a time.

    Subclasses implement ``_reset(seed) -> obs`` and
    ``_step(actions) -> (obs, reward, terminated, truncated, final_obs)`` (numpy, with
    auto-reset), optionally with a sixth element, a dict of per-step ``[num_envs]``
    values that become ``info["metrics"]`` (see purerl.loops); this class adds the
    episode statistics, checks and clips actions.

    Attributes:
      spec: ``EnvSpec`` of one environment (no env axis).
      num_envs: size of the leading env axis of every array.
    """

    def __init__(self, spec: T.EnvSpec, num_envs: int, seed: int):
        self.spec = spec
        self.num_envs = num_envs
        self._seed = seed
        self._seeded = False
        self._return = None  # float32 [num_envs] running returns; None before reset
        self._length = None  # int32 [num_envs] running lengths
        space = spec.action_space
        if isinstance(space, T.Box):
            self._low = np.asarray(space.low, np.float32).reshape(space.shape)
            self._high = np.asarray(space.high, np.float32).reshape(space.shape)

    def reset(self, seed: int | None = None) -> T.TimeStep:
        """Start a new episode in every env.

        Env ``i`` is seeded with ``seed + i``. Without ``seed`` the first reset uses the
        ``seed`` given to ``make_host`` and later ones continue the envs' own streams.
        """
        if seed is None and not self._seeded:
            seed = self._seed
        self._seeded = True
        obs = self._reset(seed)
        n = self.num_envs
        self._return = np.zeros(n, np.float32)
        self._length = np.zeros(n, np.int32)
        info = {
            "final_obs": obs,
            "episode_return": self._return.copy(),
            "episode_length": self._length.copy(),
        }
        return T.TimeStep(obs, np.zeros(n, np.float32), np.zeros(n, bool),
                          np.zeros(n, bool), info)

    def step(self, actions) -> T.TimeStep:
        """One step of every env with ``actions`` ``[num_envs, *action_shape]``."""
        if self._return is None:
            raise RuntimeError("call reset() before step()")
        space = self.spec.action_space
        actions = np.asarray(actions)
        expected = (self.num_envs, *space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        if isinstance(space, T.Box):
            actions = np.clip(actions.astype(np.float32), self._low, self._high)
        else:
            actions = actions.astype(np.int64)
        obs, reward, terminated, truncated, final_obs, *metrics = self._step(actions)
        reward = np.asarray(reward, np.float32)
        terminated = np.asarray(terminated, bool)
        # A step that both terminates and hits the limit is a termination.
        truncated = np.asarray(truncated, bool) & ~terminated
        episode_return = self._return + reward
        episode_length = self._length + 1
        done = terminated | truncated
        self._return = np.where(done, 0.0, episode_return).astype(np.float32)
        self._length = np.where(done, 0, episode_length).astype(np.int32)
        info = {
            "final_obs": final_obs,
            "episode_return": episode_return,
            "episode_length": episode_length,
        }
        if metrics:
            info["metrics"] = {k: np.asarray(v, np.float32) for k, v in metrics[0].items()}
        return T.TimeStep(obs, reward, terminated, truncated, info)

    def close(self) -> None:
        """Release the environments."""

    def _reset(self, seed):
        raise NotImplementedError

    def _step(self, actions):
        raise NotImplementedError


def make_host(
    env_id: str,
    num_envs: int = 1,
    *,
    seed: int = 0,
    pixels: bool = False,
    action_repeat: int = 1,
    frame_stack: int = 1,
    image_size: int = 84,
    camera_id: int = 0,
    **kwargs,
) -> HostEnv:
    """Build ``num_envs`` host environments by id.

    Args:
      env_id: ``"gymnasium:<id>"`` (any registered Gymnasium id, e.g.
        ``"gymnasium:CartPole-v1"``) or ``"dmc:<domain>-<task>"`` (a dm_control suite
        task, e.g. ``"dmc:cartpole-swingup"``; needs the ``[dmc]`` extra).
      num_envs: environments stepped together (the leading axis of every array).
      seed: env ``i`` is seeded with ``seed + i`` at the first ``reset()``.
      pixels: dm_control only: observe ``image_size`` x ``image_size`` RGB renders
        (uint8) instead of the state vector.
      action_repeat: dm_control only: repeat each action this many times and sum the
        rewards; the episode length bound shrinks accordingly.
      frame_stack: dm_control only: observe the last ``frame_stack`` observations
        concatenated on the last axis (channels, for pixels); at a reset the first
        observation fills every slot.
      image_size: dm_control only: height and width of pixel observations.
      camera_id: dm_control only: the camera pixel observations are rendered from.
      **kwargs: Gymnasium: passed to ``gymnasium.make`` (e.g.
        ``max_episode_steps=200``); dm_control: ``task_kwargs`` (e.g.
        ``{"time_limit": 5}``) and ``environment_kwargs`` for ``suite.load``.

    Raises:
      ValueError: an unknown prefix, id, domain or task, or a bad option.
      ImportError: dm_control is not installed.
      RuntimeError: pixels were asked for and no OpenGL renderer works.
    """
    for name, value in (("num_envs", num_envs), ("action_repeat", action_repeat),
                        ("frame_stack", frame_stack), ("image_size", image_size)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if env_id.startswith("gymnasium:"):
        if pixels or action_repeat != 1 or frame_stack != 1:
            raise ValueError(
                "pixels, action_repeat and frame_stack are dm_control options; wrap "
                "Gymnasium envs yourself (gymnasium.wrappers) for these"
            )
        return GymnasiumEnv(env_id[len("gymnasium:"):], num_envs, seed, **kwargs)
    if env_id.startswith("dmc:"):
        return DMCEnv(env_id[len("dmc:"):], num_envs, seed, pixels=pixels,
                      action_repeat=action_repeat, frame_stack=frame_stack,
                      image_size=image_size, camera_id=camera_id, **kwargs)
    raise ValueError(
        f"unknown host env id {env_id!r}: it must start with one of {list(PREFIXES)}, "
        f"e.g. 'gymnasium:CartPole-v1' or 'dmc:cartpole-swingup'"
    )


def _box(low, high, shape) -> T.Box:
    """A ``Box`` from array-like bounds (broadcast to ``shape``)."""
    shape = tuple(int(s) for s in shape)
    return T.Box(
        low=tuple(float(x) for x in np.broadcast_to(low, shape).ravel()),
        high=tuple(float(x) for x in np.broadcast_to(high, shape).ravel()),
        shape=shape,
    )


# --- Gymnasium ---------------------------------------------------------------------


def _gym_action_space(space) -> T.Discrete | T.Box:
    import gymnasium

    if isinstance(space, gymnasium.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete action spaces must start at 0, got {space}")
        return T.Discrete(int(space.n))
    if isinstance(space, gymnasium.spaces.Box):
        return _box(space.low, space.high, space.shape)
    raise ValueError(f"unsupported action space {space}: purerl needs Discrete or Box")


class GymnasiumEnv(HostEnv):
    """A Gymnasium ``SyncVectorEnv`` in same-step auto-reset mode: the step that ends
    an episode returns the next episode's first observation and the final one in its
    info, so nothing is lost and no step is wasted on a reset."""

    def __init__(self, gym_id: str, num_envs: int, seed: int, **kwargs):
        import gymnasium
        from gymnasium.vector import AutoresetMode

        try:
            self._vec = gymnasium.make_vec(
                gym_id,
                num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                **kwargs,
            )
        except (gymnasium.error.UnregisteredEnv, gymnasium.error.DeprecatedEnv) as e:
            raise ValueError(
                f"unknown gymnasium id {gym_id!r}: {e} (gymnasium.pprint_registry() "
                "lists the registered ids)"
            ) from None
        obs_space = self._vec.single_observation_space
        try:
            if not isinstance(obs_space, gymnasium.spaces.Box):
                raise ValueError(
                    f"unsupported observation space {obs_space}: purerl needs a Box"
                )
            action_space = _gym_action_space(self._vec.single_action_space)
        except ValueError:
            self._vec.close()
            raise
        # Images stay uint8; everything else becomes float32, as in the JAX envs.
        image = obs_space.dtype == np.uint8
        self._obs_dtype = np.uint8 if image else np.float32
        single = self._vec.envs[0].spec
        spec = T.EnvSpec(
            obs_shape=tuple(int(s) for s in obs_space.shape),
            obs_dtype="uint8" if image else "float32",
            action_space=action_space,
            max_episode_steps=single.max_episode_steps if single else None,
            name=f"gymnasium:{gym_id}",
        )
        super().__init__(spec, num_envs, seed)

    def _reset(self, seed):
        obs, _ = self._vec.reset(seed=seed)
        return np.asarray(obs, self._obs_dtype)

    def _step(self, actions):
        obs, reward, terminated, truncated, info = self._vec.step(actions)
        obs = np.asarray(obs, self._obs_dtype)
        final_obs = obs.copy()
        # info["final_obs"] is an object array, filled where info["_final_obs"] is set.
        for i in np.flatnonzero(info.get("_final_obs", np.zeros(self.num_envs, bool))):
            final_obs[i] = info["final_obs"][i]
        return obs, reward, terminated, truncated, final_obs

    def close(self) -> None:
        self._vec.close()


# --- dm_control --------------------------------------------------------------------

_RENDERERS = ("egl", "osmesa")
# Renders one frame of an empty model: exits 0 and prints "ok" only if MUJOCO_GL works.
_PROBE = (
    "import os\n"
    "from dm_control import mujoco\n"
    "mujoco.Physics.from_xml_string('<mujoco/>').render(8, 8)\n"
    "print('ok', flush=True)\n"
    "os._exit(0)\n"
)
_renderer_failures: dict[str, str] = {}  # MUJOCO_GL value -> why the probe failed


def _probe_renderer(backend: str) -> bool:
    """Whether dm_control can render with ``MUJOCO_GL=backend``, tried in a subprocess
    (the backend is fixed at dm_control's import, so one process cannot try twice)."""
    env = dict(os.environ, MUJOCO_GL=backend)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env,
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        _renderer_failures[backend] = "timed out"
        return False
    if out.returncode == 0 and "ok" in out.stdout:
        return True
    lines = (out.stderr or out.stdout).strip().splitlines()
    why = lines[-1] if lines else f"exit status {out.returncode}"
    _renderer_failures[backend] = why
    return False


def _choose_renderer() -> None:
    """Set ``MUJOCO_GL`` before dm_control's first import: the user's value if set,
    else the first of egl / osmesa that renders, else ``disable`` (state observations
    still work; pixel envs then raise a clear error)."""
    if "dm_control._render" in sys.modules or os.environ.get("MUJOCO_GL"):
        return
    for backend in _RENDERERS:
        if _probe_renderer(backend):
            os.environ["MUJOCO_GL"] = backend
            return
    os.environ["MUJOCO_GL"] = "disable"


def _renderer_error(problem: str) -> RuntimeError:
    tried = "; ".join(f"MUJOCO_GL={b}: {why}" for b, why in _renderer_failures.items())
    if tried:
        problem += f" (tried {tried})"
    return RuntimeError(
        f"{problem}. Headless rendering uses "
        "MUJOCO_GL=egl (apt-get install libegl1 libgl1-mesa-dri, or an NVIDIA driver) "
        "or MUJOCO_GL=osmesa (apt-get install libosmesa6); set MUJOCO_GL before "
        "dm_control is first imported."
    )


def _flatten(observation: dict) -> np.ndarray:
    """A dm_control observation dict as one float32 vector, keys in sorted order."""
    return np.concatenate(
        [np.asarray(observation[k], np.float32).ravel() for k in sorted(observation)]
    )


class DMCEnv(HostEnv):
    """dm_control suite tasks. The suite's time limit (1000 control steps for most
    tasks, so ``ceil(1000 / action_repeat)`` steps here) is a truncation: dm_control
    ends the episode with discount 1; an episode ending with discount 0 is a
    termination."""

    def __init__(self, task_id: str, num_envs: int, seed: int, *, pixels: bool,
                 action_repeat: int, frame_stack: int, image_size: int,
                 camera_id: int, task_kwargs: dict | None = None,
                 environment_kwargs: dict | None = None, **unknown):
        if unknown:
            raise ValueError(
                f"unknown dm_control options {sorted(unknown)}: pass task options in "
                "task_kwargs and environment options in environment_kwargs"
            )
        if importlib.util.find_spec("dm_control") is None:
            raise ImportError(
                "dm_control environments need the [dmc] extra: pip install -e '.[dmc]' "
                "(dm_control==1.0.50, mujoco==3.17.0)"
            )
        _choose_renderer()
        try:
            from dm_control import suite
        except Exception as e:  # noqa: BLE001 - dm_control fixes MUJOCO_GL at import
            raise _renderer_error(
                f"dm_control failed to import with MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')} ({type(e).__name__}: {e})"
            ) from e

        domain, _, task = task_id.partition("-")
        if domain not in suite.TASKS_BY_DOMAIN:
            domains = ", ".join(sorted(suite.TASKS_BY_DOMAIN))
            raise ValueError(
                f"unknown dm_control domain {domain!r} in 'dmc:{task_id}' (ids are "
                f"'dmc:<domain>-<task>'); domains: {domains}"
            )
        if (domain, task) not in suite.ALL_TASKS:
            raise ValueError(
                f"unknown dm_control task {task!r} of domain {domain!r}; its tasks: "
                f"{', '.join(suite.TASKS_BY_DOMAIN[domain])} (benchmarking set: "
                f"{', '.join(f'{d}-{t}' for d, t in suite.BENCHMARKING)})"
            )
        self._envs = [
            suite.load(domain, task,
                       task_kwargs={**(task_kwargs or {}), "random": seed + i},
                       environment_kwargs=environment_kwargs)
            for i in range(num_envs)
        ]
        self._pixels = pixels
        self._repeat = action_repeat
        self._stack = frame_stack
        self._size = image_size
        self._camera = camera_id
        env = self._envs[0]
        if pixels:
            # dm_control's canonical name for "no renderer" is "off".
            backend = sys.modules["dm_control._render"].BACKEND
            if backend in (None, "off"):
                self.close()
                raise _renderer_error(
                    "dm_control pixel observations need an OpenGL renderer, and none "
                    f"works (MUJOCO_GL={os.environ.get('MUJOCO_GL')})"
                )
            if backend == "glfw" and not (os.environ.get("DISPLAY")
                                          or os.environ.get("WAYLAND_DISPLAY")):
                # dm_control was imported before purerl chose a renderer and took its
                # default, GLFW; without a display, rendering with it can crash the
                # process instead of raising.
                self.close()
                raise _renderer_error(
                    "dm_control was imported before purerl chose a renderer and uses "
                    "GLFW, which needs a display (DISPLAY is not set)"
                )
            try:
                frame_shape = self._observe(env, None).shape
            except Exception as e:  # noqa: BLE001 - any render failure means the same
                self.close()
                raise _renderer_error(
                    f"dm_control could not render with MUJOCO_GL="
                    f"{os.environ.get('MUJOCO_GL')} ({type(e).__name__}: {e})"
                ) from e
        else:
            sizes = [int(np.prod(a.shape)) for a in env.observation_spec().values()]
            frame_shape = (sum(sizes),)
        obs_shape = (*frame_shape[:-1], frame_shape[-1] * frame_stack)
        action = env.action_spec()
        # An episode ends after the first control step with step_count >= _step_limit
        # (time limit / control timestep, a float; dm_control has no public accessor).
        step_limit = getattr(env, "_step_limit", math.inf)
        if math.isinf(step_limit):
            max_steps = None
        else:
            max_steps = math.ceil(math.ceil(step_limit) / action_repeat)
        spec = T.EnvSpec(
            obs_shape=obs_shape,
            obs_dtype="uint8" if pixels else "float32",
            action_space=_box(action.minimum, action.maximum, action.shape),
            max_episode_steps=max_steps,
            name=f"dmc:{task_id}",
        )
        self._frames = np.zeros((num_envs, *obs_shape), spec.obs_dtype)
        super().__init__(spec, num_envs, seed)

    def _observe(self, env, time_step) -> np.ndarray:
        """One frame: the rendered image (uint8 [H, W, 3]) or the flat state vector."""
        if self._pixels:
            return env.physics.render(height=self._size, width=self._size,
                                      camera_id=self._camera)
        return _flatten(time_step.observation)

    def _start(self, i: int) -> None:
        """Reset env ``i`` and fill its frame stack with the first observation."""
        frame = self._observe(self._envs[i], self._envs[i].reset())
        self._frames[i] = np.concatenate([frame] * self._stack, axis=-1)

    def _reset(self, seed):
        for i, env in enumerate(self._envs):
            if seed is not None:
                env.task.random.seed(seed + i)
            self._start(i)
        return self._frames.copy()

    def _step(self, actions):
        n = self.num_envs
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        final_obs = np.empty_like(self._frames)
        for i, env in enumerate(self._envs):
            total = 0.0
            for _ in range(self._repeat):
                time_step = env.step(actions[i].astype(np.float64))
                total += time_step.reward
                if time_step.last():
                    break
            reward[i] = total
            frame = self._observe(env, time_step)
            # Drop the oldest frame, append the new one (on the last axis).
            kept = self._frames[i][..., frame.shape[-1]:]
            self._frames[i] = np.concatenate([kept, frame], axis=-1)
            final_obs[i] = self._frames[i]
            if time_step.last():
                terminated[i] = time_step.discount == 0.0
                truncated[i] = not terminated[i]
                self._start(i)
        return self._frames.copy(), reward, terminated, truncated, final_obs

    def close(self) -> None:
        for env in self._envs:
            env.physics.free()
        self._envs = []
