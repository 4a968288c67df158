"""Dreamer's pieces against independent oracles: λ-returns (rlax and the reference's
loop), the tanh-Normal actor (distrax), the diagonal-Gaussian KL (distrax), the
free-nats KL, imagination's start state and reward/value alignment on a deterministic
toy model, the replay index convention, the carry, the mode; and a learning test."""

import dataclasses
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

import purerl
from purerl import loops
from purerl.algos import dreamer
from purerl.testing import split_config
from purerl.types import Box, EnvSpec, Transition

SPEC = EnvSpec((3,), "float32", Box((-2.0,), (2.0,), (1,)), 200, "Pendulum-v1")
SMALL = dict(batch_size=4, sequence_length=6, deter_size=8, stoch_size=4, hidden_size=8,
             units=8, horizon=5)


def reference_lambda_return(reward, value, pcont, bootstrap, lam):
    """danijar/dreamer tools.lambda_return (56d4d44), as a slow numpy loop."""
    next_values = np.concatenate([value[1:], bootstrap[None]], 0)
    inputs = reward + pcont * next_values * (1 - lam)
    returns, last = [], bootstrap
    for t in reversed(range(len(reward))):
        last = inputs[t] + pcont[t] * lam * last
        returns.append(last)
    return np.stack(returns[::-1])


def test_imagined_returns_match_rlax_and_the_reference_loop():
    rng = np.random.default_rng(0)
    H, N = 15, 7
    reward = rng.normal(size=(H, N)).astype(np.float32)
    value = rng.normal(size=(H, N)).astype(np.float32)

    class Pick(nn.Module):  # a "head" reading one column of the features
        col: int

        def __call__(self, feat):
            return feat[..., self.col:self.col + 1]

    nets = dreamer.make_nets(dreamer.Config(**SMALL), SPEC)._replace(
        reward=Pick(0), value=Pick(1))
    feats = jnp.stack([reward, value], -1)
    fn = jax.jit(jax.vmap(lambda f: dreamer.imagined_returns(nets, {"reward": {}}, {}, f,
                                                             0.99, 0.95), in_axes=1,
                          out_axes=1))
    returns, weights = fn(feats)
    ref = reference_lambda_return(reward[:-1], value[:-1], np.full((H - 1, N), 0.99),
                                  value[-1], 0.95)
    np.testing.assert_allclose(returns, ref, rtol=1e-5, atol=1e-5)
    oracle = jax.vmap(rlax.lambda_returns, in_axes=(1, 1, 1, None), out_axes=1)(
        reward[:-1], np.full((H - 1, N), 0.99, np.float32), value[1:], 0.95)
    np.testing.assert_allclose(returns, oracle, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights[:, 0], 0.99 ** np.arange(H - 1), rtol=1e-6)


def test_actor_is_the_papers_tanh_normal_and_matches_distrax():
    cfg = dreamer.Config(**SMALL)
    nets = dreamer.make_nets(cfg, SPEC)
    feat = jax.random.normal(jax.random.key(0), (64, 12))
    actor = nets.actor.init(jax.random.key(1), feat)
    mean, std = jax.jit(lambda f: dreamer.actor_dist(nets, actor, f, cfg))(feat)
    raw_mean, raw_std = np.split(np.asarray(nets.actor.apply(actor, feat)), 2, -1)
    np.testing.assert_allclose(mean, 5 * np.tanh(raw_mean / 5), rtol=1e-5)
    np.testing.assert_allclose(std, np.logaddexp(0, raw_std + np.log(np.expm1(5.0))) + 1e-4,
                               rtol=1e-5)
    # A zero pre-activation gives sigma = init_std (5).
    assert np.isclose(float(jax.nn.softplus(jnp.log(jnp.expm1(5.0)))), 5.0)
    keys = jax.random.split(jax.random.key(2), 3)
    a, logp = jax.vmap(dreamer.sample_action, in_axes=(None, None, 0))(mean, std, keys)
    dist = distrax.Independent(distrax.Transformed(distrax.Normal(mean, std), distrax.Tanh()), 1)
    inner = np.abs(np.asarray(a)) < 0.999  # atanh is ill-conditioned at the edges
    np.testing.assert_allclose(np.asarray(logp)[inner[..., 0]],
                               np.asarray(dist.log_prob(a))[inner[..., 0]], rtol=1e-3,
                               atol=1e-3)


