"""ACKTR: contracts, K-FAC oracles (exact one-sample Fisher blocks, running averages,
trust region) and a short learning test."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl.algos import acktr, common
from purerl.algos.a2c import advantages_and_targets
from purerl.networks import ValueNet
from purerl.testing import as_numpy, leaves_equal, random_batch, split_config, train_fn

# Small enough to compile fast; cold start, stats and eigendecomposition periods all > 1
# so that every branch of the update runs (and the vmap rule of `when` is exercised).
SMALL = dict(
    total_steps=2048,
    num_envs=16,
    num_steps=4,
    num_evals=2,
    num_eval_envs=8,
    cold_iter=2,
    stats_update_period=2,
    inverse_update_period=3,
)
STEP = {**SMALL, "cold_iter": 1}  # for tests of single updates
# The updates a run of SMALL's budget makes: what anneal_lr decays over.
NUM_UPDATES = purerl.loops.schedule(split_config(acktr, **SMALL)[1]).num_updates


def networks(cfg, spec):
    return common.make_actor(cfg, spec), ValueNet(cfg.hidden_sizes, cfg.activation)


def dense_layers(tree):
    """[(net, name)] of every dense layer (all under MLP_0) of a params-like tree."""
    return [(net, name) for net in tree for name in tree[net]["params"]["MLP_0"]]


def at(tree, net, name):
    """A dense layer's node of a params-like tree."""
    return tree[net]["params"]["MLP_0"][name]


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


@pytest.fixture(scope="module")
def cartpole_update(cartpole):
    """(config, agent, jitted update) shared by the single-update tests."""
    cfg, _ = split_config(acktr, **STEP)
    agent = acktr.make(cfg, cartpole.spec, num_updates=NUM_UPDATES)
    return cfg, agent, jax.jit(agent.update)


@pytest.fixture(scope="module")
def bandit():
    return purerl.envs.make("Probe-Bandit-v0")


@pytest.fixture(scope="module")
def small_train(bandit):
    """(config, jitted single-seed train) on the contextual bandit: one compile shared
    by the determinism, vmap and learning tests."""
    cfg, run = split_config(acktr, **SMALL)
    return (cfg, run), jax.jit(purerl.make_train(acktr, bandit, cfg, run))


@pytest.fixture(scope="module")
def four_seeds(small_train, bandit):
    """(keys, outputs) of four seeds trained in one vmapped program."""
    (cfg, run), _ = small_train
    keys = jax.random.split(jax.random.key(7), 4)
    return keys, jax.jit(jax.vmap(purerl.make_train(acktr, bandit, cfg, run)))(keys)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kl_clip=0.0), r"Config\.kl_clip must be in \(0"),
        (dict(momentum=1.0), r"Config\.momentum must be in \[0"),
        (dict(damping=0.0), r"Config\.damping must be in"),
        (dict(stat_decay=1.0), r"Config\.stat_decay must be in"),
        (dict(cold_iter=0), r"Config\.cold_iter must be in"),
        (dict(stats_update_period=0), r"Config\.stats_update_period must be in"),
        (dict(inverse_update_period=0), r"Config\.inverse_update_period must be in"),
        (dict(vf_fisher_coef=0.0), r"Config\.vf_fisher_coef must be in"),
        (dict(lr=0.0), r"Config\.lr must be in"),
        (dict(activation="gelu"), r"Config\.activation must be one of"),
        (dict(total_steps=100), r"RunConfig\.total_steps must be >="),
    ],
)
def test_config_validation_names_the_field(kwargs, message, cartpole):
    with pytest.raises(ValueError, match=message):
        train_fn(acktr, cartpole, **kwargs)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_update_is_stable_and_compiles_once(env_id, cartpole_update):
    env = purerl.envs.make(env_id)
    if env_id == "CartPole-v1":
        cfg, agent, update = cartpole_update
    else:
        cfg, _ = split_config(acktr, **STEP)
        agent = acktr.make(cfg, env.spec, num_updates=NUM_UPDATES)
        update = jax.jit(agent.update)
    state = jax.jit(agent.init)(jax.random.key(0))
    batch = random_batch(env.spec, jax.random.key(1))
    states = [state]
    # Cold start, K-FAC with stats + eigendecomposition, K-FAC without either, K-FAC
    # with stats only.
    for i in range(4):
        new, metrics = update(states[-1], batch, jax.random.key(2 + i))
        chex.assert_trees_all_equal_shapes_and_dtypes(state, new)
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
        states.append(new)
    assert update._cache_size() == 1
    assert int(states[-1].iteration) == 4
    assert not leaves_equal(state.params["actor"], states[-1].params["actor"])
    obs = batch.obs[0]
    B = obs.shape[0]
    carry, first = agent.init_carry(B), jnp.zeros(B, bool)
    act = jax.jit(agent.act, static_argnames="eval")
    action, _, _ = act(state, carry, obs, first, jax.random.key(9))
    assert action.shape == batch.action.shape[1:]
    a1, _, _ = act(state, carry, obs, first, jax.random.key(10), eval=True)
    a2, _, _ = act(state, carry, obs, first, jax.random.key(11), eval=True)
    np.testing.assert_array_equal(a1, a2)


