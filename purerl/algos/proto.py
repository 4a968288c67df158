"""Proto-RL (Yarats, Fergus, Lazaric & Pinto 2021, "Reinforcement Learning with
Prototypical Representations", arXiv:2102.11271; code ``denisyarats/proto``).

A self-supervised representation, prototypes that cluster it, and an exploration
reward from the clusters' neighbourhoods, on top of SAC (``purerl.algos.sac``'s
module-level losses and learner step; nothing of SAC is copied here):

    online:  s = normalize(predictor(projector(encoder(obs))))
    target:  t = normalize(projector̄(encoder̄(next_obs)))          (EMA copies, τ_enc)
    loss:    −Σ_k q_k log softmax(C s / T)_k,  q = Sinkhorn(C t / T), 3 iterations
    reward:  r_intr = ‖z − queue‖ to the k-th nearest (k = 3),  z = normalize(projector(encoder(next_obs)))

``C`` holds the L2-normalised prototypes (renormalised before every use, as the
original does in place). The queue is a FIFO of ``queue_size`` candidate embeddings:
each update, for every prototype ``j``, one batch index is drawn from
``softmax_b(C_j · z_b)`` (temperature 1, not T) and its ``z`` is enqueued, *before*
the rewards are computed, so a sample can find itself at distance 0 (hence k = 3).
The queue starts at zeros (distance 1 from every unit vector).

The encoder (identity or an MLP for states; DrQ's conv encoder for pixels) is trained
by the prototype loss alone: SAC's actor and critic read its feature under
``stop_gradient``, each through its own trunk (Dense → LayerNorm → tanh of
``feature_dim``, SAC's pixel trunk as DrQ-v2's; the original's ``pre_fc`` has no tanh)
when the encoder is not the identity. SAC learns from
``r = task_coef · r_task + intr_coef · r_intr`` (``r_task`` the env's reward, scaled
by the loop's ``reward_scale``). ``PHASES``: pre-training on ``r_intr`` alone, then
fine-tuning on ``r_task + 0.2 · r_intr`` from the pre-trained snapshot with the
encoder, projector, predictor and prototypes frozen (``train_representation=False``:
not stepped, so r_intr and SAC's features come from the pre-trained representation;
the queue keeps filling and the reward keeps running), as the original does after its
task-agnostic phase. Which groups the fine-tuning takes from the snapshot is
``--restore``: all of them by default (the critic and α included, as the original at
56b31e3 ``assign_modules_from`` and URLB's ``init_critic``), or ``RESTORE_ORIGINAL``,
the actor and the representation with a fresh critic and α = ``init_alpha`` (0.1), as
the original's first release (8580430). The queue goes with the encoder
(``encoder_queue``), as it lives in the original's proto module; optimiser states start
fresh either way, as the original's ``init_optimizers``.

``reward_on='obs'`` is an ablation, not the paper's: the same candidates, queue and
k-th-neighbour distance, measured between the flat observations instead of z (states
only), to separate what the embedding contributes to r_intr from what the learner does
with it.

The replay starts empty at fine-tuning, as the original's task phase does. Deviations
from the original: every update steps the representation, its EMA targets, the actor
and the critic targets (the original: ``encoder_update_frequency``,
``actor_update_frequency`` and ``critic_target_update_frequency`` of 2, the critic every
step), and the defaults are the original's except where a preset for this CPU says
otherwise.
"""

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from purerl.algos import sac
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_choice, check_range, config
from purerl.memory import Replay
from purerl.networks import MLP, ConvEncoder
from purerl.ops import knn_distances, random_shift, sinkhorn_knopp
from purerl.snapshot import Phase
from purerl.types import EnvSpec, Transition

RUN = RunConfig(total_steps=100_000, num_envs=1, num_steps=1, num_evals=10)
PROTO_GROUPS = ("encoder", "projector", "predictor", "prototypes")
# The groups the original's first release (denisyarats/proto 8580430) carries into
# fine-tuning: the actor and the representation; critic and α start fresh.
RESTORE_ORIGINAL = ("actor", *PROTO_GROUPS)
PHASES = {
    "pretrain": Phase(config={"task_coef": 0.0, "intr_coef": 1.0}),
    "finetune": Phase(config={"task_coef": 1.0, "intr_coef": 0.2,
                              "train_representation": False},
                      from_snapshot=True, freeze=PROTO_GROUPS),
}


