"""Shared types and the axis conventions, written once.

Axis conventions:
  * A single environment produces unbatched arrays: ``obs`` is ``obs_shape``.
  * A vectorised environment adds a leading env axis ``B``: ``obs`` is ``[B, *obs_shape]``.
  * Trajectories are time-major, ``[T, B, ...]``; primitives in ``purerl.ops`` scan over
    axis 0 and accept any trailing batch dims.
  * ``rewards[t]`` is the reward for ``actions[t]`` taken in ``obs[t]``;
    ``discounts[t] = gamma * (1 - terminated[t])``.
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax


@dataclass(frozen=True)
class Discrete:
    """``n`` actions, encoded as int32 scalars in ``[0, n)``."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


@dataclass(frozen=True)
class Box:
    """Real vectors of ``shape`` with elementwise bounds ``low``/``high`` (tuples)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment; hashable, so it can key a jit cache."""

    obs_shape: tuple[int, ...]
    obs_dtype: str
    action_space: Discrete | Box
    max_episode_steps: int | None
    name: str = ""


class TimeStep(NamedTuple):
    """What an environment returns from ``reset`` and ``step``.

    ``obs`` is the observation to act on next: after an episode ends, it is already the
    first observation of the next episode, and the true last observation is kept in
    ``info["final_obs"]`` (for steps that did not end an episode it equals ``obs``).
    ``info`` also holds ``episode_return`` and ``episode_length``: the running totals of
    the episode this step belongs to, so at a step with ``terminated | truncated`` they
    are the completed episode's.
    """

    obs: jax.Array
    reward: jax.Array  # float32
    terminated: jax.Array  # bool: the MDP reached a terminal state; do not bootstrap
    truncated: jax.Array  # bool: cut by a time limit; bootstrap from final_obs
    info: dict[str, Any]


class Transition(NamedTuple):
    """What ``update`` receives (the driver builds it, ``purerl.memory.to_batch``):
    a rollout or sequence windows, time-major ``[T, B, ...]``, or a flat replay
    sample ``[B, ...]``.

    ``gamma`` and ``reward_scale`` are the algorithm's declared values
    (``AlgoSpec.discounting``). Two ways to bootstrap, one per kind of learner:

    * agents with ``Agent.value`` (a state-value critic): ``reward`` is the env's
      reward times ``reward_scale``, plus ``gamma * V(next_obs)`` on steps cut by a
      time limit, and ``discount`` is ``gamma * (1 - (terminated | truncated))``: both
      kinds of episode end stop the recursion, and the value lost at a cut is already
      in its reward. ``extras["value"]`` is V(obs), ``bootstrap_value`` V of the
      observation after the last step (time-major batches; zeros for flat ones).
    * agents that bootstrap from ``next_obs`` themselves (Q-learning, SAC): ``reward``
      is the scaled reward alone (no ``value``, nothing added) and
      ``next_obs_discount = gamma * (1 - terminated)``: a step cut by a time limit
      keeps its discount, so the target bootstraps from its true last observation.

    ``first`` marks each step whose ``obs`` began an episode, as ``act`` saw it.
    ``action`` is what ``act`` returned (in env units: a ``Box`` action is bounded by
    the env's ``low``/``high``). ``env_steps`` is the seed's env-step count when the
    batch was built (an int32 scalar), only for a spec with ``reads_env_steps``; None
    otherwise.
    """

    obs: jax.Array  # [T, B, *obs_shape]
    action: jax.Array  # [T, B, *action_shape]
    reward: jax.Array  # [T, B] float32
    discount: jax.Array  # [T, B] float32
    terminated: jax.Array  # [T, B] bool
    truncated: jax.Array  # [T, B] bool
    extras: dict[str, jax.Array]  # from act: log_prob, value, ... each [T, B, ...]
    bootstrap_value: jax.Array  # [B] float32
    # [T, B, *obs_shape], the true observation after each step (``info["final_obs"]``
    # where an episode ended): what an off-policy learner needs to re-bootstrap a
    # stored segment with its current critic. Unused fields are dropped by XLA.
    next_obs: jax.Array | None = None
    first: jax.Array | None = None  # [T, B] bool: obs is an episode's first
    next_obs_discount: jax.Array | None = None  # [T, B] float32 gamma * (1 - terminated)
    env_steps: jax.Array | None = None  # int32 scalar (reads_env_steps only)
