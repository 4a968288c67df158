"""The algorithm contract: what ``make`` returns (``Agent``, a NamedTuple of pure
functions) and what a module declares to the driver (``AlgoSpec``).

The agent's state is any pytree the agent's functions agree on, with one convention
the driver relies on (snapshots, ``--restore`` / ``--freeze``, the non-finite check,
the parameter count; ``purerl.testing.check_state`` checks it):

* the state is a NamedTuple with a field ``params``: a dict from parameter-group
  name (``"actor"``, ``"critic"``, ``"encoder"``) to that group's parameters. A group
  is the unit a phase restores from a snapshot or freezes;
* a state field ``target_<group>`` is that group's target or EMA copy (SAC's target
  critic): the same tree and shapes as ``params[<group>]``; it is restored and frozen
  with its group. A target may instead be a group of its own (a DQN's
  ``params["target_q"]``); it then restores and freezes on its own;
* a state field ``<group>_<name>`` is state the group's outputs fill (Proto-RL's
  ``encoder_queue``): restored with the group, still filled while it is frozen;
* optimiser states are never restored; ``opt_state`` as a dict keyed by group lets a
  frozen group keep its optimiser state as well (otherwise its moments still move);
* every group a phase of ``AlgoSpec.phases`` names exists in ``params``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: the memory and snapshots read AlgoSpec
    from purerl.config import RunConfig
    from purerl.memory import Replay
    from purerl.snapshot import Phase


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
        (``log_prob``, ...). With ``AlgoSpec.reads_env_steps`` the driver also passes
        ``env_steps=``: the int32 count of env steps the seed took before this one
        (all its training envs together; at evaluation, the steps trained on).
    update(state, batch, key) -> (state, metrics)
        ``batch`` is a ``purerl.types.Transition`` (its docstring says every field):
        a whole rollout ``[T, B]`` for on-policy agents, a sample of the loop's replay
        for off-policy ones.
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
    """An ``Agent`` from a memoryless ``act(state, obs, key, eval) -> (action, extras)``
    (given ``env_steps=`` too when the spec reads them): the carry stays ``()`` and
    ``first`` is ignored. The one adapter every agent
    without recurrent state goes through."""

    def act_with_carry(state, carry, obs, first, key, eval=False, **env_steps):
        del first  # env_steps: {"env_steps": n} for a spec that reads them, else {}
        action, extras = act(state, obs, key, eval=eval, **env_steps)
        return action, carry, extras

    return Agent(init=init, act=act_with_carry, update=update, value=value)


def gamma_and_scale(cfg) -> tuple[float, float]:
    """``AlgoSpec.discounting`` of a Config whose fields are ``gamma`` and
    ``reward_scale`` (every in-tree algorithm that learns from rewards)."""
    return cfg.gamma, cfg.reward_scale


@dataclass(frozen=True)
class AlgoSpec:
    """Everything an algorithm tells the driver, declared once: each algorithm module
    ends with ``SPEC = AlgoSpec(...)``, and the driver (``purerl.loops``,
    ``purerl.host_loop``, ``purerl.memory``, the experiment CLI, sweeps, snapshots)
    reads this and nothing else of the module. An out-of-tree algorithm writes one
    and passes it wherever a module is taken (``make_train(spec, env, config)``).
    """

    name: str
    """Short name: messages, snapshots and run directories use it (``"ppo"``)."""
    config: type
    """The hyperparameter dataclass; ``config()`` is the paper's defaults."""
    make: Callable
    """``make(config, env_spec) -> Agent``; with ``needs_num_updates`` the driver also
    passes ``num_updates=`` (the iterations the run makes: an annealed learning rate
    needs them), and ``make(config, env_spec)`` alone uses ``run``'s."""
    run: RunConfig
    """The default loop: budget, env counts, evaluation."""
    discounting: Callable[[Any], tuple[float, float]] = gamma_and_scale
    """``config -> (gamma, reward_scale)``: the values the memory bootstraps time-limit
    steps with and scales rewards by, when it builds a batch."""
    doc: str = ""
    """The module docstring: ``--help`` shows its first paragraph."""
    action_spaces: tuple[str, ...] = ("Discrete", "Box")
    """The action spaces it acts in, by type name; others are refused before tracing."""
    episodic: bool = False
    """True for Monte-Carlo methods: every iteration runs whole episodes (see
    ``loops.make_block``); host loops refuse them."""
    replay: Callable[[Any], Replay] | None = None
    """``config -> Replay``: the memory, sampling and training cadence it asks for;
    None for on-policy algorithms (one ``update`` on each rollout)."""
    phases: Mapping[str, Phase] = field(default_factory=dict)
    """Named phases of its protocol (``--phase``), in order: pre-train, fine-tune."""
    check_run: Callable[[Any, RunConfig], None] | None = None
    """``(config, run) -> None``, raising ``ValueError`` for a run it cannot do."""
    needs_num_updates: bool = False
    """``make`` takes ``num_updates`` (see ``make``)."""
    reads_env_steps: bool = False
    """The driver passes the seed's env-step count: ``act(..., env_steps=n)`` (the
    steps taken before this one) and ``batch.env_steps`` (the steps taken when the
    batch was built), so schedules (ε, target copies) are written in env steps."""


def spec_of(algo) -> AlgoSpec:
    """``algo``'s ``AlgoSpec``: ``algo`` itself, or its module's ``SPEC``."""
    if isinstance(algo, AlgoSpec):
        return algo
    try:
        spec = algo.SPEC
    except AttributeError:
        raise TypeError(f"{algo!r} is not an algorithm: expected an AlgoSpec or a module "
                        f"that declares SPEC = purerl.AlgoSpec(...)") from None
    if not isinstance(spec, AlgoSpec):
        raise TypeError(f"{algo!r}.SPEC is a {type(spec).__name__}, not an AlgoSpec")
    return spec
