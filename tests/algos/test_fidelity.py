"""Checks against the reference codes' updates, written out here independently.

Each test asserts a property that a plausible departure breaks: a value loss at half
scale, RMSProp started at 0, a KL reported as 0, env-shaped actions fed to a flat
distribution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import loops
from purerl.algos import a2c, acktr, ppo
from purerl.testing import random_batch, split_config


@pytest.fixture(scope="module")
def cartpole():
    return purerl.envs.make("CartPole-v1")


def _baselines_a2c_step(params, batch, cfg, actor, critic):
    """baselines ``a2c.Model.train`` for one rollout, spelled out: n-step returns
    bootstrapped by V(s_T), loss pg − c_ent H + c_vf mean((V − R)²), the global norm
    clipped, TensorFlow 1's RMSProp (mean square started at 1, ε inside the root)."""
    rewards = np.asarray(batch.reward)
    discounts = np.asarray(batch.discount)
    returns = np.zeros_like(rewards)
    running = np.asarray(batch.bootstrap_value)
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + discounts[t] * running
        returns[t] = running
    adv = returns - np.asarray(batch.extras["value"])

    def loss(p):
        dist = actor.apply(p["actor"], batch.obs)
        pg = -(adv * dist.log_prob(batch.action)).mean()
        v = critic.apply(p["critic"], batch.obs)
        return pg - cfg.ent_coef * dist.entropy().mean() + cfg.vf_coef * (
            (v - returns) ** 2).mean()

    grads = jax.grad(loss)(params)
    leaves, tree = jax.tree.flatten(grads)
    g = [np.asarray(x, np.float64) for x in leaves]
    norm = np.sqrt(sum((x**2).sum() for x in g))
    g = [x * min(1.0, cfg.max_grad_norm / norm) for x in g]
    mean_square = [cfg.rms_decay * 1.0 + (1 - cfg.rms_decay) * x**2 for x in g]
    new = [np.asarray(p, np.float64) - cfg.lr * x / np.sqrt(ms + cfg.rms_eps)
           for p, x, ms in zip(jax.tree.leaves(params), g, mean_square, strict=True)]
    return jax.tree.unflatten(tree, new)


def test_a2c_update_is_baselines_update(cartpole):
    cfg = a2c.Config(anneal_lr=False, hidden_sizes=(16,))
    agent = a2c.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(1), T=5, B=4, value_std=1.0)
    new, _ = jax.jit(agent.update)(state, batch, jax.random.key(2))
    from purerl.algos.common import make_actor
    from purerl.networks import ValueNet

    actor = make_actor(cfg, cartpole.spec)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=1)
    want = _baselines_a2c_step(state.params, batch, cfg, actor, critic)
    for got, ref in zip(jax.tree.leaves(new.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-7)


def test_a2c_first_step_is_small_with_tensorflow_rmsprop(cartpole):
    """Started at 0 the mean square makes the first step ~1/sqrt(1 − decay) = 10x the
    gradient's scale; started at 1 (TensorFlow 1), the step is about lr·g."""
    batch = random_batch(cartpole.spec, jax.random.key(1), T=5, B=16, value_std=1.0)
    sizes = {}
    for scale in (1.0, 0.0):
        cfg = a2c.Config(anneal_lr=False, rms_initial_scale=scale)
        agent = a2c.make(cfg, cartpole.spec)
        state = agent.init(jax.random.key(0))
        new, _ = agent.update(state, batch, jax.random.key(2))
        step = jax.tree.map(lambda a, b: a - b, new.params, state.params)
        sizes[scale] = float(jnp.sqrt(sum((x**2).sum() for x in jax.tree.leaves(step))))
    assert sizes[0.0] > 10 * sizes[1.0]
    assert sizes[1.0] < cfg.lr * cfg.max_grad_norm * 1.01


@pytest.mark.parametrize("algo", [a2c, acktr])
def test_value_loss_is_the_mean_squared_error(algo, cartpole):
    """baselines' A2C and ACKTR: c_vf · mean((V − R)²), no ½ (both modules the same)."""
    cfg = algo.Config(anneal_lr=False, vf_coef=1.0, ent_coef=0.0)
    batch = random_batch(cartpole.spec, jax.random.key(1), T=5, B=4, value_std=1.0)
    agent = algo.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    _, metrics = agent.update(state, batch, jax.random.key(2))
    critic = purerl.networks.ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=1)
    v = critic.apply(state.params["critic"], batch.obs)
    returns = purerl.ops.discounted_returns(batch.reward, batch.discount,
                                            batch.bootstrap_value)
    np.testing.assert_allclose(metrics["loss/value"], ((v - returns) ** 2).mean(),
                               rtol=1e-5)


