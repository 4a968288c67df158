"""Dreamer (v1): a recurrent state-space world model learned from replayed sequences,
and an actor and a value learned in its latent imagination (Hafner et al. 2020,
"Dream to Control", arXiv:1912.01603; reference code danijar/dreamer at 56d4d44,
``dreamer.py`` and ``models.py``). Every dense layer is initialised with Glorot uniform
(Keras' default, the reference's).

World model, trained on windows of ``sequence_length`` steps of one env:

    prior      p(s_t | s_{t−1}, a_{t−1}):  h_t = GRU(h_{t−1}, Dense([z_{t−1}, a_{t−1}])),
                                           z_t ~ N(μ, σ), σ = softplus(·) + 0.1
    posterior  q(s_t | h_t, e_t):          e_t = enc(o_t), z_t ~ N(μ, σ) from [h_t, e_t]
    loss       kl_scale · max(mean_{t,b} KL(q ‖ p), free_nats) − E[log p(o_t | s_t)]
               − E[log p(r | s)]          (unit-variance Gaussians; no KL balancing)

The KL is averaged over batch and time *before* the free-nats max (danijar/dreamer
#44), and flows into both prior and posterior.

Behaviour, from every posterior state of the batch as a start (held fixed): H =
``horizon`` imagined steps a_k = tanh-Normal sample (reparameterised) of
π(stop_gradient(feat(s_k))), s_{k+1} ~ prior(s_k, a_k), so the actor's gradient runs
through the dynamics, whose parameters stay fixed; the start is not part of the
imagined sequence (s_1 … s_H). With r̂_k = reward(s_k) and v̂_k = v(s_k) (means):

    V_λ(s_k) = r̂_k + γ[(1 − λ) v̂_{k+1} + λ V_λ(s_{k+1})],  V_λ(s_{H−1}) bootstrapped
               with v̂_H: purerl.ops.lambda_returns(r̂[:−1], γ, v̂, λ), H − 1 targets
    weights    w_k = γ^{k−1} (the cumulative discount, held constant)
    actor      −mean(w · V_λ)                      (no entropy term)
    value      −mean(w · log N(stop_gradient(V_λ); v(stop_gradient(feat)), 1))

The three losses are computed from the same parameters and applied by three Adam
optimisers with global-norm clipping (model 6e-4, actor and value 8e-5, clip 100; TF's
Adam epsilon 1e-7). The actor's mean is 5·tanh(μ/5) and its σ softplus(x +
softplus⁻¹(5)) + 1e-4. Collecting adds Gaussian noise of σ 0.3 to the sampled action,
clipped to [−1, 1]. The evaluation action is ``eval_action``: ``"mean"`` (the
default), tanh of the pre-tanh mean, deterministic; or ``"mode"``, the reference's
(``tools.SampleDist.mode``): the most likely of 100 samples of each env's own
distribution (the reference picks the index of env 0 for every env: the same with one
env, wrong with several). That estimate of the tanh-Normal's mode is biased towards
±1 once σ ≳ 0.7 (at μ = 0: mean |mode| 0.007 at σ = 0.6, 0.74 at σ = 0.8, 0.96 at
σ = 1), so early in training, where σ is near its initial value, the mode evaluates a
bang-bang policy the actor does not follow.

**Index convention** (what every replayed record means here). A loop record t is
``(o_t, a_t, r_t, o'_t)``: the agent saw o_t, took a_t and received r_t on arriving at
o'_t (the true next observation; the final one when the step ended an episode, and
then o_{t+1} is the next episode's first). The model filters each window as

    base_t = q(· | zero state, a_{t−1}, o_t)       if t = 0 (a_{t−1} = 0 at an episode start)
           = q(· | zero state, zero action, o_t)   if step t−1 ended an episode
           = post_t−1                              otherwise (post_{t−1} filtered o'_{t−1} = o_t)
    post_t = q(· | base_t, a_t, o'_t)

so base_t is the agent's state at o_t (where it acted, and where it acts in ``act``:
the same filter runs in the carry), post_t is the state the step arrives in, and the
reward r_t is predicted from post_t: the reward of a state is the reward received on
entering it, as in imagination (r̂_k = reward(s_k), s_k = prior(s_{k−1}, a_{k−1})).
o_t is reconstructed from base_t, every KL term of both filters is counted, and the
imagination starts from every base_t. Unlike the reference (which pads each episode
with a zero action and a zero reward before its first observation and learns to
predict them) no step is invented, and the reward of an episode's last step is kept
(its state, filtering the final observation, is never a start). Windows start from
the zero state with the real previous action a_{t−1} (zero where the window starts an
episode), as the reference's do: the replay samples one record more than
``sequence_length`` and the first gives only its action and whether it ended an
episode. Without a continuation head (the reference's
``pcont=False``, its setting for DMC) episodes are imagined as never terminating:
right for time limits, an approximation on envs that terminate.

Training rounds: the first round after the ``learning_starts`` prefill is an
ordinary one of ``updates_per_round`` updates. The reference runs ``pretrain`` (100)
updates at that point and then ``train_steps`` (100) every ``train_every``: the same
count with its defaults; a preset with fewer ``updates_per_round`` also pre-trains
less.

Observations: ``uint8`` ``[64, 64, C]`` frames (scaled to [−0.5, 0.5]) go through the
reference's conv encoder (4 convolutions, kernel 4, stride 2, depth 32·2^i, ReLU) and
transposed-conv decoder (``purerl.networks.conv_transpose2d``, fast gradients on CPU
inside the loop's scans); float state vectors through ELU MLPs of ``state_layers``
× ``units`` (the paper has no state-based model).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec
from purerl.algos.sac import is_pixels, tanh_gaussian_sample
from purerl.config import RunConfig, check_choice, check_range, config
from purerl.memory import Replay
from purerl.networks import ACTIVATIONS, MLP, ConvTranspose, conv_general, orthogonal
from purerl.ops import lambda_returns
from purerl.types import EnvSpec, Transition

# The reference's schedule in agent steps at its action repeat 2: 5000 prefill frames
# (2500 steps), 100 updates every 1000 frames (500 steps), 1M frames.
RUN = RunConfig(total_steps=500_000, num_envs=1, num_steps=500, num_evals=20,
                num_eval_envs=1)
_LOG_2PI = float(np.log(2.0 * np.pi))


@config
class Config:
    """Dreamer hyperparameters. Defaults: danijar/dreamer's ``define_config`` (56d4d44)."""

    batch_size: int = 50
    """Sequences per update."""
    sequence_length: int = 50
    """Steps per sequence."""
    updates_per_round: int = 100
    """Updates per training round (one round per RunConfig.num_envs * num_steps env
    steps; the reference's train_steps, the old name here, every train_every)."""
    _renamed = {"train_steps": "updates_per_round"}  # not a field: no annotation
    buffer_size: int = 1_000_000
    """Replay capacity in steps (per seed, all training envs together)."""
    learning_starts: int = 2500
    """Env steps of uniform random actions before the first update (prefill)."""
    gamma: float = 0.99
    """Discount of the imagined returns."""
    lam: float = 0.95
    """λ of the imagined λ-returns."""
    horizon: int = 15
    """Imagined steps from every start state."""
    reward_scale: float = 1.0
    """The loop multiplies rewards by this before the update."""
    deter_size: int = 200
    """Width of the RSSM's deterministic (GRU) state h."""
    stoch_size: int = 30
    """Width of the RSSM's stochastic state z."""
    hidden_size: int = 200
    """Width of the RSSM's hidden layers."""
    units: int = 400
    """Width of the reward, value, actor and state encoder/decoder layers."""
    reward_layers: int = 2
    """Hidden layers of the reward head."""
    value_layers: int = 3
    """Hidden layers of the value head."""
    actor_layers: int = 4
    """Hidden layers of the actor."""
    state_layers: int = 2
    """States only: hidden layers of the MLP encoder and decoder."""
    cnn_depth: int = 32
    """Pixels only: channels of the first convolution (doubled per layer)."""
    activation: str = "elu"
    """Activation of the dense layers (the convolutions use ReLU)."""
    min_std: float = 0.1
    """Floor of the RSSM's σ (softplus(·) + min_std)."""
    free_nats: float = 3.0
    """The KL term is max(mean KL, free_nats)."""
    kl_scale: float = 1.0
    """Weight of the KL term."""
    model_lr: float = 6e-4
    """Adam learning rate of the world model (encoder, RSSM, decoder, reward)."""
    actor_lr: float = 8e-5
    """Adam learning rate of the actor."""
    value_lr: float = 8e-5
    """Adam learning rate of the value head."""
    adam_eps: float = 1e-7
    """Adam's epsilon (TensorFlow's default, the reference's)."""
    grad_clip: float = 100.0
    """Global-norm clip of each of the three gradients."""
    expl_amount: float = 0.3
    """σ of the Gaussian noise added to actions when collecting (then clipped)."""
    init_std: float = 5.0
    """The actor's σ for a zero pre-activation."""
    mean_scale: float = 5.0
    """The actor's mean is mean_scale · tanh(μ / mean_scale)."""
    actor_min_std: float = 1e-4
    """Floor of the actor's σ."""
    actor_entropy: float = 0.0
    """Weight η of an entropy bonus in the actor loss, −η·mean log π(a|s) of the imagined
    actions (DreamerV2's regulariser, Hafner et al. 2021, arXiv:2010.02193). 0 is
    Dreamer v1, which has none."""
    eval_action: str = "mean"
    """Evaluation action: "mean" (tanh of the pre-tanh mean) or "mode" (the reference's:
    the most likely of mode_samples samples, biased towards ±1 at large σ)."""
    mode_samples: int = 100
    """Samples the evaluation policy's mode is picked from (eval_action "mode")."""

    def __post_init__(self):
        common.check_common_fields(self)
        check_choice(self, "eval_action", ("mean", "mode"))
        for name in ("batch_size", "sequence_length", "updates_per_round", "buffer_size",
                     "deter_size", "stoch_size", "hidden_size", "units", "cnn_depth",
                     "mode_samples"):
            check_range(self, name, 1)
        for name in ("learning_starts", "reward_layers", "value_layers", "actor_layers",
                     "state_layers", "free_nats", "kl_scale", "expl_amount",
                     "actor_entropy"):
            check_range(self, name, 0)
        # One λ-return target needs two imagined states.
        check_range(self, "horizon", 2)
        check_range(self, "lam", 0.0, 1.0)
        for name in ("model_lr", "actor_lr", "value_lr", "adam_eps", "grad_clip",
                     "init_std", "mean_scale", "min_std", "actor_min_std"):
            check_range(self, name, 0.0, low_open=True)


