"""purerl.ops.kfac against dense numpy solves and exact Fisher blocks; the flax capture
in purerl.networks_kfac against the true kernel gradients."""

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import MLP
from purerl.networks_kfac import DenseStats, capture_dense_stats
from purerl.ops import (
    dense_factors,
    ema,
    fold_bias,
    kron_precondition,
    symmetric_eigh,
    trust_region_scale,
    unfold_bias,
)


def random_spd(rng, n):
    m = rng.normal(size=(n, n))
    return m @ m.T / n + 0.1 * np.eye(n)


def dense_oracle(grad, a, s, damping):
    """np.linalg.solve((A ⊗ S + damping·I), vec(grad)), row-major vec, float64."""
    grad, a, s = (np.asarray(x, np.float64) for x in (grad, a, s))
    big = np.kron(a, s) + damping * np.eye(a.shape[0] * s.shape[0])
    return np.linalg.solve(big, grad.ravel()).reshape(grad.shape)


# ---- Kronecker-factored solve ----
def test_kron_vec_ordering():
    """Row-major vec: (A ⊗ S) vec(X) = vec(A X Sᵀ), the identity the solver uses."""
    rng = np.random.default_rng(0)
    a, s, x = rng.normal(size=(4, 4)), rng.normal(size=(3, 3)), rng.normal(size=(4, 3))
    np.testing.assert_allclose(np.kron(a, s) @ x.ravel(), (a @ x @ s.T).ravel())


@pytest.mark.parametrize(
    "d_in, d_out, damping", [(4, 3, 0.1), (6, 2, 0.01), (1, 5, 1.0)]
)
def test_kron_precondition_matches_dense_solve(variant, d_in, d_out, damping):
    rng = np.random.default_rng(d_in * 10 + d_out)
    a, s = random_spd(rng, d_in), random_spd(rng, d_out)
    grad = rng.normal(size=(d_in, d_out))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    x = variant(kron_precondition)(f32(grad), f32(a), f32(s), damping)
    np.testing.assert_allclose(
        x, dense_oracle(grad, a, s, damping), rtol=1e-4, atol=1e-5
    )


def test_kron_precondition_rank_deficient_factors(variant):
    # Factors estimated from fewer samples than their size are singular; the damping
    # keeps the solve well posed.
    rng = np.random.default_rng(1)
    xa, xs = rng.normal(size=(2, 5)), rng.normal(size=(1, 3))
    a, s = xa.T @ xa / 2, xs.T @ xs
    grad = rng.normal(size=(5, 3))
    x = variant(kron_precondition)(
        *(jnp.asarray(v, jnp.float32) for v in (grad, a, s)), 0.1
    )
    np.testing.assert_allclose(x, dense_oracle(grad, a, s, 0.1), rtol=1e-4, atol=1e-4)


def test_kron_precondition_under_vmap():
    rng = np.random.default_rng(2)
    a = np.stack([random_spd(rng, 5) for _ in range(6)]).astype(np.float32)
    s = np.stack([random_spd(rng, 4) for _ in range(6)]).astype(np.float32)
    grads = rng.normal(size=(6, 5, 4)).astype(np.float32)
    dampings = np.linspace(0.01, 1.0, 6).astype(np.float32)
    xs = jax.jit(jax.vmap(kron_precondition))(grads, a, s, dampings)
    for k in range(6):
        np.testing.assert_allclose(
            xs[k], dense_oracle(grads[k], a[k], s[k], dampings[k]), rtol=1e-4, atol=1e-5
        )


def test_symmetric_eigh_nested_vmap_matches_lapack():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(2, 3, 6, 6)).astype(np.float32)
    m = m + np.swapaxes(m, -1, -2)
    w, q = jax.jit(jax.vmap(jax.vmap(symmetric_eigh)))(m)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(m), atol=1e-4)
    rebuilt = np.einsum("...ij,...j,...kj->...ik", q, w, q)
    np.testing.assert_allclose(rebuilt, m, atol=1e-4)


REGRESSION = textwrap.dedent(
    """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from purerl.ops import kron_precondition

    def one_seed(key):
        def step(acc, key):
            ka, ks, kg = jax.random.split(key, 3)
            a = jax.random.normal(ka, (40, 33))
            s = jax.random.normal(ks, (40, 32))
            g = jax.random.normal(kg, (33, 32))
            x = kron_precondition(g, a.T @ a / 40, s.T @ s / 40, 0.01)
            y = kron_precondition(g.T, s.T @ s / 40, a.T @ a / 40, 0.01)
            return acc + x.sum() + y.sum(), None
        return jax.lax.scan(step, 0.0, jax.random.split(key, 5))[0]

    mesh = jax.make_mesh((2,), ("seed",))
    train = jax.jit(jax.vmap(one_seed), in_shardings=NamedSharding(mesh, P("seed")))
    for i in range(3):
        train(jax.random.split(jax.random.key(i), 8)).block_until_ready()
    print("done")
    """
)