def test_ppo_reports_a_measured_kl_for_both_objectives(cartpole):
    """The approximate KL is measured under both objectives (never a constant 0); the
    exact KL and β only where the adaptive-KL objective uses them."""
    for objective in ("clip", "kl"):
        cfg, run = split_config(ppo, objective=objective, total_steps=512, num_envs=4,
                                num_steps=32, num_evals=1, num_eval_envs=2,
                                anneal_lr=False)
        _, metrics = jax.jit(loops.make_train(ppo, cartpole, cfg, run))(jax.random.key(0))
        assert float(metrics["ppo/approx_kl"][-1]) > 0.0, objective
        assert ("ppo/kl" in metrics) == ("ppo/kl_beta" in metrics) == (objective == "kl")
        if objective == "kl":
            assert float(metrics["ppo/kl"][-1]) > 0.0


def test_acktr_masks_kfac_step_metrics_during_its_cold_start(cartpole):
    cfg = acktr.Config(anneal_lr=False, cold_iter=2)
    agent = acktr.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    update = jax.jit(agent.update)
    for i in range(4):
        batch = random_batch(cartpole.spec, jax.random.key(i), T=5, B=4, value_std=1.0)
        state, m = update(state, batch, jax.random.key(10 + i))
        cold = bool(m["kfac/cold"])
        for name in ("kfac/eta", "kfac/predicted_kl"):
            assert np.isfinite(m[name]) and (float(m[name]) == 0.0) == cold, (i, name)


@pytest.mark.parametrize("mode, overrides, log_std", [
    ("squash", {}, -1.5),                        # DrQ / pytorch_sac: (−5 + 2) / 2
    ("clip", {"log_std_min": -20.0}, 0.0),       # SB3: σ ≈ 1
])
def test_sac_initial_policy_scale(mode, overrides, log_std):
    from purerl.algos import sac

    env = purerl.envs.make("Pendulum-v1")
    cfg = sac.Config(log_std_mode=mode, **overrides)
    nets = sac.make_nets(cfg, env.spec)
    params = sac.init_params(jax.random.key(0), nets, env.spec, cfg)
    obs = jax.random.normal(jax.random.key(1), (64, *env.spec.obs_shape))
    _, got = nets.actor.apply(params["actor"], obs)
    np.testing.assert_allclose(got, log_std, atol=0.05)


# Reward 1 forever, cut every 20 steps: with the time limit bootstrapped, the learned
# value of the one observation is 1 / (1 − γ) = 10 at γ = 0.9; a driver (or an
# algorithm) that treats the limit as terminal learns ≈ 6.4, the mean of the cut sums.
TRUNCATION = {
    "a2c": dict(total_steps=32768, num_envs=8, num_steps=16, lr=1e-2, anneal_lr=False),
    "reinforce": dict(total_steps=16000, num_envs=8, critic_lr=1e-2),
    "actor_critic": dict(total_steps=16384, num_envs=8, num_steps=16, lr=3e-3,
                         anneal_lr=False),
    "offpac": dict(total_steps=16384, num_envs=8, num_steps=16, lr=3e-3,
                   replay_size=64, segment_length=16, batch_segments=8),
    "npg": dict(total_steps=16384, num_envs=8, num_steps=64, vf_lr=3e-3,
                vf_minibatch_size=64),
    "trpo": dict(total_steps=16384, num_envs=8, num_steps=64, vf_lr=3e-3,
                 vf_minibatch_size=64, normalize_obs=False),
    "acktr": dict(total_steps=16384, num_envs=8, num_steps=16, anneal_lr=False),
}


