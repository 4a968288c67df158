"""SAC: the squashed-Gaussian log-prob oracle, contracts, and a short learning test."""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl.algos import sac
from purerl.loops import make_block
from purerl.memory import example as memory_example, to_batch
from purerl.testing import as_numpy, leaves_equal, random_batch, split_config, train_fn
from purerl.types import Box, EnvSpec

SMALL = dict(total_steps=256, num_envs=2, num_steps=4, num_evals=2, num_eval_envs=2,
             batch_size=16, buffer_size=128, learning_starts=32, hidden_sizes=(32, 32))


@pytest.fixture(scope="module")
def pendulum():
    return purerl.envs.make("Pendulum-v1")


@pytest.fixture(scope="module")
def small_train(pendulum):
    return jax.jit(train_fn(sac, pendulum, **SMALL))


def flat(batch):
    """A time-major batch's steps as the flat ``[T * B]`` sample the loop's replay
    hands to ``update``."""
    f = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return batch._replace(obs=f(batch.obs), action=f(batch.action), reward=f(batch.reward),
                          discount=f(batch.discount), terminated=f(batch.terminated),
                          truncated=f(batch.truncated), next_obs=f(batch.next_obs),
                          extras={}, bootstrap_value=jnp.zeros(()))


def act_on(agent, state, obs, key, eval=False):
    """``agent.act`` on a batch of observations, fresh carry, not first steps."""
    B = obs.shape[0]
    action, _, extras = agent.act(state, agent.init_carry(B), obs, jnp.zeros(B, bool), key,
                                  eval=eval)
    return action, extras


def test_tanh_gaussian_log_prob_matches_distrax():
    key = jax.random.key(0)
    mean = jax.random.normal(key, (64, 3)) * 2.0
    log_std = jax.random.uniform(jax.random.key(1), (64, 3), minval=-3.0, maxval=1.0)
    action, log_prob = jax.jit(sac.tanh_gaussian_sample)(mean, log_std, jax.random.key(2))
    dist = distrax.Independent(
        distrax.Transformed(distrax.Normal(mean, jnp.exp(log_std)), distrax.Tanh()), 1)
    # Compare away from |a| = 1, where float32 atanh loses the sample.
    ok = np.all(np.abs(np.asarray(action)) < 0.999, axis=-1)
    want = dist.log_prob(action)
    np.testing.assert_allclose(np.asarray(log_prob)[ok], np.asarray(want)[ok], rtol=1e-3,
                               atol=1e-3)
    assert ok.mean() > 0.5


def test_config_validation_and_action_space_errors(pendulum):
    with pytest.raises(ValueError, match=r"Config\.tau must be in"):
        sac.Config(tau=0.0)
    with pytest.raises(ValueError, match="a replay of 2 transitions cannot hold one "
                                         "iteration of 4"):
        train_fn(sac, pendulum, buffer_size=2, num_envs=4)
    with pytest.raises(ValueError, match="supports action spaces"):
        train_fn(sac, purerl.envs.make("CartPole-v1"), **SMALL)


def test_update_is_stable_and_compiles_once(pendulum):
    cfg, _ = split_config(sac, **{**SMALL, "learning_starts": 0})
    agent = sac.make(cfg, pendulum.spec)
    state = agent.init(jax.random.key(0))
    update = jax.jit(agent.update)
    batch = flat(random_batch(pendulum.spec, jax.random.key(1), T=4, B=2))
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    newer_state, _ = update(new_state, batch, jax.random.key(3))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
    assert int(newer_state.iteration) == 2  # one gradient step per update
    assert not leaves_equal(state.params["actor"], newer_state.params["actor"])
    # Targets move by Polyak averaging only: a τ-fraction of the way to the critics.
    tau = cfg.tau
    expect = jax.tree.map(lambda t, c: (1 - tau) * t + tau * c, state.target_critic,
                          new_state.params["critic"])
    for x, y in zip(jax.tree.leaves(expect), jax.tree.leaves(new_state.target_critic)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    # act: env-shaped actions within bounds, eval deterministic.
    obs = batch.obs[:2]
    action, _ = act_on(agent, newer_state, obs, jax.random.key(4))
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2.0)
    a1, _ = act_on(agent, newer_state, obs, jax.random.key(5), eval=True)
    a2, _ = act_on(agent, newer_state, obs, jax.random.key(6), eval=True)
    np.testing.assert_array_equal(a1, a2)


# A near-deterministic policy (std e^-12), so that what the policy would have done is
# known: to_env(tanh(mean)), the eval action.
WARMUP = {**SMALL, "buffer_size": 256, "log_std_min": -12.0, "log_std_max": -12.0}


