"""Proto-RL's pieces on hand-built inputs: the queue and the intrinsic reward, the
candidate draw at temperature 1, the prototype loss against numpy, the encoder
trained by the prototype loss alone, prototypes renormalised before use, and the
phases frozen as the paper says."""

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial import cKDTree

import purerl
from purerl.algos import proto
from purerl.testing import leaves_equal

SMALL = dict(hidden_sizes=(16, 16), batch_size=8, num_prototypes=4, queue_size=8,
             proto_dim=6, predictor_hidden=8, encoder="mlp", encoder_hidden=(8,),
             feature_dim=5, learning_starts=8, buffer_size=64)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_queue_fifo_and_reward_is_the_kth_neighbour_distance():
    rng = np.random.default_rng(0)
    z = unit(rng.normal(size=(10, 3))).astype(np.float32)
    protos = unit(rng.normal(size=(4, 3))).astype(np.float32)
    queue = np.zeros((8, 3), np.float32)
    r, q1, ptr = proto.intrinsic_reward(jnp.asarray(z), jnp.asarray(protos),
                                        jnp.asarray(queue), jnp.int32(0),
                                        jax.random.key(0), 3)
    q1 = np.asarray(q1)
    assert int(ptr) == 4 and np.all(q1[4:] == 0)
    # The 4 candidates are rows of z, enqueued before the query.
    assert all(any(np.array_equal(c, row) for row in z) for c in q1[:4])
    expected = cKDTree(q1).query(z, k=[3])[0][:, 0]
    np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
    _, q2, ptr2 = proto.intrinsic_reward(jnp.asarray(z), jnp.asarray(protos), q1, ptr,
                                         jax.random.key(1), 3)
    assert int(ptr2) == 0 and np.array_equal(np.asarray(q2)[:4], q1[:4])
    assert not np.all(np.asarray(q2)[4:] == 0)


def test_candidates_are_drawn_at_temperature_one():
    rng = np.random.default_rng(1)
    z = unit(rng.normal(size=(5, 3))).astype(np.float32)
    protos = unit(rng.normal(size=(2, 3))).astype(np.float32)

    def picks(key):
        _, q, _ = proto.intrinsic_reward(z, protos, jnp.zeros((2, 3)), jnp.int32(0), key, 1)
        return q

    queues = np.asarray(jax.jit(jax.vmap(picks))(jax.random.split(jax.random.key(0), 4000)))
    logits = protos @ z.T  # no 1/T: softmax_b(C_j . z_b)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for j in range(2):
        counts = [(np.abs(queues[:, j] - z[b]).sum(1) < 1e-6).mean() for b in range(5)]
        np.testing.assert_allclose(counts, probs[j], atol=0.03)


def numpy_sinkhorn(logits, iters):
    q = np.exp(logits).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(1, keepdims=True) * k
        q /= q.sum(0, keepdims=True) * b
    return (q * b).T


@pytest.fixture(scope="module")
def agent_parts():
    env = purerl.envs.make("Maze-Open-v0")
    cfg = proto.Config(**SMALL, task_coef=1.0, intr_coef=0.2)  # fine-tuning weights
    nets = proto.make_nets(cfg, env.spec)
    agent = proto.make(cfg, env.spec)
    state = agent.init(jax.random.key(0))
    rng = np.random.default_rng(2)
    batch = {"obs": rng.uniform(size=(8, 2)).astype(np.float32),
             "next_obs": rng.uniform(size=(8, 2)).astype(np.float32),
             "action": rng.uniform(-1, 1, size=(8, 2)).astype(np.float32),
             "reward": rng.normal(size=8).astype(np.float32),
             "terminated": np.zeros(8, np.float32)}
    step = jax.jit(lambda s, b, k: proto.learner_step(s, b, k, nets, cfg))
    return cfg, nets, state, batch, step