def test_same_key_same_result_different_keys_differ(small_train):
    _, train = small_train
    out1 = train(jax.random.key(0))
    out2 = train(jax.random.key(0))
    out3 = train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)
    assert np.all(np.isfinite(np.asarray(out1[1]["kfac/eta"])))


def test_vmap_over_seeds_equals_separate_runs(small_train, four_seeds):
    """Equal up to round-off, which K-FAC amplifies (damping 0.01 divides it by up to
    100). The eigenvectors are left out: the factors are rank-deficient, so their
    near-zero eigenvalues are degenerate and the eigenvectors of one are not unique."""
    _, train = small_train
    keys, batched = four_seeds

    def comparable(out):
        runner, metrics = out
        return runner._replace(agent=runner.agent._replace(eigen=None)), metrics

    for i in range(4):
        single = train(keys[i])
        for x, y in zip(
            as_numpy(comparable(single)), as_numpy(comparable(batched)), strict=True
        ):
            np.testing.assert_allclose(x, y[i], rtol=1e-3, atol=1e-4)


def test_learns_contextual_bandit(four_seeds):
    _, (_, metrics) = four_seeds
    assert np.asarray(metrics["eval/return"][:, -1]).min() == 1.0, metrics[
        "eval/return"
    ]


def test_when_runs_fn_only_for_members_that_ask():
    """The vmap rule of `when`: members whose predicate is False keep their default,
    even when another member of the batch runs fn (and nested vmaps compose)."""
    f = common.when(lambda x: 2.0 * x)
    pred = jnp.array([True, False, True])
    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(jax.vmap(f)(pred, x, -x), [[0, 2], [-2, -3], [8, 10]])
    np.testing.assert_array_equal(jax.vmap(f, (None, 0, 0))(False, x, -x), -x)
    nested = jax.vmap(jax.vmap(f, (0, 0, None)), (None, 0, None))(
        pred, jnp.stack([x, x]), jnp.zeros(2)
    )
    np.testing.assert_array_equal(nested[1], [[0, 2], [0, 0], [8, 10]])


def test_factors_are_running_averages_and_symmetric_psd(cartpole, cartpole_update):
    """Cold start: the plain mean of the batches' factors; then, on stats updates
    (every stats_update_period = T), d·old + (1−d)·new with d = stat_decay**T (the
    decay is per update) and new = fisher_factors of the update's key; unchanged in
    between; always symmetric PSD."""
    cfg, agent, update = cartpole_update
    actor, critic = networks(cfg, cartpole.spec)
    factors_of = jax.jit(acktr.fisher_factors, static_argnums=(4, 5))
    batch = random_batch(cartpole.spec, jax.random.key(1))
    action = common.flat_action(batch.action, cartpole.spec)
    state = jax.jit(agent.init)(jax.random.key(0))
    expected = None
    decay = cfg.stat_decay**cfg.stats_update_period
    for t in range(4):
        key = jax.random.key(10 + t)
        new = factors_of(
            state.params, batch.obs, action, key, actor, critic, cfg.vf_fisher_coef
        )
        since = t - cfg.cold_iter
        if since < 0:  # cold_iter = 1: the mean of one batch
            expected = new
        elif since % cfg.stats_update_period == 0:
            expected = jax.tree.map(
                lambda o, n: decay * o + (1 - decay) * n,
                expected,
                new,
            )
        previous = state.factors
        state, _ = update(state, batch, key)
        chex.assert_trees_all_close(state.factors, expected, rtol=1e-5, atol=1e-7)
        if since >= 0 and since % cfg.stats_update_period:
            assert leaves_equal(state.factors, previous)
    for factor in jax.tree.leaves(state.factors):
        np.testing.assert_allclose(factor, factor.T, atol=1e-6)
        evals = np.linalg.eigvalsh(np.asarray(factor, np.float64))
        assert evals.min() >= -1e-5 * max(evals.max(), 1.0)


