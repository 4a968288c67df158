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


def check_compatible(algo, env, config) -> None:
    """Clear errors for an env/algorithm mismatch, before anything is traced."""
    space = env.spec.action_space
    allowed = getattr(algo, "ACTION_SPACES", None)
    if allowed is not None and type(space).__name__ not in allowed:
        raise ValueError(
            f"{algo.__name__} supports action spaces {list(allowed)}, but "
            f"{env.spec.name or 'the env'} has {type(space).__name__}"
        )
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
    gamma = config.gamma

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
        done = traj["terminated"] | traj["truncated"]
        # Rewards in the agent's units: scaled, then time-limit bootstrapped.
        reward = traj["reward"] * getattr(config, "reward_scale", 1.0)
        extras = traj["extras"]
        if agent.value is not None:
            # Values in two batched calls after the rollout, not one small call per
            # step: V(obs) for the update, V(true next obs) for time-limit bootstrapping.
            extras = {**extras, "value": agent.value(runner.agent, traj["obs"])}
            next_value = agent.value(runner.agent, traj["final_obs"])
            reward = reward + gamma * traj["truncated"] * next_value
            bootstrap = next_value[-1]
        else:
            bootstrap = jnp.zeros(reward.shape[1:], jnp.float32)
        if episodic:
            # A step is live until its env's first episode has ended.
            ended_before = jnp.cumsum(done, axis=0) - done > 0
            live = ~ended_before
            extras = {**extras, "mask": live.astype(jnp.float32)}
            steps = live.sum(dtype=jnp.int32)
            counted = done & live
        else:
            steps = jnp.int32(sched.steps_per_iteration)
            counted = done
        batch = Transition(
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


def run_host(algo, host_env, config, key, *, num_iterations=None, callback=None):
    """The on-policy driver for host environments (``purerl.envs.make_host``).

    The same iteration as ``make_block``'s fixed rollouts, with the env stepped in
    Python: ``config.num_steps`` steps of the ``config.num_envs`` host envs with the
    jitted ``agent.act``, then one jitted function that builds the ``Transition``
    (rewards scaled by ``config.reward_scale`` and bootstrapped with
    ``gamma * V(final_obs)`` on truncated steps, V(obs) in ``extras["value"]``,
    ``discount = gamma * (1 - done)``) and calls ``agent.update``. There is no
    evaluation and no observation normalisation.

    Args:
      algo: an algorithm module (e.g. ``purerl.algos.ppo``).
      host_env: a ``HostEnv`` with ``num_envs == config.num_envs``.
      config: ``algo.Config``.
      key: PRNG key.
      num_iterations: iterations to run; default ``config.total_steps // (num_envs *
        num_steps)`` (what learning-rate annealing counts on).
      callback: ``callback(iteration, metrics)`` after every iteration, with the
        iteration's metrics as Python floats (e.g. for a progress bar or a log).

    Returns:
      ``(agent_state, history)``: ``history`` maps each metric name to a numpy array
      over iterations: the update's metrics, ``train/episodes`` (episodes finished in
      the iteration), ``train/episode_return`` and ``train/episode_length`` (their
      means, unscaled; NaN when none finished) and ``env_steps`` (cumulative).
    """
    import numpy as np

    if host_env.num_envs != config.num_envs:
        raise ValueError(
            f"host_env.num_envs ({host_env.num_envs}) must equal config.num_envs "
            f"({config.num_envs})"
        )
    if getattr(algo, "EPISODIC", False):
        raise ValueError(
            f"{algo.__name__} needs episodic rollouts; run_host runs fixed ones"
        )
    if getattr(config, "normalize_obs", False):
        raise ValueError(
            "run_host does not normalise observations: set normalize_obs=False"
        )
    space = host_env.spec.action_space
    allowed = getattr(algo, "ACTION_SPACES", None)
    if allowed is not None and type(space).__name__ not in allowed:
        raise ValueError(
            f"{algo.__name__} supports action spaces {list(allowed)}, but "
            f"{host_env.spec.name or 'the env'} has {type(space).__name__}"
        )
    agent = algo.make(config, host_env.spec)
    gamma = config.gamma
    horizon = config.num_steps
    steps_per_iteration = config.num_envs * config.num_steps
    if num_iterations is None:
        num_iterations = config.total_steps // steps_per_iteration

    @jax.jit
    def act(agent_state, obs, keys, t):
        # The key is picked inside jit: indexing a key array on the host costs about
        # as much as the policy itself.
        return agent.act(agent_state, obs, keys[t, 0])

    @jax.jit
    def learn(agent_state, traj, key):
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
        batch = Transition(
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
        return agent.update(agent_state, batch, key)

    key, k_agent = jax.random.split(key)
    agent_state = agent.init(k_agent)
    ts = host_env.reset()
    obs = ts.obs
    env_steps = 0
    history = {}
    for iteration in range(num_iterations):
        key, k_rollout, k_update = jax.random.split(key, 3)
        keys = jax.random.split(k_rollout, (horizon, 2))
        steps = []
        for t in range(horizon):
            action, extras = act(agent_state, obs, keys, t)
            action = np.asarray(action)
            ts = host_env.step(action)
            steps.append({
                "obs": obs,
                "action": action,
                "reward": ts.reward,
                "terminated": ts.terminated,
                "truncated": ts.truncated,
                "final_obs": ts.info["final_obs"],
                "episode_return": ts.info["episode_return"],
                "episode_length": ts.info["episode_length"],
                "extras": extras,
            })
            obs = ts.obs
        traj = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *steps)
        episode_return = traj.pop("episode_return")
        episode_length = traj.pop("episode_length")
        agent_state, metrics = learn(agent_state, traj, k_update)
        env_steps += steps_per_iteration
        done = traj["terminated"] | traj["truncated"]
        metrics = {name: float(value) for name, value in metrics.items()}
        metrics["train/episodes"] = int(done.sum())
        metrics["train/episode_return"] = (
            float(episode_return[done].mean()) if done.any() else float("nan"))
        metrics["train/episode_length"] = (
            float(episode_length[done].mean()) if done.any() else float("nan"))
        metrics["env_steps"] = env_steps
        for name, value in metrics.items():
            history.setdefault(name, []).append(value)
        if callback is not None:
            callback(iteration, metrics)
    return agent_state, {name: np.asarray(values) for name, values in history.items()}