def test_no_deadlock_with_seeds_sharded_over_cpu_devices():
    """8 seeds on 2 host devices, each preconditioning two 33x32 layers per step.

    With ``jnp.linalg.eigh`` in place of ``symmetric_eigh`` this program deadlocked in
    3 of 3 runs (jax 0.10.2, 2 cores); see purerl.ops.kfac's docstring."""
    proc = subprocess.run(
        [sys.executable, "-c", REGRESSION], capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done" in proc.stdout


# ---- factor statistics ----
def test_dense_factors_are_means_of_outer_products(variant):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)  # leading dims are examples
    g = rng.normal(size=(2, 3, 5)).astype(np.float32)
    a_mat, s_mat = variant(dense_factors)(x, g)
    rows_a = np.concatenate([x.reshape(6, 4), np.ones((6, 1))], axis=1)
    rows_g = g.reshape(6, 5)
    np.testing.assert_allclose(
        a_mat, sum(np.outer(r, r) for r in rows_a) / 6, rtol=1e-5
    )
    np.testing.assert_allclose(
        s_mat, sum(np.outer(r, r) for r in rows_g) / 6, rtol=1e-5
    )
    a_nobias, _ = dense_factors(x, g, bias=False)
    np.testing.assert_allclose(a_nobias, a_mat[:4, :4], rtol=1e-6)


def single_example_layer(seed=5, d_in=3, d_out=4):
    """One dense layer, one input, loss -log softmax(s)[y] (a sampled-action loss)."""
    rng = np.random.default_rng(seed)
    kernel = jnp.asarray(rng.normal(size=(d_in, d_out)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=d_out), jnp.float32)
    x = jnp.asarray(rng.normal(size=d_in), jnp.float32)
    y = 2

    def loss_of_preact(s):
        return -jax.nn.log_softmax(s)[y]

    def loss(kernel, bias):
        return loss_of_preact(x @ kernel + bias)

    return kernel, bias, x, loss, loss_of_preact


def test_single_sample_kron_factors_equal_exact_fisher_block():
    kernel, bias, x, loss, loss_of_preact = single_example_layer()
    gk, gb = jax.grad(loss, argnums=(0, 1))(kernel, bias)
    vec = np.asarray(fold_bias(gk, gb), np.float64).ravel()
    exact_block = np.outer(vec, vec)  # E[vec(∇W) vec(∇W)ᵀ] with one example
    g = jax.grad(loss_of_preact)(x @ kernel + bias)
    a_mat, s_mat = dense_factors(x[None], g[None])
    np.testing.assert_allclose(np.kron(a_mat, s_mat), exact_block, rtol=1e-5, atol=1e-6)


def test_preconditioned_gradient_matches_exact_block_solve():
    kernel, bias, x, loss, loss_of_preact = single_example_layer(seed=6)
    gk, gb = jax.grad(loss, argnums=(0, 1))(kernel, bias)
    folded = fold_bias(gk, gb)
    g = jax.grad(loss_of_preact)(x @ kernel + bias)
    a_mat, s_mat = dense_factors(x[None], g[None])
    damping = 0.05
    vec = np.asarray(folded, np.float64).ravel()
    block = np.outer(vec, vec) + damping * np.eye(len(vec))
    want = np.linalg.solve(block, vec).reshape(folded.shape)
    got = kron_precondition(folded, a_mat, s_mat, damping)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    new_kernel, new_bias = unfold_bias(got)
    assert new_kernel.shape == kernel.shape and new_bias.shape == bias.shape


def test_fold_unfold_round_trip():
    kernel, bias = jnp.arange(6.0).reshape(3, 2), jnp.array([10.0, 11.0])
    folded = fold_bias(kernel, bias)
    np.testing.assert_array_equal(folded[-1], bias)
    k2, b2 = unfold_bias(folded)
    np.testing.assert_array_equal(k2, kernel)
    np.testing.assert_array_equal(b2, bias)