def replay(cfg: Config) -> Replay:
    """The loop's replay for Dreamer: windows of consecutive steps of one env, one
    step longer than ``sequence_length`` (the first step gives a_{t−1})."""
    return Replay(capacity=cfg.buffer_size, batch_size=cfg.batch_size,
                  updates=cfg.updates_per_round, learning_starts=cfg.learning_starts,
                  sequence_length=cfg.sequence_length + 1)


class Latent(NamedTuple):
    """An RSSM state: the stochastic part's distribution and sample, and h."""

    mean: jax.Array  # [..., stoch]
    std: jax.Array  # [..., stoch]
    stoch: jax.Array  # [..., stoch], a sample of N(mean, std)
    deter: jax.Array  # [..., deter]


def features(latent: Latent) -> jax.Array:
    """What the heads read: [z, h]."""
    return jnp.concatenate([latent.stoch, latent.deter], -1)


def zero_latent(lead: tuple, stoch_size: int, deter_size: int) -> Latent:
    z = jnp.zeros((*lead, stoch_size), jnp.float32)
    return Latent(z, z, z, jnp.zeros((*lead, deter_size), jnp.float32))


def gaussian_kl(p: Latent, q: Latent) -> jax.Array:
    """KL(N(p.mean, p.std) ‖ N(q.mean, q.std)) of diagonal Gaussians, summed over the
    last axis."""
    var_ratio = (p.std / q.std) ** 2
    mahalanobis = ((p.mean - q.mean) / q.std) ** 2
    return 0.5 * (var_ratio + mahalanobis - 1.0 - jnp.log(var_ratio)).sum(-1)