@pytest.mark.parametrize("name", sorted(TRUNCATION))
def test_time_limit_bootstrapping_gives_the_infinite_horizon_value(name):
    algo = getattr(purerl.algos, name)
    env = purerl.envs.make("Probe-Truncation-v0")
    cfg, run = split_config(algo, gamma=0.9, num_evals=2, num_eval_envs=2,
                            **TRUNCATION[name])
    runner, _ = jax.jit(loops.make_train(algo, env, cfg, run))(jax.random.key(0))
    agent, _, _, _ = loops.build(algo, env.spec, cfg, run)
    value = agent.value(runner.agent, jnp.ones((1, 1)))
    np.testing.assert_allclose(value, 10.0, rtol=0.05)


def test_sac_critic_target_on_a_hand_built_batch():
    """y = r + γ (1 − terminated) [min_i Q̄_i(s′, a′) − α log π(a′|s′)]: a truncated
    step keeps its bootstrap, a terminated one (truncated too or not) loses it."""
    from purerl import memory
    from purerl.algos import sac

    env = purerl.envs.make("Pendulum-v1")
    cfg = sac.Config(hidden_sizes=(16,), init_alpha=0.3, gamma=0.9)
    nets = sac.make_nets(cfg, env.spec)
    agent = sac.make(cfg, env.spec)
    state = agent.init(jax.random.key(0))
    params = state.params
    # Target critics apart from the online ones, so that mixing them up shows.
    target = jax.tree.map(lambda x: x + 0.3, params["critic"])
    k = jax.random.split(jax.random.key(1), 3)
    records = {
        "obs": jax.random.normal(k[0], (4, 3)),
        "next_obs": jax.random.normal(k[1], (4, 3)),
        "action": jax.random.uniform(k[2], (4, 1), minval=-2.0, maxval=2.0),
        "reward": jnp.array([1.0, 2.0, 3.0, 4.0]),
        "terminated": jnp.array([False, True, False, True]),
        "truncated": jnp.array([False, False, True, True]),
        "first": jnp.zeros(4, bool), "extras": {},
    }
    batch = memory.to_batch(agent, state, records, sac.SPEC.discounting(cfg), False)
    batch = sac.to_policy_batch(batch, nets)
    key = jax.random.key(7)
    loss, _ = sac.critic_loss({"critic": params["critic"]}, params, target, batch, key,
                              nets, cfg.gamma)

    mean, log_std = nets.actor.apply(params["actor"], records["next_obs"])
    next_a, next_logp = sac.tanh_gaussian_sample(mean, log_std, key)
    q_next = [nets.critic.apply(jax.tree.map(lambda x: x[i], target),
                                records["next_obs"], next_a) for i in range(2)]
    soft = np.minimum(q_next[0], q_next[1]) - 0.3 * np.asarray(next_logp)
    y = np.array([1.0, 2.0, 3.0, 4.0]) + 0.9 * np.array([1, 0, 1, 0]) * soft
    unit = records["action"] / 2.0  # Pendulum's bounds are ±2
    q = [nets.critic.apply(jax.tree.map(lambda x: x[i], params["critic"]),
                           records["obs"], unit) for i in range(2)]
    want = 0.5 * sum(((np.asarray(qi) - y) ** 2).mean() for qi in q)
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_sac_temperature_grows_while_entropy_is_below_target():
    from purerl.algos import sac

    grad = jax.grad(sac.temperature_loss)
    target_entropy = -1.0
    # Entropy estimate −log π = −2 < −1: the gradient on log α is negative (α grows).
    assert float(grad(jnp.float32(0.0), jnp.full(8, 2.0), target_entropy)) < 0.0
    # −log π = 0 > −1: α shrinks.
    assert float(grad(jnp.float32(0.0), jnp.zeros(8), target_entropy)) > 0.0