def test_gaussian_kl_matches_distrax_under_jit_and_vmap():
    k = jax.random.split(jax.random.key(0), 4)
    mp, mq = jax.random.normal(k[0], (5, 30)), jax.random.normal(k[1], (5, 30))
    sp, sq = jnp.exp(jax.random.normal(k[2], (5, 30))), jnp.exp(jax.random.normal(k[3], (5, 30)))
    p, q = dreamer.Latent(mp, sp, mp, mp), dreamer.Latent(mq, sq, mq, mq)
    ours = jax.jit(jax.vmap(dreamer.gaussian_kl))(p, q)
    oracle = distrax.MultivariateNormalDiag(mp, sp).kl_divergence(
        distrax.MultivariateNormalDiag(mq, sq))
    np.testing.assert_allclose(ours, oracle, rtol=1e-4)


def test_free_nats_apply_to_the_mean_over_batch_and_time():
    kl = jnp.array([[1.0, 5.0], [2.0, 0.0]])  # mean 2 < 3; per step max would give 3.5
    assert float(dreamer.kl_term(kl, 3.0, 1.0)) == 3.0
    assert float(dreamer.kl_term(kl, 1.5, 2.0)) == 4.0
    # Below the free nats the KL gets no gradient; above it, the mean's gradient.
    g = jax.grad(dreamer.kl_term)(kl, 3.0, 1.0)
    np.testing.assert_array_equal(g, 0.0)
    g = jax.grad(dreamer.kl_term)(kl, 1.0, 1.0)
    np.testing.assert_allclose(g, 0.25)


class CounterRSSM(nn.Module):
    """A deterministic toy: each imagined step adds 1 to h[0] and the action to h[1]."""

    stoch_size: int = 1
    deter_size: int = 2

    def img_step(self, prev, action, key):
        deter = prev.deter + jnp.concatenate([jnp.ones_like(action), action], -1)
        return dreamer.Latent(prev.mean, prev.std, prev.stoch, deter)


class Column(nn.Module):
    col: int
    scale: float = 1.0

    def __call__(self, feat):
        return self.scale * feat[..., self.col:self.col + 1]


def test_imagination_starts_after_the_start_state_and_aligns_rewards_and_values():
    cfg = dreamer.Config(**{**SMALL, "horizon": 4, "stoch_size": 1, "deter_size": 2})
    nets = dreamer.make_nets(cfg, SPEC)
    # feat = [z, h0, h1]: reward(s) = h0 (the step count), value(s) = 10 h0.
    nets = nets._replace(rssm=CounterRSSM(), reward=Column(1), value=Column(1, 10.0))
    actor = nets.actor.init(jax.random.key(0), jnp.zeros((1, 3)))
    start = dreamer.Latent(*(jnp.zeros((2, 1)),) * 3, jnp.array([[0.0, 0.0], [7.0, 0.0]]))
    feats, log_probs = dreamer.imagine(nets, {"rssm": {}}, actor, start, jax.random.key(1),
                                       cfg)
    assert feats.shape == (4, 2, 3) and log_probs.shape == (4, 2)
    # s_1 ... s_H: the first imagined state is one step after the start.
    np.testing.assert_allclose(feats[:, :, 1], [[1, 8], [2, 9], [3, 10], [4, 11]])
    returns, weights = dreamer.imagined_returns(nets, {"reward": {}}, {}, feats, 0.5, 1.0)
    # lambda = 1: V(s_k) = r_k + 0.5 V(s_{k+1}), V(s_{H-1}) = r_{H-1} + 0.5 * 10 h0(s_H).
    r = np.asarray(feats[:, 0, 1])
    expect = [r[2] + 0.5 * 10 * r[3]]
    for k in (1, 0):
        expect.insert(0, r[k] + 0.5 * expect[0])
    np.testing.assert_allclose(returns[:, 0], expect, rtol=1e-6)
    np.testing.assert_allclose(weights[:, 0], [1.0, 0.5, 0.25])
    # The actor's gradient runs through the dynamics: h1 accumulates its actions.
    g = jax.grad(lambda p: dreamer.imagine(nets, {"rssm": {}}, p, start,
                                           jax.random.key(1), cfg)[0][-1, :, 2].sum())(actor)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g)) > 0


