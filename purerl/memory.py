"""Experience memory owned by the loop: one small interface over three kinds.

An algorithm module says what it needs; the loop keeps the memory in its runner,
writes every rollout to it and decides when to train:

* no ``AlgoSpec.replay`` (on-policy): the memory is the last rollout, ``[T, B]``,
  handed to one ``update`` and dropped;
* ``AlgoSpec.replay(config) -> Replay(...)`` with ``sequence_length == 0``: a flat ring of
  transitions (``buffers.flat_*``); every training round samples ``batch_size`` of
  them, ``updates`` times;
* ``sequence_length = L > 0``: one time-major stream per env (``buffers.seq_*``);
  samples are windows ``[L, batch_size]`` of consecutive steps (Off-PAC's segments,
  Dreamer's sequences).

What is stored is the rollout record, raw: ``obs``, ``action``, ``reward`` (unscaled),
``terminated``, ``truncated``, ``next_obs`` (the true next observation, the final one
at an episode end), ``first`` (True on an episode's first step) and the ``extras`` of
``act``. The loop turns a sample into the ``Transition`` an ``update`` takes only when
it trains (``to_batch``): rewards are scaled and steps cut by a time limit are
bootstrapped with the *current* critic, never with one frozen at collection time.

``Memory`` is ``init(example, num_envs) / add(state, records) / sample(state, key) /
ready(state)``; ``init`` takes one step's record (``jax.ShapeDtypeStruct`` leaves,
``example``). Both loops build records with ``record`` and batches with ``to_batch``.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from purerl import buffers
from purerl.algos.base import spec_of
from purerl.types import Discrete, Transition


class Replay(NamedTuple):
    """What a replay-based algorithm asks of the loop."""

    capacity: int
    """Steps kept per seed, all training envs together (a sequence memory keeps
    ``capacity // num_envs`` steps of each env)."""
    batch_size: int
    """Transitions (flat) or windows (sequences) per update."""
    updates: int = 1
    """Updates per training round; a round follows every iteration of the loop
    (``RunConfig.num_envs * num_steps`` env steps)."""
    learning_starts: int = 0
    """Env steps per seed taken with uniform random actions, and without training,
    before the first round (prefill)."""
    sequence_length: int = 0
    """0: flat transitions; L > 0: windows of L consecutive steps of one env."""


class Memory(NamedTuple):
    init: Callable  # (example_record, num_envs) -> state
    add: Callable  # (state, records [T, B, ...]) -> state
    sample: Callable  # (state, key) -> records [batch] (flat) or [L, batch] (sequences)
    ready: Callable  # state -> bool scalar: enough stored to sample
    replay: Replay | None  # None for the on-policy rollout memory


def rollout() -> Memory:
    """The on-policy memory: exactly the last rollout."""
    return Memory(
        init=lambda example, num_envs: (),
        add=lambda state, records: records,
        sample=lambda state, key: state,
        ready=lambda state: jnp.bool_(True),
        replay=None,
    )


def flat(replay: Replay) -> Memory:
    """A flat ring of ``replay.capacity`` transitions, sampled uniformly."""

    def add(state, records):
        items = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), records)
        return buffers.flat_add(state, items)

    return Memory(
        init=lambda example, num_envs: buffers.flat_init(example, replay.capacity),
        add=add,
        sample=lambda state, key: buffers.flat_sample(state, key, replay.batch_size),
        ready=buffers.can_sample,
        replay=replay,
    )


def steps_per_env(replay: Replay, num_envs: int) -> int:
    """Steps a sequence replay keeps of each env; an error if not one window."""
    per_env = replay.capacity // num_envs
    if per_env < replay.sequence_length:
        raise ValueError(
            f"a sequence replay of {replay.capacity} steps over {num_envs} envs keeps "
            f"{per_env} steps per env, fewer than one window of {replay.sequence_length}")
    return per_env


def sequences(replay: Replay) -> Memory:
    """One stream per env, ``capacity // num_envs`` steps each, sampled as windows."""
    length = replay.sequence_length

    def init(example, num_envs):
        return buffers.seq_init(example, steps_per_env(replay, num_envs), num_envs)

    return Memory(
        init=init,
        add=buffers.seq_extend,
        sample=lambda state, key: buffers.seq_sample(state, key, replay.batch_size, length),
        ready=lambda state: buffers.can_sample(state, length),
        replay=replay,
    )