def test_sac_tanh_log_prob_is_accurate_where_tanh_saturates_in_float32():
    """Near |a| = 1 float32 rounds tanh(u) to ±1 and log(1 − tanh²u) to −inf; the
    stable form stays finite and equal to the float64 value."""
    from purerl.algos import sac

    mean = jnp.array([[9.0], [-12.0], [0.5]], jnp.float32)
    log_std = jnp.full((3, 1), -4.0, jnp.float32)
    action, logp = sac.tanh_gaussian_sample(mean, log_std, jax.random.key(0))
    assert np.all(np.abs(np.asarray(action[:2])) == 1.0)  # saturated in float32
    eps = (np.asarray(jax.random.normal(jax.random.key(0), (3, 1)), np.float64))
    u = np.asarray(mean, np.float64) + np.exp(-4.0) * eps
    log_normal = -0.5 * eps**2 + 4.0 - 0.5 * np.log(2 * np.pi)
    want = (log_normal - np.log1p(-np.tanh(u) ** 2)).sum(-1)
    assert np.all(np.isfinite(np.asarray(logp)))
    np.testing.assert_allclose(logp, want, rtol=1e-4)


def test_q_actor_critic_sarsa_target_uses_the_next_action_taken(cartpole):
    """δ_t = r_t + d_t Q(s_{t+1}, a_{t+1}) − Q(s_t, a_t) with a_{t+1} the action of
    the rollout (not the greedy one, not the mean under π), bootstrapped at the end."""
    from purerl.algos import actor_critic
    from purerl.networks import QNet

    cfg = actor_critic.Config(anneal_lr=False, td_steps=1, hidden_sizes=(16,))
    agent = actor_critic.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(3), T=6, B=4)
    batch = batch._replace(bootstrap_value=jnp.array([0.5, -0.5, 1.0, 0.0]))
    _, metrics = agent.update(state, batch, jax.random.key(1))
    critic = QNet(cfg.hidden_sizes, 2, cfg.activation, obs_ndim=1)
    q_all = np.asarray(critic.apply(state.params["critic"], batch.obs))
    action = np.asarray(batch.action)
    q = np.take_along_axis(q_all, action[..., None], -1)[..., 0]
    next_q = np.concatenate([q[1:], np.asarray(batch.bootstrap_value)[None]], 0)
    target = np.asarray(batch.reward) + np.asarray(batch.discount) * next_q
    np.testing.assert_allclose(metrics["loss/critic"], 0.5 * ((q - target) ** 2).mean(),
                               rtol=1e-5)


def _ppo_minibatch(spec, key, n=32):
    k = jax.random.split(key, 5)
    return {
        "obs": jax.random.normal(k[0], (n, *spec.obs_shape)),
        "action": jax.random.randint(k[1], (n,), 0, 2),
        "log_prob": jnp.log(jax.random.uniform(k[2], (n,), minval=0.3, maxval=0.7)),
        "value": jax.random.normal(k[3], (n,)),
        "advantage": jax.random.normal(k[4], (n,)),
        "target": jax.random.normal(k[4], (n,)) + 1.0,
    }