def test_the_entropy_bonus_adds_eta_times_the_mean_log_prob_of_imagined_actions():
    cfg = dreamer.Config(**{**SMALL, "horizon": 4, "stoch_size": 1, "deter_size": 2})
    nets = dreamer.make_nets(cfg, SPEC)
    nets = nets._replace(rssm=CounterRSSM(), reward=Column(1), value=Column(1, 10.0))
    actor = nets.actor.init(jax.random.key(0), jnp.zeros((1, 3)))
    params = {"model": {"rssm": {}, "reward": {}}, "value": {}, "actor": actor}
    start = dreamer.Latent(*(jnp.zeros((2, 1)),) * 3, jnp.array([[0.0, 0.0], [7.0, 0.0]]))
    key = jax.random.key(1)
    plain, _ = dreamer.actor_loss(actor, params, start, key, nets, cfg)
    _, log_probs = dreamer.imagine(nets, params["model"], actor, start, key, cfg)
    bonus = dataclasses.replace(cfg, actor_entropy=0.5)
    loss, _ = dreamer.actor_loss(actor, params, start, key, nets, bonus)
    np.testing.assert_allclose(loss, plain + 0.5 * log_probs.mean(), rtol=1e-6)
    # The bonus has a gradient in the actor's parameters.
    g = jax.grad(lambda p: dreamer.actor_loss(p, params, start, key, nets, bonus)[0]
                 - dreamer.actor_loss(p, params, start, key, nets, cfg)[0])(actor)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g)) > 0


def window(L=6, B=2, done_at=(2,)):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(L + 1, B, 3)).astype(np.float32)
    terminated = np.zeros((L, B), bool)
    next_obs = obs[1:].copy()
    for t in done_at:
        terminated[t] = True
        next_obs[t] = rng.normal(size=(B, 3))  # the final observation, not obs[t + 1]
    return Transition(obs=jnp.asarray(obs[:-1]),
                      action=jnp.asarray(rng.uniform(-2, 2, (L, B, 1)), jnp.float32),
                      reward=jnp.asarray(rng.normal(size=(L, B)), jnp.float32),
                      discount=jnp.asarray(0.99 * ~terminated, jnp.float32),
                      terminated=jnp.asarray(terminated), truncated=jnp.zeros((L, B), bool),
                      extras={}, bootstrap_value=jnp.zeros(B), next_obs=jnp.asarray(next_obs))


