"""The driver: one loop for every algorithm, on pure-JAX and on host envs.

An iteration collects ``num_steps`` steps of ``num_envs`` envs with ``agent.act``
(keeping each env's ``carry`` and ``first`` flag), writes the rollout to the memory the
algorithm asks for (``purerl.memory``: the rollout itself, a flat replay or a sequence
replay) and trains: one ``update`` on the rollout, or for a replay ``updates`` updates
on samples once ``learning_starts`` env steps of uniform random actions are in. Every
``iterations_per_eval`` iterations a block ends with an evaluation on separate envs,
policy in eval mode. ``make_train`` gives the whole run as one pure function ``key ->
(runner, metrics)``, vmappable over seeds; ``Trainer`` runs the same blocks as jitted
chunks; ``HostLoop`` steps host envs in Python around the same jitted pieces
(``record``, ``make_learn``, ``episode_sums``, ``block_metrics``).

Time limits: a step cut by a time limit (``truncated``) ends the trace like a terminal
step, but its reward gets ``gamma * V(next_obs)`` added when the batch is built
(``to_batch``), with the critic of the update that uses it, so every algorithm
bootstraps correctly from the true last observation without special cases in
``purerl.ops``.

Env-reported metrics: an env may put per-step values in ``info["metrics"]`` (a dict of
``[num_envs]`` arrays: coverage, distance to a goal). Each block reports, per name,
``env/<name>`` (the mean over the block's steps and envs) and ``env/<name>/last`` (the
mean over envs at the block's last step).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl import envs as envs_lib
from purerl import memory as memory_lib
from purerl import snapshot
from purerl.algos import common
from purerl.config import RunConfig
from purerl.types import Box, Discrete, Transition

__all__ = ["RunConfig", "Runner", "Schedule", "schedule", "make_train", "make_block",
           "HostLoop", "HostRunner", "run_host", "to_batch", "check_compatible"]


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
    """The run is ``num_evals`` equal blocks, each ending in an evaluation.

    Fixed rollouts (``max_episode_steps`` None): an iteration is ``num_steps`` steps of
    ``num_envs`` envs; the run makes exactly ``num_evals`` blocks of whole iterations
    (fewer blocks only if there are fewer iterations than that), so total_steps is
    rounded down to a multiple of one block and the run does the steps it reports.
    Episodic rollouts (``max_episode_steps`` given): an iteration is one complete
    episode per env, of variable length, so a block runs iterations while the next
    one cannot overshoot the block's step budget: a run never exceeds total_steps.
    """
    if max_episode_steps is not None:
        per_eval = run.total_steps // run.num_evals
        return Schedule(0, run.num_evals, run.num_envs * max_episode_steps, per_eval)
    iterations = run.total_steps // run.batch_size
    num_evals = min(run.num_evals, iterations)
    per_eval = iterations // num_evals
    return Schedule(per_eval, num_evals, run.batch_size, per_eval * run.batch_size)


def check_action_space(algo, spec) -> None:
    """A clear error when the algorithm cannot act in ``spec``'s action space."""
    space = spec.action_space
    allowed = getattr(algo, "ACTION_SPACES", None)
    if allowed is not None and type(space).__name__ not in allowed:
        raise ValueError(
            f"{algo.__name__} supports action spaces {list(allowed)}, but "
            f"{spec.name or 'the env'} has {type(space).__name__}"
        )


def check_compatible(algo, spec, config, run: RunConfig) -> None:
    """Clear errors for a mismatch of algorithm, env, Config and RunConfig, before
    anything is traced."""
    if not isinstance(config, algo.Config):
        raise TypeError(f"expected {algo.__name__}.Config, got {type(config).__name__}")
    if not isinstance(run, RunConfig):
        raise TypeError(f"expected purerl.RunConfig, got {type(run).__name__}")
    check_action_space(algo, spec)
    if spec.max_episode_steps is None:
        raise ValueError("evaluation needs env.spec.max_episode_steps (an episode length bound)")
    episodic = getattr(algo, "EPISODIC", False)
    if episodic and run.normalize_obs:
        raise ValueError("RunConfig.normalize_obs is not supported with episodic rollouts")
    if not episodic and run.total_steps < run.batch_size:
        raise ValueError(f"RunConfig.total_steps must be >= num_envs * num_steps = "
                         f"{run.batch_size}, got {run.total_steps}")
    if getattr(algo, "check_run", None) is not None:
        algo.check_run(config, run)
    replay = memory_lib.for_algo(algo, config).replay
    if replay is not None:
        if replay.sequence_length == 0 and replay.capacity < run.batch_size:
            raise ValueError(f"{algo.__name__}: a replay of {replay.capacity} transitions "
                             f"cannot hold one iteration of {run.batch_size}")
        if replay.sequence_length:
            memory_lib.steps_per_env(replay, run.num_envs)
        if replay.learning_starts and isinstance(spec.action_space, Box):
            bounds = np.concatenate([spec.action_space.low, spec.action_space.high])
            if not np.all(np.isfinite(bounds)):
                raise ValueError("uniform random warm-up actions need finite Box bounds")