def for_algo(algo, config) -> Memory:
    """The memory ``algo`` asks for (its ``AlgoSpec.replay(config)``, if any)."""
    make_replay = spec_of(algo).replay
    if make_replay is None:
        return rollout()
    replay = make_replay(config)
    return sequences(replay) if replay.sequence_length else flat(replay)


def random_actions(space, key, batch):
    """Uniform random actions of ``space`` for a batch (an int, or a shape tuple): the
    replay's warm-up, Off-PAC's uniform behaviour. ``Box`` bounds are flat tuples."""
    batch = (batch,) if isinstance(batch, int) else tuple(batch)
    if isinstance(space, Discrete):
        return jax.random.randint(key, batch, 0, space.n)
    low = jnp.asarray(space.low, jnp.float32).reshape(space.shape)
    high = jnp.asarray(space.high, jnp.float32).reshape(space.shape)
    return jax.random.uniform(key, (*batch, *space.shape), jnp.float32, low, high)


def record(obs, first, action, extras, ts) -> dict:
    """One step of the rollout record (the memory's item, plus episode statistics)."""
    return {
        "obs": obs,
        "action": action,
        "reward": ts.reward,
        "terminated": ts.terminated,
        "truncated": ts.truncated,
        "next_obs": ts.info["final_obs"],
        "first": first,
        "extras": extras,
        "episode_return": ts.info["episode_return"],
        "episode_length": ts.info["episode_length"],
        "env_metrics": dict(ts.info.get("metrics", {})),
    }


STATS = ("episode_return", "episode_length", "env_metrics")


def to_batch(agent, agent_state, records, discounting: tuple[float, float],
             time_major: bool = True, env_steps=None) -> Transition:
    """The ``Transition`` an ``update`` gets from stored records (its docstring says
    what each field holds); ``env_steps`` goes into ``batch.env_steps`` as given.

    ``discounting`` is ``(gamma, reward_scale)``, as the algorithm declares them
    (``AlgoSpec.discounting``). Rewards are scaled by ``reward_scale``, then steps cut
    by a time limit get
    ``gamma * V(next_obs)`` added, V from ``agent_state`` (the critic of this update);
    V(obs) goes into ``extras["value"]``. With ``time_major`` (a rollout ``[T, B]`` or
    sequence windows ``[L, B]``) ``bootstrap_value`` is V of the observation after the
    last step; for flat samples it is zeros.
    """
    gamma, reward_scale = discounting
    done = records["terminated"] | records["truncated"]
    reward = records["reward"] * reward_scale
    extras = records["extras"]
    bootstrap = jnp.zeros(reward.shape[1:] if time_major else (), jnp.float32)
    if agent.value is not None:
        extras = {**extras, "value": agent.value(agent_state, records["obs"])}
        next_value = agent.value(agent_state, records["next_obs"])
        # Only a step cut and not terminated is bootstrapped: both counts as terminal.
        cut = records["truncated"] & ~records["terminated"]
        reward = reward + gamma * cut * next_value
        if time_major:
            bootstrap = next_value[-1]
    return Transition(
        obs=records["obs"],
        action=records["action"],
        reward=reward,
        discount=gamma * (1.0 - done.astype(jnp.float32)),
        terminated=records["terminated"],
        truncated=records["truncated"],
        extras=extras,
        bootstrap_value=bootstrap,
        next_obs=records["next_obs"],
        first=records["first"],
        next_obs_discount=gamma * (1.0 - records["terminated"].astype(jnp.float32)),
        env_steps=env_steps,
    )


def example(agent, agent_state, spec, num_envs: int, obs_dtype=None) -> dict:
    """One step's record as ``ShapeDtypeStruct``s: what the memory stores."""
    obs = jax.ShapeDtypeStruct((num_envs, *spec.obs_shape), obs_dtype or spec.obs_dtype)
    first = jnp.zeros(num_envs, bool)
    carry = agent.init_carry(num_envs)
    action, _, extras = jax.eval_shape(
        lambda s, o: agent.act(s, carry, o, first, jax.random.key(0)), agent_state, obs)
    step = {
        "obs": obs, "action": action,
        "reward": jax.ShapeDtypeStruct((num_envs,), jnp.float32),
        "terminated": jax.ShapeDtypeStruct((num_envs,), jnp.bool_),
        "truncated": jax.ShapeDtypeStruct((num_envs,), jnp.bool_),
        "next_obs": obs, "first": jax.ShapeDtypeStruct((num_envs,), jnp.bool_),
        "extras": extras,
    }
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), step)