def kl_term(kl, free_nats, kl_scale):
    """kl_scale · max(mean(kl), free_nats): the mean over batch and time first, so
    the free nats bound the average, not each step (danijar/dreamer #44)."""
    return kl_scale * jnp.maximum(kl.mean(), free_nats)


def unit_gaussian_log_prob(x, mean):
    """log N(x; mean, 1) per entry."""
    return -0.5 * (x - mean) ** 2 - 0.5 * _LOG_2PI


_glorot = nn.initializers.xavier_uniform()  # Keras' default, the reference's


class RSSM(nn.Module):
    """The recurrent state-space model: ``img_step`` (prior) and ``obs_step``
    (posterior); ``__call__`` is ``obs_step`` (it creates every parameter)."""

    stoch_size: int
    deter_size: int
    hidden_size: int
    activation: str = "elu"
    min_std: float = 0.1

    def setup(self):
        self.img_in = nn.Dense(self.hidden_size, kernel_init=_glorot)
        # Keras' GRUCell (the reference's) applies the reset gate after the recurrent
        # matmul, as flax's does. Our orthogonal init: flax's QR-based one can
        # deadlock XLA:CPU under vmap (see purerl.networks.orthogonal).
        self.cell = nn.GRUCell(self.deter_size, kernel_init=_glorot,
                               recurrent_kernel_init=orthogonal())
        self.img_hidden = nn.Dense(self.hidden_size, kernel_init=_glorot)
        self.img_out = nn.Dense(2 * self.stoch_size, kernel_init=_glorot)
        self.obs_hidden = nn.Dense(self.hidden_size, kernel_init=_glorot)
        self.obs_out = nn.Dense(2 * self.stoch_size, kernel_init=_glorot)

    def _latent(self, x, deter, key):
        mean, raw = jnp.split(x, 2, axis=-1)
        std = jax.nn.softplus(raw) + self.min_std
        stoch = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
        return Latent(mean, std, stoch, deter)

    def img_step(self, prev: Latent, action, key) -> Latent:
        act = ACTIVATIONS[self.activation]
        x = act(self.img_in(jnp.concatenate([prev.stoch, action], -1)))
        deter, _ = self.cell(prev.deter, x)
        return self._latent(self.img_out(act(self.img_hidden(deter))), deter, key)

    def obs_step(self, prev: Latent, action, embed, key) -> tuple[Latent, Latent]:
        k_prior, k_post = jax.random.split(key)
        prior = self.img_step(prev, action, k_prior)
        act = ACTIVATIONS[self.activation]
        x = act(self.obs_hidden(jnp.concatenate([prior.deter, embed], -1)))
        return self._latent(self.obs_out(x), prior.deter, k_post), prior

    def __call__(self, prev, action, embed, key):
        return self.obs_step(prev, action, embed, key)