def test_ppo_loss_is_rlax_surrogate_plus_ppo2_value_clipping(cartpole):
    """ppo_loss = rlax's clipped surrogate + c₁ · ½ mean(max((V − R)², (V_clip − R)²))
    (PPO2, V_clip = V_old + clip(V − V_old, ±ε)) − c₂ H, advantages standardised."""
    import rlax

    from purerl.networks import PolicyNet, ValueNet

    cfg = ppo.Config(clip_eps=0.2, vf_coef=0.5, ent_coef=0.01, hidden_sizes=(16,))
    actor = PolicyNet(cartpole.spec.action_space, cfg.hidden_sizes, cfg.activation, 0.0,
                      obs_ndim=1)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=1)
    params = {"actor": actor.init(jax.random.key(0), jnp.zeros(4)),
              "critic": critic.init(jax.random.key(1), jnp.zeros(4))}
    mb = _ppo_minibatch(cartpole.spec, jax.random.key(2))
    loss, metrics = ppo.ppo_loss(params, mb, params["actor"], 0.0, actor, critic, cfg)

    dist = actor.apply(params["actor"], mb["obs"])
    ratio = jnp.exp(dist.log_prob(mb["action"]) - mb["log_prob"])
    adv = (mb["advantage"] - mb["advantage"].mean()) / (mb["advantage"].std() + 1e-8)
    pg = rlax.clipped_surrogate_pg_loss(ratio, adv, 0.2)
    v = critic.apply(params["critic"], mb["obs"])
    v_clip = mb["value"] + jnp.clip(v - mb["value"], -0.2, 0.2)
    vf = 0.5 * jnp.maximum((v - mb["target"]) ** 2, (v_clip - mb["target"]) ** 2).mean()
    want = pg + 0.5 * vf - 0.01 * dist.entropy().mean()
    np.testing.assert_allclose(metrics["loss/actor"], pg, rtol=1e-5)
    np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_ppo_adaptive_kl_beta_moves_the_right_way(cartpole):
    """β halves when the measured KL is below d_targ / 1.5 and doubles above 1.5 d_targ."""
    batch = random_batch(cartpole.spec, jax.random.key(1), T=16, B=4, value_std=1.0)
    state = ppo.make(ppo.Config(objective="kl"), cartpole.spec, 10).init(jax.random.key(0))
    for kl_target, factor in ((1e3, 0.5), (1e-9, 2.0)):
        cfg = ppo.Config(objective="kl", anneal_lr=False, kl_target=kl_target,
                         kl_beta_init=1.0)
        agent = ppo.make(cfg, cartpole.spec)
        new, metrics = agent.update(state, batch, jax.random.key(2))
        assert float(metrics["ppo/kl"]) > 0.0
        np.testing.assert_allclose(new.kl_beta, factor, rtol=1e-6)


def test_ppo_old_log_probs_come_from_the_rollout(cartpole):
    """The first minibatch's ratio is exactly 1 when the stored log-probs are the
    acting policy's (as the loop stores them), and not when they are not."""
    cfg = ppo.Config(anneal_lr=False, num_epochs=1, num_minibatches=1)
    agent = ppo.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    batch = random_batch(cartpole.spec, jax.random.key(1), T=8, B=4, value_std=1.0)
    action, _, extras = agent.act(state, (), batch.obs, jnp.zeros((8, 4), bool),
                                  jax.random.key(2))
    on_policy = batch._replace(action=action,
                               extras={**batch.extras, "log_prob": extras["log_prob"]})
    # One epoch of one minibatch: the loss metrics are measured before the step.
    _, m = agent.update(state, on_policy, jax.random.key(3))
    np.testing.assert_allclose(m["ppo/clip_frac"], 0.0)
    np.testing.assert_allclose(m["ppo/approx_kl"], 0.0, atol=1e-7)
    stale = {**on_policy.extras, "log_prob": extras["log_prob"] + 0.5}
    _, m = agent.update(state, on_policy._replace(extras=stale), jax.random.key(3))
    np.testing.assert_allclose(m["ppo/approx_kl"], 0.5 * 0.5**2, rtol=1e-4)


def test_sac_time_limit_bootstrapping_gives_the_infinite_horizon_value():
    """SAC's critic on the truncation probe: Q(s, a) = 1 / (1 − γ) = 10 for every a
    (the temperature driven to ~0 by a low target entropy, so the soft terms vanish)."""
    from purerl.algos import sac

    env = purerl.envs.make("Probe-TruncationContinuous-v0")
    cfg, run = split_config(sac, gamma=0.9, total_steps=3000, num_envs=2, num_steps=1,
                            num_evals=1, num_eval_envs=2, batch_size=64,
                            buffer_size=3000, learning_starts=64, lr=3e-3, tau=0.05,
                            init_alpha=1e-3, target_entropy_scale=10.0,
                            hidden_sizes=(32,))
    runner, _ = jax.jit(loops.make_train(sac, env, cfg, run))(jax.random.key(0))
    nets = sac.make_nets(cfg, env.spec)
    actions = jnp.linspace(-0.9, 0.9, 5)[:, None]
    q = sac.q_values(nets, runner.agent.params["critic"], jnp.ones((5, 1)), actions)
    np.testing.assert_allclose(q, 10.0, rtol=0.05)


