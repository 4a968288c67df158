"""The driver: one loop for every algorithm; this module runs it on pure-JAX envs.

An iteration collects ``num_steps`` steps of ``num_envs`` envs with ``agent.act``
(keeping each env's ``carry`` and ``first`` flag), writes the rollout to the memory the
algorithm asks for (``purerl.memory``: the rollout itself, a flat replay or a sequence
replay) and trains: one ``update`` on the rollout, or for a replay ``updates`` updates
on samples once ``learning_starts`` env steps of uniform random actions are in. Every
``iterations_per_eval`` iterations a block ends with an evaluation on separate envs,
policy in eval mode. ``make_train`` gives the whole run as one pure function ``key ->
(runner, metrics)``, vmappable over seeds; ``Trainer`` runs the same blocks as jitted
chunks; ``purerl.host_loop.HostLoop`` steps host envs in Python around the same
pieces (``build``, ``make_learn``, ``episode_sums``, ``block_metrics`` here, and
``purerl.memory``'s ``record`` and ``to_batch``).

Time limits: a step cut by a time limit (``truncated``) ends the trace like a terminal
step, but its reward gets ``gamma * V(next_obs)`` added when the batch is built
(``to_batch``), with the critic of the update that uses it, so every algorithm
bootstraps correctly from the true last observation without special cases in
``purerl.ops``.

Vocabulary (the same words in every module, Config and metric):

* **env step**: one transition of one env. ``Runner.env_steps`` counts a seed's
  training env steps over all its envs (with an action repeat: agent steps; the run
  reports env frames beside them).
* **iteration**: ``num_envs * num_steps`` env steps collected, then one round.
* **round** (training round): what follows one iteration's collection: one ``update``
  on the rollout (on-policy), or ``Replay.updates`` updates on replay samples (none
  before ``learning_starts``: that round did not train). ``train/rounds`` counts the
  rounds of a block that trained.
* **update**: one call of ``Agent.update``; it may take many **gradient steps**
  (PPO's epochs times minibatches, TRPO's line search, Dreamer's three losses).
* **block** (evaluation block): ``iterations_per_eval`` iterations, then one
  evaluation; block metrics are averages over the block (update metrics over the
  rounds that trained). A run is ``num_evals`` blocks.
* **chunk**: what ``Trainer`` and the host loop compile and run between
  checkpoints: one block.

Env-reported metrics: an env may put per-step values in ``info["metrics"]`` (a dict of
``[num_envs]`` arrays: coverage, distance to a goal). Each block reports, per name,
``env/<name>`` (the mean over the block's steps and envs) and ``env/<name>/last`` (the
mean over envs at the block's last step).
"""

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl import envs as envs_lib
from purerl import memory as memory_lib
from purerl import snapshot
from purerl.algos import common
from purerl.algos.base import spec_of
from purerl.config import RunConfig
from purerl.memory import STATS, random_actions, record, to_batch
from purerl.types import Box, Discrete

__all__ = ["RunConfig", "Runner", "Schedule", "schedule", "make_train", "make_block",
           "make_learn", "build", "episode_sums", "block_metrics", "check_compatible"]


class Runner(NamedTuple):
    """Everything a run carries between iterations; one pytree (checkpointable)."""

    agent: Any  # the algorithm's state
    memory: Any  # the loop's replay (``()`` for on-policy algorithms)
    env_state: Any  # vectorised env state, leading axis num_envs
    obs: jax.Array  # [num_envs, *obs_shape], the observation to act on next
    carry: Any  # the agent's per-env recurrent state (``()`` for most)
    first: jax.Array  # [num_envs] bool: obs is the first of an episode
    key: jax.Array  # PRNG key
    env_steps: jax.Array  # int32 env steps done so far (all envs of this seed)
    block: jax.Array  # int32 evaluation blocks done so far


class Schedule(NamedTuple):
    """How a run's step budget is cut into blocks of iterations."""

    iterations_per_eval: int  # 0 for episodic rollouts: as many as the block's steps allow
    num_evals: int
    steps_per_iteration: int  # for episodic rollouts, the most one iteration can take
    steps_per_eval: int

    @property
    def total_steps(self) -> int:
        return self.num_evals * self.steps_per_eval

    @property
    def num_updates(self) -> int | None:
        """Iterations the run makes (None for episodic rollouts: they vary)."""
        return self.num_evals * self.iterations_per_eval or None