class PixelEncoder(nn.Module):
    """``[..., 64, 64, C]`` frames (already scaled) -> ``[..., 32 · depth]``."""

    depth: int = 32

    @nn.compact
    def __call__(self, x):
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        for i in range(4):
            x = nn.relu(nn.Conv(self.depth * 2**i, (4, 4), strides=2, padding="VALID",
                                kernel_init=_glorot, conv_general_dilated=conv_general)(x))
        return x.reshape(*lead, -1)


class PixelDecoder(nn.Module):
    """Features -> the mean of ``[..., 64, 64, channels]`` frames (Dense to 32 · depth
    at 1×1, then transposed convolutions 5, 5, 6, 6 with stride 2)."""

    depth: int = 32
    channels: int = 3

    @nn.compact
    def __call__(self, feat):
        lead = feat.shape[:-1]
        x = nn.Dense(32 * self.depth, kernel_init=_glorot)(feat).reshape(-1, 1, 1, 32 * self.depth)
        layers = ((4 * self.depth, 5), (2 * self.depth, 5), (self.depth, 6), (self.channels, 6))
        for i, (width, kernel) in enumerate(layers):
            x = ConvTranspose(width, kernel, 2)(x)
            x = nn.relu(x) if i < len(layers) - 1 else x
        return x.reshape(*lead, *x.shape[1:])