def test_index_convention_of_the_replayed_windows():
    cfg = dreamer.Config(**SMALL)
    nets = dreamer.make_nets(cfg, SPEC)
    # The replay's windows are one step longer: step 0 gives a_{t-1} only.
    assert dreamer.replay(cfg).sequence_length == cfg.sequence_length + 1
    batch = window(7, done_at=(3,))
    seq = dreamer.to_sequences(batch, nets)
    # reset at t = 0 and right after the step that ended an episode (t = 2).
    np.testing.assert_array_equal(seq["reset"][:, 0], [1, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(seq["action"], batch.action[1:] / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(seq["obs"], batch.obs[1:])
    # The window's first filter takes the real previous action (as the reference's),
    # the reset after an episode's end a zero one; none if step 0 ended an episode.
    want = np.zeros_like(seq["action"])
    want[0] = batch.action[0] / 2.0
    np.testing.assert_allclose(seq["init_action"], want, rtol=1e-6)
    ended = dreamer.to_sequences(window(7, done_at=(0, 3)), nets)
    np.testing.assert_array_equal(ended["init_action"], 0.0)
    model = dreamer.init_params(jax.random.key(0), nets, SPEC, cfg)["model"]
    observe = jax.jit(lambda s: dreamer.observe(nets, model, s, jax.random.key(1)))
    base, post, prior, init_post, _ = observe(seq)
    for t in range(6):  # base_t: the init filter of o_t at a reset, else post_{t-1}
        want = init_post if seq["reset"][t, 0] else post
        tw = t if seq["reset"][t, 0] else t - 1
        np.testing.assert_array_equal(base.deter[t], want.deter[tw])
        np.testing.assert_array_equal(base.stoch[t], want.stoch[tw])
    # post_t filters o'_t: changing the final observation of step 2 moves post_2 only
    # (step 3 starts a new episode from o_3).
    moved = {**seq, "next_obs": seq["next_obs"].at[2].add(1.0)}
    _, post2, _, _, _ = observe(moved)
    changed = np.abs(np.asarray(post2.mean - post.mean)).max(axis=(1, 2)) > 0
    np.testing.assert_array_equal(changed, [0, 0, 1, 0, 0, 0])
    # The reward target of step t is read from post_t: r_2 of the step into the final
    # observation counts, nothing is invented before o_0 or o_3.
    def reward_loss(reward):
        loss, _ = dreamer.world_model_loss(model, {**seq, "reward": reward},
                                           jax.random.key(1), nets, cfg)
        return loss
    feat = dreamer.features(post)
    pred = dreamer.reward_mean(nets, model, feat)
    g = jax.grad(reward_loss)(seq["reward"])
    # d/dr of -mean(log N(r; pred, 1)) is (r - pred) / n.
    np.testing.assert_allclose(g, (seq["reward"] - pred) / seq["reward"].size, rtol=1e-4,
                               atol=1e-6)


def test_act_resets_the_carry_at_first_and_the_mode_is_per_env():
    cfg = dreamer.Config(**SMALL)
    agent = dreamer.make(cfg, SPEC)
    state = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 3))
    act = jax.jit(agent.act, static_argnames="eval")
    _, carry, _ = act(state, agent.init_carry(3), obs, jnp.ones(3, bool), jax.random.key(2))
    fresh = act(state, agent.init_carry(3), obs, jnp.ones(3, bool), jax.random.key(3))
    again = act(state, carry, obs, jnp.ones(3, bool), jax.random.key(3))
    np.testing.assert_array_equal(fresh[0], again[0])  # first=True ignores the carry
    kept = act(state, carry, obs, jnp.zeros(3, bool), jax.random.key(3))
    assert not np.allclose(kept[1][0].deter, fresh[1][0].deter)
    a = np.asarray(act(state, carry, obs, jnp.zeros(3, bool), jax.random.key(4))[0])
    assert a.shape == (3, 1) and np.all(np.abs(a) <= 2.0)
    # The mode picks each env's own most likely sample (not env 0's index).
    mean, std = jnp.array([[-1.0], [1.0]]), jnp.array([[0.05], [0.05]])
    mode = dreamer.action_mode(mean, std, jax.random.key(5), 100)
    np.testing.assert_allclose(mode[:, 0], np.tanh([-1.0, 1.0]), atol=0.02)


def test_bad_observations_and_configs_get_clear_errors():
    with pytest.raises(ValueError, match="64x64"):
        dreamer.make_nets(dreamer.Config(), EnvSpec((84, 84, 3), "uint8", SPEC.action_space, 9))
    with pytest.raises(ValueError, match="horizon"):
        dreamer.Config(horizon=1)
    with pytest.raises(ValueError, match="free_nats"):
        dreamer.Config(free_nats=-1.0)


def test_pixel_update_runs_at_tiny_sizes():
    spec = EnvSpec((64, 64, 3), "uint8", SPEC.action_space, 10)
    cfg = dreamer.Config(**{**SMALL, "cnn_depth": 2, "batch_size": 2, "sequence_length": 3})
    agent = dreamer.make(cfg, spec)
    state = agent.init(jax.random.key(0))
    frames = jax.random.randint(jax.random.key(1), (3, 2, 64, 64, 3), 0, 255).astype(jnp.uint8)
    batch = window(3, 2, ())._replace(obs=frames, next_obs=frames)
    update = jax.jit(agent.update)
    state, m = update(state, batch, jax.random.key(2))
    state, m = update(state, batch, jax.random.key(3))
    assert update._cache_size() == 1 and np.isfinite(float(m["loss/model"]))
    assert float(m["dreamer/obs_log_prob"]) < 0  # summed over 64 * 64 * 3 pixels


def test_learns_the_continuous_bandit():
    # One-step episodes, reward -(a - x)^2 for the observed x; gamma 0 and H = 2 leave
    # one imagined reward per start: the actor must pick a from the model's reward
    # of the state a leads to, with the reward indexed as the module says.
    env = purerl.envs.make("Probe-ContinuousBandit-v0")
    # Free nats keep x in the latent although its unit-variance reconstruction pays
    # little; sigma 1 (not 5) so that the mode is not pushed to the bounds.
    cfg, run = split_config(dreamer, total_steps=3000, num_envs=8, num_steps=25,
                            num_evals=2, num_eval_envs=16, gamma=0.0, horizon=2,
                            batch_size=16, sequence_length=8, updates_per_round=20,
                            learning_starts=400, deter_size=16, stoch_size=4,
                            hidden_size=32, units=32, actor_layers=2, value_layers=1,
                            init_std=1.0, model_lr=3e-3, actor_lr=3e-3, buffer_size=3000)
    _, metrics = jax.jit(jax.vmap(loops.make_train(dreamer, env, cfg, run)))(
        jax.random.split(jax.random.key(0), 2))
    final = np.asarray(metrics["eval/return"][:, -1])
    # A uniform action in [-2, 2] earns -5/3 on average; the best, 0.
    assert final.min() > -0.3, final


def _model_and_seq(**changes):
    cfg = dreamer.Config(**{**SMALL, **changes})
    nets = dreamer.make_nets(cfg, SPEC)
    params = dreamer.init_params(jax.random.key(0), nets, SPEC, cfg)
    seq = dreamer.to_sequences(window(7, done_at=(3,)), nets)
    return cfg, nets, params, seq


def test_value_loss_is_the_weighted_unit_gaussian_nll_of_fixed_targets():
    cfg, nets, params, _ = _model_and_seq()
    rng = np.random.default_rng(1)
    feats = jnp.asarray(rng.normal(size=(5, 3, 12)), jnp.float32)
    returns = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    weights = jnp.asarray(rng.uniform(size=(4, 1)) * np.ones((4, 3)), jnp.float32)
    loss = dreamer.value_loss(params["value"], feats, returns, weights, nets)
    v = np.asarray(nets.value.apply(params["value"], feats[:-1])[..., 0], np.float64)
    nll = 0.5 * (np.asarray(returns) - v) ** 2 + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(loss, (np.asarray(weights) * nll).mean(), rtol=1e-5)
    # Targets and features are constants: no gradient reaches them.
    g_ret, g_feat = jax.grad(lambda r, f: dreamer.value_loss(params["value"], f, r, weights,
                                                             nets), argnums=(0, 1))(
        returns, feats)
    assert float(jnp.abs(g_ret).max()) == 0.0 and float(jnp.abs(g_feat).max()) == 0.0


def test_each_of_the_three_steps_changes_only_its_own_group():
    # With two of the three learning rates ~0, one Adam step moves one group only.
    base = dict(free_nats=0.0)
    tiny = 1e-30
    for group, lrs in (("model", dict(actor_lr=tiny, value_lr=tiny)),
                       ("actor", dict(model_lr=tiny, value_lr=tiny)),
                       ("value", dict(model_lr=tiny, actor_lr=tiny))):
        cfg, nets, params, seq = _model_and_seq(**base, **lrs)
        state = dreamer.State(params, {"model": nets.model_opt.init(params["model"]),
                                       "actor": nets.actor_opt.init(params["actor"]),
                                       "value": nets.value_opt.init(params["value"])},
                              jnp.int32(0))
        new, _ = jax.jit(lambda s: dreamer.learner_step(s, seq, jax.random.key(3), nets,
                                                        cfg))(state)
        for g in ("model", "actor", "value"):
            delta = max(float(jnp.abs(a - b).max()) for a, b in zip(
                jax.tree.leaves(new.params[g]), jax.tree.leaves(params[g])))
            assert (delta > 1e-6) == (g == group), (group, g, delta)


def test_the_kl_gradient_reaches_both_prior_and_posterior():
    cfg, nets, params, seq = _model_and_seq(free_nats=0.0)

    def kl(model):
        _, post, prior, init_post, init_prior = dreamer.observe(nets, model, seq,
                                                                jax.random.key(1))
        return (dreamer.gaussian_kl(post, prior)
                + seq["reset"] * dreamer.gaussian_kl(init_post, init_prior)).mean()

    g = jax.grad(kl)(params["model"])["rssm"]["params"]
    for head in ("img_out", "obs_out"):  # the prior's and the posterior's outputs
        assert float(jnp.abs(g[head]["kernel"]).max()) > 0.0, head
    # Above the free nats the KL term's gradient is the KL's; below it, none.
    def term(model, free):
        loss, _ = dreamer.world_model_loss(model, {**seq, "reward": seq["reward"] * 0},
                                           jax.random.key(1), nets,
                                           dataclasses.replace(cfg, free_nats=free))
        return loss
    low = jax.grad(term)(params["model"], 1e6)["rssm"]["params"]["img_out"]["kernel"]
    high = jax.grad(term)(params["model"], 0.0)["rssm"]["params"]["img_out"]["kernel"]
    assert float(jnp.abs(low).max()) == 0.0 and float(jnp.abs(high).max()) > 0.0


def test_the_reconstruction_target_is_o_t_decoded_from_base_t():
    cfg, nets, params, seq = _model_and_seq()
    model = params["model"]
    _, (base, metrics) = dreamer.world_model_loss(model, seq, jax.random.key(1), nets, cfg)
    pred = np.asarray(dreamer.decode(nets, model, dreamer.features(base)), np.float64)
    obs = np.asarray(seq["obs"], np.float64)
    want = (-0.5 * (obs - pred) ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1).mean()
    np.testing.assert_allclose(metrics["dreamer/obs_log_prob"], want, rtol=1e-5)
    nxt = np.asarray(seq["next_obs"], np.float64)
    wrong = (-0.5 * (nxt - pred) ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1).mean()
    assert abs(wrong - want) > 1e-3


def test_the_mode_estimate_saturates_at_large_sigma_and_the_mean_action_does_not():
    # tools.SampleDist.mode of a tanh-Normal at mu = 0: the most likely of 100 samples.
    # The density of tanh(x) grows without bound towards +-1 once sigma > ~0.7 (the
    # Jacobian term), so the estimate is pushed there: the bias the eval_action
    # "mean" avoids.
    keys = jax.random.split(jax.random.key(0), 400)
    for sigma, lo, hi in ((0.3, 0.0, 0.05), (0.6, 0.0, 0.05), (1.0, 0.9, 1.0)):
        mode = jax.vmap(lambda k: dreamer.action_mode(jnp.zeros((1, 1)),
                                                      jnp.full((1, 1), sigma), k, 100))(keys)
        assert lo <= float(jnp.abs(mode).mean()) <= hi, sigma
    cfg = dreamer.Config(**SMALL)
    agent = dreamer.make(cfg, SPEC)
    state = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 3))
    act = jax.jit(agent.act, static_argnames="eval")
    a1 = act(state, agent.init_carry(3), obs, jnp.ones(3, bool), jax.random.key(2), eval=True)
    a2 = act(state, agent.init_carry(3), obs, jnp.ones(3, bool), jax.random.key(3), eval=True)
    # Deterministic but for the posterior sample of the filter: the same latent mean.
    latent = a1[1][0]
    mean, _ = dreamer.actor_dist(dreamer.make_nets(cfg, SPEC), state.params["actor"],
                                 dreamer.features(latent), cfg)
    np.testing.assert_allclose(a1[0], 2.0 * np.tanh(np.asarray(mean)), rtol=1e-5, atol=1e-6)
    assert a2[0].shape == (3, 1)
    with pytest.raises(ValueError, match="eval_action must be one of"):
        dreamer.Config(eval_action="sample")