def random_actions(space, key, num_envs: int):
    """Uniform random actions for ``num_envs`` envs: the replay's warm-up."""
    if isinstance(space, Discrete):
        return jax.random.randint(key, (num_envs,), 0, space.n)
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return jax.random.uniform(key, (num_envs, *space.shape), jnp.float32, low, high)


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


def to_batch(agent, agent_state, records, config, time_major: bool = True) -> Transition:
    """The ``Transition`` an ``update`` gets from stored records.

    Rewards are scaled by ``config.reward_scale``, then steps cut by a time limit get
    ``gamma * V(next_obs)`` added, V from ``agent_state`` (the critic of this update);
    V(obs) goes into ``extras["value"]``. With ``time_major`` (a rollout ``[T, B]`` or
    sequence windows ``[L, B]``) ``bootstrap_value`` is V of the observation after the
    last step; for flat samples it is zeros.
    """
    gamma = config.gamma
    done = records["terminated"] | records["truncated"]
    reward = records["reward"] * config.reward_scale
    extras = records["extras"]
    bootstrap = jnp.zeros(reward.shape[1:] if time_major else (), jnp.float32)
    if agent.value is not None:
        extras = {**extras, "value": agent.value(agent_state, records["obs"])}
        next_value = agent.value(agent_state, records["next_obs"])
        reward = reward + gamma * records["truncated"] * next_value
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
    )


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
    axis: losses are means over the iterations, episode statistics means over the
    episodes that ended, ``/last`` metrics the last iteration's."""
    metrics = {k: v[-1] if k.endswith("/last") else v.sum(0) for k, v in metrics.items()}
    return _block_metrics(metrics, count)


def _block_metrics(metrics: dict, count) -> dict:
    episodes = metrics.pop("train/episodes")
    return_sum = metrics.pop("train/return_sum")
    length_sum = metrics.pop("train/length_sum")
    out = {k: v if k.endswith("/last") else v / count for k, v in metrics.items()}
    out["train/episode_return"] = return_sum / jnp.maximum(episodes, 1)
    out["train/episode_length"] = length_sum / jnp.maximum(episodes, 1)
    out["train/episodes"] = episodes
    out["train/iterations"] = count
    return out


def make_learn(agent, memory, config):
    """``learn(agent_state, mem, records, env_steps, key) -> (agent_state, mem,
    metrics)``: write a rollout to the memory and train on it.

    On-policy: one ``update`` on the rollout. Replay: ``replay.updates`` updates on
    fresh samples, skipped (metrics zero) until ``env_steps >= learning_starts`` and
    the memory can be sampled; ``common.when`` keeps that skip a real branch when the
    loop is vmapped over seeds, whose counters agree.
    """
    replay = memory.replay

    def learn(agent_state, mem, records, env_steps, key):
        mem = memory.add(mem, records)
        if replay is None:
            agent_state, metrics = agent.update(
                agent_state, to_batch(agent, agent_state, mem, config), key)
            return agent_state, (), metrics
        operand = (agent_state, mem, key)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                             jax.eval_shape(train_round, operand)[1])
        start = max(replay.learning_starts, 1)
        agent_state, metrics = common.when(train_round)(
            (env_steps >= start) & memory.ready(mem), operand, (agent_state, zeros))
        return agent_state, mem, metrics

    def train_round(operand):
        agent_state, mem, key = operand

        def one(state, key):
            k_sample, k_update = jax.random.split(key)
            batch = to_batch(agent, state, memory.sample(mem, k_sample), config,
                             time_major=replay.sequence_length > 0)
            return agent.update(state, batch, k_update)

        agent_state, metrics = jax.lax.scan(one, agent_state,
                                            jax.random.split(key, replay.updates))
        return agent_state, jax.tree.map(jnp.mean, metrics)

    return learn


