"""REINFORCE, Q actor-critic, A2C, Off-PAC: contracts, oracles and short learning tests."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl.algos import a2c, actor_critic, offpac, reinforce
from purerl.ops import lambda_returns
from purerl.testing import as_numpy, leaves_equal, random_batch, split_config, train_fn

ALGOS = {"reinforce": reinforce, "actor_critic": actor_critic, "a2c": a2c, "offpac": offpac}
# Tiny configs: one compile each, shared by the tests below through fixtures.
SMALL = {
    "reinforce": dict(total_steps=2000, num_envs=4, num_evals=2, num_eval_envs=2),
    "actor_critic": dict(total_steps=1024, num_envs=4, num_steps=8, num_evals=2,
                         num_eval_envs=2),
    "a2c": dict(total_steps=1024, num_envs=4, num_steps=8, num_evals=2, num_eval_envs=2),
    # Segments of one rollout's length, 16 of them: 32 steps kept per env.
    "offpac": dict(total_steps=1024, num_envs=4, num_steps=8, num_evals=2, num_eval_envs=2,
                   replay_size=16, segment_length=8, batch_segments=4),
}


def make_agent(algo, cfg, spec, run):
    """``algo.make`` with the number of updates a run of ``run`` makes, where the
    learning rate is annealed over it."""
    return purerl.loops.make_agent(algo, cfg, spec, purerl.loops.schedule(run))


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


@pytest.fixture(scope="module", params=list(ALGOS))
def small(request, cartpole):
    """(module, config, jitted train) for one algorithm on CartPole."""
    algo = ALGOS[request.param]
    cfg, run = split_config(algo, **SMALL[request.param])
    return algo, (cfg, run), jax.jit(purerl.make_train(algo, cartpole, cfg, run))


@pytest.mark.parametrize("name", list(ALGOS))
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_update_is_stable_and_compiles_once(name, env_id):
    algo = ALGOS[name]
    env = purerl.envs.make(env_id)
    cfg, run = split_config(algo, **SMALL[name])
    agent = make_agent(algo, cfg, env.spec, run)
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
    # act: shapes in both modes, eval mode deterministic.
    obs = batch.obs[0]
    B = obs.shape[0]
    carry, first = agent.init_carry(B), jnp.zeros(B, bool)
    action, _, _ = agent.act(state, carry, obs, first, jax.random.key(4))
    assert action.shape == batch.action.shape[1:]
    a1, _, _ = agent.act(state, carry, obs, first, jax.random.key(5), eval=True)
    a2, _, _ = agent.act(state, carry, obs, first, jax.random.key(6), eval=True)
    np.testing.assert_array_equal(a1, a2)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("reinforce", dict(optimizer="rmsprop"), r"Config\.optimizer must be one of"),
        ("reinforce", dict(gamma=1.5), r"Config\.gamma must be in"),
        ("actor_critic", dict(td_steps=9, num_steps=5),
         r"Config\.td_steps must be <= RunConfig\.num_steps = 5"),
        ("actor_critic", dict(td_steps=0), r"Config\.td_steps must be in"),
        ("a2c", dict(rms_eps=0.0), r"Config\.rms_eps must be in"),
        ("a2c", dict(lr=-1.0), r"Config\.lr must be in"),
        ("offpac", dict(behaviour="greedy"), r"Config\.behaviour must be one of"),
        ("offpac", dict(clip_rho=0.0), r"Config\.clip_rho must be in"),
        ("offpac", dict(replay_size=0), r"Config\.replay_size must be in"),
        # 2 segments of 16 steps over RUN's 16 envs: 2 steps per env, less than one
        # segment.
        ("offpac", dict(replay_size=2), r"keeps 2 steps per env, fewer than one window of 16"),
    ],
)
def test_config_validation_names_the_field(name, kwargs, message, cartpole):
    # Config fields are checked by Config, those that depend on the RunConfig (and the
    # replay's geometry) by make_train, before anything is traced.
    with pytest.raises(ValueError, match=message):
        train_fn(ALGOS[name], cartpole, **kwargs)


def test_q_advantage_needs_discrete_actions():
    env = purerl.envs.make("Pendulum-v1")
    with pytest.raises(ValueError, match="Config.advantage needs a Discrete"):
        actor_critic.make(actor_critic.Config(advantage=True), env.spec, num_updates=10)


def test_same_key_same_result_different_keys_differ(small):
    _, _, train = small
    out1 = train(jax.random.key(0))
    out2 = train(jax.random.key(0))
    out3 = train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)


def test_vmap_over_seeds_equals_separate_runs(small, cartpole):
    algo, (cfg, run), train = small
    keys = jax.random.split(jax.random.key(7), 4)
    batched = jax.jit(jax.vmap(purerl.make_train(algo, cartpole, cfg, run)))(keys)
    for i in range(4):
        single = train(keys[i])
        for x, y in zip(as_numpy(single), as_numpy(batched)):
            np.testing.assert_allclose(x, y[i], rtol=2e-5, atol=2e-6)


# ---- REINFORCE ----

def short_corridor_optimum():
    """p* and J* of S&B Example 13.1 by solving the Bellman equations on a grid."""
    def value(p):
        # v0 = -1 + p v1 + (1-p) v0;  v1 = -1 + p v0 + (1-p) v2;  v2 = -1 + (1-p) v1
        a = np.array([[-p, p, 0.0], [p, -1.0, 1.0 - p], [0.0, 1.0 - p, -1.0]])
        return np.linalg.solve(a, np.ones(3))[0]
    grid = np.linspace(0.01, 0.99, 9801)
    values = np.array([value(p) for p in grid])
    return grid[values.argmax()], values.max()


def test_short_corridor_oracle():
    p_star, j_star = short_corridor_optimum()
    assert abs(p_star - (2 - np.sqrt(2))) < 1e-3
    assert abs(j_star + 6 + 4 * np.sqrt(2)) < 1e-3  # J* = −(6 + 4√2)


def test_reinforce_approaches_the_short_corridor_optimum():
    """Plain REINFORCE (no baseline, SGD, a state-blind softmax policy) on S&B Example
    13.1: the probability of 'right' must approach p* = 2 − √2 ≈ 0.586."""
    p_star, j_star = short_corridor_optimum()
    env = purerl.envs.make("ShortCorridor-v0")
    cfg, run = split_config(reinforce, total_steps=150_000, num_envs=64, num_evals=2,
                            num_eval_envs=2, hidden_sizes=(), gamma=1.0, optimizer="sgd",
                            lr=0.05, baseline=False)
    train = jax.jit(jax.vmap(purerl.make_train(reinforce, env, cfg, run)))
    runner, metrics = train(jax.random.split(jax.random.key(0), 4))
    actor = reinforce.common.make_actor(cfg, env.spec)
    probs = jax.vmap(lambda p: actor.apply(p, jnp.ones(1)).probs)(runner.agent.params["actor"])
    p_right = np.asarray(probs[:, 1])
    assert abs(p_right.mean() - p_star) < 0.03, p_right
    assert np.all(np.abs(p_right - p_star) < 0.08), p_right
    # The policy started at p = 0.5 (J = -16 there); training episodes now return ≈ J*.
    assert abs(np.mean(metrics["train/episode_return"][:, -1]) - j_star) < 0.5


def test_reinforce_episodes_are_never_cut(cartpole):
    """Episodic rollouts: every iteration's episodes are complete, env steps are only
    the live steps, and the run stays within its step budget."""
    cfg, run = split_config(reinforce, **SMALL["reinforce"])
    runner, metrics = jax.jit(purerl.make_train(reinforce, cartpole, cfg, run))(
        jax.random.key(0))
    steps = np.asarray(metrics["env_steps"])
    assert steps[-1] <= run.total_steps
    # One complete episode per env per iteration: episodes == num_envs * iterations and
    # the mean episode length times the episode count is the step count.
    np.testing.assert_array_equal(metrics["train/episodes"],
                                  run.num_envs * metrics["train/iterations"])
    lengths = metrics["train/episode_length"] * metrics["train/episodes"]
    np.testing.assert_allclose(lengths.sum(), steps[-1], rtol=1e-6)


def test_reinforce_baseline_gradient_does_not_reach_the_actor(cartpole):
    cfg, _ = split_config(reinforce, **SMALL["reinforce"])
    agent = reinforce.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(1))
    actor = reinforce.common.make_actor(cfg, cartpole.spec)
    from purerl.networks import ValueNet
    critic = ValueNet(cfg.hidden_sizes, cfg.activation)

    def actor_loss(critic_params):
        params = {**state.params, "critic": critic_params}
        _, m = reinforce.reinforce_loss(params, batch, actor, critic, cfg, cartpole.spec)
        return m["loss/actor"]

    grads = jax.grad(actor_loss)(state.params["critic"])
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


# ---- Off-PAC ----

def test_offpac_with_behaviour_equal_to_pi_is_on_policy_actor_critic(cartpole):
    """b = π: every ρ is 1, so the Off-PAC loss gradient must equal that of on-policy
    actor-critic with TD(λ) targets G^λ and GAE(λ) advantages G^λ − V(s_t), written
    here from lambda_returns directly."""
    cfg, _ = split_config(offpac, **SMALL["offpac"], trace_lambda=0.8, ent_coef=0.01)
    agent = offpac.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(1), T=cfg.segment_length)
    actor = offpac.common.make_actor(cfg, cartpole.spec)
    from purerl.networks import ValueNet
    critic = ValueNet(cfg.hidden_sizes, cfg.activation)
    log_b = actor.apply(state.params["actor"], batch.obs).log_prob(batch.action)
    # Sampled segments as the loop hands them over: time-major [L, S], log b in
    # extras["log_prob"], next_obs[-1] the observation after each segment.
    seg = batch._replace(extras={"log_prob": log_b})
    last_obs = seg.next_obs[-1]

    def on_policy(params):
        dist = actor.apply(params["actor"], batch.obs)
        v = critic.apply(params["critic"], batch.obs)
        v_all = jnp.concatenate([v, critic.apply(params["critic"], last_obs)[None]])
        g = lambda_returns(batch.reward, batch.discount, jax.lax.stop_gradient(v_all), 0.8)
        adv = jax.lax.stop_gradient(g - v)
        pg = -(adv * dist.log_prob(batch.action)).mean()
        vf = 0.5 * ((v - g) ** 2).mean()
        return pg + vf - 0.01 * dist.entropy().mean()

    def off_policy(params):
        return offpac.offpac_loss(params, seg, actor, critic, cfg, cartpole.spec)[0]

    g_on = jax.grad(on_policy)(state.params)
    g_off = jax.grad(off_policy)(state.params)
    for x, y in zip(jax.tree.leaves(g_on), jax.tree.leaves(g_off)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    _, m = offpac.offpac_loss(state.params, seg, actor, critic, cfg, cartpole.spec)
    np.testing.assert_allclose(m["offpac/rho_mean"], 1.0, rtol=1e-6)


def test_offpac_ratio_is_a_constant_weight(cartpole):
    """No gradient through ρ. With zero discounts the advantage is ρ̄_t (r_t − V(s_t)),
    so ρ ≡ 2 must give exactly twice the ρ ≡ 1 actor gradient; differentiating
    through ρ = π/b would add a ρ ∇log π term and break the proportionality."""
    cfg, _ = split_config(offpac, **SMALL["offpac"], clip_rho=100.0, clip_c=100.0,
                          trace_lambda=0.0, ent_coef=0.0)
    agent = offpac.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(1), T=cfg.segment_length)
    actor = offpac.common.make_actor(cfg, cartpole.spec)
    from purerl.networks import ValueNet
    critic = ValueNet(cfg.hidden_sizes, cfg.activation)
    log_pi = actor.apply(state.params["actor"], batch.obs).log_prob(batch.action)
    seg = batch._replace(discount=jnp.zeros_like(batch.discount),
                         extras={"log_prob": log_pi - jnp.log(2.0)})
    same = seg._replace(extras={"log_prob": log_pi})  # ρ ≡ 1

    def actor_loss(actor_params, s):
        params = {**state.params, "actor": actor_params}
        return offpac.offpac_loss(params, s, actor, critic, cfg, cartpole.spec)[1]["loss/actor"]

    g2 = jax.grad(actor_loss)(state.params["actor"], seg)
    g1 = jax.grad(actor_loss)(state.params["actor"], same)
    for x, y in zip(jax.tree.leaves(g2), jax.tree.leaves(g1)):
        np.testing.assert_allclose(x, 2.0 * y, rtol=1e-4, atol=1e-7)


# ---- learning on cheap tasks ----

@pytest.mark.parametrize(
    "name,overrides",
    [
        ("reinforce", dict(total_steps=4096, num_envs=16, lr=1e-2, critic_lr=1e-2)),
        ("actor_critic", dict(total_steps=8192, num_envs=16, num_steps=4, lr=3e-3,
                              critic_lr=3e-3, anneal_lr=False)),
        ("a2c", dict(total_steps=8192, num_envs=16, num_steps=4, lr=3e-3, anneal_lr=False)),
        ("offpac", dict(total_steps=8192, num_envs=16, num_steps=4, lr=3e-3,
                        critic_lr=3e-3, behaviour="uniform", replay_size=256,
                        segment_length=4)),
    ],
)
def test_learns_contextual_bandit(name, overrides):
    algo = ALGOS[name]
    env = purerl.envs.make("Probe-Bandit-v0")
    cfg, run = split_config(algo, **overrides, num_evals=2, num_eval_envs=8)
    train = jax.jit(jax.vmap(purerl.make_train(algo, env, cfg, run)))
    _, metrics = train(jax.random.split(jax.random.key(0), 2))
    assert np.asarray(metrics["eval/return"][:, -1]).min() == 1.0, metrics["eval/return"]


def test_a2c_learns_cartpole_quickly(cartpole):
    # TensorFlow's RMSProp (mean square from 1) starts with small steps: ~300k steps to
    # a mean above 150 here, where PyTorch's (from 0) took 100k.
    cfg, run = split_config(a2c, total_steps=300_000, num_envs=16, num_steps=5,
                            ent_coef=0.0, num_evals=2)
    _, metrics = jax.jit(jax.vmap(purerl.make_train(a2c, cartpole, cfg, run)))(
        jax.random.split(jax.random.key(0), 2))
    assert np.asarray(metrics["eval/return"][:, -1]).mean() > 150.0, metrics["eval/return"]