class Nets(NamedTuple):
    rssm: RSSM
    encoder: nn.Module
    decoder: nn.Module
    reward: MLP
    value: MLP
    actor: MLP
    pixels: bool
    obs_shape: tuple
    low: jax.Array  # [action_dim] env bounds, flat
    high: jax.Array
    action_dim: int
    model_opt: optax.GradientTransformation
    actor_opt: optax.GradientTransformation
    value_opt: optax.GradientTransformation


def make_nets(cfg: Config, env_spec: EnvSpec) -> Nets:
    """Dreamer's modules and optimisers for ``env_spec``; clear errors for what it
    cannot observe or act in."""
    space = env_spec.action_space
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError("Dreamer needs finite Box action bounds (actions are tanh-squashed)")
    pixels = is_pixels(env_spec)
    obs_shape = tuple(env_spec.obs_shape)
    if pixels:
        if obs_shape[:2] != (64, 64):
            raise ValueError(f"Dreamer's conv decoder draws 64x64 frames, the env observes "
                             f"{obs_shape[0]}x{obs_shape[1]}: render at image_size 64")
        encoder, decoder = PixelEncoder(cfg.cnn_depth), PixelDecoder(cfg.cnn_depth, obs_shape[2])
    elif env_spec.obs_dtype == "uint8":
        raise ValueError(f"Dreamer reads float state vectors or uint8 [64, 64, C] frames, "
                         f"not uint8 observations shaped {obs_shape}")
    else:
        hidden = (cfg.units,) * cfg.state_layers
        encoder = MLP(hidden, cfg.units, cfg.activation, kernel_init=_glorot)
        decoder = MLP(hidden, int(np.prod(obs_shape)), cfg.activation, kernel_init=_glorot)
    head = lambda layers, out: MLP((cfg.units,) * layers, out, cfg.activation,  # noqa: E731
                                   kernel_init=_glorot)
    action_dim = int(np.prod(space.shape))
    bound = lambda b: jnp.asarray(b, jnp.float32).reshape(-1)  # noqa: E731 - flat tuples
    opt = lambda lr: optax.chain(optax.clip_by_global_norm(cfg.grad_clip),  # noqa: E731
                                 optax.adam(lr, eps=cfg.adam_eps))
    return Nets(RSSM(cfg.stoch_size, cfg.deter_size, cfg.hidden_size, cfg.activation,
                     cfg.min_std),
                encoder, decoder, head(cfg.reward_layers, 1), head(cfg.value_layers, 1),
                head(cfg.actor_layers, 2 * action_dim), pixels, obs_shape,
                bound(space.low), bound(space.high), action_dim,
                opt(cfg.model_lr), opt(cfg.actor_lr), opt(cfg.value_lr))


def preprocess(nets: Nets, obs):
    """Observations as the model reads and reconstructs them: frames in [−0.5, 0.5]."""
    if nets.pixels:
        return obs.astype(jnp.float32) / 255.0 - 0.5
    return obs.astype(jnp.float32).reshape(*obs.shape[: obs.ndim - len(nets.obs_shape)], -1)


def embed(nets: Nets, model, obs):
    return nets.encoder.apply(model["encoder"], preprocess(nets, obs))


def decode(nets: Nets, model, feat):
    """The mean of p(o | s), shaped as ``preprocess``'s output."""
    return nets.decoder.apply(model["decoder"], feat)


def reward_mean(nets: Nets, model, feat):
    return nets.reward.apply(model["reward"], feat)[..., 0]


def img_step(nets: Nets, model, prev, action, key) -> Latent:
    return nets.rssm.apply(model["rssm"], prev, action, key, method="img_step")


