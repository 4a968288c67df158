"""The functional environment protocol.

An ``Env`` is a frozen bundle of pure functions plus a static spec:

    state, ts = env.reset(key)
    state, ts = env.step(state, action, key)   # auto-resets; see purerl.types.TimeStep

Wrappers are plain functions ``Env -> Env``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from purerl.types import EnvSpec


def _keep_eval_state(train_state: Any, eval_state: Any, ts: Any) -> tuple[Any, Any]:
    del train_state
    return eval_state, ts


@dataclass(frozen=True)
class Env:
    """A pure-JAX environment.

    Attributes:
      reset: ``key -> (state, TimeStep)``.
      step: ``(state, action, key) -> (state, TimeStep)``; resets by itself when an
        episode ends, keeping the last observation in ``info["final_obs"]``.
      spec: static ``EnvSpec`` of one environment (no env axis).
      num_envs: ``None`` for a single environment, else the size of the leading env
        axis of every array the functions take and return.
      sync_eval: ``(train_state, eval_state, ts) -> (eval_state, ts)``, called right
        after resetting evaluation envs: copies running statistics a wrapper keeps
        (e.g. observation normalisation) from a training env state into the evaluation
        env state, freezes them there, and re-expresses the reset TimeStep ``ts`` with
        them. Identity for stateless envs.
      on_vectorize: ``None``, or ``Env -> Env`` that ``vectorize`` applies to the
        vectorised env: statistics across the env axis of a seed (a maze's coverage
        of the cells all its envs have visited).
    """

    reset: Callable
    step: Callable
    spec: EnvSpec
    num_envs: int | None = None
    sync_eval: Callable = _keep_eval_state
    on_vectorize: Callable | None = None