def folded(layer):
    """A dense layer's (kernel, bias) as one [d_in + 1, d_out] array."""
    return np.concatenate([layer["kernel"], layer["bias"][None]], 0).astype(np.float64)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_one_sample_factors_are_the_exact_fisher_blocks(env_id):
    """With one example, A ⊗ S is exactly vec(∇W ℓ) vec(∇W ℓ)ᵀ for every dense layer of
    actor and critic (ℓ the Fisher losses; ∇W by plain autodiff), and the preconditioned
    direction is the exact solve (A ⊗ S + εI)⁻¹ vec(G) (row-major vec, flax layout)."""
    env = purerl.envs.make(env_id)
    cfg, _ = split_config(acktr, **STEP)
    actor, critic = networks(cfg, env.spec)
    params = jax.jit(acktr.make(cfg, env.spec, num_updates=NUM_UPDATES).init)(
        jax.random.key(0)).params
    obs = jax.random.normal(jax.random.key(1), (1, *env.spec.obs_shape))
    action = jax.jit(lambda p: actor.apply(p, obs).sample(seed=jax.random.key(4)))(
        params["actor"]
    )
    key = jax.random.key(2)

    def fisher_losses(p):
        v = critic.apply(p["critic"], obs)
        target = jax.lax.stop_gradient(v + jax.random.normal(key, v.shape))
        return (
            -actor.apply(p["actor"], obs).log_prob(action).sum(),
            cfg.vf_fisher_coef * jnp.sum((v - target) ** 2),
        )

    @jax.jit
    def compute(params, grads):
        factors = acktr.fisher_factors(
            params, obs, action, key, actor, critic, cfg.vf_fisher_coef
        )
        eigen = acktr.decompose(factors)
        nat = acktr.natural_gradient(grads, eigen, cfg.damping)
        per_example = {
            "actor": jax.grad(lambda p: fisher_losses(p)[0])(params)["actor"],
            "critic": jax.grad(lambda p: fisher_losses(p)[1])(params)["critic"],
        }
        return factors, nat, per_example

    grads = jax.tree.map(
        lambda x: jax.random.normal(jax.random.key(3), x.shape), params
    )
    factors, nat, per_example = compute(params, grads)
    rng = np.random.default_rng(0)
    for net, layer in dense_layers(factors):
        w = folded(at(per_example, net, layer))  # ∇W ℓ, [d_in + 1, d_out]
        f = at(factors, net, layer)
        A, S = np.asarray(f.A, np.float64), np.asarray(f.S, np.float64)
        g = folded(at(grads, net, layer))
        x = folded(at(nat, net, layer))
        scale = np.abs(w).max() ** 2
        if w.size <= 400:  # dense oracles where they are cheap (first and last layers)
            v = w.ravel()
            fisher = np.kron(A, S)
            np.testing.assert_allclose(
                fisher, np.outer(v, v), rtol=1e-4, atol=1e-5 * scale
            )
            exact = np.linalg.solve(fisher + cfg.damping * np.eye(v.size), g.ravel())
            np.testing.assert_allclose(
                x.ravel(), exact, rtol=2e-3, atol=2e-3 * np.abs(exact).max()
            )
        # Every layer: (A ⊗ S) vec(R) = vec(A R S) equals vec(∇W) ⟨vec(∇W), vec(R)⟩ for
        # random R, and X solves (A ⊗ S + εI) vec(X) = vec(G).
        r = rng.normal(size=w.shape)
        np.testing.assert_allclose(
            A @ r @ S, w * np.sum(w * r), rtol=1e-4, atol=1e-4 * scale * np.abs(r).sum()
        )
        np.testing.assert_allclose(
            A @ x @ S + cfg.damping * x, g, rtol=1e-3, atol=1e-3 * np.abs(g).max()
        )
    if env_id == "Pendulum-v1":
        np.testing.assert_allclose(
            nat["actor"]["params"]["log_std"],
            grads["actor"]["params"]["log_std"] / (2 + cfg.damping),
            rtol=1e-6,
        )


