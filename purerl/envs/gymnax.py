"""Adapter for gymnax >= 1.0 environments (whose ``step`` returns 6 values)."""

import jax
import jax.numpy as jnp
from flax import struct

import purerl.types as T
from purerl.envs.core import Env


@struct.dataclass
class GymnaxState:
    env_state: object
    episode_return: jax.Array  # float32 running return of the current episode
    episode_length: jax.Array  # int32 running length of the current episode


def _space(space) -> T.Discrete | T.Box:
    if hasattr(space, "n"):
        return T.Discrete(int(space.n))
    shape = tuple(int(s) for s in space.shape)
    low = tuple(float(x) for x in jnp.broadcast_to(space.low, shape).ravel())
    high = tuple(float(x) for x in jnp.broadcast_to(space.high, shape).ravel())
    return T.Box(low=low, high=high, shape=shape)


def from_gymnax(env, params=None, name: str = "") -> Env:
    """Wrap a gymnax ``Environment`` (and its params) as a purerl ``Env``.

    Observations are cast to float32; continuous actions are clipped to the action
    bounds before they reach the environment. A ``"metrics"`` dict in the info of
    the env's ``step_env`` is passed on as ``info["metrics"]`` (see purerl.loops).
    """
    params = env.default_params if params is None else params
    obs_space = env.observation_space(params)
    action_space = _space(env.action_space(params))
    max_steps = getattr(params, "max_steps_in_episode", None)
    spec = T.EnvSpec(
        obs_shape=tuple(int(s) for s in obs_space.shape),
        obs_dtype="float32",
        action_space=action_space,
        max_episode_steps=None if max_steps is None else int(max_steps),
        name=name,
    )
    if isinstance(action_space, T.Box):
        low = jnp.asarray(action_space.low, jnp.float32).reshape(action_space.shape)
        high = jnp.asarray(action_space.high, jnp.float32).reshape(action_space.shape)

    def reset(key):
        obs, env_state = env.reset(key, params)
        obs = obs.astype(jnp.float32)
        state = GymnaxState(env_state, jnp.float32(0.0), jnp.int32(0))
        info = {
            "final_obs": obs,
            "episode_return": state.episode_return,
            "episode_length": state.episode_length,
        }
        return state, T.TimeStep(obs, jnp.float32(0.0), jnp.bool_(False), jnp.bool_(False), info)

    def step(state, action, key):
        if isinstance(action_space, T.Box):
            action = jnp.clip(action, low, high)
        obs, env_state, reward, terminated, truncated, info = env.step(
            key, state.env_state, action, params
        )
        reward = jnp.asarray(reward, jnp.float32).reshape(())
        terminated = jnp.asarray(terminated, jnp.bool_).reshape(())
        # A step that both terminates and hits the limit is a termination.
        truncated = jnp.asarray(truncated, jnp.bool_).reshape(()) & ~terminated
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        done = terminated | truncated
        new_state = GymnaxState(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        info = {
            "final_obs": info["final_observation"].astype(jnp.float32),
            "episode_return": episode_return,
            "episode_length": episode_length,
            # Env-reported per-step values; the driver averages them per block.
            **({"metrics": info["metrics"]} if "metrics" in info else {}),
        }
        ts = T.TimeStep(obs.astype(jnp.float32), reward, terminated, truncated, info)
        return new_state, ts

    return Env(reset=reset, step=step, spec=spec)