def build(algo, spec, config, run: RunConfig, freeze=()):
    """What both loops share: the agent (built for the run's number of updates, its
    ``update`` keeping the parameter groups ``freeze`` fixed), its memory, the
    schedule and ``learn``."""
    check_compatible(algo, spec, config, run)
    episodic = getattr(algo, "EPISODIC", False)
    sched = schedule(run, spec.max_episode_steps if episodic else None)
    agent = algo.make(config, spec, **_updates_kwarg(algo, sched))
    if freeze:
        groups = jax.eval_shape(agent.init, jax.random.key(0)).params
        unknown = [g for g in freeze if g not in groups]
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: {algo.__name__}'s parameter groups "
                             f"are {list(groups)}")
        agent = agent._replace(update=snapshot.freeze(agent.update, freeze))
    memory = memory_lib.for_algo(algo, config)
    return agent, memory, sched, make_learn(agent, memory, config)


def _updates_kwarg(algo, sched: Schedule) -> dict:
    import inspect

    if "num_updates" in inspect.signature(algo.make).parameters:
        return {"num_updates": sched.num_updates}
    return {}


def memory_example(agent, agent_state, spec, num_envs: int, obs_dtype=None) -> dict:
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


def make_block(algo, env, config, run: RunConfig | None = None, freeze=()):
    """Build ``init(key) -> Runner`` and ``block(runner) -> (runner, metrics)``.

    Algorithms whose module sets ``EPISODIC = True`` (Monte-Carlo methods such as
    REINFORCE) get episodic rollouts: every iteration resets the envs and runs
    ``max_episode_steps`` steps, so each env yields exactly one complete episode and no
    return is ever cut at a rollout boundary. Steps after an env's episode has ended
    are masked out (``batch.extras["mask"]``) and not counted as env steps.
    ``freeze`` names parameter groups no update changes (a fine-tuning phase).
    """
    run = algo.RUN if run is None else run
    if env.num_envs is not None:
        raise ValueError("pass a single (unvectorised) env; the driver vectorises it")
    agent, memory, sched, learn = build(algo, env.spec, config, run, freeze)
    episodic = getattr(algo, "EPISODIC", False)
    train_env = envs_lib.vectorize(env, run.num_envs)
    eval_env = envs_lib.vectorize(env, run.num_eval_envs)
    if run.normalize_obs:
        train_env = envs_lib.normalize_obs(train_env)
        eval_env = envs_lib.normalize_obs(eval_env)
    horizon = env.spec.max_episode_steps if episodic else run.num_steps
    warmup = memory.replay.learning_starts if memory.replay is not None else 0
    space, n = env.spec.action_space, run.num_envs

    def init(key):
        key, k_agent, k_env = jax.random.split(key, 3)
        env_state, ts = train_env.reset(k_env)
        agent_state = agent.init(k_agent)
        mem = memory.init(memory_example(agent, agent_state, env.spec, n,
                                         ts.obs.dtype), n)
        runner = Runner(agent_state, mem, env_state, ts.obs, agent.init_carry(n),
                        jnp.ones(n, bool), key, jnp.int32(0), jnp.int32(0))
        return _strong(runner)

    def collect(runner: Runner, key):
        """``horizon`` steps of the training envs: (env_state, obs, carry, first, records)."""

        def env_step(c, xs):
            env_state, obs, carry, first = c
            k_act, k_env, t = xs
            action, carry, extras = agent.act(runner.agent, carry, obs, first, k_act)
            if warmup:
                random = random_actions(space, jax.random.fold_in(k_act, 1), n)
                prefill = runner.env_steps + t * n < warmup
                action = jnp.where(prefill, random, action).astype(action.dtype)
            env_state, ts = train_env.step(env_state, action, k_env)
            done = ts.terminated | ts.truncated
            return (env_state, ts.obs, carry, done), record(obs, first, action, extras, ts)

        # All the rollout's keys in one vectorised call rather than a split per step.
        keys = jax.random.split(key, (horizon, 2))
        xs = (keys[:, 0], keys[:, 1], jnp.arange(horizon, dtype=jnp.int32))
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

        def step(c, key):
            state, obs, carry, first, finished, returns = c
            action, carry, _ = agent.act(runner.agent, carry, obs, first, key, eval=True)
            state, ts = eval_env.step(state, action, jax.random.fold_in(key, 1))
            done = ts.terminated | ts.truncated
            returns = jnp.where(done & ~finished, ts.info["episode_return"], returns)
            return (state, ts.obs, carry, done, finished | done, returns), None

        c = (state, ts.obs, agent.init_carry(m), jnp.ones(m, bool), jnp.zeros(m, bool),
             jnp.zeros(m, jnp.float32))
        keys = jax.random.split(key, env.spec.max_episode_steps)
        c, _ = jax.lax.scan(step, c, keys)
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