def test_proto_loss_matches_numpy(agent_parts):
    cfg, nets, state, batch, _ = agent_parts
    p = state.params
    loss = proto.proto_loss({g: p[g] for g in proto.PROTO_GROUPS}, state.target_encoder,
                            state.target_projector, batch["obs"], batch["next_obs"], nets,
                            cfg)
    x = nets.encoder.apply(p["encoder"], batch["obs"])
    s = unit(np.asarray(nets.predictor.apply(p["predictor"],
                                             nets.projector.apply(p["projector"], x))))
    t = np.asarray(proto.embed(nets, state.target_encoder, state.target_projector,
                               batch["next_obs"]))
    c = np.asarray(p["prototypes"])
    logits = s @ c.T / cfg.temperature
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    q = numpy_sinkhorn(t @ c.T / cfg.temperature, cfg.sinkhorn_iters)
    np.testing.assert_allclose(loss, -(q * log_p).sum(1).mean(), rtol=1e-4)


def test_the_encoder_is_trained_by_the_prototype_loss_alone(agent_parts):
    _, _, state, batch, step = agent_parts
    a, _ = step(state, batch, jax.random.key(3))
    b, _ = step(state, {**batch, "reward": 100.0 * batch["reward"]}, jax.random.key(3))
    for g in proto.PROTO_GROUPS:
        assert leaves_equal(a.params[g], b.params[g]), g
    assert not leaves_equal(a.params["critic"], b.params["critic"])
    assert not leaves_equal(a.params["encoder"], state.params["encoder"])


def test_prototypes_are_renormalised_before_every_use(agent_parts):
    _, _, state, batch, step = agent_parts
    scaled = state._replace(params={**state.params,
                                    "prototypes": 3.0 * state.params["prototypes"]})
    a, ma = step(state, batch, jax.random.key(4))
    b, mb = step(scaled, batch, jax.random.key(4))
    np.testing.assert_allclose(ma["loss/proto"], mb["loss/proto"], rtol=1e-6)
    np.testing.assert_allclose(a.encoder_queue, b.encoder_queue, atol=1e-6)
    norms = np.linalg.norm(np.asarray(a.encoder_queue)[:4], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_reward_is_task_coef_times_task_plus_intr_coef_times_intrinsic(agent_parts):
    cfg, nets, state, batch, _ = agent_parts

    def run(batch, **coefs):
        new, metrics = proto.learner_step(state, batch, jax.random.key(5), nets,
                                          dataclasses.replace(cfg, **coefs))
        return new.params["critic"], metrics

    doubled = {**batch, "reward": 2.0 * batch["reward"]}
    a, _ = run(batch, task_coef=1.0, intr_coef=0.3)
    b, _ = run(doubled, task_coef=0.5, intr_coef=0.3)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(a)[0],
                               jax.flatten_util.ravel_pytree(b)[0], rtol=1e-5, atol=1e-7)
    # Pre-training ignores the task reward entirely.
    c, m = run(batch, task_coef=0.0, intr_coef=1.0)
    d, _ = run(doubled, task_coef=0.0, intr_coef=1.0)
    assert leaves_equal(c, d) and float(m["proto/intr_reward"]) > 0.0
    assert not leaves_equal(a, c)


def test_reward_on_obs_measures_the_same_candidates_between_states(agent_parts):
    cfg, _, state, batch, step = agent_parts
    env = purerl.envs.make("Maze-Open-v0")
    ablation = dataclasses.replace(cfg, reward_on="obs")
    nets = proto.make_nets(ablation, env.spec)
    start = proto.make(ablation, env.spec).init(jax.random.key(0))
    assert start.encoder_queue.shape == (ablation.queue_size, 2)  # states, not z
    new, metrics = jax.jit(lambda s, b, k: proto.learner_step(s, b, k, nets, ablation))(
        start, batch, jax.random.key(6))
    queue = np.asarray(new.encoder_queue)
    # One candidate per prototype, rows of next_obs, enqueued before the query.
    assert all(any(np.array_equal(c, row) for row in batch["next_obs"]) for c in queue[:4])
    assert np.all(queue[4:] == 0)
    r = cKDTree(queue).query(batch["next_obs"], k=[ablation.knn_k])[0][:, 0]
    np.testing.assert_allclose(metrics["proto/intr_reward"], r.mean(), rtol=1e-5)
    # The paper's reward compares embeddings: unit vectors, not the states.
    paper, _ = step(state, batch, jax.random.key(6))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(paper.encoder_queue)[:4], axis=1),
                               1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="Config.reward_on must be one of"):
        proto.Config(reward_on="pixels")
    from purerl.types import Box, EnvSpec

    frames = EnvSpec((64, 64, 3), "uint8", Box((-1.0,), (1.0,), (1,)), 10)
    with pytest.raises(ValueError, match="not with pixel observations"):
        proto.make(proto.Config(reward_on="obs"), frames)