def test_learns_credit_over_several_steps_through_the_world_model():
    # Probe-DelayedReward-v0: five actions move a point; the last step pays x_5 and
    # each earlier one -0.15 x_{t+1}, so every action's immediate reward says "left"
    # while the return says "right" (right at every step: 0.7; credited one step at a
    # time: -0.3). The actor's gradient runs through the imagined dynamics alone
    # (Dreamer v1 has no score-function term). Checked: with gamma 0 the same run
    # ends at -0.67 / -0.33.
    env = purerl.envs.make("Probe-DelayedReward-v0")
    cfg, run = split_config(dreamer, total_steps=3000, num_envs=8, num_steps=25,
                            num_evals=3, num_eval_envs=16, gamma=0.9, horizon=6,
                            batch_size=16, sequence_length=10, updates_per_round=20,
                            learning_starts=400, deter_size=16, stoch_size=4,
                            hidden_size=32, units=32, actor_layers=2, value_layers=1,
                            init_std=1.0, model_lr=3e-3, actor_lr=3e-3, value_lr=3e-3,
                            free_nats=0.5, buffer_size=3000)
    _, metrics = jax.jit(jax.vmap(loops.make_train(dreamer, env, cfg, run)))(
        jax.random.split(jax.random.key(0), 2))
    final = np.asarray(metrics["eval/return"][:, -1])
    assert final.min() > 0.65, final


