"""NPG and TRPO: config checks, update contracts, determinism, vmap over seeds, the
trust region of TRPO's line search, the natural direction against a dense Fisher solve,
and learning a contextual bandit."""

import chex
import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import purerl
from purerl.algos import npg, trpo
from purerl.testing import as_numpy, leaves_equal, split_config, train_fn
from purerl.testing import random_batch as _random_batch

ALGOS = {"npg": npg, "trpo": trpo}
# Tiny configs, each compiled once and shared through the helper below. cg_damping 0.1
# for both: with NPG's default 1e-4, F + λI is so ill-conditioned that CG amplifies the
# float32 rounding differences between batched (vmapped) and single matmuls to ~1e-2.
SMALL = dict(total_steps=512, num_envs=4, num_steps=16, num_evals=2, num_eval_envs=2,
             vf_minibatch_size=16, hidden_sizes=(16, 16), cg_damping=0.1)
# The contextual bandit: 16 updates of 16 envs x 8 steps, learnt within them, with an
# evaluation after each update (so every logged metric is one update's).
BANDIT = dict(total_steps=2048, num_envs=16, num_steps=8, num_evals=16, num_eval_envs=8,
              vf_minibatch_size=32, hidden_sizes=(16,), cg_damping=0.1,
              normalize_obs=False)
_COMPILED = {}


def compiled(name, env_id, overrides, vmapped):
    """jit(make_train) (or jit(vmap(make_train))) for one algorithm, env and config,
    built once per test session: compilation is most of these tests' cost."""
    key = (name, env_id, vmapped)
    if key not in _COMPILED:
        algo = ALGOS[name]
        cfg, run = split_config(algo, **overrides)
        train = purerl.make_train(algo, purerl.envs.make(env_id), cfg, run)
        _COMPILED[key] = cfg, jax.jit(jax.vmap(train) if vmapped else train)
    return _COMPILED[key]


def bandit(name, vmapped):
    return compiled(name, "Probe-Bandit-v0", BANDIT, vmapped)


def random_batch(spec, key, T=16, B=4):
    return _random_batch(spec, key, T, B, value_std=0.1)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("npg", dict(step_size=0.0), r"Config\.step_size must be in"),
        ("npg", dict(cg_iters=0), r"Config\.cg_iters must be in"),
        ("npg", dict(gae_lambda=1.5), r"Config\.gae_lambda must be in"),
        ("npg", dict(vf_minibatch_size=10**5),
         r"Config\.vf_minibatch_size must be <= RunConfig\.num_envs \* num_steps"),
        ("npg", dict(num_envs=1, num_steps=1, total_steps=8, vf_minibatch_size=1),
         r"RunConfig\.num_envs \* num_steps must be >= 2"),
        ("npg", dict(total_steps=100), r"RunConfig\.total_steps must be >="),
        ("npg", dict(activation="sigmoid"), r"Config\.activation must be one of"),
        ("trpo", dict(max_kl=-0.01), r"Config\.max_kl must be in"),
        ("trpo", dict(backtrack_coef=1.0), r"Config\.backtrack_coef must be in"),
        ("trpo", dict(kl_accept_factor=0.0), r"Config\.kl_accept_factor must be in"),
        ("trpo", dict(cg_damping=-1.0), r"Config\.cg_damping must be in"),
        ("trpo", dict(fvp_stride=0), r"Config\.fvp_stride must be in"),
        ("trpo", dict(fvp_stride=10**5),
         r"Config\.fvp_stride must be <= RunConfig\.num_envs \* num_steps"),
        ("trpo", dict(vf_lr=0.0), r"Config\.vf_lr must be in"),
    ],
)
def test_config_validation_names_the_field(name, kwargs, message):
    # Config fields are checked by Config itself, those that depend on the rollout
    # (RunConfig) by make_train: train_fn runs both.
    with pytest.raises(ValueError, match=message):
        train_fn(ALGOS[name], purerl.envs.make("CartPole-v1"), **kwargs)


def test_make_rejects_another_algorithms_config():
    spec = purerl.envs.make("CartPole-v1").spec
    with pytest.raises(TypeError, match="purerl.algos.trpo.Config"):
        trpo.make(npg.Config(), spec)


@pytest.mark.parametrize("name", list(ALGOS))
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_update_is_stable_and_compiles_once(name, env_id):
    algo = ALGOS[name]
    env = purerl.envs.make(env_id)
    agent = algo.make(split_config(algo, **SMALL)[0], env.spec)
    state = agent.init(jax.random.key(0))
    update = jax.jit(agent.update)
    batch = random_batch(env.spec, jax.random.key(1))
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    newer_state, _ = update(new_state, batch, jax.random.key(3))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
    assert int(newer_state.iteration) == 2
    assert not leaves_equal(state.params["actor"], newer_state.params["actor"])
    assert not leaves_equal(state.params["critic"], newer_state.params["critic"])
    obs = batch.obs[0]
    B = obs.shape[0]
    carry, first = agent.init_carry(B), jax.numpy.zeros(B, bool)
    action, _, _ = agent.act(state, carry, obs, first, jax.random.key(4))
    assert action.shape == batch.action.shape[1:]
    a1, _, _ = agent.act(state, carry, obs, first, jax.random.key(5), eval=True)
    a2, _, _ = agent.act(state, carry, obs, first, jax.random.key(6), eval=True)
    np.testing.assert_array_equal(a1, a2)


@pytest.mark.parametrize("name", list(ALGOS))
def test_same_key_same_result_different_keys_differ(name):
    _, train = bandit(name, vmapped=False)
    out1 = train(jax.random.key(0))
    out2 = train(jax.random.key(0))
    out3 = train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)