def test_to_batch_bootstraps_only_steps_cut_and_not_terminated(cartpole):
    """A time-limit step gets γ V(next_obs) added to its reward; a step that is both
    terminated and truncated counts as terminated (no bootstrap); every episode end
    zeroes the discount."""
    from purerl import memory

    cfg = a2c.Config(anneal_lr=False, gamma=0.9)
    agent = a2c.make(cfg, cartpole.spec)
    state = agent.init(jax.random.key(0))
    k = jax.random.split(jax.random.key(1), 2)
    records = {
        "obs": jax.random.normal(k[0], (4, 1, 4)),
        "next_obs": jax.random.normal(k[1], (4, 1, 4)),
        "action": jnp.zeros((4, 1), jnp.int32),
        "reward": jnp.ones((4, 1)),
        "terminated": jnp.array([[False], [True], [False], [True]]),
        "truncated": jnp.array([[False], [False], [True], [True]]),
        "first": jnp.zeros((4, 1), bool), "extras": {},
    }
    batch = memory.to_batch(agent, state, records, a2c.SPEC.discounting(cfg))
    next_v = np.asarray(agent.value(state, records["next_obs"]))
    want = 1.0 + 0.9 * np.array([[0.0], [0.0], [1.0], [0.0]]) * next_v
    np.testing.assert_allclose(batch.reward, want, rtol=1e-6)
    np.testing.assert_allclose(batch.discount, 0.9 * np.array([[1], [0], [0], [0]]))


class _TableQ:
    """A tabular critic for one state: Q(s, ·) is its parameter vector."""

    @staticmethod
    def apply(params, obs):
        return jnp.broadcast_to(params, (*obs.shape[:-1], params.shape[-1]))


def test_q_actor_critic_actor_gradient_is_the_expected_policy_gradient():
    """Actions sampled from π, the actor's loss gradient averages to the exact
    −Σ_a π(a|s) Q(s, a) ∇ log π(a|s) (Sutton et al. 2000, with the critic's Q), in a
    one-state, three-action problem."""
    from purerl.algos import actor_critic
    from purerl.types import Discrete, EnvSpec, Transition

    spec = EnvSpec((1,), "float32", Discrete(3), 1)
    cfg = actor_critic.Config(ent_coef=0.0, hidden_sizes=(8,))
    actor = purerl.algos.common.make_actor(cfg, spec)
    obs1 = jnp.ones((1,))
    params = {"actor": actor.init(jax.random.key(0), obs1),
              "critic": jnp.array([1.0, 3.0, -2.0])}
    n = 200_000
    probs = actor.apply(params["actor"], obs1).probs
    action = jax.random.categorical(jax.random.key(1), jnp.log(probs), shape=(1, n))
    zeros = jnp.zeros((1, n))
    batch = Transition(obs=jnp.ones((1, n, 1)), action=action, reward=zeros,
                       discount=zeros, terminated=zeros.astype(bool),
                       truncated=zeros.astype(bool), extras={},
                       bootstrap_value=jnp.zeros(n), next_obs=jnp.ones((1, n, 1)))

    def sampled(actor_params):
        p = {**params, "actor": actor_params}
        return actor_critic.q_actor_critic_loss(p, batch, actor, _TableQ, cfg, spec)[0]

    def exact(actor_params):
        log_pi = jnp.log(actor.apply(actor_params, obs1).probs)
        return -(jax.lax.stop_gradient(probs) * params["critic"] * log_pi).sum()

    got, want = jax.grad(sampled)(params["actor"]), jax.grad(exact)(params["actor"])
    got, want = [np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
                 for g in (got, want)]
    assert np.linalg.norm(got - want) < 0.03 * np.linalg.norm(want)