def obs_step(nets: Nets, model, prev, action, e, key) -> tuple[Latent, Latent]:
    return nets.rssm.apply(model["rssm"], prev, action, e, key, method="obs_step")


def actor_dist(nets: Nets, actor, feat, cfg: Config):
    """The pre-tanh Normal's mean 5·tanh(μ/5) and σ softplus(x + softplus⁻¹(5)) + 1e-4."""
    mean, raw = jnp.split(nets.actor.apply(actor, feat), 2, axis=-1)
    mean = cfg.mean_scale * jnp.tanh(mean / cfg.mean_scale)
    raw_init = jnp.log(jnp.expm1(cfg.init_std))
    return mean, jax.nn.softplus(raw + raw_init) + cfg.actor_min_std


def sample_action(mean, std, key):
    """A reparameterised tanh-Normal sample in [−1, 1] and its log-probability."""
    return tanh_gaussian_sample(mean, jnp.log(std), key)


def action_mode(mean, std, key, num_samples: int):
    """The most likely of ``num_samples`` samples, per batch element."""
    a, logp = jax.vmap(sample_action, in_axes=(None, None, 0))(
        mean, std, jax.random.split(key, num_samples))  # [S, ..., A], [S, ...]
    best = jnp.argmax(logp, axis=0)
    return jnp.take_along_axis(a, best[None, ..., None], axis=0)[0]


def to_sequences(batch: Transition, nets: Nets) -> dict:
    """Replayed windows ``[L + 1, B]`` -> the ``[L, B]`` the world model reads (see
    the module's index convention): steps 1 … L, ``reset`` True at their first step
    and after a step that ended an episode, ``init_action`` the previous action each
    reset filter takes (step 0's action at the window's start unless step 0 ended an
    episode, zero elsewhere); actions back in [−1, 1], flat."""
    done = batch.terminated | batch.truncated
    reset = done[:-1].at[0].set(True)
    action = batch.action.reshape(*batch.reward.shape, -1)
    action = 2.0 * (action - nets.low) / (nets.high - nets.low) - 1.0
    init_action = jnp.zeros_like(action[1:]).at[0].set(action[0] * ~done[0, :, None])
    return {"obs": batch.obs[1:], "next_obs": batch.next_obs[1:],
            "reward": batch.reward[1:], "action": action[1:], "reset": reset,
            "init_action": init_action}


def observe(nets: Nets, model, seq: dict, key):
    """Filter windows: ``(base, post, prior, init_post, init_prior)``, each a Latent
    ``[L, B]``. ``init_*`` is the filter of o_t from the zero state (used where
    ``reset``), ``base`` the state at o_t, ``post``/``prior`` those of o'_t after a_t."""
    length, batch = seq["reset"].shape
    cfg_sizes = (nets.rssm.stoch_size, nets.rssm.deter_size)
    k_init, k_scan = jax.random.split(key)
    e, e_next = embed(nets, model, seq["obs"]), embed(nets, model, seq["next_obs"])
    init_post, init_prior = obs_step(
        nets, model, zero_latent((length, batch), *cfg_sizes), seq["init_action"], e,
        k_init)

    def step(prev_post, xs):
        reset, init, action, e_next, key = xs
        base = jax.tree.map(lambda i, p: jnp.where(reset[:, None], i, p), init, prev_post)
        post, prior = obs_step(nets, model, base, action, e_next, key)
        return post, (base, post, prior)

    _, (base, post, prior) = jax.lax.scan(
        step, zero_latent((batch,), *cfg_sizes),
        (seq["reset"], init_post, seq["action"], e_next, jax.random.split(k_scan, length)))
    return base, post, prior, init_post, init_prior