def test_ema(variant):
    old = {"a": jnp.ones((2, 2)), "s": jnp.zeros(3)}
    new = {"a": jnp.zeros((2, 2)), "s": jnp.full(3, 2.0)}
    out = variant(ema)(old, new, 0.99)
    np.testing.assert_allclose(out["a"], 0.99 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(out["s"], 0.02 * np.ones(3), rtol=1e-5)


# ---- trust region ----
def test_trust_region_scale(variant):
    step = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([2.0])}
    grad = {"w": jnp.array([0.5, 0.5]), "b": jnp.array([1.0])}  # Δθᵀg = 3.5
    scale = variant(trust_region_scale)
    eta = scale(step, grad, 10.0, 0.001)
    np.testing.assert_allclose(eta, np.sqrt(2 * 0.001 / 3.5), rtol=1e-6)
    # The predicted KL ½η²ΔθᵀFΔθ sits on the trust-region boundary δ.
    np.testing.assert_allclose(0.5 * eta**2 * 3.5, 0.001, rtol=1e-5)
    np.testing.assert_allclose(scale(step, grad, 0.01, 0.001), 0.01)  # capped at η_max
    zero = jax.tree.map(jnp.zeros_like, step)
    np.testing.assert_allclose(scale(zero, grad, 0.25, 0.001), 0.25)  # no 0/0


# ---- capturing dense statistics through flax ----
def mlp_problem(batch_shape=(7,)):
    model = MLP(hidden=(5,), out_dim=3)
    x = jax.random.normal(jax.random.key(0), (*batch_shape, 4))
    params = model.init(jax.random.key(1), x)["params"]
    return model, params, x


def test_capture_reproduces_kernel_gradients(variant):
    model, params, x = mlp_problem(batch_shape=(2, 3))

    def loss_fn(logits):
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    loss, grads, stats = variant(lambda p: capture_dense_stats(model, p, loss_fn, x))(
        params
    )
    true_loss, true_grads = jax.value_and_grad(
        lambda p: loss_fn(model.apply({"params": p}, x))
    )(params)
    np.testing.assert_allclose(loss, true_loss, rtol=1e-6)
    assert set(stats) == {"Dense_0", "Dense_1"}
    for name, (d_in, d_out) in {"Dense_0": (4, 5), "Dense_1": (5, 3)}.items():
        st = stats[name]
        assert isinstance(st, DenseStats)
        assert st.inputs.shape == (6, d_in) and st.out_grads.shape == (6, d_out)
        kernel_grad = st.inputs.T @ st.out_grads  # ∇W = Σ_n a_n g_nᵀ
        np.testing.assert_allclose(kernel_grad, true_grads[name]["kernel"], atol=1e-6)
        np.testing.assert_allclose(
            st.out_grads.sum(0), true_grads[name]["bias"], atol=1e-6
        )
        np.testing.assert_allclose(
            grads[name]["kernel"], true_grads[name]["kernel"], atol=1e-6
        )
    np.testing.assert_allclose(stats["Dense_0"].inputs, x.reshape(6, 4))


def test_capture_single_sample_factors_equal_exact_fisher_block():
    model, params, x = mlp_problem(batch_shape=(1,))

    def loss_fn(logits):
        return -jax.nn.log_softmax(logits)[0, 1]

    _, grads, stats = capture_dense_stats(model, params, loss_fn, x)
    for name in ("Dense_0", "Dense_1"):
        vec = np.asarray(fold_bias(grads[name]["kernel"], grads[name]["bias"])).ravel()
        a_mat, s_mat = dense_factors(stats[name].inputs, stats[name].out_grads)
        np.testing.assert_allclose(np.kron(a_mat, s_mat), np.outer(vec, vec), atol=1e-6)


def test_capture_shared_layer_and_vmap():
    class Shared(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(4)
            return nn.Dense(2)(dense(jnp.tanh(dense(x))))

    model = Shared()
    xs = jax.random.normal(jax.random.key(2), (3, 5, 4))  # [seeds, batch, features]
    params = jax.vmap(lambda k, x: model.init(k, x)["params"])(
        jax.random.split(jax.random.key(3), 3), xs
    )

    def run(p, x):
        return capture_dense_stats(model, p, lambda y: jnp.sum(y**2), x)

    _, grads, stats = jax.jit(jax.vmap(run))(params, xs)
    shared = stats["Dense_0"]
    assert shared.inputs.shape == (3, 10, 4)  # two calls stacked as rows
    kernel_grad = jnp.einsum("sni,sno->sio", shared.inputs, shared.out_grads)
    np.testing.assert_allclose(kernel_grad, grads["Dense_0"]["kernel"], atol=1e-5)