def schedule(run: RunConfig, max_episode_steps: int | None = None) -> Schedule:
    """The run is equal blocks of iterations, each ending in an evaluation; it does the
    steps asked for (``total_steps``) to within one iteration, never more.

    Fixed rollouts (``max_episode_steps`` None): an iteration is ``num_steps`` steps of
    ``num_envs`` envs, and the run makes ``total_steps // batch_size`` of them. They
    are cut into ``num_evals`` equal blocks if that divides them, else into the
    nearest number of blocks that does, within a factor of 2 of ``num_evals`` (the
    larger on a tie), or into one block per iteration if there are fewer iterations
    than ``num_evals``. Equal blocks are one compiled program. When no number of
    blocks fits, a ``ValueError`` names the ``total_steps`` and ``num_evals`` that do.
    Episodic rollouts (``max_episode_steps`` given): an iteration is one complete
    episode per env, of variable length, so a block runs iterations while the next
    one cannot overshoot the block's step budget: a run never exceeds total_steps and
    falls short of it by less than one iteration.
    """
    if max_episode_steps is not None:
        per_eval = run.total_steps // run.num_evals
        return Schedule(0, run.num_evals, run.num_envs * max_episode_steps, per_eval)
    iterations = run.total_steps // run.batch_size
    if iterations == 0:
        raise ValueError(f"RunConfig.total_steps must be >= num_envs * num_steps = "
                         f"{run.batch_size}, got {run.total_steps}")
    num_evals = block_count(iterations, run.num_evals)
    if num_evals is None:
        raise ValueError(_no_block_count(run, iterations))
    per_eval = iterations // num_evals
    return Schedule(per_eval, num_evals, run.batch_size, per_eval * run.batch_size)