def world_model_loss(model, seq: dict, key, nets: Nets, cfg: Config):
    """kl_scale · max(mean KL, free_nats) − mean log p(o_t | base_t) − mean log
    p(r_t | post_t); returns ``(loss, (base states, metrics))``."""
    base, post, prior, init_post, init_prior = observe(nets, model, seq, key)
    kl = gaussian_kl(post, prior) + seq["reset"] * gaussian_kl(init_post, init_prior)
    kl_mean = kl.mean()
    target = preprocess(nets, seq["obs"])
    obs_axes = tuple(range(2, target.ndim))
    obs_ll = unit_gaussian_log_prob(target, decode(nets, model, features(base))).sum(obs_axes).mean()
    reward_ll = unit_gaussian_log_prob(seq["reward"], reward_mean(nets, model, features(post))).mean()
    loss = kl_term(kl, cfg.free_nats, cfg.kl_scale) - obs_ll - reward_ll
    metrics = {"loss/model": loss, "dreamer/kl": kl_mean, "dreamer/obs_log_prob": obs_ll,
               "dreamer/reward_log_prob": reward_ll,
               "dreamer/post_std": post.std.mean(), "dreamer/prior_std": prior.std.mean()}
    return loss, (base, metrics)


def imagine(nets: Nets, model, actor, start: Latent, key, cfg: Config):
    """``(feats [H, N, F], log_probs [H, N])``: the features of s_1 … s_H imagined from
    ``start`` (``[N]``) with reparameterised actions of π(stop_gradient(feat)), and the
    log-probability of each action a_0 … a_{H−1}."""

    def step(latent, key):
        k_action, k_state = jax.random.split(key)
        mean, std = actor_dist(nets, actor, jax.lax.stop_gradient(features(latent)), cfg)
        action, log_prob = sample_action(mean, std, k_action)
        latent = img_step(nets, model, latent, action, k_state)
        return latent, (features(latent), log_prob)

    return jax.lax.scan(step, start, jax.random.split(key, cfg.horizon))[1]


def imagined_returns(nets: Nets, model, value, feats, gamma, lam):
    """V_λ of s_1 … s_{H−1} and the weights [1, γ, …, γ^{H−2}] (held constant)."""
    reward = reward_mean(nets, model, feats)
    v = nets.value.apply(value, feats)[..., 0]
    discount = jnp.full_like(reward[:-1], gamma)
    returns = lambda_returns(reward[:-1], discount, v, lam)
    weights = jnp.cumprod(jnp.concatenate([jnp.ones_like(discount[:1]), discount[:-1]]), 0)
    return returns, jax.lax.stop_gradient(weights)


def actor_loss(actor, params, start: Latent, key, nets: Nets, cfg: Config):
    """−mean(w · V_λ) (+ η · mean log π) over imagined trajectories; returns
    ``(loss, (feats, V_λ, w, mean log π))``."""
    feats, log_probs = imagine(nets, params["model"], actor, start, key, cfg)
    returns, weights = imagined_returns(nets, params["model"], params["value"], feats,
                                        cfg.gamma, cfg.lam)
    loss = -(weights * returns).mean() + cfg.actor_entropy * log_probs.mean()
    return loss, (feats, returns, weights, log_probs.mean())


def value_loss(value, feats, returns, weights, nets: Nets):
    """−mean(w · log N(V_λ; v(s), 1)) on s_1 … s_{H−1}, features and targets fixed."""
    v = nets.value.apply(value, jax.lax.stop_gradient(feats[:-1]))[..., 0]
    return -(weights * unit_gaussian_log_prob(jax.lax.stop_gradient(returns), v)).mean()


class State(NamedTuple):
    params: dict  # {"model": {"encoder", "rssm", "decoder", "reward"}, "actor", "value"}
    opt_state: dict  # one optimiser state per group
    iteration: jax.Array  # int32, updates done


