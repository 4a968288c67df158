"""SMM's pieces against independent oracles: the VAE's log-density proxy ranks points
as a KDE does, the reward's terms and signs, the discriminator's log d(z|s), the skill
held in the carry for an episode, the snapshot ring and its draws, the finetune phase."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import purerl
import purerl.testing
from purerl.algos import smm
from purerl.types import Box, EnvSpec

SPEC = EnvSpec((2,), "float32", Box((-1.0, -1.0), (1.0, 1.0), (2,)), 50, "Maze-Open-v0")
SMALL = dict(hidden_sizes=(16, 16), batch_size=16, buffer_size=256, learning_starts=16,
             vae_hidden=(32, 32), vae_code_dim=8, discriminator_hidden=(16,),
             history_size=3, history_every=2)


def test_vae_log_density_rank_correlates_with_a_kde():
    # A 2-D sample from two Gaussian blobs of different widths; fit the VAE alone with
    # its own loss, then rank held-out points by the proxy -||x - x_hat||^2 (averaged
    # over codes) and by scipy's gaussian_kde of the training sample.
    rng = np.random.default_rng(0)
    def sample(n):
        a = rng.normal([-1.0, 0.0], 0.25, (n // 2, 2))
        b = rng.normal([1.0, 0.5], 0.6, (n - n // 2, 2))
        return np.concatenate([a, b]).astype(np.float32)
    train, test = sample(2000), np.concatenate([sample(300), rng.uniform(-3, 3, (100, 2))])
    cfg = smm.Config(vae_hidden=(64, 64), vae_code_dim=2, vae_lr=3e-3, num_skills=1)
    nets = smm.make_nets(cfg, EnvSpec((2,), "float32", SPEC.action_space, 50))
    params = nets.vae.init(jax.random.key(0), jnp.zeros(2), jnp.zeros(2))
    opt = nets.vae_adam.init(params)

    @jax.jit
    def step(params, opt, key):
        k_batch, k_eps = jax.random.split(key)
        x = jnp.asarray(train)[jax.random.randint(k_batch, (256,), 0, len(train))]
        g = jax.grad(lambda p: smm.vae_loss(p, x, k_eps, nets, cfg.vae_beta)[0])(params)
        updates, opt = nets.vae_adam.update(g, opt)
        return optax.apply_updates(params, updates), opt

    for i in range(1500):
        params, opt = step(params, opt, jax.random.key(i))
    log_q = jax.jit(jax.vmap(lambda k: smm.vae_loss(params, jnp.asarray(test), k, nets,
                                                    cfg.vae_beta)[1]))(
        jax.random.split(jax.random.key(7), 32)).mean(0)
    kde = stats.gaussian_kde(train.T).logpdf(test.T)
    rho = stats.spearmanr(np.asarray(log_q), kde).statistic
    assert rho > 0.6, rho


def test_vae_loss_and_proxy_match_a_hand_computation():
    cfg = smm.Config(**SMALL)
    nets = smm.make_nets(cfg, SPEC)
    x = jax.random.normal(jax.random.key(1), (5, 6))
    params = nets.vae.init(jax.random.key(0), x[0], jnp.zeros(8))
    loss, log_q = smm.vae_loss(params, x, jax.random.key(2), nets, 0.5)
    eps = jax.random.normal(jax.random.key(2), (5, 8))
    recon, mu, logvar = nets.vae.apply(params, x, eps)
    recon, mu, logvar, x = map(np.asarray, (recon, mu, logvar, x))
    kl = np.mean(-0.5 * np.sum(1 + logvar - mu**2 - np.exp(logvar), -1))
    np.testing.assert_allclose(loss, 0.5 * kl + np.mean((x - recon) ** 2), rtol=1e-5)
    np.testing.assert_allclose(log_q, -np.sum((x - recon) ** 2, -1), rtol=1e-5)


def test_reward_terms_and_signs_on_a_hand_built_batch():
    log_p = jnp.array([-1.0, 0.0, -2.0])
    log_q = jnp.array([-0.5, -3.0, 0.0])
    log_d = jnp.log(jnp.array([0.9, 0.25, 0.5]))
    n = 4
    paper = smm.intrinsic_reward(log_p, log_q, log_d, n, smm.Config())
    np.testing.assert_allclose(paper, log_p - log_q + log_d + np.log(4), rtol=1e-6)
    code = smm.intrinsic_reward(log_p, log_q, log_d, n,
                                smm.Config(discriminator_sign="code"))
    np.testing.assert_allclose(code, log_p - log_q - log_d + np.log(4), rtol=1e-6)
    weighted = smm.intrinsic_reward(log_p, log_q, log_d, n, smm.Config(
        target_coef=0.0, state_ent_coef=2.0, latent_ent_coef=0.0, latent_cond_ent_coef=3.0))
    np.testing.assert_allclose(weighted, -2 * log_q + 3 * log_d, rtol=1e-6)
    # One skill: no discriminator and no skill entropy, whatever log_d says.
    one = smm.intrinsic_reward(log_p, log_q, log_d, 1, smm.Config(num_skills=1))
    np.testing.assert_allclose(one, log_p - log_q, rtol=1e-6)
    # A state where the discriminator is sure of z pays more under the paper's sign.
    assert paper[0] - paper[2] > (log_p - log_q)[0] - (log_p - log_q)[2]


def test_discriminator_log_prob_is_the_log_softmax_of_the_skill():
    cfg = smm.Config(**SMALL)
    nets = smm.make_nets(cfg, SPEC)
    s = jax.random.normal(jax.random.key(0), (6, 2))
    z = jnp.array([0, 1, 2, 3, 0, 1])
    params = nets.discriminator.init(jax.random.key(1), s[0])
    loss, log_d = jax.jit(lambda p: smm.discriminator_loss(p, s, z, nets))(params)
    logits = np.asarray(nets.discriminator.apply(params, s), np.float64)
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(log_d, ref[np.arange(6), np.asarray(z)], rtol=1e-5)
    np.testing.assert_allclose(loss, -ref[np.arange(6), np.asarray(z)].mean(), rtol=1e-5)


def test_corridor_target_feeds_log_p_star_and_pixels_refuse_it():
    nets = smm.make_nets(smm.Config(**SMALL, target="corridor"),
                         purerl.envs.make("Maze-Bottleneck-v0").spec)
    from purerl.envs import maze

    masses = maze.target_masses("Bottleneck", "corridor")
    obs = jnp.array([[8.5, 3.5], [1.5, 1.5]]) / 18.0
    np.testing.assert_allclose(nets.log_target(obs),
                               np.log([masses[7, 17], masses[3, 3]]), rtol=1e-6)
    assert float(nets.log_target(obs)[0]) > float(nets.log_target(obs)[1])
    pixels = EnvSpec((16, 16, 3), "uint8", SPEC.action_space, 50)
    with pytest.raises(ValueError, match="pixel observations need target='uniform'"):
        smm.make_nets(smm.Config(target="corridor"), pixels)
    with pytest.raises(ValueError, match="not a maze id"):
        smm.make_nets(smm.Config(target="corridor"),
                      EnvSpec((2,), "float32", SPEC.action_space, 50, "Pendulum-v1"))


def test_skill_is_held_for_the_episode_and_redrawn_at_the_next():
    agent = smm.make(smm.Config(**SMALL, num_skills=8), SPEC)
    state = agent.init(jax.random.key(0))
    act = jax.jit(agent.act)
    n, T = 64, 12
    carry = agent.init_carry(n)
    obs = jnp.zeros((n, 2))
    # Env i starts an episode at t = 0 and again at t = 1 + i % 10.
    firsts = np.zeros((T, n), bool)
    firsts[0] = True
    firsts[1 + np.arange(n) % 10, np.arange(n)] = True
    skills = []
    for t in range(T):
        _, carry, extras = act(state, carry, obs, jnp.asarray(firsts[t]),
                               jax.random.key(10 + t))
        skills.append(np.asarray(extras["skill"]))
        np.testing.assert_array_equal(extras["skill"], carry["skill"])
    skills = np.stack(skills)
    episode = np.cumsum(firsts, axis=0)
    for i in range(n):
        for e in (1, 2):
            assert len(set(skills[episode[:, i] == e, i])) == 1
    redrawn = skills[1 + np.arange(n) % 10, np.arange(n)] != skills[0]
    assert 0.6 < redrawn.mean() < 1.0  # 7/8 expected to change
    assert set(np.unique(skills)) == set(range(8))


def test_replay_transitions_carry_their_episodes_skill():
    # A real run: every stored transition's skill equals the skill of the episode it
    # belongs to (constant between 'first' flags, per env).
    env = purerl.envs.make("Maze-Open-v0", max_steps_in_episode=7)
    cfg, run = purerl.testing.split_config(smm, **{**SMALL, "learning_starts": 200},
                                           total_steps=120, num_envs=2, num_steps=3,
                                           num_evals=1, num_eval_envs=2)
    runner, _ = jax.jit(purerl.make_train(smm, env, cfg, run))(jax.random.key(0))
    data = runner.memory.data
    skill, first = np.asarray(data["extras"]["skill"]), np.asarray(data["first"])
    stored = int(np.asarray(runner.memory.size))
    skill, first = skill[:stored], first[:stored]
    for e in range(2):  # the flat ring interleaves the envs: index t * num_envs + e
        s, f = skill[e::2], first[e::2]
        starts = np.flatnonzero(f)
        assert len(starts) >= 5
        for a, b in zip(starts, list(starts[1:]) + [len(s)]):
            assert len(set(s[a:b])) == 1


def test_snapshot_ring_and_historical_draws():
    cfg = smm.Config(**{**SMALL, "history_size": 3}, eval_policy="mixture",
                     history_current_prob=0.25)
    agent = smm.make(cfg, SPEC)
    state = agent.init(jax.random.key(0))
    actor = state.params["actor"]
    history, count = state.history, state.history_count
    for i in range(5):  # writes slots 0, 1, 2, 0 (skipping one write)
        marked = jax.tree.map(lambda a: jnp.full_like(a, float(i)), actor)
        history, count = smm.remember(history, count, marked, jnp.bool_(i != 2))
    assert int(count) == 4
    first_leaf = jax.tree.leaves(history)[0]
    np.testing.assert_array_equal(np.asarray(first_leaf).reshape(3, -1)[:, 0], [4, 1, 3])
    state = state._replace(history=history, history_count=count)
    draws = np.asarray(smm.draw_policy(state, jax.random.key(1), 20_000, cfg))
    assert set(np.unique(draws)) == {-1, 0, 1, 2}
    np.testing.assert_allclose(np.mean(draws == -1), 0.25, atol=0.02)
    for slot in range(3):
        np.testing.assert_allclose(np.mean(draws == slot), 0.25, atol=0.02)
    # Nothing stored yet: always the current policy.
    fresh = agent.init(jax.random.key(0))
    assert (np.asarray(smm.draw_policy(fresh, jax.random.key(1), 100, cfg)) == -1).all()
    # An evaluation episode acts with its drawn snapshot's mode, held for the episode.
    n = 6
    obs = jax.random.uniform(jax.random.key(3), (n, 2))
    carry = agent.init_carry(n)
    act = jax.jit(lambda s, c, o, f, k: agent.act(s, c, o, f, k, eval=True))
    _, carry, _ = act(state, carry, obs, jnp.ones(n, bool), jax.random.key(4))
    a2, carry2, _ = act(state, carry, obs, jnp.zeros(n, bool), jax.random.key(5))
    np.testing.assert_array_equal(carry2["policy"], carry["policy"])
    for i in range(n):
        idx = int(carry["policy"][i])
        params = state.params["actor"] if idx < 0 else jax.tree.map(lambda r: r[idx],
                                                                    state.history)
        x = jnp.concatenate([obs[i], jax.nn.one_hot(carry["skill"][i], cfg.num_skills)])
        nets = smm.make_nets(cfg, SPEC)
        want = smm.sac.policy(nets.sac, {"actor": params}, x, jax.random.key(0), True, (2,))
        np.testing.assert_allclose(a2[i], want, rtol=1e-5, atol=1e-6)


def test_update_writes_the_ring_every_history_every_updates():
    agent = smm.make(smm.Config(**SMALL), SPEC)
    state = agent.init(jax.random.key(0))
    batch = purerl.testing.random_batch(SPEC, jax.random.key(1), T=1, B=16)
    batch = jax.tree.map(lambda x: x[0] if x.ndim and x.shape[0] == 1 else x, batch)
    batch = batch._replace(action=jnp.clip(batch.action, -1, 1),
                           extras={"skill": jnp.arange(16) % 4},
                           bootstrap_value=jnp.zeros(16))
    update = jax.jit(agent.update)
    counts = []
    for i in range(6):
        state, metrics = update(state, batch, jax.random.key(i))
        counts.append(int(state.history_count))
    assert counts == [0, 1, 1, 2, 2, 3]  # history_every = 2
    assert np.isfinite(float(metrics["smm/intr_reward"]))
    np.testing.assert_array_equal(
        jax.tree.leaves(jax.tree.map(lambda r: r[2], state.history))[0],
        jax.tree.leaves(state.params["actor"])[0])


def test_finetune_phase_learns_the_task_alone_with_the_density_frozen():
    phase = smm.PHASES["finetune"]
    assert phase.config == {"task_coef": 1.0, "intr_coef": 0.0} and phase.from_snapshot
    assert set(phase.freeze) == set(smm.DENSITY_GROUPS)
    agent = smm.make(smm.Config(**SMALL, **phase.config), SPEC)
    state = agent.init(jax.random.key(0))
    batch = purerl.testing.random_batch(SPEC, jax.random.key(1), T=1, B=16)
    batch = jax.tree.map(lambda x: x[0] if x.ndim and x.shape[0] == 1 else x, batch)
    batch = batch._replace(action=jnp.clip(batch.action, -1, 1),
                           extras={"skill": jnp.arange(16) % 4})
    new, metrics = jax.jit(agent.update)(state, batch, jax.random.key(2))
    assert "loss/vae" not in metrics  # not even run with a zero weight
    np.testing.assert_allclose(metrics["smm/intr_reward"], 0.0)
    for g in smm.DENSITY_GROUPS:
        for x, y in zip(jax.tree.leaves(state.params[g]), jax.tree.leaves(new.params[g])):
            np.testing.assert_array_equal(x, y)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="Config.discriminator_sign must be one of"):
        smm.Config(discriminator_sign="minus")
    with pytest.raises(ValueError, match="Config.target must be one of"):
        smm.Config(target="nowhere")
    with pytest.raises(ValueError, match="Config.eval_policy must be one of"):
        smm.Config(eval_policy="best")
    with pytest.raises(ValueError, match="Config.num_skills"):
        smm.Config(num_skills=0)
    with pytest.raises(ValueError, match="Config.history_current_prob"):
        smm.Config(history_current_prob=1.5)
    with pytest.raises(ValueError, match="flat observations"):
        smm.make(smm.Config(), EnvSpec((2, 2), "float32", Box((-1.0,), (1.0,), (1,)), 10))


def test_learns_a_continuous_bandit_with_its_skill_input():
    # Fine-tuning weights (the task reward alone) on a one-step task: the policy's mean
    # action must track the context whatever skill the episode drew.
    env = purerl.envs.make("Probe-ContinuousBandit-v0")
    cfg, run = purerl.testing.split_config(
        smm, **{**SMALL, "hidden_sizes": (32, 32), "batch_size": 32, "lr": 3e-3,
                **smm.PHASES["finetune"].config, "buffer_size": 2000,
                "learning_starts": 100},
        total_steps=1500, num_envs=1, num_steps=1, num_evals=3, num_eval_envs=64)
    _, metrics = jax.jit(purerl.make_train(smm, env, cfg, run))(jax.random.key(0))
    returns = np.asarray(metrics["eval/return"])
    assert returns[-1] > -0.1, returns  # a uniform action scores about -0.67


def _policy_batch(cfg, key):
    agent = smm.make(cfg, SPEC)
    state = agent.init(jax.random.key(0))
    batch = purerl.testing.random_batch(SPEC, key, T=1, B=16)
    batch = jax.tree.map(lambda x: x[0] if x.ndim and x.shape[0] == 1 else x, batch)
    batch = batch._replace(action=jnp.clip(batch.action, -1, 1),
                           extras={"skill": jnp.arange(16) % 4})
    nets = smm.make_nets(cfg, SPEC)
    return state, nets, smm.sac.to_policy_batch(batch, nets.sac) | {
        "skill": batch.extras["skill"]}


def test_learner_step_trains_sac_on_the_reward_of_next_obs_under_its_own_skill():
    # The oracle: r_z computed by hand from the pre-step density model and
    # discriminator on next_obs with each transition's skill, fed to SAC's own step.
    cfg = smm.Config(**SMALL, task_coef=0.5, intr_coef=2.0)
    state, nets, batch = _policy_batch(cfg, jax.random.key(1))
    new, metrics = jax.jit(lambda s, b, k: smm.learner_step(s, b, k, nets, cfg))(
        state, batch, jax.random.key(2))
    _, k_vae, k_sac = jax.random.split(jax.random.key(2), 3)
    one_hot = jax.nn.one_hot(batch["skill"], 4)
    x = jnp.concatenate([batch["next_obs"], one_hot], -1)
    _, log_q = smm.vae_loss(state.params["vae"], x, k_vae, nets, cfg.vae_beta)
    _, log_d = smm.discriminator_loss(state.params["discriminator"], batch["next_obs"],
                                      batch["skill"], nets)
    r = smm.intrinsic_reward(jnp.zeros(16), log_q, log_d, 4, cfg)
    np.testing.assert_allclose(metrics["smm/intr_reward"], r.mean(), rtol=1e-5)
    heads = ("actor", "critic", "log_alpha", "encoder")
    sac_state = smm.sac.State({g: state.params[g] for g in heads}, state.target_critic,
                              {g: state.opt_state[g] for g in heads}, state.iteration)
    sac_batch = {k: v for k, v in batch.items() if k != "skill"} | {
        "obs": (batch["obs"], one_hot), "next_obs": (batch["next_obs"], one_hot),
        "reward": 0.5 * batch["reward"] + 2.0 * r}
    want, _ = smm.sac.learner_step(sac_state, sac_batch, k_sac, nets.sac, cfg)
    for x, y in zip(jax.tree.leaves(want.params["critic"]),
                    jax.tree.leaves(new.params["critic"])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    # Another skill for the same transitions changes the critic's target.
    other = {**batch, "skill": (batch["skill"] + 1) % 4}
    moved, _ = jax.jit(lambda s, b, k: smm.learner_step(s, b, k, nets, cfg))(
        state, other, jax.random.key(2))
    assert not purerl.testing.leaves_equal(moved.params["critic"], new.params["critic"])


def test_the_density_model_and_the_discriminator_descend_their_losses():
    cfg = smm.Config(**SMALL)
    state, nets, batch = _policy_batch(cfg, jax.random.key(3))
    step = jax.jit(lambda s, b, k: smm.learner_step(s, b, k, nets, cfg))
    losses = []
    for i in range(60):
        state, m = step(state, batch, jax.random.key(100 + i))
        losses.append((float(m["loss/vae"]), float(m["loss/discriminator"])))
    first, last = np.mean(losses[:3], 0), np.mean(losses[-3:], 0)
    # The discriminator (lr 1e-3) learns the 16 points' skills more slowly.
    assert last[0] < 0.7 * first[0] and last[1] < 0.9 * first[1], (first, last)


def test_on_pixels_the_density_model_reads_the_conv_feature_under_stop_gradient():
    # The critic trains the conv encoder (as SAC's); the VAE and the discriminator read
    # its feature detached. With a negligible but non-zero r_z weight (so that they
    # run), two different density models leave the same encoder step.
    spec = EnvSpec((16, 16, 6), "uint8", Box((-1.0,), (1.0,), (1,)), 10, "TinyPixels")
    cfg = smm.Config(**{**SMALL, "feature_dim": 8}, task_coef=1.0, intr_coef=1e-30)
    nets = smm.make_nets(cfg, spec)
    state = smm.make(cfg, spec).init(jax.random.key(0))
    other = smm.make(cfg, spec).init(jax.random.key(7))
    swapped = state._replace(params={**state.params, "vae": other.params["vae"],
                                     "discriminator": other.params["discriminator"]})
    rng = np.random.default_rng(5)
    frames = lambda: rng.integers(0, 256, (8, 16, 16, 6)).astype(np.uint8)  # noqa: E731
    batch = {"obs": frames(), "next_obs": frames(),
             "action": rng.uniform(-1, 1, (8, 1)).astype(np.float32),
             "reward": rng.normal(size=8).astype(np.float32),
             "terminated": np.zeros(8, np.float32), "skill": jnp.arange(8) % 4}
    step = jax.jit(lambda s: smm.learner_step(s, batch, jax.random.key(1), nets, cfg))
    a, ma = step(state)
    b, mb = step(swapped)
    assert "loss/vae" in ma and float(ma["loss/vae"]) != float(mb["loss/vae"])
    for x, y in zip(jax.tree.leaves(a.params["encoder"]), jax.tree.leaves(b.params["encoder"])):
        np.testing.assert_array_equal(x, y)
    assert not purerl.testing.leaves_equal(a.params["encoder"], state.params["encoder"])