def test_log_std_fisher_is_two():
    """The constant behind the log-std's preconditioner, by Monte Carlo: the score of
    log σ, z² − 1, has E[(z² − 1)²] = 2 and is uncorrelated with the mean's score."""
    z = jax.random.normal(jax.random.key(0), (200_000,))
    mean, log_std = 0.3, jnp.float32(-0.5)
    action = mean + jnp.exp(log_std) * z  # samples, held fixed in the scores below

    def log_prob(m, s, a):
        return jax.scipy.stats.norm.logpdf(a, m, jnp.exp(s))

    scores = jax.vmap(jax.grad(log_prob, argnums=(0, 1)), (None, None, 0))(
        mean, log_std, action
    )
    d_mean, d_log_std = (np.asarray(s, np.float64) for s in scores)
    np.testing.assert_allclose(np.mean(d_log_std**2), acktr.LOG_STD_FISHER, rtol=0.03)
    assert abs(np.mean(d_mean * d_log_std)) < 0.03 * np.exp(0.5)


def test_step_respects_the_trust_region(cartpole, cartpole_update):
    """First K-FAC step: u = (F̂ + εI)⁻¹ g with the factors just decomposed,
    η = min(lr, sqrt(kl_clip / uᵀg)), and, the momentum restarting, Δθ = −(1 − m) η u.
    So η² uᵀF̂u ≤ η² uᵀg ≤ kl_clip = 2δ: equality in the second (the region binds at
    the defaults) and F̂ = A ⊗ S checked directly in the first."""
    cfg, agent, update = cartpole_update
    actor, critic = networks(cfg, cartpole.spec)
    batch = random_batch(cartpole.spec, jax.random.key(1))
    state, _ = update(jax.jit(agent.init)(jax.random.key(0)), batch, jax.random.key(2))
    new, metrics = update(state, batch, jax.random.key(3))
    assert float(metrics["kfac/cold"]) == 0.0

    @jax.jit
    def direction(params, eigen):
        adv, targets = advantages_and_targets(batch, False, 1.0)
        grads, _ = jax.grad(acktr.acktr_loss, has_aux=True)(
            params, batch, adv, targets, actor, critic, cfg, cartpole.spec
        )
        nat = acktr.natural_gradient(grads, eigen, cfg.damping)
        return grads, nat

    grads, nat = direction(state.params, new.eigen)
    u_dot_g = sum(
        np.vdot(u, g)
        for u, g in zip(jax.tree.leaves(nat), jax.tree.leaves(grads), strict=True)
    )
    lr = cfg.lr * (1 - 1 / NUM_UPDATES)  # annealed once, over the num_updates make got
    eta = min(lr, np.sqrt(cfg.kl_clip / u_dot_g))
    assert eta < lr  # the trust region binds
    np.testing.assert_allclose(metrics["kfac/eta"], eta, rtol=1e-4)
    np.testing.assert_allclose(metrics["kfac/quad"], u_dot_g, rtol=1e-4)
    np.testing.assert_allclose(metrics["kfac/predicted_kl"], cfg.kl_clip / 2, rtol=1e-4)
    step = jax.tree.map(jnp.subtract, new.params, state.params)
    chex.assert_trees_all_close(
        step,
        jax.tree.map(lambda u: -(1 - cfg.momentum) * eta * u, nat),
        rtol=1e-3,
        atol=1e-7,
    )
    # uᵀ F̂ u, F̂ = A ⊗ S per dense layer (the factors the step used), no damping.
    u_fisher_u = 0.0
    for net, layer in dense_layers(new.factors):
        u = folded(at(nat, net, layer))
        f = at(new.factors, net, layer)
        u_fisher_u += np.sum(
            u * (np.asarray(f.A, np.float64) @ u @ np.asarray(f.S, np.float64))
        )
    assert eta**2 * u_fisher_u <= eta**2 * u_dot_g <= cfg.kl_clip * (1 + 1e-4)