def test_finetune_phase_freezes_the_representation():
    phase = proto.PHASES["finetune"]
    assert phase.from_snapshot and set(phase.freeze) == set(proto.PROTO_GROUPS)
    assert phase.config == {"task_coef": 1.0, "intr_coef": 0.2,
                            "train_representation": False}
    assert proto.PHASES["pretrain"].config == {"task_coef": 0.0, "intr_coef": 1.0}


def test_a_frozen_representation_is_neither_stepped_nor_used_stepped(agent_parts):
    # The fine-tuning phase as the driver runs it: its Config and snapshot.freeze.
    from purerl import snapshot

    cfg, nets, state, batch, _ = agent_parts
    phase = proto.PHASES["finetune"]
    frozen_cfg = dataclasses.replace(cfg, **phase.config)
    step = jax.jit(snapshot.freeze(
        lambda s, b, k: proto.learner_step(s, b, k, nets, frozen_cfg), phase.freeze))
    new = state
    for i in range(5):
        new, metrics = step(new, batch, jax.random.key(10 + i))
    for g in proto.PROTO_GROUPS:
        assert leaves_equal(new.params[g], state.params[g]), g
        assert leaves_equal(new.opt_state[g], state.opt_state[g]), g  # Adam did not move
    assert leaves_equal(new.target_encoder, state.target_encoder)
    assert float(metrics["loss/proto"]) == 0.0
    # The enqueued candidates are embeddings of the frozen representation, exactly.
    z = np.asarray(proto.embed(nets, state.params["encoder"], state.params["projector"],
                               batch["next_obs"]))
    queue = np.asarray(new.encoder_queue)
    for c in queue:
        assert np.min(np.abs(z - c).max(1)) == 0.0
    assert not leaves_equal(new.params["critic"], state.params["critic"])


def test_ema_targets_move_at_encoder_tau_toward_the_stepped_representation(agent_parts):
    cfg, _, state, batch, step = agent_parts
    start = state._replace(target_encoder=jax.tree.map(jnp.zeros_like, state.target_encoder))
    new, _ = step(start, batch, jax.random.key(3))
    want = jax.tree.map(lambda t, p: (1 - cfg.encoder_tau) * t + cfg.encoder_tau * p,
                        start.target_encoder, new.params["encoder"])
    for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(new.target_encoder)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)


def test_codes_carry_no_gradient_and_the_prototypes_get_one(agent_parts):
    cfg, nets, state, batch, _ = agent_parts
    p = state.params
    trained = {g: p[g] for g in proto.PROTO_GROUPS}
    grads = jax.grad(proto.proto_loss)(trained, state.target_encoder, state.target_projector,
                                       batch["obs"], batch["next_obs"], nets, cfg)
    t = proto.embed(nets, state.target_encoder, state.target_projector, batch["next_obs"])
    q = jnp.asarray(numpy_sinkhorn(np.asarray(t @ p["prototypes"].T) / cfg.temperature,
                                   cfg.sinkhorn_iters))

    def fixed_codes(protos):  # the loss with the codes as constants
        x = nets.encoder.apply(p["encoder"], batch["obs"])
        s = proto.normalize(nets.predictor.apply(p["predictor"],
                                                 nets.projector.apply(p["projector"], x)))
        return -(q * jax.nn.log_softmax(s @ protos.T / cfg.temperature)).sum(-1).mean()

    want = jax.grad(fixed_codes)(p["prototypes"])
    np.testing.assert_allclose(grads["prototypes"], want, rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(want).max()) > 0.0