@pytest.mark.parametrize("learning_starts", [0, 1000])
def test_warm_up_is_uniform_random_and_trains_nothing(pendulum, learning_starts):
    """The loop owns the warm-up: for the first ``learning_starts`` env steps it stores
    uniform random actions and makes no update; with ``learning_starts=0`` the first
    iteration's stored actions are the policy's."""
    cfg, run = split_config(sac, **{**WARMUP, "learning_starts": learning_starts})
    init, block, sched = make_block(sac, pendulum, cfg, run)
    block = jax.jit(block)
    start = jax.jit(init)(jax.random.key(0))
    runner, metrics = start, None
    for _ in range(sched.num_evals):
        runner, metrics = block(runner)
    steps = run.total_steps
    assert int(runner.env_steps) == steps
    memory = runner.memory
    assert int(memory.size) == steps  # every transition stored, in order
    actions = np.asarray(memory.data["action"])
    assert actions.shape == (256, 1)
    # The first iteration's actions against the initial policy's on the same obs.
    first = run.num_envs * run.num_steps
    agent = sac.make(cfg, pendulum.spec)
    policy, _ = act_on(agent, start.agent, memory.data["obs"][:first], jax.random.key(1),
                       eval=True)
    if learning_starts == 0:
        np.testing.assert_allclose(actions[:first], policy, atol=1e-3)
        assert int(runner.agent.iteration) > 0
        assert not leaves_equal(start.agent.params, runner.agent.params)
        return
    # Warm-up over the whole run: uniform on [-2, 2] (mean 0, std 4 / sqrt(12)), not
    # the policy's, and no gradient step.
    assert np.all(np.abs(actions) <= 2.0)
    assert np.abs(actions[:first] - np.asarray(policy)).max() > 0.5
    assert abs(actions.mean()) < 0.3 and abs(actions.std() - 4 / np.sqrt(12)) < 0.2
    assert actions.min() < -1.8 and actions.max() > 1.8
    assert leaves_equal(start.agent, runner.agent)
    assert int(runner.agent.iteration) == 0
    # No round trained: the update metrics are absent (NaN), not an average of zeros.
    assert int(metrics["train/rounds"]) == 0
    assert np.all(np.isnan(np.asarray(metrics["loss/critic"])))


def test_same_key_same_result_different_keys_differ(small_train):
    out1 = small_train(jax.random.key(0))
    out2 = small_train(jax.random.key(0))
    out3 = small_train(jax.random.key(1))
    assert leaves_equal(out1, out2)
    assert not leaves_equal(out1[0].agent.params, out3[0].agent.params)


def test_vmap_over_seeds_equals_separate_runs(pendulum, small_train):
    keys = jax.random.split(jax.random.key(7), 4)
    batched = jax.jit(jax.vmap(train_fn(sac, pendulum, **SMALL)))(keys)
    for i in range(4):
        for x, y in zip(as_numpy(small_train(keys[i])), as_numpy(batched)):
            # Batched and unbatched kernels round float32 differently (the contract
            # tests' tolerance, tests/algos/test_contract.py).
            np.testing.assert_allclose(x, y[i], rtol=2e-4, atol=2e-5)


def test_learns_continuous_bandit():
    env = purerl.envs.make("Probe-ContinuousBandit-v0")
    train = train_fn(sac, env, total_steps=3000, num_envs=4, num_steps=1, num_evals=2,
                     num_eval_envs=16, batch_size=64, buffer_size=4096,
                     learning_starts=200, lr=3e-3, hidden_sizes=(64, 64))
    _, metrics = jax.jit(jax.vmap(train))(
        jax.random.split(jax.random.key(0), 2))
    final = np.asarray(metrics["eval/return"][:, -1])
    assert final.mean() > -0.05, metrics["eval/return"]


# ---- pixels (DrQ): a tiny uint8 image spec, two stacked RGB frames ----

PIXELS = EnvSpec(obs_shape=(16, 16, 6), obs_dtype="uint8",
                 action_space=Box(low=(-2.0,), high=(2.0,), shape=(1,)),
                 max_episode_steps=None, name="TinyPixels")
PIXEL_CFG = dict(num_envs=2, num_steps=4, batch_size=8, buffer_size=64,
                 learning_starts=0, hidden_sizes=(32, 32), feature_dim=16)
PIXEL_CONFIG, PIXEL_RUN = split_config(sac, **PIXEL_CFG)


