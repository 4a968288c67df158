"""purerl.ops.natural against numpy/scipy solves, dense Fishers, a loop line search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg
from jax.flatten_util import ravel_pytree

from purerl.ops import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
)


def random_spd(rng, n, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.linspace(1.0, cond, n)) @ q.T


def tree_b(rng):
    """A pytree right-hand side with 6 numbers in all."""
    return {
        "w": rng.normal(size=(2, 2)).astype(np.float32),
        "b": rng.normal(size=2).astype(np.float32),
    }


def pytree_matvec(m, like):
    _, unravel = ravel_pytree(like)
    return lambda x: unravel(m @ ravel_pytree(x)[0])


# ---- conjugate gradient ----
def test_cg_solves_spd_pytree_system(variant):
    rng = np.random.default_rng(0)
    m = random_spd(rng, 6).astype(np.float32)
    b = tree_b(rng)
    x = variant(lambda b: conjugate_gradient(pytree_matvec(m, b), b, num_iters=10))(b)
    flat_b = ravel_pytree(b)[0]
    expected = np.linalg.solve(m.astype(np.float64), np.asarray(flat_b, np.float64))
    assert jax.tree.structure(x) == jax.tree.structure(b)
    np.testing.assert_allclose(ravel_pytree(x)[0], expected, rtol=1e-4, atol=1e-5)


def test_cg_iterates_match_scipy(variant):
    """The k-th iterate, not only the converged solution, is the textbook CG iterate."""
    rng = np.random.default_rng(1)
    m = random_spd(rng, 8, cond=50.0)
    b = rng.normal(size=8)
    iterates = []
    scipy.sparse.linalg.cg(
        m,
        b,
        rtol=0.0,
        atol=0.0,
        maxiter=3,
        callback=lambda xk: iterates.append(xk.copy()),
    )
    mj, bj = jnp.asarray(m, jnp.float32), jnp.asarray(b, jnp.float32)
    for k in range(1, 4):
        x = variant(
            lambda b, k=k: conjugate_gradient(lambda v: mj @ v, b, num_iters=k)
        )(bj)
        np.testing.assert_allclose(x, iterates[k - 1], rtol=1e-4, atol=1e-5)


def test_cg_under_vmap():
    rng = np.random.default_rng(2)
    ms = np.stack([random_spd(rng, 5) for _ in range(4)]).astype(np.float32)
    bs = rng.normal(size=(4, 5)).astype(np.float32)
    xs = jax.jit(jax.vmap(lambda m, b: conjugate_gradient(lambda v: m @ v, b)))(ms, bs)
    for m, b, x in zip(ms, bs, xs, strict=True):
        np.testing.assert_allclose(x, np.linalg.solve(m, b), rtol=1e-4, atol=1e-5)


def test_cg_stops_early(variant):
    rng = np.random.default_rng(3)
    m = jnp.asarray(random_spd(rng, 6, cond=2.0), jnp.float32)
    b = jnp.asarray(rng.normal(size=6), jnp.float32)
    solve = variant(lambda b, tol: conjugate_gradient(lambda v: m @ v, b, 10, tol))
    # A tolerance above |b|^2 stops before the first step.
    np.testing.assert_array_equal(solve(b, 1e6), np.zeros(6))
    # A tolerance between the first and second squared residuals stops after one step.
    one = conjugate_gradient(lambda v: m @ v, b, num_iters=1)
    r1 = float(jnp.sum((b - m @ one) ** 2))
    assert r1 < float(jnp.sum(b**2)) / 1.01  # CG residuals need not shrink in general
    np.testing.assert_allclose(solve(b, 1.01 * r1), one, rtol=1e-5)
    # A zero right-hand side is solved by zero, without 0/0.
    np.testing.assert_array_equal(solve(jnp.zeros(6), 0.0), np.zeros(6))


def test_cg_warm_start(variant):
    rng = np.random.default_rng(4)
    m = jnp.asarray(random_spd(rng, 6), jnp.float32)
    b = jnp.asarray(rng.normal(size=6), jnp.float32)
    x = variant(lambda b: conjugate_gradient(lambda v: m @ v, b, num_iters=10, x0=b))(b)
    np.testing.assert_allclose(
        x, np.linalg.solve(np.asarray(m), b), rtol=1e-4, atol=1e-5
    )


# ---- Fisher-vector products on a linear softmax policy ----
N_STATES, D, A = 5, 3, 4


def softmax_policy_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {
        "w": jnp.asarray(rng.normal(size=(D, A)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=A) * 0.1, jnp.float32),
    }
    states = jnp.asarray(rng.normal(size=(N_STATES, D)), jnp.float32)
    return params, states


def log_policy(params, states):
    return jax.nn.log_softmax(states @ params["w"] + params["b"])


def mean_kl_fn(params_old, states):
    """theta -> mean_s KL(pi_old || pi_theta), pi_old held fixed."""
    logp_old = jax.lax.stop_gradient(log_policy(params_old, states))

    def kl(params):
        logp = log_policy(params, states)
        return jnp.mean(jnp.sum(jnp.exp(logp_old) * (logp_old - logp), axis=-1))

    return kl


def exact_fisher(params, states):
    """mean_s sum_a pi(a|s) ∇logpi(a|s) ∇logpi(a|s)^T, float64."""
    flat, unravel = ravel_pytree(params)
    jac = jax.jacobian(lambda f: log_policy(unravel(f), states))(flat)  # [N, A, P]
    jac = np.asarray(jac, np.float64)
    pi = np.exp(np.asarray(log_policy(params, states), np.float64))
    return np.einsum("na,nap,naq->pq", pi, jac, jac) / N_STATES


def test_fvp_matches_dense_hessian_and_exact_fisher(variant):
    params, states = softmax_policy_problem()
    kl = mean_kl_fn(params, states)
    flat, unravel = ravel_pytree(params)
    hessian = np.asarray(jax.hessian(lambda f: kl(unravel(f)))(flat), np.float64)
    fisher = exact_fisher(params, states)
    np.testing.assert_allclose(hessian, fisher, atol=1e-5)

    damping = 0.1
    rng = np.random.default_rng(5)
    v = jnp.asarray(rng.normal(size=flat.shape), jnp.float32)
    fvp = variant(
        lambda v: ravel_pytree(fisher_vector_product(kl, params, damping)(unravel(v)))[
            0
        ]
    )
    expected = (fisher + damping * np.eye(len(flat))) @ np.asarray(v, np.float64)
    np.testing.assert_allclose(fvp(v), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        fvp(v), (hessian + damping * np.eye(len(flat))) @ v, atol=1e-5
    )


def test_cg_on_fvp_matches_damped_fisher_solve(variant):
    params, states = softmax_policy_problem(seed=1)
    rng = np.random.default_rng(6)
    g = jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params
    )
    damping = 0.1

    def natural_direction(params, g):
        fvp = fisher_vector_product(mean_kl_fn(params, states), params, damping)
        return conjugate_gradient(fvp, g, num_iters=40, tol=1e-12)

    x = variant(natural_direction)(params, g)
    fisher = exact_fisher(params, states)
    flat_g = np.asarray(ravel_pytree(g)[0], np.float64)
    expected = np.linalg.solve(fisher + damping * np.eye(len(flat_g)), flat_g)
    np.testing.assert_allclose(ravel_pytree(x)[0], expected, rtol=1e-3, atol=1e-4)


def test_fvp_vmaps_over_damping():
    params, states = softmax_policy_problem()
    kl = mean_kl_fn(params, states)
    v = jax.tree.map(jnp.ones_like, params)
    dampings = jnp.array([0.0, 0.1, 1.0])
    out = jax.jit(jax.vmap(lambda d: fisher_vector_product(kl, params, d)(v)))(dampings)
    base = ravel_pytree(fisher_vector_product(kl, params, 0.0)(v))[0]
    got = jax.vmap(lambda o: ravel_pytree(o)[0])(out)  # [3, P]
    want = base + dampings[:, None] * ravel_pytree(v)[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


# ---- backtracking line search ----
def quadratic_problem(direction, scale=1.0, target_dist=1.0):
    """loss = ½|θ - θ*|², kl = ½|θ - θ0|², θ0 = 0, θ* = target_dist · direction.

    Returns (params θ0, full_step = scale · (θ* - θ0), expected improvement, fn)."""
    target = target_dist * direction
    params = {"x": jnp.zeros_like(direction)}

    def fn(p):
        return 0.5 * jnp.sum((p["x"] - target) ** 2), 0.5 * jnp.sum(p["x"] ** 2)

    step = {"x": scale * target}
    expected = jnp.sum(target * step["x"])  # -grad(loss)(θ0) · step
    return params, step, expected, fn


def python_line_search(fn, x0, step, expected, max_kl, n, ratio, coef):
    """The rule written as a plain loop, on numpy floats."""
    old_loss, _ = fn({"x": x0})
    for i in range(n):
        frac = coef**i
        loss, kl = fn({"x": x0 + frac * step})
        improve = float(old_loss) - float(loss)
        if (
            np.isfinite(float(loss))
            and np.isfinite(float(kl))
            and improve > 0
            and improve > ratio * frac * float(expected)
            and float(kl) <= max_kl
        ):
            return i, x0 + frac * step
    return n, x0


DIR = jnp.array([0.6, -0.8], jnp.float32)  # a unit vector


def run_search(variant, fn, params, step, expected, max_kl, **kw):
    search = variant(
        lambda p, s, e: backtracking_line_search(fn, p, s, e, max_kl, **kw)
    )
    return search(params, step, expected)


def test_accepts_full_step_when_good(variant):
    params, step, expected, fn = quadratic_problem(DIR, scale=1.0, target_dist=0.1)
    new, info = run_search(variant, fn, params, step, expected, max_kl=0.01)
    assert bool(info["accepted"]) and int(info["num_backtracks"]) == 0
    assert float(info["step_fraction"]) == 1.0
    np.testing.assert_allclose(new["x"], step["x"], rtol=1e-6)
    np.testing.assert_allclose(info["kl"], 0.5 * 0.1**2, rtol=1e-5)
    np.testing.assert_allclose(info["improvement"], 0.5 * 0.1**2, rtol=1e-5)


@pytest.mark.parametrize(
    "max_kl, ratio, expected_backtracks",
    [
        (0.01, 0.1, 3),  # kl(f) = ½f²: 0.5, 0.125, 0.031, 0.0078 -> f = 1/8
        (0.2, 0.1, 1),
        (1e-5, 0.0, 8),  # ½ f² <= 1e-5 first at f = 1/256
    ],
)
def test_backtracks_until_kl_bound(variant, max_kl, ratio, expected_backtracks):
    params, step, expected, fn = quadratic_problem(DIR, scale=1.0, target_dist=1.0)
    new, info = run_search(
        variant, fn, params, step, expected, max_kl, accept_ratio=ratio
    )
    i, x = python_line_search(
        fn, params["x"], step["x"], expected, max_kl, 10, ratio, 0.5
    )
    assert int(info["num_backtracks"]) == i == expected_backtracks
    np.testing.assert_allclose(new["x"], x, rtol=1e-6)
    assert float(info["kl"]) <= max_kl
    np.testing.assert_allclose(info["step_fraction"], 0.5**expected_backtracks)


@pytest.mark.parametrize("ratio, expected_backtracks", [(0.1, 2), (0.5, 3), (0.0, 2)])
def test_backtracks_past_overshoot_and_armijo(variant, ratio, expected_backtracks):
    # The full step overshoots θ* fivefold: f = 1 and 1/2 worsen the loss, f = 1/4
    # improves it with actual/expected = 0.375, f = 1/8 with 0.6875.
    params, step, expected, fn = quadratic_problem(DIR, scale=5.0, target_dist=0.1)
    new, info = run_search(variant, fn, params, step, expected, 1.0, accept_ratio=ratio)
    i, x = python_line_search(fn, params["x"], step["x"], expected, 1.0, 10, ratio, 0.5)
    assert int(info["num_backtracks"]) == i == expected_backtracks
    np.testing.assert_allclose(new["x"], x, rtol=1e-6)


def test_returns_old_params_when_nothing_passes(variant):
    # An ascent direction: no fraction improves the loss.
    params, step, expected, fn = quadratic_problem(DIR, scale=-1.0, target_dist=0.1)
    new, info = run_search(variant, fn, params, step, expected, 1.0, max_backtracks=5)
    assert not bool(info["accepted"])
    assert int(info["num_backtracks"]) == 5 and float(info["step_fraction"]) == 0.0
    assert float(info["improvement"]) == 0.0
    np.testing.assert_array_equal(new["x"], params["x"])


def test_never_violates_kl_bound(variant):
    # Every candidate improves the loss but breaks the KL bound.
    params, step, expected, fn = quadratic_problem(DIR, scale=1.0, target_dist=1.0)
    new, info = run_search(variant, fn, params, step, expected, 1e-9, max_backtracks=6)
    assert not bool(info["accepted"])
    np.testing.assert_array_equal(new["x"], params["x"])


@pytest.mark.parametrize("bad", [jnp.nan, -jnp.inf])
@pytest.mark.parametrize("where", ["loss", "kl"])
def test_never_accepts_non_finite(variant, bad, where):
    # Steps longer than 0.3 give a non-finite loss or KL: -inf would look like a huge
    # improvement and NaN compares false, both must be rejected explicitly.
    params, step, expected, base = quadratic_problem(DIR, scale=1.0, target_dist=1.0)

    def fn(p):
        loss, kl = base(p)
        far = jnp.sum(p["x"] ** 2) > 0.3**2
        if where == "loss":
            return jnp.where(far, bad, loss), kl
        return loss, jnp.where(far, jnp.abs(bad), kl)

    new, info = run_search(variant, fn, params, step, expected, 1.0, accept_ratio=0.0)
    assert bool(info["accepted"]) and int(info["num_backtracks"]) == 2  # f = 1/4
    assert np.isfinite(float(info["loss"])) and np.isfinite(float(info["kl"]))
    np.testing.assert_allclose(new["x"], 0.25 * step["x"], rtol=1e-6)


def test_line_search_under_vmap():
    # A batch whose members accept at different indices (while_loop under vmap).
    scales = jnp.array([1.0, 4.0, -1.0, 1.0])
    dists = jnp.array([0.1, 0.1, 0.1, 1.0])

    def one(scale, dist):
        params, step, expected, fn = quadratic_problem(DIR, scale, dist)
        return backtracking_line_search(fn, params, step, expected, 0.01)

    new, info = jax.jit(jax.vmap(one))(scales, dists)
    for k in range(4):
        want_new, want_info = one(scales[k], dists[k])
        np.testing.assert_allclose(new["x"][k], want_new["x"], rtol=1e-6)
        assert int(info["num_backtracks"][k]) == int(want_info["num_backtracks"])
    np.testing.assert_array_equal(info["num_backtracks"], [0, 2, 10, 3])
