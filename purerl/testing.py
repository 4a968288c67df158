"""Helpers for tests of purerl algorithms (used by ``tests/``; no test framework needed).

``check_contract`` checks an algorithm, in-tree or not, against what the driver relies
on (shapes, one compilation, determinism, seeds, vmap).

``as_numpy`` / ``leaves_equal`` compare whole runner or agent states bit for bit (typed
PRNG keys compared through their key data); ``random_batch`` builds a rollout batch
with every field the on-policy algorithms read, for shape and compilation tests.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from purerl.types import EnvSpec, Transition
from purerl.algos.base import spec_of


def as_numpy(tree) -> list[np.ndarray]:
    """The leaves of ``tree`` as numpy arrays; typed PRNG keys as their uint32 data."""
    return [
        np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
        for x in jax.tree.leaves(tree)
    ]


def leaves_equal(a, b) -> bool:
    """True if the two pytrees have identical leaves (NaN equal to NaN: a metric
    not measured yet, such as a maze's state entropy, is NaN in both)."""
    return all(np.array_equal(x, y, equal_nan=np.issubdtype(np.asarray(x).dtype,
                                                             np.inexact))
               for x, y in zip(as_numpy(a), as_numpy(b)))


def random_batch(spec: EnvSpec, key, T: int = 8, B: int = 4, p_done: float = 0.1,
                 value_std: float = 0.0) -> Transition:
    """A random time-major ``[T, B]`` batch with log-probs, values (zero, or Gaussian
    with ``value_std``), a mask and next observations."""
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    if hasattr(spec.action_space, "n"):
        action = jax.random.randint(k1, (T, B), 0, spec.action_space.n)
    else:
        action = jax.random.normal(k1, (T, B, *spec.action_space.shape))
    done = jax.random.bernoulli(k2, p_done, (T, B))
    obs = jax.random.normal(k3, (T, B, *spec.obs_shape))
    return Transition(
        obs=obs, action=action, reward=jax.random.normal(k4, (T, B)),
        discount=0.99 * (1.0 - done), terminated=done, truncated=jnp.zeros((T, B), bool),
        extras={"log_prob": -jnp.ones((T, B)) * 0.7,
                "value": value_std * jax.random.normal(k5, (T, B)),
                "mask": jnp.ones((T, B))},
        bootstrap_value=jnp.zeros(B), next_obs=jnp.roll(obs, -1, axis=0),
    )


def split_config(algo, **fields):
    """``(algo.config, RunConfig)`` from one set of keyword arguments: the
    ``RunConfig`` fields (``total_steps``, ``num_envs``, ...) on top of ``algo.run``,
    the rest into ``algo.config``."""
    algo = spec_of(algo)
    import dataclasses

    from purerl.config import RunConfig

    names = {f.name for f in dataclasses.fields(RunConfig)}
    run = {k: v for k, v in fields.items() if k in names}
    cfg = {k: v for k, v in fields.items() if k not in names}
    return algo.config(**cfg), dataclasses.replace(algo.run, **run)


def train_fn(algo, env, **fields):
    """``make_train(algo, env, *split_config(algo, **fields))``."""
    from purerl.loops import make_train

    return make_train(algo, env, *split_config(algo, **fields))


@functools.cache
def _jitted_mjx(env_id: str, solver: str, x64: bool):
    """``(env, jit(reset), jit(step))``, compiled once per setting and precision."""
    from purerl.envs import make

    env = make(env_id, solver=solver)
    return env, jax.jit(env.reset), jax.jit(env.step)


def mjx_against_dm_control(env_id: str, horizon: int, *, solver: str = "dmc",
                           seed: int = 0, one_step: bool = False, hold: int = 1,
                           prepare=None) -> dict:
    """Step an ``mjx:`` env and dm_control's own env side by side.

    Both start from dm_control's initial state of ``suite.load(..., random=seed)``
    (copied into the MJX data: ``qpos``, ``qvel``, the solver's warm start; the
    reacher's target) and take the same uniform random actions (``seed``), each held
    for ``hold`` steps (held actions travel further: they reach the rewarding states
    that independent draws rarely do). With
    ``one_step`` the MJX env restarts from dm_control's state before every step, so
    each step's error is that step's own (no compounding through chaotic contacts).
    The MJX env runs in float64 when ``jax_enable_x64`` is on. ``prepare(physics)``,
    when given, edits dm_control's physics after its reset (a start where the reward
    is informative: near the target, upright); a forward pass follows it.

    Returns numpy arrays over the ``horizon`` steps: ``reward`` and ``reward_dmc``,
    ``obs_error`` (the max absolute error of the step's observation, from
    ``info["final_obs"]``), and ``truncated`` / ``truncated_dmc``.
    """
    from dm_control import suite

    from purerl.envs.host import _flatten
    from purerl.envs.mjx import TASKS

    env, reset, step = _jitted_mjx(env_id, solver, bool(jax.config.jax_enable_x64))
    task = TASKS[env_id.removeprefix("mjx:")]
    dmc = suite.load(task.domain, task.task, task_kwargs={"random": seed})
    dmc.reset()
    physics = dmc.physics
    if prepare is not None:
        prepare(physics)
        physics.forward()
    state, _ = reset(jax.random.key(seed))
    dtype = state.data.qpos.dtype
    if task.domain == "reacher":
        state = state.replace(target=jnp.asarray(physics.named.model.geom_pos["target", :2],
                                                 dtype))

    def synced(state):
        # Copies: jax may alias a float64 numpy buffer, which dm_control's next step
        # overwrites while our step (dispatched asynchronously) still reads it.
        d = state.data.replace(**{
            name: jnp.array(np.array(getattr(physics.data, name)), dtype)
            for name in ("qpos", "qvel", "qacc_warmstart")})
        return state.replace(data=d, steps=jnp.int32(dmc._step_count))

    actions = np.random.default_rng(seed).uniform(
        -1, 1, (-(-horizon // hold), *env.spec.action_space.shape)).astype(np.float32)
    actions = np.repeat(actions, hold, axis=0)[:horizon]
    out = {k: np.zeros(horizon) for k in ("reward", "reward_dmc", "obs_error")}
    out.update(truncated=np.zeros(horizon, bool), truncated_dmc=np.zeros(horizon, bool))
    state = synced(state)
    key = jax.random.key(seed + 1)
    for t in range(horizon):
        if one_step:
            state = synced(state)
        state, ts = step(state, actions[t], key)
        time_step = dmc.step(actions[t].astype(np.float64))
        out["reward"][t] = float(ts.reward)
        out["reward_dmc"][t] = time_step.reward
        out["obs_error"][t] = np.abs(np.asarray(ts.info["final_obs"], np.float64)
                                     - _flatten(time_step.observation)).max()
        out["truncated"][t] = bool(ts.truncated)
        out["truncated_dmc"][t] = time_step.last()
    dmc.close()
    return out


def check_state(algo, state) -> None:
    """Check the agent-state convention of ``purerl.algos.base`` on one state (from
    ``init``): a NamedTuple whose ``params`` is a dict of named parameter groups; each
    ``target_<group>`` field matches its group's tree and shapes; the groups the
    spec's phases restore or freeze exist. Raise ``AssertionError`` naming what does
    not hold."""
    algo = spec_of(algo)

    def fail(what):
        raise AssertionError(f"{algo.name}'s agent state: {what} (the convention is "
                             "in purerl.algos.base's docstring)")

    fields = getattr(state, "_fields", None)
    if fields is None or "params" not in fields:
        fail(f"a {type(state).__name__}, not a NamedTuple with a params field")
    if not isinstance(state.params, dict) or not all(isinstance(g, str)
                                                     for g in state.params):
        fail(f"params is a {type(state.params).__name__}, not a dict of named groups")
    for f in fields:
        if not f.startswith("target_"):
            continue
        group = f[len("target_"):]
        if group not in state.params:
            fail(f"field {f} names no parameter group; groups: {', '.join(state.params)}")
        mine = jax.tree.map(lambda x: (x.shape, x.dtype), getattr(state, f))
        theirs = jax.tree.map(lambda x: (x.shape, x.dtype), state.params[group])
        if jax.tree.structure(mine) != jax.tree.structure(theirs) or mine != theirs:
            fail(f"field {f} is not shaped as params[{group!r}]")
    for name, phase in algo.phases.items():
        for group in (*(phase.restore or ()), *phase.freeze):
            if group not in state.params:
                fail(f"phase {name!r} names group {group!r}; groups: "
                     f"{', '.join(state.params)}")


def check_contract(algo, env, config=None, run=None, *, rtol: float = 2e-4,
                   atol: float = 2e-5) -> None:
    """Check what the driver relies on of an algorithm, on one env, with two
    evaluation blocks of ``loops.make_block``; raise ``AssertionError`` naming the
    first thing that does not hold. For in-tree and out-of-tree algorithms alike
    (``tests/algos/test_contract.py`` calls it for every module):

    * a block keeps every leaf's shape and dtype (the agent's state, the memory, the
      carry, the metrics) and compiles once;
    * the env-step count grows and the updates move ``state.params`` in each block;
    * the metrics are finite (env metrics, which may be NaN until measured, and the
      update metrics of a block that did not train excepted);
    * the same key gives the same bits, another key other parameters;
    * two seeds vmapped equal each seed run alone (to ``rtol``/``atol``: batched and
      unbatched kernels round differently);
    * the agent's state keeps the convention ``check_state`` checks.

    ``algo`` is an ``AlgoSpec`` or a module with ``SPEC``; ``env`` an id or an env;
    ``config`` and ``run`` default to the spec's (give tiny ones: this compiles the
    block twice, vmapped and not).
    """
    import chex

    from purerl import envs, loops

    algo = spec_of(algo)
    env = envs.make(env) if isinstance(env, str) else env
    config = algo.config() if config is None else config
    run = algo.run if run is None else run
    init, block, _ = loops.make_block(algo, env, config, run)
    init, block = jax.jit(init), jax.jit(block)

    def fail(what):
        raise AssertionError(f"{algo.name} on {env.spec.name or 'the env'}: {what}")

    r0 = init(jax.random.key(0))
    check_state(algo, r0.agent)
    r1, m1 = block(r0)
    r2, m2 = block(r1)
    chex.assert_trees_all_equal_shapes_and_dtypes(r0, r1, r2)
    chex.assert_trees_all_equal_shapes_and_dtypes(m1, m2)
    if not int(r2.env_steps) > int(r1.env_steps) > 0:
        fail(f"env_steps did not grow: {int(r1.env_steps)}, {int(r2.env_steps)}")
    params = [getattr(r.agent, "params", r.agent) for r in (r0, r1, r2)]
    for i in (0, 1):
        if leaves_equal(params[i], params[i + 1]):
            fail(f"block {i + 1} left the parameters as they were")
    for m in (m1, m2):
        # A block without a training round (a replay's warm-up) has NaN update metrics.
        trained = int(m["train/rounds"]) > 0
        for name, value in m.items():
            driver = name.startswith(("train/", "eval/")) or name == "env_steps"
            if name.startswith("env/") or not (trained or driver):
                continue
            if not np.all(np.isfinite(np.asarray(value))):
                fail(f"metric {name} is not finite: {value}")
    if not leaves_equal(block(init(jax.random.key(0))), (r1, m1)):
        fail("the same key gave different bits")
    other = block(init(jax.random.key(1)))[0]
    if leaves_equal(getattr(other.agent, "params", other.agent), params[1]):
        fail("another key gave the same parameters")
    if block._cache_size() != 1:
        fail(f"the block compiled {block._cache_size()} times, not once")
    keys = jax.random.split(jax.random.key(3), 2)
    vblock = jax.jit(jax.vmap(block))
    batched = jax.jit(jax.vmap(init))(keys)
    for _ in range(2):
        batched, _ = vblock(batched)
    for i in range(2):
        alone = init(keys[i])
        for _ in range(2):
            alone, _ = block(alone)
        mine = jax.tree.map(lambda x, i=i: x[i], getattr(batched.agent, "params",
                                                         batched.agent))
        theirs = getattr(alone.agent, "params", alone.agent)
        for x, y in zip(as_numpy(mine), as_numpy(theirs), strict=True):
            if not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
                fail(f"seed {i} vmapped differs from seed {i} alone by "
                     f"{np.max(np.abs(np.asarray(x, float) - np.asarray(y, float)))}")