def test_restore_all_or_the_originals_groups_the_queue_with_the_encoder(agent_parts):
    from purerl import snapshot

    _, _, state, batch, step = agent_parts
    trained = state
    for i in range(3):
        trained, _ = step(trained, batch, jax.random.key(20 + i))
    fresh = state._replace(encoder_queue=jnp.zeros_like(state.encoder_queue))
    everything = snapshot.restore_groups(fresh, trained)
    original = snapshot.restore_groups(fresh, trained, proto.RESTORE_ORIGINAL)
    for g in ("actor", *proto.PROTO_GROUPS):
        assert leaves_equal(original.params[g], trained.params[g]), g
    for field in ("target_encoder", "target_projector", "encoder_queue", "encoder_queue_ptr"):
        assert leaves_equal(getattr(original, field), getattr(trained, field)), field
    assert np.abs(np.asarray(original.encoder_queue)).sum() > 0  # the queue came along
    # The original's first release starts critic and alpha fresh; "all" takes them too.
    for g in ("critic", "log_alpha"):
        assert leaves_equal(original.params[g], fresh.params[g]), g
        assert leaves_equal(everything.params[g], trained.params[g]), g
    assert leaves_equal(original.target_critic, fresh.target_critic)
    assert leaves_equal(everything.target_critic, trained.target_critic)
    # Optimiser states start fresh either way.
    assert leaves_equal(everything.opt_state, fresh.opt_state)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="queue_size must be a multiple"):
        proto.Config(num_prototypes=3, queue_size=8)
    with pytest.raises(ValueError, match="Config.encoder must be one of"):
        proto.Config(encoder="conv")
    with pytest.raises(ValueError, match="Config.temperature"):
        proto.Config(temperature=0.0)
    with pytest.raises(ValueError, match="flat observations"):
        proto.make(proto.Config(), _two_axis_spec())


def _two_axis_spec():
    from purerl.types import Box, EnvSpec

    return EnvSpec((2, 2), "float32", Box((-1.0,), (1.0,), (1,)), 10)


def test_learns_a_continuous_bandit_through_the_encoder():
    # Fine-tuning weights (task reward + 0.2 r_intr) on a one-step task: the policy's
    # mean action must track the context through the MLP encoder it does not train.
    env = purerl.envs.make("Probe-ContinuousBandit-v0")
    cfg, run = purerl.testing.split_config(
        proto, **{**SMALL, "hidden_sizes": (32, 32), "batch_size": 32, "lr": 3e-3,
                  "proto_lr": 1e-3, "task_coef": 1.0, "intr_coef": 0.2,
                  "buffer_size": 2000, "learning_starts": 100},
        total_steps=1500, num_envs=1, num_steps=1, num_evals=3, num_eval_envs=64)
    _, metrics = jax.jit(purerl.make_train(proto, env, cfg, run))(jax.random.key(0))
    returns = np.asarray(metrics["eval/return"])
    assert returns[-1] > -0.1, returns  # a uniform action scores about -0.67


def _pixel_batch(B=8):
    rng = np.random.default_rng(5)
    frames = lambda: rng.integers(0, 256, (B, 16, 16, 6)).astype(np.uint8)  # noqa: E731
    return {"obs": frames(), "next_obs": frames(),
            "action": rng.uniform(-1, 1, (B, 1)).astype(np.float32),
            "reward": rng.normal(size=B).astype(np.float32),
            "terminated": np.zeros(B, np.float32)}


def test_on_pixels_the_conv_encoder_is_trained_by_the_prototype_loss_alone():
    # SAC reads the conv feature under stop_gradient: the task reward, whatever its
    # size, never reaches the encoder; the prototype loss does.
    from purerl.types import Box, EnvSpec

    spec = EnvSpec((16, 16, 6), "uint8", Box((-1.0,), (1.0,), (1,)), 10, "TinyPixels")
    cfg = proto.Config(**{**SMALL, "encoder": "identity"}, task_coef=1.0, intr_coef=0.2)
    nets = proto.make_nets(cfg, spec)
    assert nets.pixels
    state = proto.make(cfg, spec).init(jax.random.key(0))
    batch = _pixel_batch()
    step = jax.jit(lambda s, b, k, c: proto.learner_step(s, b, k, nets, c),
                   static_argnums=3)
    a, _ = step(state, batch, jax.random.key(1), cfg)
    b, _ = step(state, {**batch, "reward": 100.0 * batch["reward"]}, jax.random.key(1), cfg)
    assert leaves_equal(a.params["encoder"], b.params["encoder"])
    assert not leaves_equal(a.params["critic"], b.params["critic"])
    assert not leaves_equal(a.params["encoder"], state.params["encoder"])
