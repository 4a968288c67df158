"""Training drivers.

The on-policy driver runs, all inside ``lax.scan``: rollout over vectorised envs ->
``update`` -> (every ``iterations_per_eval`` iterations) evaluation on separate envs
with the policy in eval mode. ``make_train`` gives the whole run as one pure function
``key -> (runner, metrics)``, vmappable over seeds; ``Trainer`` runs the same blocks as
jitted chunks so the host can show progress, log and checkpoint between them.

Time limits: a step cut by a time limit (``truncated``) ends the trace like a terminal
step, but its reward gets ``gamma * V(final_obs)`` added, so every algorithm bootstraps
correctly from the true last observation without special cases in ``purerl.ops``.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from purerl import envs as envs_lib
from purerl.types import Transition


class Runner(NamedTuple):
    """Everything a run carries between iterations; one pytree (checkpointable)."""

    agent: Any  # the algorithm's state
    env_state: Any  # vectorised env state, leading axis num_envs
    obs: jax.Array  # [num_envs, *obs_shape], the observation to act on next
    key: jax.Array  # PRNG key
    env_steps: jax.Array  # int32 env steps done so far (all envs of this seed)
    block: jax.Array  # int32 evaluation blocks done so far


class Schedule(NamedTuple):
    """How a config's step budget is cut into blocks of iterations."""

    iterations_per_eval: int  # 0 for episodic rollouts: as many as the block's steps allow
    num_evals: int
    steps_per_iteration: int  # for episodic rollouts, the most one iteration can take
    steps_per_eval: int

    @property
    def total_steps(self) -> int:
        return self.num_evals * self.steps_per_eval