@pytest.mark.parametrize("name", list(ALGOS))
def test_vmap_over_seeds_equals_separate_runs_and_learns_the_bandit(name):
    """One vmapped program over 4 seeds equals 4 separate runs, and every seed learns
    Probe-Bandit-v0 (the greedy action follows the context: eval return 1)."""
    _, vtrain = bandit(name, vmapped=True)
    _, train = bandit(name, vmapped=False)
    keys = jax.random.split(jax.random.key(7), 4)
    batched = vtrain(keys)
    for i in range(4):
        single = train(keys[i])
        for x, y in zip(as_numpy(single), as_numpy(batched)):
            # CG's recurrences amplify the float32 rounding differences of batched and
            # single matmuls a little beyond first-order methods' 2e-5.
            np.testing.assert_allclose(x, y[i], rtol=1e-4, atol=1e-5)
    returns = np.asarray(batched[1]["eval/return"][:, -1])
    assert returns.min() == 1.0, batched[1]["eval/return"]


def test_trpo_accepted_steps_stay_in_the_trust_region():
    """On real rollouts (4 seeds x 16 updates on the bandit): whenever the line search
    accepts a step, the measured mean KL(π_old ‖ π_new) is within
    kl_accept_factor · max_kl; a rejected step reports step fraction 0."""
    cfg, vtrain = bandit("trpo", vmapped=True)
    _, metrics = vtrain(jax.random.split(jax.random.key(7), 4))
    assert np.all(np.asarray(metrics["train/iterations"]) == 1)  # per-update metrics
    accepted = np.asarray(metrics["trpo/accepted"])
    kl = np.asarray(metrics["trpo/kl"])
    fraction = np.asarray(metrics["trpo/step_fraction"])
    assert accepted.mean() > 0.5, accepted
    bound = cfg.kl_accept_factor * cfg.max_kl
    assert np.all(kl[accepted == 1] <= bound * (1 + 1e-5)), kl
    assert np.all(kl[accepted == 1] > 0), kl
    assert np.all(fraction[accepted == 1] > 0), fraction
    np.testing.assert_array_equal(fraction[accepted == 0], 0.0)


def policy_setup(cfg, env, key):
    """(problem, theta) of an initial actor at a random batch."""
    k_init, k_batch = jax.random.split(key)
    parts = npg.make_parts(cfg, env.spec)
    state = parts.agent.init(k_init)
    data = npg.prepare_batch(random_batch(env.spec, k_batch), cfg.gae_lambda, env.spec)
    theta, unravel = ravel_pytree(state.params["actor"])
    problem = npg.policy_problem(parts.actor, unravel, theta, data, cfg.fvp_stride,
                                 cfg.cg_damping)
    return problem, theta


@jax.jit
def trust_region_steps(key):
    """TRPO's step on a random CartPole batch from an initial actor, with the default
    bound and with one no candidate can meet: (theta, (new_theta, metrics) x 2)."""
    env = purerl.envs.make("CartPole-v1")
    cfg, _ = split_config(trpo, **SMALL)
    strict, _ = split_config(trpo, **SMALL, kl_accept_factor=1e-9, max_backtracks=3)
    problem, theta = policy_setup(cfg, env, key)
    return theta, trpo.trust_region_step(problem, theta, cfg), trpo.trust_region_step(
        problem, theta, strict)


def test_trpo_rejected_step_leaves_the_actor_unchanged():
    """With a KL bound no candidate can meet the line search fails and θ_old comes back
    bit-identical (forgetting to restore θ is a classic TRPO bug); with the default
    bound the same step is accepted within it."""
    theta, (new_theta, m), (kept, m_strict) = trust_region_steps(jax.random.key(0))
    cfg, _ = split_config(trpo, **SMALL)
    assert float(m["trpo/accepted"]) == 1.0
    assert 0 < float(m["trpo/kl"]) <= cfg.max_kl
    assert not np.array_equal(new_theta, theta)
    assert float(m_strict["trpo/accepted"]) == 0.0
    assert float(m_strict["trpo/step_fraction"]) == 0.0
    assert float(m_strict["trpo/kl"]) == 0.0
    assert float(m_strict["trpo/num_backtracks"]) == 3
    np.testing.assert_array_equal(kept, theta)


DENSE, _ = split_config(npg, **{**SMALL, "hidden_sizes": (4,)}, cg_iters=60)


@jax.jit
def natural_direction_and_fisher(key):
    problem, theta = policy_setup(DENSE, purerl.envs.make("CartPole-v1"), key)
    _, g, x = npg.natural_direction(problem, theta, DENSE.cg_iters, warm_start=True)
    return g, x, jax.hessian(problem.kl)(theta), problem.fvp(x)


def test_natural_direction_matches_a_dense_fisher_solve():
    """CG on the damped Fisher-vector product equals np.linalg.solve(F + λI, g), F the
    dense Hessian of the mean KL (a closed-form oracle); NPG's step size makes the
    quadratic KL model ½α²xᵀFx at most δ/2."""
    g, x, fisher, fvp_x = (np.asarray(a, np.float64)
                           for a in natural_direction_and_fisher(jax.random.key(0)))
    damped = fisher + DENSE.cg_damping * np.eye(len(g))
    dense = np.linalg.solve(damped, g)
    np.testing.assert_allclose(x, dense, rtol=1e-3, atol=1e-4 * np.abs(dense).max())
    np.testing.assert_allclose(fvp_x, damped @ x, rtol=1e-3, atol=1e-6)
    alpha = np.sqrt(DENSE.step_size / np.dot(g, dense))
    assert 0 < 0.5 * alpha**2 * dense @ fisher @ dense <= DENSE.step_size / 2