def test_act_and_observe_filter_a_replayed_stream_alike(monkeypatch):
    # With the RSSM's noise at zero both are deterministic, so the state act reaches at
    # o_t must be observe's base_t for the records act wrote: its carry's action, its
    # resets at `first`, the window's index convention.
    cfg = dreamer.Config(**SMALL)
    agent, nets = dreamer.make(cfg, SPEC), dreamer.make_nets(cfg, SPEC)
    state = agent.init(jax.random.key(0))  # before the patch: inits draw normals
    monkeypatch.setattr(jax.random, "normal",
                        lambda key, shape=(), dtype=jnp.float32: jnp.zeros(shape, dtype))
    rng = np.random.default_rng(3)
    L = 7
    obs = rng.normal(size=(L + 1, 2, 3)).astype(np.float32)
    first = np.zeros((L + 1, 2), bool)
    first[[1, 4]] = True  # episodes start at record 1 (the window's start) and 4
    act = jax.jit(lambda c, o, f, k: agent.act(state, c, o, f, k, eval=True))
    carry, latents, actions = agent.init_carry(2), [], []
    for t in range(L + 1):
        a, carry, _ = act(carry, obs[t], jnp.asarray(first[t]), jax.random.key(t))
        latents.append(carry[0])
        actions.append(np.asarray(a))
    done = np.roll(first, -1, axis=0)[:L]  # record t ended an episode if t + 1 is first
    next_obs = np.where(done[..., None], rng.normal(size=(L, 2, 3)), obs[1:])
    batch = Transition(obs=jnp.asarray(obs[:L]), action=jnp.asarray(np.stack(actions[:L])),
                       reward=jnp.zeros((L, 2)), discount=jnp.ones((L, 2)),
                       terminated=jnp.asarray(done), truncated=jnp.zeros((L, 2), bool),
                       extras={}, bootstrap_value=jnp.zeros(2),
                       next_obs=jnp.asarray(next_obs, jnp.float32))
    seq = dreamer.to_sequences(batch, nets)
    base, *_ = dreamer.observe(nets, state.params["model"], seq, jax.random.key(9))
    assert np.all(np.isfinite(base.deter)) and np.abs(np.stack(actions)).min() > 1e-3
    for t in range(L - 1):  # window step t is record t + 1
        np.testing.assert_allclose(base.deter[t], latents[t + 1].deter, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(base.mean[t], latents[t + 1].mean, rtol=1e-5, atol=1e-6)
