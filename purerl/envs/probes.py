"""Probe environments: tiny pure-JAX tasks that each test one ability cheaply.

Written against gymnax's ``Environment`` base (auto-reset, time-limit truncation) and
wrapped by ``from_gymnax`` like any gymnax env.

* ``Probe-Truncation-v0``: observation always ``[1]``, reward 1 every step, never
  terminates, cut by a time limit after 20 steps. With correct time-limit bootstrapping
  the value of the (single) observation is ``1 / (1 - gamma)``; treating the limit as
  termination pulls it down to an average of truncated sums.
  ``Probe-TruncationContinuous-v0`` is the same with a Box action in [-1, 1] (for
  algorithms with continuous actions only, such as SAC).
* ``Probe-Bandit-v0``: one-step episodes; observation ``±1``; reward 1 for the action
  matching the sign (0 or 1), else 0. Tests that a discrete policy follows the context.
* ``Probe-ContinuousBandit-v0``: one-step episodes; observation ``x ~ U[-1, 1]``;
  reward ``-(a - x)²`` with ``a ∈ [-2, 2]``. Tests a continuous policy's mean.
* ``Probe-MatrixBandit-v0``: the same with a ``[2, 2]`` action (a Box of two axes)
  and reward ``-Σ (a - x W)²``, ``W = [[1, -1], [0.5, -0.5]]``: checks that an
  algorithm keeps env-shaped and flat actions apart.
* ``Probe-DelayedReward-v0``: a point on a line, ``x_0 = 0``, ``x_{t+1} = x_t + 0.2 a_t``
  with ``a ∈ [-1, 1]``, observed as ``[x_t, t / 5]``; five steps. The last step pays
  ``x_5``, the four before it ``−0.05 x_{t+1}``: each action's immediate reward asks for
  the opposite of what the episode's return asks. Pushing right at every step earns
  0.9, a random policy 0, and a policy credited for one step only (left, left, left,
  left, right) −0.5: a test of credit over several steps.
* ``Probe-Memory-v0``: the first observation shows a cue ``c = ±1``, then ``delay``
  (3) blank steps, then a query step (observation ``[0, 1]``) where action 1 earns +1
  if ``c > 0`` and action 0 earns +1 if ``c < 0`` (else −1); the episode ends after
  the query. The cue is no longer observable when it matters, so a memoryless policy
  earns 0 on average and only a policy that keeps the cue in its carry earns 1. The
  env reports ``info["metrics"]["recall"]``: 1 at a query answered right, else 0.
* ``ShortCorridor-v0``: Sutton & Barto Example 13.1. Three non-terminal states in a
  row and a goal on the right; reward -1 per step; action 1 ("right") moves right and
  0 moves left, except in the middle state where they are swapped; left from the first
  state stays put. The observation is always ``[1]``: the states look identical, so the
  best policy is stochastic, right with probability p* = 2 - √2 ≈ 0.586, with value
  J* = -(6 + 4√2) ≈ -11.66 from the start. An exact oracle for policy gradients.
"""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState(environment.EnvState):
    x: jax.Array


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 20


class _Probe(environment.Environment):
    obs_dim = 1

    @property
    def default_params(self):
        return ProbeParams()

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (self.obs_dim,), jnp.float32)

    def get_obs(self, state, params=None, key=None):
        return jnp.reshape(state.x, (1,)).astype(jnp.float32)


class Truncation(_Probe):
    def reset_env(self, key, params):
        state = ProbeState(time=0, x=jnp.float32(1.0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, jnp.float32(1.0), jnp.bool_(False), {}

    def action_space(self, params=None):
        return spaces.Discrete(2)


class TruncationContinuous(Truncation):
    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class Bandit(_Probe):
    def reset_env(self, key, params):
        x = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        state = ProbeState(time=0, x=x)
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = (action == (state.x > 0).astype(jnp.int32)).astype(jnp.float32)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward, jnp.bool_(True), {}

    def action_space(self, params=None):
        return spaces.Discrete(2)


class ContinuousBandit(_Probe):
    def reset_env(self, key, params):
        state = ProbeState(time=0, x=jax.random.uniform(key, (), jnp.float32, -1.0, 1.0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = -jnp.sum((action - state.x) ** 2)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward, jnp.bool_(True), {}

    def action_space(self, params=None):
        return spaces.Box(-2.0, 2.0, (1,), jnp.float32)


class MatrixBandit(ContinuousBandit):
    target = ((1.0, -1.0), (0.5, -0.5))

    def step_env(self, key, state, action, params):
        reward = -jnp.sum((action - state.x * jnp.asarray(self.target)) ** 2)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward, jnp.bool_(True), {}

    def action_space(self, params=None):
        return spaces.Box(-2.0, 2.0, (2, 2), jnp.float32)


class DelayedReward(_Probe):
    obs_dim = 2
    steps = 5

    def reset_env(self, key, params):
        state = ProbeState(time=0, x=jnp.float32(0.0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.x, state.time / self.steps]).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        state = state.replace(time=state.time + 1, x=state.x + 0.2 * jnp.sum(action))
        last = state.time >= self.steps
        return self.get_obs(state), state, jnp.where(last, state.x, -0.15 * state.x), last, {}

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class ShortCorridor(_Probe):
    @property
    def default_params(self):
        # Episodes under p* average 11.7 steps; 200 makes a time-limit cut negligible.
        return ProbeParams(max_steps_in_episode=200)

    def reset_env(self, key, params):
        state = ProbeState(time=0, x=jnp.int32(0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.ones((1,), jnp.float32)  # every state looks the same

    def step_env(self, key, state, action, params):
        right = jnp.where(state.x == 1, action == 0, action == 1)
        x = jnp.maximum(state.x + jnp.where(right, 1, -1), 0).astype(jnp.int32)
        state = state.replace(time=state.time + 1, x=x)
        return self.get_obs(state), state, jnp.float32(-1.0), x == 3, {}

    def action_space(self, params=None):
        return spaces.Discrete(2)


class Memory(_Probe):
    obs_dim = 2
    delay = 3

    def reset_env(self, key, params):
        x = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        state = ProbeState(time=0, x=x)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        cue = jnp.where(state.time == 0, state.x, 0.0)
        query = jnp.asarray(state.time == self.delay + 1, jnp.float32)
        return jnp.stack([cue, query]).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        query = state.time == self.delay + 1
        right = action == (state.x > 0).astype(jnp.int32)
        reward = jnp.where(query, jnp.where(right, 1.0, -1.0), 0.0).astype(jnp.float32)
        info = {"metrics": {"recall": (query & right).astype(jnp.float32)}}
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, reward, query, info

    def action_space(self, params=None):
        return spaces.Discrete(2)


PROBES = {
    "Probe-Truncation-v0": Truncation,
    "Probe-TruncationContinuous-v0": TruncationContinuous,
    "Probe-Bandit-v0": Bandit,
    "Probe-ContinuousBandit-v0": ContinuousBandit,
    "Probe-MatrixBandit-v0": MatrixBandit,
    "Probe-Memory-v0": Memory,
    "Probe-DelayedReward-v0": DelayedReward,
    "ShortCorridor-v0": ShortCorridor,
}
