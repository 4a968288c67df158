"""purerl.ops.returns against a slow Python loop, rlax, and each other."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from purerl.ops import discounted_returns, gae, lambda_returns, n_step_returns, vtrace

T, B = 13, 3


def make_stream(seed, t=T, b=B, gamma=0.9, p_done=0.2):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(t, b)).astype(np.float32)
    done = rng.random((t, b)) < p_done
    discounts = (gamma * (1.0 - done)).astype(np.float32)
    values = rng.normal(size=(t + 1, b)).astype(np.float32)
    return rewards, discounts, values


# ---- slow oracles: one python loop per column, float64 ----
def loop_discounted(r, d, boot):
    out = np.zeros_like(r, dtype=np.float64)
    g = boot.astype(np.float64)
    for t in reversed(range(len(r))):
        g = r[t] + d[t] * g
        out[t] = g
    return out


def loop_n_step(r, d, v, n):
    t_len = len(r)
    out = np.zeros_like(r, dtype=np.float64)
    for t in range(t_len):
        g, scale = 0.0, 1.0
        for k in range(n):
            if t + k >= t_len:
                break
            g = g + scale * r[t + k]
            scale = scale * d[t + k]
        g = g + scale * v[min(t + n, t_len)]
        out[t] = g
    return out


def loop_gae(r, d, v, lam):
    out = np.zeros_like(r, dtype=np.float64)
    a = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + d[t] * v[t + 1] - v[t]
        a = delta + d[t] * lam * a
        out[t] = a
    return out


def loop_lambda(r, d, v, lam):
    out = np.zeros_like(r, dtype=np.float64)
    g = v[-1]
    for t in reversed(range(len(r))):
        g = r[t] + d[t] * ((1 - lam) * v[t + 1] + lam * g)
        out[t] = g
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_discounted_returns_loop(variant, seed):
    r, d, v = make_stream(seed)
    got = variant(discounted_returns)(r, d, v[-1])
    np.testing.assert_allclose(got, loop_discounted(r, d, v[-1]), rtol=1e-5, atol=1e-5)


def test_discounted_returns_hand_computed():
    # Worked example: r=[1,2,3], γ=.9, no bootstrap -> [5.23, 4.7, 3.0].
    r = jnp.array([1.0, 2.0, 3.0])
    got = discounted_returns(r, jnp.full(3, 0.9), jnp.float32(0.0))
    np.testing.assert_allclose(got, [5.23, 4.7, 3.0], rtol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 5, 20])
def test_n_step_returns_loop(variant, n):
    r, d, v = make_stream(n)
    got = variant(n_step_returns, static_argnums=3)(r, d, v, n)
    want = loop_n_step(r, d, v, n)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns_loop(variant, lam):
    r, d, v = make_stream(7)
    got = variant(lambda_returns)(r, d, v, lam)
    np.testing.assert_allclose(got, loop_lambda(r, d, v, lam), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_loop(variant, lam):
    r, d, v = make_stream(8)
    got = variant(gae)(r, d, v, lam)
    np.testing.assert_allclose(got, loop_gae(r, d, v, lam), rtol=1e-5, atol=1e-5)


# ---- rlax: one stream at a time (rlax takes [T]), our arrays carry a batch dim ----
def per_column(fn, *arrays):
    return np.stack([fn(*(a[:, j] for a in arrays)) for j in range(arrays[0].shape[1])], 1)


def test_gae_matches_rlax():
    r, d, v = make_stream(3)
    want = per_column(
        lambda r, d, v: rlax.truncated_generalized_advantage_estimation(
            r, d, 0.95, v, stop_target_gradients=False
        ),
        r, d, v,
    )
    np.testing.assert_allclose(gae(r, d, v, 0.95), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_lambda_returns_matches_rlax(lam):
    r, d, v = make_stream(4)
    want = per_column(
        lambda r, d, v: rlax.lambda_returns(r, d, v[1:], lam, stop_target_gradients=False),
        r, d, v,
    )
    np.testing.assert_allclose(lambda_returns(r, d, v, lam), want, rtol=1e-5, atol=1e-5)


def test_discounted_returns_matches_rlax():
    r, d, v = make_stream(5)
    # rlax bootstraps from the last element of v_t only.
    boot_seq = np.concatenate([np.zeros_like(v[1:-1]), v[-1:]], 0)
    want = per_column(
        lambda r, d, vb: rlax.discounted_returns(r, d, vb, stop_target_gradients=False),
        r, d, boot_seq,
    )
    np.testing.assert_allclose(discounted_returns(r, d, v[-1]), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 4])
def test_n_step_returns_matches_rlax(n):
    r, d, v = make_stream(6)
    want = per_column(
        lambda r, d, v: rlax.n_step_bootstrapped_returns(
            r, d, v[1:], n, stop_target_gradients=False
        ),
        r, d, v,
    )
    np.testing.assert_allclose(n_step_returns(r, d, v, n), want, rtol=1e-5, atol=1e-5)


# ---- identities ----
def test_gae_plus_values_is_lambda_returns():
    r, d, v = make_stream(9)
    for lam in (0.0, 0.3, 0.95, 1.0):
        np.testing.assert_allclose(
            gae(r, d, v, lam) + v[:-1], lambda_returns(r, d, v, lam), rtol=1e-5, atol=1e-5
        )


def test_n_step_with_n_equal_T_is_lambda_one():
    r, d, v = make_stream(10)
    np.testing.assert_allclose(
        n_step_returns(r, d, v, T), lambda_returns(r, d, v, 1.0), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        lambda_returns(r, d, v, 1.0), discounted_returns(r, d, v[-1]), rtol=1e-5, atol=1e-5
    )


def test_one_step_is_td_target():
    r, d, v = make_stream(11)
    want = r + d * v[1:]
    np.testing.assert_allclose(n_step_returns(r, d, v, 1), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lambda_returns(r, d, v, 0.0), want, rtol=1e-6, atol=1e-6)


def test_splitting_at_episode_boundary_changes_nothing():
    # A zero discount at step k: the returns before k do not depend on what follows.
    r, d, v = make_stream(12, p_done=0.0)
    k = 6
    d[k] = 0.0
    full = gae(r, d, v, 0.9)
    head = gae(r[: k + 1], d[: k + 1], v[: k + 2], 0.9)
    np.testing.assert_allclose(full[: k + 1], head, rtol=1e-5, atol=1e-6)


def test_vmap_over_batch_and_lambda():
    r, d, v = make_stream(13, b=4)
    # vmap over the batch column equals the batched call.
    per_col = jax.vmap(gae, in_axes=(1, 1, 1, None), out_axes=1)(r, d, v, 0.9)
    np.testing.assert_allclose(per_col, gae(r, d, v, 0.9), rtol=1e-5, atol=1e-6)
    # vmap over λ (a sweep) equals separate calls.
    lams = jnp.array([0.0, 0.5, 1.0])
    swept = jax.jit(jax.vmap(lambda_returns, in_axes=(None, None, None, 0)))(r, d, v, lams)
    for i, lam in enumerate([0.0, 0.5, 1.0]):
        np.testing.assert_allclose(swept[i], lambda_returns(r, d, v, lam), rtol=1e-5, atol=1e-6)
    nstep = jax.jit(jax.vmap(functools.partial(n_step_returns, n=3), in_axes=1, out_axes=1))
    np.testing.assert_allclose(nstep(r, d, v), n_step_returns(r, d, v, 3), rtol=1e-5, atol=1e-6)


def test_trailing_dims_and_scalar_stream():
    r, d, v = make_stream(14, b=6)
    r3, d3, v3 = (x.reshape(x.shape[0], 2, 3) for x in (r, d, v))
    np.testing.assert_allclose(
        gae(r3, d3, v3, 0.9).reshape(T, 6), gae(r, d, v, 0.9), rtol=1e-6
    )
    np.testing.assert_allclose(
        gae(r[:, 0], d[:, 0], v[:, 0], 0.9), gae(r, d, v, 0.9)[:, 0], rtol=1e-6
    )


def test_bad_shapes_raise():
    r, d, v = make_stream(15)
    with pytest.raises(ValueError, match="values must have shape"):
        gae(r, d, v[:-1], 0.9)
    with pytest.raises(ValueError):
        n_step_returns(r, d, v, 0)
    with pytest.raises(AssertionError):
        gae(r, d[:-1], v, 0.9)


# ---- V-trace (importance-corrected TD(λ)) ----
def loop_vtrace(r, d, v, rho, lam, clip_rho, clip_c):
    """Espeholt et al. 2018 eq. 1 written as the explicit sum over future TD errors."""
    t_len = len(r)
    r, d, v, rho = (np.asarray(x, np.float64) for x in (r, d, v, rho))
    rho_bar, c = np.minimum(clip_rho, rho), lam * np.minimum(clip_c, rho)
    delta = rho_bar * (r + d * v[1:] - v[:-1])
    targets = np.zeros_like(r)
    for s in range(t_len):
        total, scale = 0.0, 1.0
        for t in range(s, t_len):
            total = total + scale * delta[t]
            scale = scale * d[t] * c[t]
        targets[s] = v[s] + total
    next_targets = np.concatenate([targets[1:], v[-1:]], 0)
    next_mix = lam * next_targets + (1 - lam) * v[1:]
    return targets, rho_bar * (r + d * next_mix - v[:-1])


def make_rhos(seed, shape):
    return np.exp(np.random.default_rng(seed).normal(0, 0.7, shape)).astype(np.float32)


@pytest.mark.parametrize("lam,clip_rho,clip_c", [(1.0, 1.0, 1.0), (0.8, 2.0, 1.0),
                                                 (0.5, np.inf, np.inf), (0.0, 1.0, 1.0)])
def test_vtrace_loop(variant, lam, clip_rho, clip_c):
    r, d, v = make_stream(11)
    rho = make_rhos(0, r.shape)
    targets, adv = variant(vtrace)(r, d, v, rho, lam, clip_rho, clip_c)
    want_t = per_column(lambda *a: loop_vtrace(*a, lam, clip_rho, clip_c)[0], r, d, v, rho)
    want_a = per_column(lambda *a: loop_vtrace(*a, lam, clip_rho, clip_c)[1], r, d, v, rho)
    np.testing.assert_allclose(targets, want_t, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(adv, want_a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lam", [1.0, 0.6])
def test_vtrace_matches_rlax(lam):
    r, d, v = make_stream(12)
    rho = make_rhos(1, r.shape)

    def rlax_column(r, d, v, rho):
        out = rlax.vtrace_td_error_and_advantage(v[:-1], v[1:], r, d, rho, lam, 1.0, 1.0)
        return np.stack([out.errors + v[:-1], out.pg_advantage])

    want = np.stack([rlax_column(*(a[:, j] for a in (r, d, v, rho)))
                     for j in range(r.shape[1])], -1)
    targets, adv = vtrace(r, d, v, rho, lam)
    np.testing.assert_allclose(targets, want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, want[1], rtol=1e-5, atol=1e-5)


def test_vtrace_on_policy_is_lambda_returns():
    r, d, v = make_stream(13)
    targets, adv = vtrace(r, d, v, np.ones_like(r), 0.7)
    np.testing.assert_allclose(targets, lambda_returns(r, d, v, 0.7), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, gae(r, d, v, 0.7), rtol=1e-5, atol=1e-5)


def test_vtrace_vmaps_over_seeds():
    r, d, v = make_stream(14)
    rho = make_rhos(2, r.shape)
    stack = lambda x: np.stack([x, x[::-1]])  # noqa: E731 - two different "seeds"
    got = jax.vmap(vtrace, in_axes=(0, 0, 0, 0, None))(stack(r), stack(d), stack(v),
                                                        stack(rho), 0.9)
    for i in range(2):
        want = vtrace(stack(r)[i], stack(d)[i], stack(v)[i], stack(rho)[i], 0.9)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g[i], w, rtol=1e-6, atol=1e-6)