def schedule(config, max_episode_steps: int | None = None) -> Schedule:
    """The run is ``num_evals`` equal blocks, each ending in an evaluation.

    Fixed rollouts (``max_episode_steps`` None): an iteration is ``num_steps`` steps of
    ``num_envs`` envs, and total_steps is rounded down to a multiple of one block.
    Episodic rollouts (``max_episode_steps`` given): an iteration is one complete
    episode per env, of variable length, so a block runs iterations while the next
    one cannot overshoot the block's step budget: a run never exceeds total_steps.
    """
    if max_episode_steps is not None:
        per_eval = config.total_steps // config.num_evals
        return Schedule(0, config.num_evals, config.num_envs * max_episode_steps, per_eval)
    steps = config.num_envs * config.num_steps
    iterations = config.total_steps // steps
    per_eval = max(1, iterations // config.num_evals)
    num_evals = max(1, iterations // per_eval)
    return Schedule(per_eval, num_evals, steps, per_eval * steps)


def _envs(env, config):
    if env.num_envs is not None:
        raise ValueError("pass a single (unvectorised) env; the driver vectorises it")
    train_env = envs_lib.vectorize(env, config.num_envs)
    eval_env = envs_lib.vectorize(env, config.num_eval_envs)
    if getattr(config, "normalize_obs", False):
        train_env = envs_lib.normalize_obs(train_env)
        eval_env = envs_lib.normalize_obs(eval_env)
    return train_env, eval_env


def check_action_space(algo, spec) -> None:
    """A clear error when the algorithm cannot act in ``spec``'s action space."""
    space = spec.action_space
    allowed = getattr(algo, "ACTION_SPACES", None)
    if allowed is not None and type(space).__name__ not in allowed:
        raise ValueError(
            f"{algo.__name__} supports action spaces {list(allowed)}, but "
            f"{spec.name or 'the env'} has {type(space).__name__}"
        )


def rollout_batch(agent, agent_state, traj, config) -> Transition:
    """The ``Transition`` an on-policy ``update`` gets from a recorded rollout.

    ``traj`` holds time-major ``obs``, ``action``, ``reward``, ``terminated``,
    ``truncated``, ``final_obs`` and ``extras``. Rewards are scaled, then steps cut by a
    time limit get ``gamma * V(final_obs)`` added; V(obs) goes into
    ``extras["value"]``, both in one batched call each after the rollout rather than
    one small call per step. Shared by the in-jit driver and ``run_host``.
    """
    gamma = config.gamma
    done = traj["terminated"] | traj["truncated"]
    reward = traj["reward"] * getattr(config, "reward_scale", 1.0)
    extras = traj["extras"]
    if agent.value is not None:
        extras = {**extras, "value": agent.value(agent_state, traj["obs"])}
        next_value = agent.value(agent_state, traj["final_obs"])
        reward = reward + gamma * traj["truncated"] * next_value
        bootstrap = next_value[-1]
    else:
        bootstrap = jnp.zeros(reward.shape[1:], jnp.float32)
    return Transition(
        obs=traj["obs"],
        action=traj["action"],
        reward=reward,
        discount=gamma * (1.0 - done.astype(jnp.float32)),
        terminated=traj["terminated"],
        truncated=traj["truncated"],
        extras=extras,
        bootstrap_value=bootstrap,
        next_obs=traj["final_obs"],
    )


def check_compatible(algo, env, config) -> None:
    """Clear errors for an env/algorithm mismatch, before anything is traced."""
    check_action_space(algo, env.spec)
    if env.spec.max_episode_steps is None:
        raise ValueError(
            "evaluation needs env.spec.max_episode_steps (an episode length bound)"
        )


def make_block(algo, env, config):
    """Build ``init(key) -> Runner`` and ``block(runner) -> (runner, metrics)``.

    Algorithms whose module sets ``EPISODIC = True`` (Monte-Carlo methods such as
    REINFORCE) get episodic rollouts: every iteration resets the envs and runs
    ``max_episode_steps`` steps, so each env yields exactly one complete episode and no
    return is ever cut at a rollout boundary. Steps after an env's episode has ended
    are masked out (``batch.extras["mask"]``) and not counted as env steps.
    """
    check_compatible(algo, env, config)
    agent = algo.make(config, env.spec)
    episodic = getattr(algo, "EPISODIC", False)
    if episodic and getattr(config, "normalize_obs", False):
        raise ValueError("normalize_obs is not supported with episodic rollouts")
    train_env, eval_env = _envs(env, config)
    horizon = env.spec.max_episode_steps if episodic else config.num_steps
    sched = schedule(config, env.spec.max_episode_steps if episodic else None)

    def init(key):
        key, k_agent, k_env = jax.random.split(key, 3)
        env_state, ts = train_env.reset(k_env)
        return Runner(agent.init(k_agent), env_state, ts.obs, key, jnp.int32(0), jnp.int32(0))

    def env_step(carry, keys):
        agent_state, env_state, obs = carry
        k_act, k_env = keys
        action, extras = agent.act(agent_state, obs, k_act)
        env_state, ts = train_env.step(env_state, action, k_env)
        record = {
            "obs": obs,
            "action": action,
            "reward": ts.reward,
            "terminated": ts.terminated,
            "truncated": ts.truncated,
            "final_obs": ts.info["final_obs"],
            "episode_return": ts.info["episode_return"],
            "episode_length": ts.info["episode_length"],
            "extras": extras,
        }
        return (agent_state, env_state, ts.obs), record

    def iteration(runner: Runner, _):
        key, k_rollout, k_update = jax.random.split(runner.key, 3)
        env_state, obs = runner.env_state, runner.obs
        if episodic:
            k_rollout, k_reset = jax.random.split(k_rollout)
            env_state, ts = train_env.reset(k_reset)
            obs = ts.obs
        # All the rollout's keys in one vectorised call rather than a split per step.
        keys = jax.random.split(k_rollout, (horizon, 2))
        carry = (runner.agent, env_state, obs)
        (_, env_state, obs), traj = jax.lax.scan(env_step, carry, (keys[:, 0], keys[:, 1]))
        batch = rollout_batch(agent, runner.agent, traj, config)
        done = batch.terminated | batch.truncated
        if episodic:
            # A step is live until its env's first episode has ended.
            live = ~(jnp.cumsum(done, axis=0) - done > 0)
            mask = live.astype(jnp.float32)
            batch = batch._replace(extras={**batch.extras, "mask": mask})
            steps = live.sum(dtype=jnp.int32)
            counted = done & live
        else:
            steps = jnp.int32(sched.steps_per_iteration)
            counted = done
        agent_state, metrics = agent.update(runner.agent, batch, k_update)
        metrics["train/episodes"] = counted.sum()
        metrics["train/return_sum"] = jnp.where(counted, traj["episode_return"], 0.0).sum()
        metrics["train/length_sum"] = jnp.where(counted, traj["episode_length"], 0).sum()
        runner = runner._replace(
            agent=agent_state,
            env_state=env_state,
            obs=obs,
            key=key,
            env_steps=runner.env_steps + steps,
        )
        return runner, metrics

    def evaluate(runner: Runner, key):
        """Mean undiscounted return of one episode per eval env, eval-mode policy."""
        k_reset, key = jax.random.split(key)
        state, ts = eval_env.reset(k_reset)
        state, ts = eval_env.sync_eval(runner.env_state, state, ts)
        n = config.num_eval_envs

        def step(carry, key):
            state, obs, finished, returns = carry
            action, _ = agent.act(runner.agent, obs, key, eval=True)
            state, ts = eval_env.step(state, action, jax.random.fold_in(key, 1))
            done = ts.terminated | ts.truncated
            returns = jnp.where(done & ~finished, ts.info["episode_return"], returns)
            return (state, ts.obs, finished | done, returns), None

        carry = (state, ts.obs, jnp.zeros(n, bool), jnp.zeros(n, jnp.float32))
        keys = jax.random.split(key, env.spec.max_episode_steps)
        (_, _, finished, returns), _ = jax.lax.scan(step, carry, keys)
        # Every episode ends within max_episode_steps; `finished` is all True.
        return returns.mean(), finished.mean()

    def run_iterations(runner: Runner):
        """The block's iterations: (runner, metrics summed over them, their number)."""
        if not episodic:
            runner, metrics = jax.lax.scan(
                iteration, runner, None, length=sched.iterations_per_eval
            )
            sums = jax.tree.map(lambda x: x.sum(0), metrics)
            return runner, sums, jnp.int32(sched.iterations_per_eval)
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
            return runner, jax.tree.map(jnp.add, sums, metrics), count + 1

        return jax.lax.while_loop(more, one, (runner, zeros, jnp.int32(0)))

    def block(runner: Runner):
        runner, sums, count = run_iterations(runner)
        episodes = sums.pop("train/episodes")
        return_sum = sums.pop("train/return_sum")
        length_sum = sums.pop("train/length_sum")
        metrics = jax.tree.map(lambda x: x / count, sums)
        metrics["train/episode_return"] = return_sum / jnp.maximum(episodes, 1)
        metrics["train/episode_length"] = length_sum / jnp.maximum(episodes, 1)
        metrics["train/episodes"] = episodes
        metrics["train/iterations"] = count
        key, k_eval = jax.random.split(runner.key)
        eval_return, eval_finished = evaluate(runner, k_eval)
        metrics["eval/return"] = eval_return
        metrics["eval/finished"] = eval_finished
        metrics["env_steps"] = runner.env_steps
        runner = runner._replace(key=key, block=runner.block + 1)
        return runner, metrics

    return init, block, sched


def make_train(algo, env, config):
    """The whole run as one pure function.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``).
      env: a single (unvectorised) ``purerl.envs.Env``.
      config: ``algo.Config``.

    Returns:
      ``train(key) -> (Runner, metrics)`` where each metric is stacked over the
      ``num_evals`` evaluation blocks. Jit it; vmap it over keys for seeds.

    Example:
      >>> train = purerl.make_train(ppo, purerl.envs.make("CartPole-v1"), ppo.Config())
      >>> runner, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 16))
    """
    init, block, sched = make_block(algo, env, config)

    def train(key):
        runner = init(key)
        return jax.lax.scan(lambda r, _: block(r), runner, None, length=sched.num_evals)

    return train


class HostRunner(NamedTuple):
    """What a host-env run carries between chunks (the envs' own state lives in the
    ``HostEnv`` objects); one pytree, checkpointable."""

    agent: Any  # the algorithm's state, with a leading seed axis
    key: jax.Array  # [num_seeds] PRNG keys of the next iteration
    env_steps: jax.Array  # int32 env steps done per seed
    iteration: jax.Array  # int32 iterations done


class HostLoop:
    """The fixed-rollout driver for host environments (``purerl.envs.make_host``).

    The same iteration as ``make_block``'s, with the envs stepped in Python:
    ``config.num_steps`` steps of the host envs with a jitted ``agent.act``, then one
    jitted ``rollout_batch`` + ``agent.update`` (rewards scaled, time-limit steps
    bootstrapped with ``gamma * V(final_obs)`` when the agent has a value function;
    off-policy agents such as SAC take the transitions into their replay and
    bootstrap from ``batch.next_obs`` themselves). ``num_seeds`` independent agents
    are vmapped: seed ``i`` drives host envs ``i * config.num_envs`` to ``(i + 1) *
    config.num_envs - 1``. The agent state is donated to the update, so a replay
    buffer inside it is updated in place rather than copied every step.

    Example:
      >>> host = make_host("dmc:cartpole-swingup", num_envs=3)
      >>> loop = HostLoop(sac, host, sac.Config(), num_seeds=3,
      ...                 eval_env=make_host("dmc:cartpole-swingup", num_envs=3 * 8))
      >>> runner = loop.init(jax.random.key(0))
      >>> runner, history = loop.run(runner, 1000)
      >>> returns = loop.evaluate(runner)          # [3], one mean per seed
    """

    def __init__(self, algo, host_env, config, num_seeds: int | None = None,
                 eval_env=None):
        seeds = 1 if num_seeds is None else num_seeds
        if seeds < 1:
            raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
        if host_env.num_envs != seeds * config.num_envs:
            raise ValueError(
                f"host_env.num_envs ({host_env.num_envs}) must equal config.num_envs "
                f"({config.num_envs})" + (f" x num_seeds ({seeds})" if num_seeds else "")
            )
        if getattr(algo, "EPISODIC", False):
            raise ValueError(
                f"{algo.__name__} needs episodic rollouts; host loops run fixed ones"
            )
        if getattr(config, "normalize_obs", False):
            raise ValueError(
                "host loops do not normalise observations: set normalize_obs=False"
            )
        check_action_space(algo, host_env.spec)
        if eval_env is not None:
            if eval_env.spec.obs_shape != host_env.spec.obs_shape:
                raise ValueError("eval_env must observe what host_env observes")
            if eval_env.num_envs != seeds * config.num_eval_envs:
                raise ValueError(
                    f"eval_env.num_envs ({eval_env.num_envs}) must equal "
                    f"config.num_eval_envs ({config.num_eval_envs}) x {seeds} seeds"
                )
            if eval_env.spec.max_episode_steps is None:
                raise ValueError("evaluation needs eval_env.spec.max_episode_steps")
        self.algo, self.config, self.num_seeds = algo, config, num_seeds
        self.host_env, self.eval_env = host_env, eval_env
        self.agent = agent = algo.make(config, host_env.spec)
        self.schedule = schedule(config)
        self._obs = None  # the observation to act on next; None until the first reset
        horizon = config.num_steps

        def per_seed(x, n):
            return x.reshape(seeds, n, *x.shape[1:])

        def act(agent_state, obs, key, t):
            # Keys are derived inside jit: host-side key ops cost as much as the policy.
            keys = jax.vmap(jax.random.fold_in, (0, None))(key, t)
            out = jax.vmap(agent.act)(agent_state, per_seed(obs, config.num_envs), keys)
            # [seeds, num_envs, ...] -> [seeds * num_envs, ...], the host envs' axis.
            return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

        def learn(agent_state, traj, key):
            # traj leaves are [T, seeds * num_envs, ...] -> [seeds][T, num_envs, ...].
            traj = jax.tree.map(
                lambda x: x.reshape(x.shape[0], seeds, -1, *x.shape[2:]), traj)
            k_update = jax.vmap(jax.random.fold_in, (0, None))(key, horizon)
            next_key = jax.vmap(lambda k: jax.random.split(k)[0])(key)

            def one(state, traj, k):
                return agent.update(state, rollout_batch(agent, state, traj, config), k)

            agent_state, metrics = jax.vmap(one, (0, 1, 0))(agent_state, traj, k_update)
            return agent_state, metrics, next_key

        def act_eval(agent_state, obs):
            key = jax.random.key(0)  # unused in eval mode
            action, _ = jax.vmap(lambda s, o: agent.act(s, o, key, eval=True))(
                agent_state, per_seed(obs, config.num_eval_envs))
            return action.reshape(-1, *action.shape[2:])

        self._init = jax.jit(jax.vmap(agent.init))
        self._act = jax.jit(act)
        self._learn = jax.jit(learn, donate_argnums=0)
        self._act_eval = jax.jit(act_eval)

    def _squeeze(self, tree):
        return tree if self.num_seeds is not None else jax.tree.map(lambda x: x[0], tree)

    def init(self, key) -> HostRunner:
        """Fresh agents (one per seed) and the host envs' first observations."""
        seeds = self.num_seeds or 1
        k_agent, k_loop = jax.random.split(key)
        self._obs = None
        return HostRunner(self._init(jax.random.split(k_agent, seeds)),
                          jax.random.split(k_loop, seeds), jnp.int32(0), jnp.int32(0))

    def reset(self, seed: int | None = None) -> None:
        """Restart the training envs' episodes (e.g. after restoring a checkpoint)."""
        self._obs = self.host_env.reset(seed).obs

    def run(self, runner: HostRunner, num_iterations: int, callback=None):
        """``num_iterations`` iterations; returns ``(runner, history)``.

        ``history`` maps each metric to a numpy array ``[num_iterations(, num_seeds)]``:
        the update's metrics, ``train/episodes`` (episodes finished in the iteration),
        ``train/episode_return`` and ``train/episode_length`` (their means, unscaled;
        NaN when none finished) and ``env_steps`` (cumulative, per seed).
        ``callback(iteration, metrics)`` is called after every iteration.
        """
        import numpy as np

        config, seeds = self.config, self.num_seeds or 1
        if self._obs is None:
            self.reset()
        agent_state, key = runner.agent, runner.key
        env_steps, iteration = int(runner.env_steps), int(runner.iteration)
        history = {}
        for _ in range(num_iterations):
            steps = []
            for t in range(config.num_steps):
                action, extras = self._act(agent_state, self._obs, key, t)
                action = np.asarray(action)
                ts = self.host_env.step(action)
                steps.append({
                    "obs": self._obs,
                    "action": action,
                    "reward": ts.reward,
                    "terminated": ts.terminated,
                    "truncated": ts.truncated,
                    "final_obs": ts.info["final_obs"],
                    "episode_return": ts.info["episode_return"],
                    "episode_length": ts.info["episode_length"],
                    "extras": extras,
                })
                self._obs = ts.obs
            traj = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *steps)
            episode_return = traj.pop("episode_return").reshape(len(steps), seeds, -1)
            episode_length = traj.pop("episode_length").reshape(len(steps), seeds, -1)
            agent_state, metrics, key = self._learn(agent_state, traj, key)
            env_steps += config.num_envs * config.num_steps
            iteration += 1
            done = (traj["terminated"] | traj["truncated"]).reshape(len(steps), seeds, -1)
            count = done.sum((0, 2))
            with np.errstate(invalid="ignore"):
                metrics = {name: np.asarray(value) for name, value in metrics.items()}
                metrics["train/episodes"] = count
                metrics["train/episode_return"] = (
                    np.where(done, episode_return, 0).sum((0, 2)) / count)
                metrics["train/episode_length"] = (
                    np.where(done, episode_length, 0).sum((0, 2)) / count)
            metrics["env_steps"] = np.full(seeds, env_steps)
            metrics = self._squeeze(metrics)
            for name, value in metrics.items():
                history.setdefault(name, []).append(value)
            if callback is not None:
                callback(iteration - 1, metrics)
        runner = HostRunner(agent_state, key, jnp.int32(env_steps), jnp.int32(iteration))
        return runner, {name: np.asarray(values) for name, values in history.items()}

    def evaluate(self, runner: HostRunner, seed: int | None = None):
        """Mean undiscounted return of one episode per eval env, eval-mode policy:
        ``[num_seeds]`` (a scalar without ``num_seeds``)."""
        import numpy as np

        if self.eval_env is None:
            raise ValueError("HostLoop was built without an eval_env")
        env, seeds = self.eval_env, self.num_seeds or 1
        ts = env.reset(seed)
        finished = np.zeros(env.num_envs, bool)
        returns = np.zeros(env.num_envs, np.float32)
        for _ in range(env.spec.max_episode_steps):
            ts = env.step(np.asarray(self._act_eval(runner.agent, ts.obs)))
            done = ts.terminated | ts.truncated
            returns = np.where(done & ~finished, ts.info["episode_return"], returns)
            finished |= done
            if finished.all():
                break
        return self._squeeze(returns.reshape(seeds, -1).mean(1))


def run_host(algo, host_env, config, key, *, num_iterations=None, callback=None):
    """Train one agent on host envs with ``HostLoop``; no evaluation.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``).
      host_env: a ``HostEnv`` with ``num_envs == config.num_envs``.
      config: ``algo.Config``.
      key: PRNG key.
      num_iterations: iterations to run; default ``config.total_steps // (num_envs *
        num_steps)`` (what learning-rate annealing counts on).
      callback: ``callback(iteration, metrics)`` after every iteration.

    Returns:
      ``(agent_state, history)``, ``history`` as in ``HostLoop.run``.
    """
    loop = HostLoop(algo, host_env, config)
    if num_iterations is None:
        num_iterations = config.total_steps // (config.num_envs * config.num_steps)
    runner, history = loop.run(loop.init(key), num_iterations, callback)
    return jax.tree.map(lambda x: x[0], runner.agent), history