def pixel_config(**changes):
    return split_config(sac, **{**PIXEL_CFG, **changes})[0]


def pixel_records(key, T=4, B=2):
    """A rollout ``[T, B]`` as the loop records it: uint8 frames."""
    k_batch, k_obs = jax.random.split(key)
    frames = jax.random.randint(k_obs, (T + 1, B, *PIXELS.obs_shape), 0, 256, jnp.int32)
    frames = frames.astype(jnp.uint8)
    b = random_batch(PIXELS, k_batch, T=T, B=B)
    return {"obs": frames[:-1], "action": b.action, "reward": b.reward,
            "terminated": b.terminated, "truncated": b.truncated, "next_obs": frames[1:],
            "first": jnp.zeros((T, B), bool), "extras": {}}


def pixel_batch(key, T=4, B=2):
    """The ``T * B`` steps of ``pixel_records`` as one flat update batch."""
    records = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), pixel_records(key, T, B))
    stub = sac.make(PIXEL_CONFIG, PIXELS)  # value is None: to_batch folds nothing in
    return to_batch(stub, None, records, sac.SPEC.discounting(PIXEL_CONFIG),
                    time_major=False)


def loop_memory(agent, state, spec, cfg, num_envs):
    """The replay the loop keeps for SAC, empty, and its ``Memory``."""
    memory = purerl.memory.for_algo(sac, cfg)
    return memory, memory.init(memory_example(agent, state, spec, num_envs), num_envs)


@pytest.fixture(scope="module")
def pixel_agent():
    """The agent, one initial state and its jitted update, shared: compiles are slow."""
    agent = sac.make(PIXEL_CONFIG, PIXELS)
    return agent, jax.jit(agent.init)(jax.random.key(0)), jax.jit(agent.update)


def test_pixel_path_is_selected_by_the_observation_type(pixel_agent):
    agent, state, _ = pixel_agent
    assert set(state.params) == {"encoder", "actor", "critic", "log_alpha"}
    assert set(state.opt_state) == set(state.params)
    assert set(state.target_critic) == {"trunk", "q"}
    _, replay = loop_memory(agent, state, PIXELS, PIXEL_CONFIG, PIXEL_RUN.num_envs)
    assert replay.data["obs"].dtype == jnp.uint8
    assert replay.data["next_obs"].dtype == jnp.uint8
    # A float image-shaped observation is a state: flattened into the MLPs, no encoder.
    floats = EnvSpec((4, 4, 2), "float32", PIXELS.action_space, None)
    agent = sac.make(PIXEL_CONFIG, floats)
    state = agent.init(jax.random.key(0))
    assert "encoder" not in state.params
    _, replay = loop_memory(agent, state, floats, PIXEL_CONFIG, PIXEL_RUN.num_envs)
    assert replay.data["obs"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"Config\.augment_pad must be in"):
        sac.Config(augment_pad=-1)
    with pytest.raises(ValueError, match=r"Config\.feature_dim must be in"):
        sac.Config(feature_dim=0)


def test_pixel_update_compiles_once_keeps_uint8_and_trains_the_encoder(pixel_agent):
    agent, state, update = pixel_agent
    tau = PIXEL_CONFIG.tau
    # The loop's replay stores the frames as they came, uint8, and its samples are
    # what the update trains on.
    memory, replay = loop_memory(agent, state, PIXELS, PIXEL_CONFIG, PIXEL_RUN.num_envs)
    records = pixel_records(jax.random.key(1))
    replay = memory.add(replay, records)
    stored = replay.data
    assert stored["obs"].dtype == jnp.uint8 and stored["next_obs"].dtype == jnp.uint8
    np.testing.assert_array_equal(stored["obs"][:8], records["obs"].reshape(8, 16, 16, 6))
    np.testing.assert_array_equal(stored["next_obs"][:8],
                                  records["next_obs"].reshape(8, 16, 16, 6))
    batch = to_batch(agent, state, memory.sample(replay, jax.random.key(5)),
                     sac.SPEC.discounting(PIXEL_CONFIG), time_major=False)
    assert batch.obs.dtype == jnp.uint8 and batch.obs.shape == (8, 16, 16, 6)
    new_state, metrics = update(state, batch, jax.random.key(2))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    next_batch = pixel_batch(jax.random.key(3))
    newer_state, _ = update(new_state, next_batch, jax.random.key(4))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, newer_state)
    assert update._cache_size() == 1
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(metrics))
    for group in ("encoder", "actor", "critic"):
        assert not leaves_equal(state.params[group], new_state.params[group]), group
    # Target critic (trunk and heads): Polyak averaging only.
    expect = jax.tree.map(lambda t, c: (1 - tau) * t + tau * c,
                          state.target_critic, new_state.params["critic"])
    chex.assert_trees_all_close(expect, new_state.target_critic, rtol=1e-5, atol=1e-7)


