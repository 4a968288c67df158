"""What every algorithm module returns from ``make``: a NamedTuple of pure functions."""

from collections.abc import Callable
from typing import NamedTuple


class Agent(NamedTuple):
    """An algorithm as pure functions over one pytree of state.

    init(key) -> state
    init_carry(num_envs) -> carry
        Per-env recurrent state the policy keeps between steps (an RSSM's h and z, a
        skill drawn per episode); ``()`` for memoryless policies. The loop keeps one
        carry for its training envs and one for its evaluation envs.
    act(state, carry, obs, first, key, eval=False) -> (action, carry, extras)
        ``obs`` is ``[num_envs, *obs_shape]``; ``first`` is ``[num_envs]`` bool, True
        where ``obs`` is the first observation of an episode (the agent resets its
        carry there). ``extras`` holds per-sample outputs the update needs
        (``log_prob``, ...).
    update(state, batch, key) -> (state, metrics)
        ``batch`` is a ``Transition``: a whole rollout ``[T, B]`` for on-policy agents,
        a sample of the loop's replay for off-policy ones.
    value(state, obs) -> V(obs), or None for agents without a state-value function.
        The loop calls it once per batch: it puts V(obs) in ``batch.extras["value"]``
        and folds ``gamma * V(next_obs)`` into the reward of steps cut by a time
        limit, so ``act`` need not compute values step by step.
    """

    init: Callable
    act: Callable
    update: Callable
    value: Callable | None = None
    init_carry: Callable = lambda num_envs: ()  # noqa: E731


def stateless(init, act, update, value=None) -> Agent:
    """An ``Agent`` from a memoryless ``act(state, obs, key, eval) -> (action, extras)``:
    the carry stays ``()`` and ``first`` is ignored. The one adapter every agent
    without recurrent state goes through."""

    def act_with_carry(state, carry, obs, first, key, eval=False):
        del first
        action, extras = act(state, obs, key, eval=eval)
        return action, carry, extras

    return Agent(init=init, act=act_with_carry, update=update, value=value)