def _apply(opt, params, opt_state, grads):
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def learner_step(state: State, seq: dict, key, nets: Nets, cfg: Config):
    """One Dreamer update: the three gradients from the same parameters, then three
    clipped Adam steps. ``(state, metrics)``."""
    params = state.params
    k_model, k_imagine = jax.random.split(key)
    (m_loss, (base, metrics)), g_model = jax.value_and_grad(world_model_loss, has_aux=True)(
        params["model"], seq, k_model, nets, cfg)
    start = jax.tree.map(lambda x: jax.lax.stop_gradient(x.reshape(-1, x.shape[-1])), base)
    (a_loss, (feats, returns, weights, log_prob)), g_actor = jax.value_and_grad(
        actor_loss, has_aux=True)(params["actor"], params, start, k_imagine, nets, cfg)
    v_loss, g_value = jax.value_and_grad(value_loss)(params["value"], feats, returns,
                                                     weights, nets)
    new_params, new_opt = {}, {}
    for name, opt, grads in (("model", nets.model_opt, g_model),
                             ("actor", nets.actor_opt, g_actor),
                             ("value", nets.value_opt, g_value)):
        new_params[name], new_opt[name] = _apply(opt, params[name], state.opt_state[name], grads)
        metrics[f"dreamer/{name}_grad_norm"] = optax.tree.norm(grads)
    metrics.update({"loss/actor": a_loss, "loss/value": v_loss,
                    "dreamer/imagined_return": returns.mean(),
                    # High when the tanh saturates (its Jacobian term grows without bound).
                    "dreamer/action_log_prob": log_prob})
    return State(new_params, new_opt, state.iteration + 1), metrics


def init_params(key, nets: Nets, env_spec: EnvSpec, cfg: Config) -> dict:
    keys = jax.random.split(key, 7)
    obs = jnp.zeros((1, *env_spec.obs_shape), jnp.dtype(env_spec.obs_dtype))
    model = {"encoder": nets.encoder.init(keys[0], preprocess(nets, obs))}
    e = embed(nets, model, obs)
    latent = zero_latent((1,), cfg.stoch_size, cfg.deter_size)
    action = jnp.zeros((1, nets.action_dim), jnp.float32)
    model["rssm"] = nets.rssm.init(keys[1], latent, action, e, keys[2])
    feat = features(latent)
    model["decoder"] = nets.decoder.init(keys[3], feat)
    model["reward"] = nets.reward.init(keys[4], feat)
    return {"model": model, "actor": nets.actor.init(keys[5], feat),
            "value": nets.value.init(keys[6], feat)}


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build Dreamer's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.dreamer.Config, got {type(cfg).__name__}")
    nets = make_nets(cfg, env_spec)
    action_shape = env_spec.action_space.shape

    def init(key):
        params = init_params(key, nets, env_spec, cfg)
        opt_state = {"model": nets.model_opt.init(params["model"]),
                     "actor": nets.actor_opt.init(params["actor"]),
                     "value": nets.value_opt.init(params["value"])}
        return State(params, opt_state, jnp.int32(0))

    def init_carry(num_envs):
        # The filter's state at the last observation and the action taken there.
        return (zero_latent((num_envs,), cfg.stoch_size, cfg.deter_size),
                jnp.zeros((num_envs, nets.action_dim), jnp.float32))

    def act(state, carry, obs, first, key, eval=False):
        latent, prev_action = carry
        keep = (~first)[:, None].astype(jnp.float32)  # a new episode starts from zero
        latent = jax.tree.map(lambda x: x * keep, latent)
        k_filter, k_action, k_noise = jax.random.split(key, 3)
        model = state.params["model"]
        latent, _ = obs_step(nets, model, latent, prev_action * keep, embed(nets, model, obs),
                             k_filter)
        mean, std = actor_dist(nets, state.params["actor"], features(latent), cfg)
        if eval and cfg.eval_action == "mode":
            a = action_mode(mean, std, k_action, cfg.mode_samples)
        elif eval:
            a = jnp.tanh(mean)
        else:
            a = sample_action(mean, std, k_action)[0]
            noise = cfg.expl_amount * jax.random.normal(k_noise, a.shape, a.dtype)
            a = jnp.clip(a + noise, -1.0, 1.0)
        action = nets.low + 0.5 * (a + 1.0) * (nets.high - nets.low)
        return action.reshape(*a.shape[:-1], *action_shape), (latent, a), {}

    def update(state, batch: Transition, key):
        return learner_step(state, to_sequences(batch, nets), key, nets, cfg)

    return Agent(init=init, act=act, update=update, value=None, init_carry=init_carry)


SPEC = AlgoSpec(
    name="dreamer", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Box",),
    replay=replay,
)