def block_count(iterations: int, asked: int) -> int | None:
    """The number of equal blocks ``schedule`` cuts ``iterations`` into for ``asked``
    evaluations (see there), or None if none is within a factor of 2 of ``asked``."""
    if iterations <= asked:
        return iterations
    fits = [n for n in range((asked + 1) // 2, 2 * asked + 1) if iterations % n == 0]
    return min(fits, key=lambda n: (abs(n - asked), -n), default=None)


def _no_block_count(run: RunConfig, iterations: int) -> str:
    """The one-line refusal of a budget that no number of evaluations near
    ``num_evals`` divides: what it would run, and the nearest budgets and numbers of
    evaluations that work."""
    asked, block = run.num_evals, run.num_evals * run.batch_size
    below = run.total_steps // block * block
    budgets = " or ".join(str(t) for t in (below + block, below) if t)
    fewer = next(n for n in range(asked - 1, 0, -1) if iterations % n == 0)
    more = next(n for n in range(asked + 1, iterations + 1) if iterations % n == 0)
    # "RunConfig.total_steps=": not "RunConfig.total_steps ", which the command line
    # would follow with "(flag --total-steps)" although the line names both flags.
    return (f"RunConfig.total_steps={run.total_steps} with num_evals={asked} would run "
            f"{below} steps ({asked} equal blocks of whole iterations of {run.batch_size} "
            f"steps, num_envs {run.num_envs} x num_steps {run.num_steps}), and no number "
            f"of evaluations from {(asked + 1) // 2} to {2 * asked} divides its "
            f"{iterations} iterations: give --total-steps {budgets}, or --num-evals "
            f"{fewer} or {more}")


def prefill(space, learning_starts: int, num_envs: int):
    """``fill(action, key, step) -> action``: uniform random actions (drawn with
    ``key``) while ``step``, the env steps a seed has taken before this one, is below
    ``learning_starts``; the policy's ``action`` after.

    The draw is a select, not a ``common.when`` branch: it costs a few random numbers
    per step, while a branch under vmap reduces its predicate over the seed axis,
    which with seeds sharded over devices is one more cross-device barrier per step
    (measured: 8 sharded SAC seeds ran 6% slower with the branch)."""
    if not learning_starts:
        return lambda action, key, step: action
    dtype = jnp.int32 if isinstance(space, Discrete) else jnp.float32

    def fill(action, key, step):
        random = random_actions(space, key, num_envs)
        return jnp.where(step < learning_starts, random,
                         action.astype(dtype)).astype(action.dtype)

    return fill


def check_action_space(algo, spec) -> None:
    """A clear error when the algorithm cannot act in ``spec``'s action space."""
    algo = spec_of(algo)
    space = spec.action_space
    if type(space).__name__ not in algo.action_spaces:
        raise ValueError(
            f"{algo.name} supports action spaces {list(algo.action_spaces)}, but "
            f"{spec.name or 'the env'} has {type(space).__name__}"
        )


def check_compatible(algo, spec, config, run: RunConfig) -> None:
    """Clear errors for a mismatch of algorithm, env, Config and RunConfig, before
    anything is traced."""
    algo = spec_of(algo)
    if not isinstance(config, algo.config):
        raise TypeError(f"expected {algo.name}.Config, got {type(config).__name__}")
    if not isinstance(run, RunConfig):
        raise TypeError(f"expected purerl.RunConfig, got {type(run).__name__}")
    check_action_space(algo, spec)
    if spec.max_episode_steps is None:
        raise ValueError("evaluation needs env.spec.max_episode_steps (an episode length bound)")
    episodic = algo.episodic
    if episodic and run.normalize_obs:
        raise ValueError("RunConfig.normalize_obs is not supported with episodic rollouts")
    if not episodic and run.total_steps < run.batch_size:
        raise ValueError(f"RunConfig.total_steps must be >= num_envs * num_steps = "
                         f"{run.batch_size}, got {run.total_steps}")
    if algo.check_run is not None:
        algo.check_run(config, run)
    replay = memory_lib.for_algo(algo, config).replay
    if replay is not None:
        if replay.sequence_length == 0 and replay.capacity < run.batch_size:
            raise ValueError(f"{algo.name}: a replay of {replay.capacity} transitions "
                             f"cannot hold one iteration of {run.batch_size}")
        if replay.sequence_length:
            memory_lib.steps_per_env(replay, run.num_envs)
        if replay.learning_starts and isinstance(spec.action_space, Box):
            bounds = np.concatenate([spec.action_space.low, spec.action_space.high])
            if not np.all(np.isfinite(bounds)):
                raise ValueError("uniform random warm-up actions need finite Box bounds")


def episode_sums(records, counted) -> dict:
    """Per-iteration sums of the episodes that ended (``counted``) and of the env's
    own metrics, for ``block_metrics`` to average."""
    sums = {
        "train/episodes": counted.sum(),
        "train/return_sum": jnp.where(counted, records["episode_return"], 0.0).sum(),
        "train/length_sum": jnp.where(counted, records["episode_length"], 0).sum(),
    }
    for name, values in records["env_metrics"].items():
        values = jnp.asarray(values, jnp.float32)
        sums[f"env/{name}"] = values.mean()
        sums[f"env/{name}/last"] = values[-1].mean()
    return sums


def block_metrics(metrics: dict, count) -> dict:
    """A block's metrics from its ``count`` iterations' metrics, stacked on a leading
    axis: the update's metrics are means over the training rounds that ran
    (``train/rounds``; NaN, written null, in a block where none ran: a replay's
    warm-up), episode statistics means over the episodes that ended, the env's
    metrics means over the iterations, ``/last`` metrics the last iteration's."""
    metrics = {k: v[-1] if k.endswith("/last") else v.sum(0) for k, v in metrics.items()}
    return _block_metrics(metrics, count)


def _block_metrics(metrics: dict, count) -> dict:
    episodes = metrics.pop("train/episodes")
    return_sum = metrics.pop("train/return_sum")
    length_sum = metrics.pop("train/length_sum")
    rounds = metrics.pop("train/rounds")

    def mean(name, value):
        if name.endswith("/last"):
            return value
        if name.startswith("env/"):
            return value / count
        return jnp.where(rounds > 0, value / jnp.maximum(rounds, 1), jnp.nan)

    out = {k: mean(k, v) for k, v in metrics.items()}
    out["train/episode_return"] = return_sum / jnp.maximum(episodes, 1)
    out["train/episode_length"] = length_sum / jnp.maximum(episodes, 1)
    out["train/episodes"] = episodes
    out["train/iterations"] = count
    out["train/rounds"] = rounds
    return out


def make_learn(agent, memory, discounting: tuple[float, float],
               reads_env_steps: bool = False):
    """``learn(agent_state, mem, records, env_steps, key) -> (agent_state, mem,
    metrics)``: write a rollout to the memory and train on it; batches are built
    with ``discounting = (gamma, reward_scale)``, the algorithm's declared values, and
    carry ``env_steps`` if ``reads_env_steps``.

    On-policy: one ``update`` on the rollout. Replay: ``replay.updates`` updates on
    fresh samples, skipped until ``env_steps >= learning_starts`` and the memory can
    be sampled; ``common.when`` keeps that skip a real branch when the loop is vmapped
    over seeds, whose counters agree. ``metrics["train/rounds"]`` is 1 where the
    round trained, 0 where it was skipped (its other metrics are zeros then, which
    ``block_metrics`` leaves out of its means).
    """
    replay = memory.replay

    def learn(agent_state, mem, records, env_steps, key):
        mem = memory.add(mem, records)
        steps = env_steps if reads_env_steps else None
        if replay is None:
            agent_state, metrics = agent.update(
                agent_state, to_batch(agent, agent_state, mem, discounting,
                                      env_steps=steps), key)
            return agent_state, (), {**metrics, "train/rounds": jnp.int32(1)}
        operand = (agent_state, mem, steps, key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                             jax.eval_shape(train_round, operand)[1])
        start = max(replay.learning_starts, 1)
        trains = (env_steps >= start) & memory.ready(mem)
        agent_state, metrics = common.when(train_round)(trains, operand,
                                                        (agent_state, zeros))
        return agent_state, mem, {**metrics, "train/rounds": trains.astype(jnp.int32)}

    def train_round(operand):
        agent_state, mem, steps, key = operand

        def one(state, key):
            k_sample, k_update = jax.random.split(key)
            batch = to_batch(agent, state, memory.sample(mem, k_sample), discounting,
                             time_major=replay.sequence_length > 0, env_steps=steps)
            return agent.update(state, batch, k_update)

        agent_state, metrics = jax.lax.scan(one, agent_state,
                                            jax.random.split(key, replay.updates))
        return agent_state, jax.tree.map(jnp.mean, metrics)

    return learn


def build(algo, spec, config, run: RunConfig, freeze=()):
    """What both loops share: the agent (built for the run's number of updates, its
    ``update`` keeping the parameter groups ``freeze`` fixed), its memory, the
    schedule and ``learn``."""
    algo = spec_of(algo)
    check_compatible(algo, spec, config, run)
    sched = schedule(run, spec.max_episode_steps if algo.episodic else None)
    agent = make_agent(algo, config, spec, sched)
    if freeze:
        groups = list(jax.eval_shape(agent.init, jax.random.key(0)).params)
        snapshot.check_groups(algo, groups, freeze, "freeze")
        agent = agent._replace(update=snapshot.freeze(agent.update, freeze))
    memory = memory_lib.for_algo(algo, config)
    learn = make_learn(agent, memory, algo.discounting(config), algo.reads_env_steps)
    return agent, memory, sched, learn


def env_steps_kwarg(algo, env_steps) -> dict:
    """What ``act`` is given of the env-step count: ``{"env_steps": n}`` for an
    algorithm whose spec reads them, nothing for the others."""
    return {"env_steps": env_steps} if spec_of(algo).reads_env_steps else {}


def make_agent(algo, config, spec, sched: Schedule):
    """``algo.make`` for a run of schedule ``sched`` (the number of updates given to
    an algorithm that declares it needs them)."""
    algo = spec_of(algo)
    if algo.needs_num_updates:
        return algo.make(config, spec, num_updates=sched.num_updates)
    return algo.make(config, spec)


def make_block(algo, env, config, run: RunConfig | None = None, freeze=()):
    """Build ``init(key) -> Runner`` and ``block(runner) -> (runner, metrics)``.

    Algorithms that declare ``AlgoSpec.episodic`` (Monte-Carlo methods such as
    REINFORCE) get episodic rollouts: every iteration resets the envs and runs
    ``max_episode_steps`` steps, so each env yields exactly one complete episode and no
    return is ever cut at a rollout boundary. Steps after an env's episode has ended
    are masked out (``batch.extras["mask"]``) and not counted as env steps.
    ``freeze`` names parameter groups no update changes (a fine-tuning phase).
    """
    algo = spec_of(algo)
    run = algo.run if run is None else run
    if env.num_envs is not None:
        raise ValueError("pass a single (unvectorised) env; the driver vectorises it")
    agent, memory, sched, learn = build(algo, env.spec, config, run, freeze)
    episodic = algo.episodic
    train_env = envs_lib.vectorize(env, run.num_envs)
    eval_env = envs_lib.vectorize(env, run.num_eval_envs)
    if run.normalize_obs:
        train_env = envs_lib.normalize_obs(train_env)
        eval_env = envs_lib.normalize_obs(eval_env)
    horizon = env.spec.max_episode_steps if episodic else run.num_steps
    n = run.num_envs
    warmup = memory.replay.learning_starts if memory.replay is not None else 0
    fill = prefill(env.spec.action_space, warmup, n)

    def init(key):
        key, k_agent, k_env = jax.random.split(key, 3)
        env_state, ts = train_env.reset(k_env)
        agent_state = agent.init(k_agent)
        example = memory_lib.example(agent, agent_state, env.spec, n, ts.obs.dtype)
        mem = memory.init(example, n)
        runner = Runner(agent_state, mem, env_state, ts.obs, agent.init_carry(n),
                        jnp.ones(n, bool), key, jnp.int32(0), jnp.int32(0))
        return _strong(runner)

    def collect(runner: Runner, key):
        """``horizon`` steps of the training envs: (env_state, obs, carry, first, records)."""

        def env_step(c, xs):
            env_state, obs, carry, first = c
            k, t = xs  # one key per use: act, env step, (warm-up draw)
            steps = runner.env_steps + t * n  # the seed's env steps before this one
            action, carry, extras = agent.act(runner.agent, carry, obs, first, k[0],
                                              **env_steps_kwarg(algo, steps))
            if warmup:
                action = fill(action, k[2], steps)
            env_state, ts = train_env.step(env_state, action, k[1])
            done = ts.terminated | ts.truncated
            return (env_state, ts.obs, carry, done), record(obs, first, action, extras, ts)

        # All the rollout's keys in one vectorised call rather than a split per step.
        keys = jax.random.split(key, (horizon, 3 if warmup else 2))
        xs = (keys, jnp.arange(horizon, dtype=jnp.int32))
        c = (runner.env_state, runner.obs, runner.carry, runner.first)
        return jax.lax.scan(env_step, c, xs)

    def iteration(runner: Runner, _):
        key, k_rollout, k_update = jax.random.split(runner.key, 3)
        if episodic:
            k_rollout, k_reset = jax.random.split(k_rollout)
            env_state, ts = train_env.reset(k_reset)
            runner = runner._replace(env_state=env_state, obs=ts.obs,
                                     carry=agent.init_carry(n), first=jnp.ones(n, bool))
        (env_state, obs, carry, first), traj = collect(runner, k_rollout)
        stats = {k: traj.pop(k) for k in STATS}
        done = traj["terminated"] | traj["truncated"]
        if episodic:
            # A step is live until its env's first episode has ended.
            live = ~(jnp.cumsum(done, axis=0) - done > 0)
            traj["extras"] = {**traj["extras"], "mask": live.astype(jnp.float32)}
            steps = live.sum(dtype=jnp.int32)
            counted = done & live
        else:
            steps = jnp.int32(sched.steps_per_iteration)
            counted = done
        env_steps = runner.env_steps + steps
        agent_state, mem, metrics = learn(runner.agent, runner.memory, traj, env_steps,
                                          k_update)
        metrics.update(episode_sums(stats, counted))
        runner = runner._replace(agent=agent_state, memory=mem, env_state=env_state,
                                 obs=obs, carry=carry, first=first, key=key,
                                 env_steps=env_steps)
        return runner, metrics

    def evaluate(runner: Runner, key):
        """Mean undiscounted return of one episode per eval env, eval-mode policy."""
        k_reset, key = jax.random.split(key)
        state, ts = eval_env.reset(k_reset)
        state, ts = eval_env.sync_eval(runner.env_state, state, ts)
        m = run.num_eval_envs

        def step(c, k):  # k: one key for act, one for the env step
            state, obs, carry, first, finished, returns = c
            action, carry, _ = agent.act(runner.agent, carry, obs, first, k[0], eval=True,
                                         **env_steps_kwarg(algo, runner.env_steps))
            state, ts = eval_env.step(state, action, k[1])
            done = ts.terminated | ts.truncated
            returns = jnp.where(done & ~finished, ts.info["episode_return"], returns)
            return (state, ts.obs, carry, done, finished | done, returns), None

        c = (state, ts.obs, agent.init_carry(m), jnp.ones(m, bool), jnp.zeros(m, bool),
             jnp.zeros(m, jnp.float32))
        c, _ = jax.lax.scan(step, c, jax.random.split(key, (env.spec.max_episode_steps, 2)))
        finished, returns = c[-2], c[-1]
        # Every episode ends within max_episode_steps; `finished` is all True.
        return returns.mean(), finished.mean()

    def run_iterations(runner: Runner):
        """The block's iterations: (runner, metrics summed over them, their number)."""
        if not episodic:
            runner, metrics = jax.lax.scan(iteration, runner, None,
                                           length=sched.iterations_per_eval)
            count = jnp.int32(sched.iterations_per_eval)
            return runner, block_metrics(metrics, count), count
        target = (runner.block + 1) * sched.steps_per_eval
        shapes = jax.eval_shape(lambda r: iteration(r, None)[1], runner)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def more(carry):
            runner, _, count = carry
            fits = runner.env_steps + sched.steps_per_iteration <= target
            return (count == 0) | fits

        def one(carry):
            runner, sums, count = carry
            runner, metrics = iteration(runner, None)
            sums = {k: metrics[k] if k.endswith("/last") else sums[k] + metrics[k]
                    for k in sums}
            return runner, sums, count + 1

        runner, sums, count = jax.lax.while_loop(more, one, (runner, zeros, jnp.int32(0)))
        return runner, _block_metrics(sums, count), count

    def block(runner: Runner):
        runner, metrics, _ = run_iterations(runner)
        key, k_eval = jax.random.split(runner.key)
        metrics["eval/return"], metrics["eval/finished"] = evaluate(runner, k_eval)
        metrics["env_steps"] = runner.env_steps
        runner = runner._replace(key=key, block=runner.block + 1)
        return _strong(runner), metrics

    return init, block, sched


def _strong(tree):
    """Every leaf strongly typed: gymnax resets some env states to weakly typed
    scalars (Pendulum's last_u, an episode's time), and a leaf whose weak type changes
    between blocks would make the jitted block compile again."""
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), tree)