@config
class Config(sac.Config):
    """Proto-RL hyperparameters: SAC's fields (the original's DrQ-style SAC settings
    as defaults) and the representation's."""

    batch_size: int = 512
    """Transitions per gradient step (the original: 512)."""
    lr: float = 1e-4
    """Adam learning rate of the actor, the critics and the temperature (1e-4)."""
    init_alpha: float = 0.1
    """Initial temperature α (the original: 0.1)."""
    tau: float = 0.01
    """Polyak coefficient of the target critics (the original: 0.01)."""
    log_std_min: float = -10.0
    """Lower bound of the actor's log-std (the original: −10)."""
    hidden_sizes: tuple = (1024, 1024)
    """Hidden layer widths of the actor and of each critic (the original: 1024 × 2)."""
    task_coef: float = 0.0
    """Weight of the env's reward (pre-training 0; fine-tuning 1)."""
    intr_coef: float = 1.0
    """Weight of the intrinsic reward (pre-training 1; fine-tuning 0.2)."""
    encoder: str = "identity"
    """States: 'identity' or 'mlp' (``encoder_hidden``, output ``feature_dim``);
    pixels always use DrQ's conv encoder."""
    encoder_hidden: tuple = (256,)
    """Hidden widths of the 'mlp' state encoder."""
    proto_dim: int = 128
    """Width of the projected embedding z (128)."""
    predictor_hidden: int = 512
    """Hidden width of the predictor MLP (128 → 512 → 128)."""
    num_prototypes: int = 512
    """Number of prototypes K (512)."""
    temperature: float = 0.1
    """Softmax and Sinkhorn temperature T (0.1)."""
    sinkhorn_iters: int = 3
    """Sinkhorn-Knopp iterations (3)."""
    queue_size: int = 2048
    """Candidate queue length, a multiple of num_prototypes (2048: 4 batches)."""
    knn_k: int = 3
    """The intrinsic reward is the distance to the knn_k-th nearest candidate (3)."""
    reward_on: str = "embedding"
    """Where r_intr's distances are measured: 'embedding' (z, Proto-RL) or 'obs', an
    ablation on states: the same candidates (picked through z and the prototypes),
    queue and k-th-neighbour distance, between the flat observations instead."""
    encoder_tau: float = 0.05
    """Polyak coefficient of the target encoder and projector (0.05)."""
    proto_lr: float = 1e-4
    """Adam learning rate of the encoder, projector, predictor and prototypes."""
    train_representation: bool = True
    """Step the encoder, projector, predictor and prototypes (and their EMA targets)
    with the prototype loss; False (fine-tuning) leaves them, and their optimiser
    states, as they are, so that r_intr and SAC's features come from them unchanged."""

    def __post_init__(self):
        super().__post_init__()
        check_choice(self, "encoder", ("identity", "mlp"))
        check_choice(self, "reward_on", ("embedding", "obs"))
        for name in ("proto_dim", "predictor_hidden", "num_prototypes", "sinkhorn_iters",
                     "queue_size", "knn_k"):
            check_range(self, name, 1)
        for name in ("task_coef", "intr_coef"):
            check_range(self, name, 0.0)
        check_range(self, "temperature", 0.0, low_open=True)
        check_range(self, "encoder_tau", 0.0, 1.0, low_open=True)
        check_range(self, "proto_lr", 0.0, low_open=True)
        if self.queue_size % self.num_prototypes:
            raise ValueError(f"Config.queue_size must be a multiple of num_prototypes "
                             f"({self.num_prototypes}), got {self.queue_size}")
        check_range(self, "knn_k", 1, self.queue_size)


def replay(cfg: Config) -> Replay:
    """The loop's replay for Proto-RL: SAC's (flat transitions)."""
    return sac.replay(cfg)


class State(NamedTuple):
    # SAC's groups ("actor", "critic", "log_alpha") and PROTO_GROUPS in one dict, so
    # that phases restore and freeze them by name.
    params: dict
    target_critic: dict
    target_encoder: dict  # EMA of params["encoder"]
    target_projector: dict  # EMA of params["projector"]
    opt_state: dict
    # Named encoder_* so that the queue goes with the encoder when a phase restores or
    # freezes it (purerl.snapshot ties <group>_* fields to the group).
    encoder_queue: jax.Array  # [queue_size, proto_dim] candidate embeddings, FIFO
    encoder_queue_ptr: jax.Array  # int32, where the next candidates go
    iteration: jax.Array  # int32, gradient steps done


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x.astype(jnp.float32)


