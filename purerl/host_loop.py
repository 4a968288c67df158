"""The driver on host environments (``purerl.envs.make_host``: Gymnasium, dm_control).

The envs step in Python; everything else is the in-jit loop's (``purerl.loops``): the
agent, memory, schedule and ``learn`` come from ``loops.build``, the records from
``memory.record``, the episode statistics from ``loops.episode_sums`` and a block's
metrics from ``loops.block_metrics``, so ``metrics.jsonl`` means the same for both.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl import memory as memory_lib
from purerl.config import RunConfig
from purerl.loops import block_metrics, build, env_steps_kwarg, episode_sums, prefill
from purerl.memory import STATS, record
from purerl.algos.base import spec_of

__all__ = ["HostLoop", "HostRunner", "run_host"]


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

    The same iteration as ``loops.make_block``'s, with the envs stepped in Python:
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
        algo = spec_of(algo)
        run = algo.run if run is None else run
        seeds = 1 if num_seeds is None else num_seeds
        if seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
        if host_env.num_envs != seeds * run.num_envs:
            raise ValueError(
                f"host_env.num_envs ({host_env.num_envs}) must equal RunConfig.num_envs "
                f"({run.num_envs})" + (f" x num_seeds ({seeds})" if num_seeds else "")
            )
        if algo.episodic:
            raise ValueError(
                f"{algo.name} needs episodic rollouts; host loops run fixed ones"
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
        fill = prefill(spec.action_space,
                       memory.replay.learning_starts if memory.replay is not None else 0, n)

        def per_seed(x, k):
            return x.reshape(seeds, k, *x.shape[1:])

        def flat(x):  # [seeds, k, ...] -> [seeds * k, ...], the host envs' axis
            return x.reshape(-1, *x.shape[2:])

        def act(agent_state, carry, obs, first, key, t, env_steps):
            # Keys are derived inside jit: host-side key ops cost as much as the policy.
            # Step t's key k_t = fold_in(key, t) is folded once per use: 0 for act,
            # 1 for the warm-up draw (the update takes t = horizon, the next
            # iteration's key horizon + 1).
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(key, t)
            fold = jax.vmap(jax.random.fold_in, (0, None))
            steps = env_steps + t * n  # each seed's env steps before this one
            action, carry, extras = jax.vmap(
                lambda s, c, o, f, k: agent.act(s, c, o, f, k,
                                                **env_steps_kwarg(algo, steps)))(
                agent_state, carry, per_seed(obs, n), per_seed(first, n), fold(step_keys, 0))
            action = jax.vmap(fill, (0, 0, None))(action, fold(step_keys, 1), steps)
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
            return agent_state, memory.init(memory_lib.example(agent, agent_state, spec, n), n)

        def act_eval(agent_state, carry, obs, first, key, t, env_steps):
            # An evaluation's step t draws with fold_in(fold_in(key, horizon + 2), t):
            # fresh noise at every step and every evaluation (an agent may sample in
            # eval mode: Dreamer's mode, SMM's skill), apart from the keys the next
            # iteration folds from the same runner key (0 .. horizon + 1).
            m = run.num_eval_envs
            eval_keys = jax.vmap(lambda k: jax.random.fold_in(
                jax.random.fold_in(k, horizon + 2), t))(key)
            action, carry, _ = jax.vmap(
                lambda s, c, o, f, k: agent.act(s, c, o, f, k, eval=True,
                                                **env_steps_kwarg(algo, env_steps)))(
                agent_state, carry, per_seed(obs, m), per_seed(first, m), eval_keys)
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
        """One evaluation block, as ``loops.make_block``'s: ``(runner, metrics)`` with the
        same metrics (per seed), ``eval/return`` included when there is an eval_env."""
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
        if self.eval_env is None:
            raise ValueError("HostLoop was built without an eval_env")
        env, seeds = self.eval_env, self.num_seeds or 1
        ts = env.reset(seed)
        carry = self._init_carry(self.run_config.num_eval_envs)
        first = np.ones(env.num_envs, bool)
        finished = np.zeros(env.num_envs, bool)
        returns = np.zeros(env.num_envs, np.float32)
        for t in range(env.spec.max_episode_steps):
            action, carry = self._act_eval(runner.agent, carry, ts.obs, first, runner.key,
                                           jnp.int32(t), runner.env_steps)
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
      config: ``algo.config``.
      key: PRNG key.
      run: ``RunConfig`` (default ``algo.run``).
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