def warn_bare_run(algo, run: RunConfig | None) -> None:
    """Warn when ``run`` is the bare ``RunConfig()`` (PPO's loop: 4 envs x 128 steps)
    but ``algo.run`` differs: SAC's one env stepped and trained each step is not that
    loop. ``run=None`` takes ``algo.run``."""
    algo = spec_of(algo)
    if run is not None and run == RunConfig() and run != algo.run:
        name = algo.name
        warnings.warn(f"RunConfig() is the bare default loop (4 envs x 128 steps, PPO's), "
                      f"not {name}'s own {name}.RUN = {algo.run}: leave run out or pass "
                      f"dataclasses.replace({name}.RUN, ...)", UserWarning, stacklevel=3)


def make_train(algo, env, config, run: RunConfig | None = None):
    """The whole run as one pure function.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``) or its ``AlgoSpec``.
      env: a single (unvectorised) ``purerl.envs.Env``.
      config: ``algo.Config``, the algorithm's hyperparameters.
      run: ``purerl.RunConfig``, the budget, env counts and evaluation; default
        ``algo.RUN``.

    Returns:
      ``train(key) -> (Runner, metrics)`` where each metric is stacked over the
      ``num_evals`` evaluation blocks. Jit it; vmap it over keys for seeds.

    Example:
      >>> train = purerl.make_train(ppo, purerl.envs.make("CartPole-v1"), ppo.Config())
      >>> runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 16))
    """
    warn_bare_run(algo, run)
    init, block, sched = make_block(algo, env, config, run)

    def train(key):
        runner = init(key)
        return jax.lax.scan(lambda r, _: block(r), runner, None, length=sched.num_evals)

    return train