def test_pixel_actor_loss_does_not_reach_the_encoder(pixel_agent):
    # With gamma = 0 the critic's target is the reward, so the only way the actor's
    # parameters could change the encoder's update is a gradient of the actor loss
    # leaking into it. Two states that differ only in the actor must update their
    # encoders identically.
    _, state_a, _ = pixel_agent
    agent = sac.make(pixel_config(gamma=0.0), PIXELS)
    other = jax.tree.map(lambda p: 1.5 * p + 0.01, state_a.params["actor"])
    state_b = state_a._replace(params={**state_a.params, "actor": other})
    update = jax.jit(agent.update)
    batch = pixel_batch(jax.random.key(2))

    def two_steps(state):  # two gradient steps: the actor's first could reach the second
        state, _ = update(state, batch, jax.random.key(3))
        return update(state, batch, jax.random.key(4))

    new_a, _ = two_steps(state_a)
    new_b, _ = two_steps(state_b)
    assert not leaves_equal(state_a.params["encoder"], new_a.params["encoder"])
    assert leaves_equal(new_a.params["encoder"], new_b.params["encoder"])
    assert leaves_equal(new_a.params["critic"], new_b.params["critic"])
    assert not leaves_equal(new_a.params["actor"], new_b.params["actor"])


def test_pixel_augmentation_is_applied_in_the_update(pixel_agent):
    _, state, update = pixel_agent  # augment_pad = 4
    unshifted = sac.make(pixel_config(augment_pad=0), PIXELS)
    batch = pixel_batch(jax.random.key(1))
    shifted_state, _ = update(state, batch, jax.random.key(2))
    plain_state, _ = jax.jit(unshifted.update)(state, batch, jax.random.key(2))
    assert not leaves_equal(shifted_state.params["critic"],
                            plain_state.params["critic"])


def test_pixel_act_in_bounds_and_deterministic_per_key(pixel_agent):
    agent, state, _ = pixel_agent  # act is the policy's: the warm-up is the loop's
    jitted = jax.jit(agent.act, static_argnames="eval")

    def act(state, obs, key, eval=False):
        first = jnp.zeros(obs.shape[:-3], bool)
        action, carry, extras = jitted(state, (), obs, first, key, eval=eval)
        assert carry == ()
        return action, extras

    obs = pixel_records(jax.random.key(1))["obs"][0]  # [2, 16, 16, 6] uint8
    obs = jnp.concatenate([obs, obs[::-1], obs], axis=0)  # [6, ...]
    a1, _ = act(state, obs, jax.random.key(2))
    a2, _ = act(state, obs, jax.random.key(2))
    a3, _ = act(state, obs, jax.random.key(3))
    assert a1.shape == (6, 1) and a1.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(a1)) <= 2.0)
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)
    e1, _ = act(state, obs, jax.random.key(4), eval=True)
    e2, _ = act(state, obs, jax.random.key(5), eval=True)
    np.testing.assert_array_equal(e1, e2)
    # Equal frames get equal eval actions: act sees the frames unshifted.
    np.testing.assert_array_equal(e1[0], e1[3])
    single, _ = act(state, obs[0], jax.random.key(6), eval=True)
    assert single.shape == (1,)
    np.testing.assert_allclose(single, e1[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autotune", [True, False])
def test_alpha_is_tuned_or_held_at_init_alpha(pendulum, autotune):
    # autotune_alpha=False is SAC v1's fixed temperature (SMM's reference: alpha = 1).
    cfg, _ = split_config(sac, **{**SMALL, "learning_starts": 0, "init_alpha": 0.5,
                                  "autotune_alpha": autotune})
    agent = sac.make(cfg, pendulum.spec)
    state = agent.init(jax.random.key(0))
    batch = flat(random_batch(pendulum.spec, jax.random.key(1), T=4, B=2))
    new, metrics = jax.jit(agent.update)(state, batch, jax.random.key(2))
    moved = float(new.params["log_alpha"]) != float(state.params["log_alpha"])
    assert moved == autotune
    if not autotune:
        np.testing.assert_allclose(float(metrics["sac/alpha"]), 0.5, rtol=1e-6)
        assert float(metrics["loss/temperature"]) == 0.0
        assert leaves_equal(new.opt_state["log_alpha"], state.opt_state["log_alpha"])
