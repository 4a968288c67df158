"""The uniform-random policy: a baseline that learns nothing.

Every action is drawn uniformly from the env's action space (``purerl.memory.
random_actions``: each Box coordinate in its bounds, each Discrete action with equal
probability), in training and in evaluation. It runs through the same driver, metrics
and experiment contract as the learning algorithms, so an exploration result (a
maze's coverage and state entropy) or a return has its chance level beside it.
"""

from typing import NamedTuple

import jax.numpy as jnp

from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, config
from purerl.memory import random_actions
from purerl.types import EnvSpec

RUN = RunConfig(total_steps=100_000, num_envs=1, num_steps=1, num_evals=10)


@config
class Config:
    """The uniform-random policy has no hyperparameters."""


class State(NamedTuple):
    iteration: jnp.ndarray  # int32, updates (rollouts seen)


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build the uniform-random policy for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.uniform.Config, got {type(cfg).__name__}")
    space = env_spec.action_space

    def init(key):
        del key
        return State(jnp.int32(0))

    def act(state, obs, key, eval=False):
        del state, eval
        return random_actions(space, key, obs.shape[:obs.ndim - len(env_spec.obs_shape)]), {}

    def update(state, batch, key):
        del batch, key
        return State(state.iteration + 1), {}

    return stateless(init, act, update, None)


SPEC = AlgoSpec(
    name="uniform", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Box", "Discrete"),
    discounting=lambda cfg: (1.0, 1.0),  # it learns nothing
)
