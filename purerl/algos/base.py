"""What every algorithm module returns from ``make``: a NamedTuple of pure functions."""

from collections.abc import Callable
from typing import NamedTuple


class Agent(NamedTuple):
    """An algorithm as pure functions over one pytree of state.

    init(key) -> state
    act(state, obs, key, eval=False) -> (action, extras)
        ``obs`` may carry any leading batch dims; ``extras`` holds per-sample outputs
        the update needs (``log_prob``, ``value``, ...).
    update(state, batch, key) -> (state, metrics)
    value(state, obs) -> V(obs), or None for agents without a state-value function.
        The on-policy driver calls it once per rollout, batched: it puts V(obs) in
        ``batch.extras["value"]`` and uses V(final_obs) to bootstrap steps cut by a
        time limit, so ``act`` need not compute values step by step.
    """

    init: Callable
    act: Callable
    update: Callable
    value: Callable | None = None