def make_train(algo, env, config, run: RunConfig | None = None):
    """The whole run as one pure function.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``).
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
    init, block, sched = make_block(algo, env, config, run)

    def train(key):
        runner = init(key)
        return jax.lax.scan(lambda r, _: block(r), runner, None, length=sched.num_evals)

    return train


class HostRunner(NamedTuple):
    """What a host-env run carries between chunks (the envs' own state, and so the
    policy's per-env carry, lives with the ``HostEnv`` objects); one pytree,
    checkpointable."""

    agent: Any  # the algorithm's state, with a leading seed axis
    memory: Any  # the loop's replay per seed (``()`` on-policy)
    key: jax.Array  # [num_seeds] PRNG keys of the next iteration
    env_steps: jax.Array  # int32 env steps done per seed
    iteration: jax.Array  # int32 iterations done


class HostLoop:
    """The fixed-rollout driver for host environments (``purerl.envs.make_host``).

    The same iteration as ``make_block``'s, with the envs stepped in Python:
    ``run.num_steps`` steps of the host envs with a jitted ``agent.act``, then one
    jitted ``learn`` (the in-jit loop's: memory, training cadence, time-limit
    bootstrap). ``num_seeds`` independent agents are vmapped: seed ``i`` drives host
    envs ``i * run.num_envs`` to ``(i + 1) * run.num_envs - 1``. The agent state and
    the memory are donated to ``learn``, so a replay is updated in place rather than
    copied every step.

    Example:
      >>> run = RunConfig(total_steps=20_000, num_envs=1, num_steps=1, num_eval_envs=5)
      >>> host = make_host("dmc:cartpole-swingup", num_envs=3)
      >>> loop = HostLoop(sac, host, sac.Config(), run, num_seeds=3,
      ...                 eval_env=make_host("dmc:cartpole-swingup", num_envs=3 * 5))
      >>> runner = loop.init(jax.random.key(0))
      >>> runner, history = loop.run(runner, 1000)
      >>> returns = loop.evaluate(runner)          # [3], one mean per seed
    """

    def __init__(self, algo, host_env, config, run: RunConfig | None = None,
                 num_seeds: int | None = None, eval_env=None, freeze=()):
        run = algo.RUN if run is None else run
        seeds = 1 if num_seeds is None else num_seeds
        if seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
        if host_env.num_envs != seeds * run.num_envs:
            raise ValueError(
                f"host_env.num_envs ({host_env.num_envs}) must equal RunConfig.num_envs "
                f"({run.num_envs})" + (f" x num_seeds ({seeds})" if num_seeds else "")
            )
        if getattr(algo, "EPISODIC", False):
            raise ValueError(
                f"{algo.__name__} needs episodic rollouts; host loops run fixed ones"
            )
        if run.normalize_obs:
            raise ValueError(
                "host loops do not normalise observations: set RunConfig.normalize_obs=False"
            )
        if eval_env is not None:
            if eval_env.spec.obs_shape != host_env.spec.obs_shape:
                raise ValueError("eval_env must observe what host_env observes")
            if eval_env.num_envs != seeds * run.num_eval_envs:
                raise ValueError(
                    f"eval_env.num_envs ({eval_env.num_envs}) must equal "
                    f"RunConfig.num_eval_envs ({run.num_eval_envs}) x {seeds} seeds"
                )
        self.algo, self.config, self.run_config, self.num_seeds = algo, config, run, num_seeds
        self.host_env, self.eval_env = host_env, eval_env
        agent, memory, self.schedule, learn = build(algo, host_env.spec, config, run,
                                                     freeze)
        self.agent = agent
        self._env = None  # (obs, carry, first) of the training envs; None until reset
        n, spec = run.num_envs, host_env.spec
        horizon = run.num_steps
        warmup = memory.replay.learning_starts if memory.replay is not None else 0

        def per_seed(x, k):
            return x.reshape(seeds, k, *x.shape[1:])

        def flat(x):  # [seeds, k, ...] -> [seeds * k, ...], the host envs' axis
            return x.reshape(-1, *x.shape[2:])

        def act(agent_state, carry, obs, first, key, t, env_steps):
            # Keys are derived inside jit: host-side key ops cost as much as the policy.
            keys = jax.vmap(jax.random.fold_in, (0, None))(key, t)
            action, carry, extras = jax.vmap(agent.act)(
                agent_state, carry, per_seed(obs, n), per_seed(first, n), keys)
            if warmup:
                random = jax.vmap(lambda k: random_actions(
                    spec.action_space, jax.random.fold_in(k, 1), n))(keys)
                action = jnp.where(env_steps + t * n < warmup, random, action).astype(
                    action.dtype)
            return flat(action), carry, jax.tree.map(flat, extras)

        def learn_all(agent_state, mem, traj, env_steps, key):
            # traj leaves are [T, seeds * n, ...] -> [seeds][T, n, ...].
            traj = jax.tree.map(lambda x: x.reshape(x.shape[0], seeds, n, *x.shape[2:]),
                                traj)
            k_update = jax.vmap(jax.random.fold_in, (0, None))(key, horizon)
            next_key = jax.vmap(lambda k: jax.random.fold_in(k, horizon + 1))(key)
            agent_state, mem, metrics = jax.vmap(learn, (0, 0, 1, None, 0))(
                agent_state, mem, traj, env_steps, k_update)
            return agent_state, mem, metrics, next_key

        def init(key):
            agent_state = agent.init(key)
            example = memory_example(agent, agent_state, spec, n)
            return agent_state, memory.init(example, n)

        def act_eval(agent_state, carry, obs, first):
            key = jax.random.key(0)  # unused in eval mode
            m = run.num_eval_envs
            action, carry, _ = jax.vmap(
                lambda s, c, o, f: agent.act(s, c, o, f, key, eval=True))(
                agent_state, carry, per_seed(obs, m), per_seed(first, m))
            return flat(action), carry

        self._init = jax.jit(jax.vmap(init))
        self._init_carry = lambda k: jax.vmap(lambda _: agent.init_carry(k))(
            jnp.arange(seeds))
        self._act = jax.jit(act)
        self._learn = jax.jit(learn_all, donate_argnums=(0, 1))
        self._act_eval = jax.jit(act_eval)

        def sums(stats):
            stats = jax.tree.map(lambda x: x.reshape(x.shape[0], seeds, n, *x.shape[2:]),
                                 stats)
            counted = stats.pop("counted")
            return jax.vmap(episode_sums, (1, 1))(stats, counted)

        self._episode_sums = jax.jit(sums)

    def _squeeze(self, tree):
        return tree if self.num_seeds is not None else jax.tree.map(lambda x: x[0], tree)

    def init(self, key) -> HostRunner:
        """Fresh agents and memories (one per seed)."""
        seeds = self.num_seeds or 1
        k_agent, k_loop = jax.random.split(key)
        self._env = None
        agent_state, mem = self._init(jax.random.split(k_agent, seeds))
        return HostRunner(agent_state, mem, jax.random.split(k_loop, seeds),
                          jnp.int32(0), jnp.int32(0))

    def reset(self, seed: int | None = None) -> None:
        """Restart the training envs' episodes (e.g. after restoring a checkpoint)."""
        import numpy as np

        obs = self.host_env.reset(seed).obs
        self._env = (obs, self._init_carry(self.run_config.num_envs),
                     np.ones(self.host_env.num_envs, bool))

    def run(self, runner: HostRunner, num_iterations: int, callback=None):
        """``num_iterations`` iterations; returns ``(runner, history)``.

        ``history`` maps each metric to a numpy array ``[num_iterations(, num_seeds)]``:
        the update's metrics and ``episode_sums``'s (``train/episodes``,
        ``train/return_sum``, ``train/length_sum``, ``env/...``), what
        ``block_metrics`` turns into a block's, and ``env_steps`` (cumulative, per
        seed). ``callback(iteration, metrics)`` is called after every iteration.
        """
        import numpy as np

        run, seeds = self.run_config, self.num_seeds or 1
        if self._env is None:
            self.reset()
        obs, carry, first = self._env
        agent_state, mem, key = runner.agent, runner.memory, runner.key
        env_steps, iteration = int(runner.env_steps), int(runner.iteration)
        history = {}
        for _ in range(num_iterations):
            steps = []
            for t in range(run.num_steps):
                action, carry, extras = self._act(agent_state, carry, obs, first, key, t,
                                                  env_steps)
                action = np.asarray(action)
                ts = self.host_env.step(action)
                steps.append(record(obs, first, action, extras, ts))
                obs, first = ts.obs, ts.terminated | ts.truncated
            traj = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *steps)
            stats = {k: traj.pop(k) for k in STATS}
            env_steps += run.batch_size
            agent_state, mem, metrics, key = self._learn(agent_state, mem, traj,
                                                         jnp.int32(env_steps), key)
            iteration += 1
            stats["counted"] = traj["terminated"] | traj["truncated"]
            metrics = {**metrics, **self._episode_sums(stats)}
            metrics = {name: np.asarray(value) for name, value in metrics.items()}
            metrics["env_steps"] = np.full(seeds, env_steps)
            metrics = self._squeeze(metrics)
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            if callback is not None:
                callback(iteration - 1, metrics)
        self._env = (obs, carry, first)
        runner = HostRunner(agent_state, mem, key, jnp.int32(env_steps),
                            jnp.int32(iteration))
        return runner, {name: np.asarray(values) for name, values in history.items()}

    def block(self, runner: HostRunner, num_iterations: int | None = None,
              callback=None):
        """One evaluation block, as ``make_block``'s: ``(runner, metrics)`` with the
        same metrics (per seed), ``eval/return`` included when there is an eval_env."""
        import numpy as np

        count = num_iterations or self.schedule.iterations_per_eval
        runner, history = self.run(runner, count, callback)
        env_steps = history.pop("env_steps")
        metrics = {k: np.asarray(v) for k, v in block_metrics(history, count).items()}
        metrics["env_steps"] = env_steps[-1]
        if self.eval_env is not None:
            metrics["eval/return"] = self.evaluate(runner)
        return runner, metrics

    def evaluate(self, runner: HostRunner, seed: int | None = None):
        """Mean undiscounted return of one episode per eval env, eval-mode policy:
        ``[num_seeds]`` (a scalar without ``num_seeds``)."""
        import numpy as np

        if self.eval_env is None:
            raise ValueError("HostLoop was built without an eval_env")
        env, seeds = self.eval_env, self.num_seeds or 1
        ts = env.reset(seed)
        carry = self._init_carry(self.run_config.num_eval_envs)
        first = np.ones(env.num_envs, bool)
        finished = np.zeros(env.num_envs, bool)
        returns = np.zeros(env.num_envs, np.float32)
        for _ in range(env.spec.max_episode_steps):
            action, carry = self._act_eval(runner.agent, carry, ts.obs, first)
            ts = env.step(np.asarray(action))
            first = ts.terminated | ts.truncated
            returns = np.where(first & ~finished, ts.info["episode_return"], returns)
            finished |= first
            if finished.all():
                break
        return self._squeeze(returns.reshape(seeds, -1).mean(1))


def run_host(algo, host_env, config, key, run: RunConfig | None = None, *,
             num_iterations=None, callback=None):
    """Train one agent on host envs with ``HostLoop``; no evaluation.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``).
      host_env: a ``HostEnv`` with ``num_envs == run.num_envs``.
      config: ``algo.Config``.
      key: PRNG key.
      run: ``RunConfig`` (default ``algo.RUN``).
      num_iterations: iterations to run; default the schedule's (what learning-rate
        annealing counts on).
      callback: ``callback(iteration, metrics)`` after every iteration.

    Returns:
      ``(agent_state, history)``, ``history`` as in ``HostLoop.run``.
    """
    loop = HostLoop(algo, host_env, config, run)
    if num_iterations is None:
        num_iterations = loop.schedule.num_updates
    runner, history = loop.run(loop.init(key), num_iterations, callback)
    return jax.tree.map(lambda x: x[0], runner.agent), history