class Nets(NamedTuple):
    encoder: nn.Module
    projector: nn.Module
    predictor: nn.Module
    sac: sac.Nets
    feature_spec: EnvSpec  # what SAC's heads read: the encoder's flat float feature
    proto_adam: optax.GradientTransformation
    pixels: bool


def normalize(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def make_nets(cfg: Config, env_spec: EnvSpec) -> Nets:
    pixels = sac.is_pixels(env_spec)
    if pixels:
        encoder = ConvEncoder()
    elif len(env_spec.obs_shape) != 1:
        raise ValueError(f"Proto-RL on states needs flat observations, got shape "
                         f"{env_spec.obs_shape}")
    elif cfg.encoder == "mlp":
        encoder = MLP(cfg.encoder_hidden, cfg.feature_dim, cfg.activation)
    else:
        encoder = Identity()
    obs = jnp.zeros(env_spec.obs_shape, jnp.dtype(env_spec.obs_dtype))
    feature = jax.eval_shape(lambda o: encoder.init_with_output(jax.random.key(0), o)[0],
                             obs)
    feature_spec = EnvSpec((int(feature.shape[-1]),), "float32", env_spec.action_space,
                           env_spec.max_episode_steps, env_spec.name)
    # SAC's heads read the feature, behind their own trunks unless it is the raw state.
    heads = sac.make_nets(cfg, feature_spec, trunk=not isinstance(encoder, Identity))
    return Nets(encoder, nn.Dense(cfg.proto_dim),
                MLP((cfg.predictor_hidden,), cfg.proto_dim, "relu"), heads,
                feature_spec, optax.adam(cfg.proto_lr), pixels)


def embed(nets: Nets, encoder_params, projector_params, obs):
    """normalize(projector(encoder(obs))): the target branch, and z for the reward."""
    x = nets.encoder.apply(encoder_params, obs)
    return normalize(nets.projector.apply(projector_params, x))


def proto_loss(trained, target_encoder, target_projector, obs, next_obs, nets: Nets, cfg):
    """SwAV-style loss: predict the Sinkhorn code of next_obs's target embedding from
    obs's online prediction. ``trained`` holds PROTO_GROUPS, prototypes already
    normalised."""
    x = nets.encoder.apply(trained["encoder"], obs)
    s = normalize(nets.predictor.apply(trained["predictor"],
                                       nets.projector.apply(trained["projector"], x)))
    t = jax.lax.stop_gradient(embed(nets, target_encoder, target_projector, next_obs))
    protos = trained["prototypes"]
    log_p = jax.nn.log_softmax(s @ protos.T / cfg.temperature, axis=-1)
    q = jax.lax.stop_gradient(sinkhorn_knopp(t @ protos.T / cfg.temperature,
                                             cfg.sinkhorn_iters))
    return -(q * log_p).sum(-1).mean()


def intrinsic_reward(z, protos, queue, queue_ptr, key, k, points=None):
    """Enqueue one candidate per prototype (drawn from softmax_b(C_j · z_b)), then
    ``r = `` the distance from each z to its k-th nearest queue entry. ``points``
    (``[B, d]``, default z) are what is enqueued and compared (``reward_on='obs'``).
    Returns ``(r [B], queue, queue_ptr)``."""
    z, protos = jnp.asarray(z), jnp.asarray(protos)
    points = z if points is None else jnp.asarray(points)
    picks = jax.random.categorical(key, protos @ z.T, axis=-1)  # [K], temperature 1
    queue = jax.lax.dynamic_update_slice(queue, points[picks], (queue_ptr, 0))
    queue_ptr = (queue_ptr + protos.shape[0]) % queue.shape[0]
    return knn_distances(points, queue, k), queue, queue_ptr


def flat_obs(obs):
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


def learner_step(state: State, batch, key, nets: Nets, cfg: Config):
    """One Proto-RL update: the prototype loss and EMA targets, the intrinsic reward
    with the updated representation, then SAC's learner step on the detached
    features. ``batch`` as ``sac.to_policy_batch`` makes it."""
    k_shift, k_queue, k_sac = jax.random.split(key, 3)
    if nets.pixels:  # one shift for both the representation and SAC (DrQ)
        k_obs, k_next = jax.random.split(k_shift)
        batch = {**batch, "obs": random_shift(k_obs, batch["obs"], cfg.augment_pad),
                 "next_obs": random_shift(k_next, batch["next_obs"], cfg.augment_pad)}
    params, opt_state = dict(state.params), dict(state.opt_state)
    target_encoder, target_projector = state.target_encoder, state.target_projector
    p_loss = jnp.zeros((), jnp.float32)
    if cfg.train_representation:
        params["prototypes"] = normalize(params["prototypes"])  # before every use
        trained = {g: params[g] for g in PROTO_GROUPS}
        p_loss, grads = jax.value_and_grad(proto_loss)(
            trained, target_encoder, target_projector, batch["obs"], batch["next_obs"],
            nets, cfg)
        for g in PROTO_GROUPS:  # one Adam state per group, as SAC's
            updates, opt_state[g] = nets.proto_adam.update(grads[g], opt_state[g])
            params[g] = optax.apply_updates(params[g], updates)
        target_encoder = optax.incremental_update(params["encoder"], target_encoder,
                                                  cfg.encoder_tau)
        target_projector = optax.incremental_update(params["projector"],
                                                    target_projector, cfg.encoder_tau)

    protos = normalize(params["prototypes"])
    z = jax.lax.stop_gradient(embed(nets, params["encoder"], params["projector"],
                                    batch["next_obs"]))
    points = None if cfg.reward_on == "embedding" else flat_obs(batch["next_obs"])
    r_intr, queue, queue_ptr = intrinsic_reward(z, protos, state.encoder_queue,
                                                state.encoder_queue_ptr, k_queue,
                                                cfg.knn_k, points)
    features = lambda o: jax.lax.stop_gradient(  # noqa: E731
        nets.encoder.apply(params["encoder"], o))
    sac_batch = {**batch, "obs": features(batch["obs"]),
                 "next_obs": features(batch["next_obs"]),
                 "reward": cfg.task_coef * batch["reward"] + cfg.intr_coef * r_intr}
    heads = ("actor", "critic", "log_alpha")
    sac_state = sac.State({g: params[g] for g in heads}, state.target_critic,
                          {g: opt_state[g] for g in heads}, state.iteration)
    sac_state, metrics = sac.learner_step(sac_state, sac_batch, k_sac, nets.sac, cfg)
    params.update(sac_state.params)
    opt_state.update(sac_state.opt_state)
    metrics.update({"loss/proto": p_loss, "proto/intr_reward": r_intr.mean(),
                    "proto/task_reward": batch["reward"].mean()})
    return State(params, sac_state.target_critic, target_encoder, target_projector,
                 opt_state, queue, queue_ptr, sac_state.iteration), metrics


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build Proto-RL's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.proto.Config, got {type(cfg).__name__}")
    nets = make_nets(cfg, env_spec)
    if cfg.reward_on == "obs" and nets.pixels:
        raise ValueError("Config.reward_on='obs' measures distances between states: "
                         "not with pixel observations (use 'embedding')")
    queue_dim = cfg.proto_dim if cfg.reward_on == "embedding" else math.prod(
        env_spec.obs_shape)

    def init(key):
        k_sac, k_enc, k_proj, k_pred, k_protos = jax.random.split(key, 5)
        obs = jnp.zeros(env_spec.obs_shape, jnp.dtype(env_spec.obs_dtype))
        encoder = nets.encoder.init(k_enc, obs)
        x = nets.encoder.apply(encoder, obs)
        projector = nets.projector.init(k_proj, x)
        z = nets.projector.apply(projector, x)
        params = sac.init_params(k_sac, nets.sac, nets.feature_spec, cfg)
        params.update(encoder=encoder, projector=projector,
                      predictor=nets.predictor.init(k_pred, z),
                      prototypes=normalize(jax.random.normal(
                          k_protos, (cfg.num_prototypes, cfg.proto_dim))))
        opt_state = {g: (nets.proto_adam if g in PROTO_GROUPS else nets.sac.adam).init(p)
                     for g, p in params.items()}
        return State(params, params["critic"], encoder, projector, opt_state,
                     jnp.zeros((cfg.queue_size, queue_dim), jnp.float32),
                     jnp.int32(0), jnp.int32(0))

    def act(state, obs, key, eval=False):
        x = nets.encoder.apply(state.params["encoder"], obs)
        return sac.policy(nets.sac, state.params, x, key, eval,
                          env_spec.action_space.shape), {}

    def update(state, batch: Transition, key):
        return learner_step(state, sac.to_policy_batch(batch, nets.sac), key, nets, cfg)

    return stateless(init, act, update, None)


SPEC = AlgoSpec(
    name="proto", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Box",),
    replay=replay,
    phases=PHASES,
)
