"""State Marginal Matching (Lee, Eysenbach, Parisotto, Xing, Levine & Salakhutdinov
2019, "Efficient Exploration via State Marginal Matching", arXiv:1906.05274; code
``RLAgent/state-marginal-matching``, and URLB's re-implementation
``rll-research/url_benchmark`` ``agent/smm.py`` at bb98f0c).

SMM minimises KL(ρ_π(s) ‖ p*(s)) = −H_π[s] − E_ρπ[log p*(s)], a game between the
policy and a density model q of its states, played with skills z (paper eq. 3):

    r_z(s) = log p*(s) − log q(s | z) + log d(z | s) − log p(z)

on top of SAC (``purerl.algos.sac``'s module-level losses and learner step; nothing
of SAC is copied here):

* **q**: a VAE over ``[s, one_hot(z)]`` (MLP encoder and decoder, a Gaussian code),
  loss ``β · KL(code ‖ N(0, I)) + mean squared reconstruction error``, and as
  log-density proxy ``log q ≈ −‖x − x̂‖²`` with one sampled code (both as the reference
  code). It is fitted to replay samples, i.e. to the states of *all past* policies:
  the fictitious-play (historical-average) player of the paper's game.
* **d(z | s)**: a skill discriminator (MLP, cross-entropy) over ``num_skills`` skills
  with a uniform p(z), so ``−log p(z) = log num_skills``. One skill: no discriminator,
  and both skill terms are 0.
* **Sign of the discriminator term.** The paper has ``+log d(z|s)``; the reference code
  (and URLB) *adds the cross-entropy*, i.e. ``−log d(z|s)`` (url_benchmark issue #29).
  ``discriminator_sign="paper"`` (default) or ``"code"``.
* **p***: a function of the state, chosen by name from ``TARGETS``: ``"uniform"``
  (``log p* = 0``, uniform up to a constant, which no reward needs) or ``"corridor"``
  (the maze's corridor target, ``purerl.envs.maze.target_masses``). Add your own
  density as ``TARGETS[name] = lambda env_spec: (lambda obs: log_p)``.
* **Skills in the carry**: ``z`` is drawn uniformly when an episode starts (``first``),
  held in the per-env carry for the episode, fed to the actor and critics as a one-hot
  beside the observation (or the conv feature, on pixels), and stored in the replay
  (``extras["skill"]``) so that every update scores a transition with its own skill.
* **Historical averaging at test time**: ``history_size`` snapshots of the actor, one
  written every ``history_every`` updates into a ring; with
  ``eval_policy="mixture"`` each evaluation episode draws one of the stored snapshots
  uniformly (or keeps the current policy with probability ``history_current_prob``;
  the reference: 0.1), ``eval_policy="last"`` evaluates the current policy alone;
  ``eval_sample`` samples the evaluation actions (the paper's test of the state
  marginal) instead of taking the mode.

**SAC is not the reference's.** The reference trains with rlkit's SAC v1 (a state-value
network V beside the twin Q, ``soft_target_tau`` 0.001, reward scale 1 against a fixed
entropy weight: α = 1, no tuning; ``configs/default.py`` at 94b2942). purerl's SAC is
v2 (no V, twin Q targets), with α tuned to the target entropy −|A| by default and the
maze preset's τ 0.01 and initial α 0.1 (Proto's maze settings, so that the arms of
``benchmarks/run_exploration.py`` differ by their reward). ``--autotune-alpha false
--init-alpha 1 --tau 0.001`` is the reference's temperature and target rate (arm
``smm_fixed_alpha``); the V-network is not offered. The weight of the action entropy
against r_z sets how random the visiting policy is, and so its recent-visit entropy.

The intrinsic reward scores the state a transition reaches (``next_obs``), with the
density model and discriminator from the same pass as their losses (before their
step, as URLB); URLB scores ``obs``. SAC learns from
``task_coef · r_task + intr_coef · r_intr``. ``PHASES``: pre-training on ``r_intr``,
fine-tuning on the task reward alone from the pre-trained snapshot (density model and
discriminator frozen and, with ``intr_coef = 0``, not run), skills still drawn per
episode (what URLB's fine-tuning ends up doing). On pixels DrQ's conv encoder is
trained by the critic (as SAC's) and the VAE and discriminator read its feature under
``stop_gradient`` (URLB's choice with skills).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from purerl.algos import sac
from purerl.algos.base import Agent, AlgoSpec
from purerl.config import RunConfig, check_choice, check_range, config, is_concrete
from purerl.memory import Replay
from purerl.networks import MLP, ConvEncoder
from purerl.ops import random_shift
from purerl.snapshot import Phase
from purerl.types import EnvSpec, Transition

RUN = RunConfig(total_steps=100_000, num_envs=1, num_steps=1, num_evals=10)
DENSITY_GROUPS = ("vae", "discriminator")
PHASES = {
    "pretrain": Phase(config={"task_coef": 0.0, "intr_coef": 1.0}),
    "finetune": Phase(config={"task_coef": 1.0, "intr_coef": 0.0}, from_snapshot=True,
                      freeze=DENSITY_GROUPS),
}


def _uniform_target(env_spec):
    return lambda obs: jnp.zeros(obs.shape[:obs.ndim - len(env_spec.obs_shape)])


def _corridor_target(env_spec):
    from purerl.envs.maze import log_target

    if sac.is_pixels(env_spec):
        raise ValueError("SMM target 'corridor' is a density over maze positions; "
                         "pixel observations need target='uniform'")
    return log_target(env_spec.name, "corridor")


TARGETS = {"uniform": _uniform_target, "corridor": _corridor_target}


@config
class Config(sac.Config):
    """SMM hyperparameters: SAC's fields (the reference's SAC settings where they
    differ from SAC's defaults) and the density model's, discriminator's and
    reward's (the reference's ``configs/smm_manipulation.json`` and URLB's smm.yaml)."""

    batch_size: int = 128
    """Transitions per gradient step (the reference: 128)."""
    hidden_sizes: tuple = (300, 300)
    """Hidden layer widths of the actor and of each critic (the reference: 300 × 2)."""
    task_coef: float = 0.0
    """Weight of the env's reward (pre-training 0; fine-tuning 1)."""
    intr_coef: float = 1.0
    """Weight of the intrinsic reward r_z (pre-training 1; fine-tuning 0)."""
    num_skills: int = 4
    """Number of skills z, drawn uniformly per episode (4)."""
    vae_hidden: tuple = (150, 150)
    """Hidden widths of the VAE's encoder and of its decoder (150 × 2)."""
    vae_code_dim: int = 128
    """Width of the VAE's Gaussian code (128)."""
    vae_beta: float = 0.5
    """Weight β of the VAE's KL term (0.5)."""
    vae_lr: float = 1e-2
    """Adam learning rate of the VAE (the reference's SMM config: 1e-2)."""
    discriminator_hidden: tuple = (300, 300)
    """Hidden widths of the skill discriminator d(z|s) (300 × 2)."""
    discriminator_lr: float = 1e-3
    """Adam learning rate of the discriminator (1e-3)."""
    discriminator_sign: str = "paper"
    """'paper': + log d(z|s) (eq. 3); 'code': − log d(z|s), as the reference code and
    URLB add the cross-entropy."""
    target: str = "uniform"
    """The target density p*, a name in ``smm.TARGETS`` ('uniform', 'corridor')."""
    target_coef: float = 1.0
    """Weight of log p*(s)."""
    state_ent_coef: float = 1.0
    """Weight of −log q(s|z) (state entropy)."""
    latent_ent_coef: float = 1.0
    """Weight of −log p(z) = log num_skills (skill entropy)."""
    latent_cond_ent_coef: float = 1.0
    """Weight of ± log d(z|s) (skill-conditional entropy)."""
    history_size: int = 10
    """Actor snapshots kept for historical averaging (the reference keeps 10)."""
    history_every: int = 1000
    """Updates between two snapshots (the reference saves one per 1000-step epoch)."""
    eval_policy: str = "last"
    """Evaluation: 'last' (the current policy) or 'mixture' (a stored snapshot drawn
    uniformly per episode: historical averaging)."""
    history_current_prob: float = 0.0
    """'mixture': probability that an episode keeps the current policy instead (the
    reference: 0.1)."""
    eval_sample: bool = False
    """Evaluation samples actions instead of taking the mode: the paper's test of the
    state marginal runs the stochastic (mixture) policy."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("num_skills", "vae_code_dim", "history_size", "history_every"):
            check_range(self, name, 1)
        for name in ("task_coef", "intr_coef", "vae_beta", "target_coef",
                     "state_ent_coef", "latent_ent_coef", "latent_cond_ent_coef"):
            check_range(self, name, 0.0)
        for name in ("vae_lr", "discriminator_lr"):
            check_range(self, name, 0.0, low_open=True)
        check_range(self, "history_current_prob", 0.0, 1.0)
        check_choice(self, "discriminator_sign", ("paper", "code"))
        check_choice(self, "eval_policy", ("last", "mixture"))
        check_choice(self, "target", tuple(TARGETS))


def replay(cfg: Config) -> Replay:
    """The loop's replay for SMM: SAC's (flat transitions; the skill rides in extras)."""
    return sac.replay(cfg)


class State(NamedTuple):
    # {"actor", "critic", "log_alpha", "encoder", "vae", "discriminator"}
    params: dict
    target_critic: dict
    opt_state: dict  # one Adam state per group
    history: dict  # the actor's parameters, stacked [history_size, ...]: the ring
    history_count: jax.Array  # int32, snapshots written so far
    iteration: jax.Array  # int32, gradient steps done


class SkillEncoder(nn.Module):
    """What SAC's heads read: ``[feature(obs), one_hot(z)]``, the feature being DrQ's
    conv encoder on pixels and the float observation on states."""

    pixels: bool

    def setup(self):
        if self.pixels:
            self.conv = ConvEncoder()

    def feature(self, obs):
        return self.conv(obs) if self.pixels else obs.astype(jnp.float32)

    def __call__(self, inputs):
        obs, skill = inputs
        return jnp.concatenate([self.feature(obs), skill], axis=-1)


class VAE(nn.Module):
    """x -> (x̂, μ, log σ²): MLP encoder to a Gaussian code, one reparameterised
    sample ``μ + σ·eps``, MLP decoder back to x."""

    hidden: tuple
    code_dim: int

    @nn.compact
    def __call__(self, x, eps):
        stats = MLP(self.hidden, 2 * self.code_dim, "relu")(x)
        mu, logvar = jnp.split(stats, 2, axis=-1)
        code = mu + jnp.exp(0.5 * logvar) * eps
        return MLP(self.hidden, x.shape[-1], "relu")(code), mu, logvar


class Nets(NamedTuple):
    sac: sac.Nets  # heads on [feature, one_hot(z)]; sac.encoder is the SkillEncoder
    heads_spec: EnvSpec  # the flat input the heads read
    vae: VAE
    discriminator: MLP | None  # None with one skill
    vae_adam: optax.GradientTransformation
    discriminator_adam: optax.GradientTransformation
    log_target: object  # obs -> log p*(obs)
    num_skills: int
    pixels: bool


def make_nets(cfg: Config, env_spec: EnvSpec) -> Nets:
    pixels = sac.is_pixels(env_spec)
    if not pixels and len(env_spec.obs_shape) != 1:
        raise ValueError(f"SMM on states needs flat observations, got shape "
                         f"{env_spec.obs_shape}")
    encoder = SkillEncoder(pixels)
    obs = jnp.zeros(env_spec.obs_shape, jnp.dtype(env_spec.obs_dtype))
    skill = jnp.zeros(cfg.num_skills, jnp.float32)
    x = jax.eval_shape(lambda o, z: encoder.init_with_output(jax.random.key(0), (o, z))[0],
                       obs, skill)
    heads_spec = EnvSpec((int(x.shape[-1]),), "float32", env_spec.action_space,
                         env_spec.max_episode_steps, env_spec.name)
    # Flat heads (trunks on pixels, as SAC's), reading through the skill encoder.
    heads = sac.make_nets(cfg, heads_spec, trunk=pixels)._replace(encoder=encoder)
    disc = (MLP(cfg.discriminator_hidden, cfg.num_skills, "relu")
            if cfg.num_skills > 1 else None)
    return Nets(heads, heads_spec, VAE(cfg.vae_hidden, cfg.vae_code_dim), disc,
                optax.adam(cfg.vae_lr), optax.adam(cfg.discriminator_lr),
                TARGETS[cfg.target](env_spec), cfg.num_skills, pixels)


def vae_loss(vae_params, x, key, nets: Nets, beta):
    """β · KL(N(μ, σ²) ‖ N(0, I)) (summed over the code, mean over the batch) + the mean
    squared reconstruction error; returns ``(loss, log q)``, ``log q = −‖x − x̂‖²``."""
    eps = jax.random.normal(key, (*x.shape[:-1], nets.vae.code_dim))
    recon, mu, logvar = nets.vae.apply(vae_params, x, eps)
    kl = -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1).mean()
    sq = (x - recon) ** 2
    return beta * kl + sq.mean(), -sq.sum(-1)


def discriminator_loss(disc_params, feature, skill, nets: Nets):
    """Cross-entropy of d(·|s) against the skill; returns ``(loss, log d(z|s))``."""
    logits = nets.discriminator.apply(disc_params, feature)
    log_d = jnp.take_along_axis(jax.nn.log_softmax(logits), skill[..., None], -1)[..., 0]
    return -log_d.mean(), log_d


def intrinsic_reward(log_p_star, log_q, log_d, num_skills, cfg: Config):
    """r_z(s) = c_* log p*(s) − c_s log q(s|z) ± c_c log d(z|s) − c_l log p(z), with
    p(z) = 1/num_skills and the discriminator term's sign per
    ``cfg.discriminator_sign`` (paper: +). With one skill both skill terms are 0."""
    sign = 1.0 if cfg.discriminator_sign == "paper" else -1.0
    skill_terms = 0.0
    if num_skills > 1:
        skill_terms = (sign * cfg.latent_cond_ent_coef * log_d
                       + cfg.latent_ent_coef * jnp.log(float(num_skills)))
    return cfg.target_coef * log_p_star - cfg.state_ent_coef * log_q + skill_terms


def learner_step(state: State, batch, key, nets: Nets, cfg: Config):
    """One SMM update: the density model's and the discriminator's steps and the
    intrinsic reward of ``next_obs``, then SAC's learner step on ``[obs, z]``, then the
    snapshot ring. ``batch`` as ``sac.to_policy_batch`` makes it, plus ``skill``."""
    k_shift, k_vae, k_sac = jax.random.split(key, 3)
    if nets.pixels:  # one shift for the density model and SAC (DrQ)
        k_obs, k_next = jax.random.split(k_shift)
        batch = {**batch, "obs": random_shift(k_obs, batch["obs"], cfg.augment_pad),
                 "next_obs": random_shift(k_next, batch["next_obs"], cfg.augment_pad)}
    params, opt_state = dict(state.params), dict(state.opt_state)
    skill = batch["skill"]
    one_hot = jax.nn.one_hot(skill, nets.num_skills)
    metrics = {}
    r_intr = jnp.zeros_like(batch["reward"])
    # With a concrete zero weight (fine-tuning) the density model is not even run.
    if not (is_concrete(cfg.intr_coef) and cfg.intr_coef == 0.0):
        feature = jax.lax.stop_gradient(nets.sac.encoder.apply(
            params["encoder"], batch["next_obs"], method=SkillEncoder.feature))
        (v_loss, log_q), g = jax.value_and_grad(vae_loss, has_aux=True)(
            params["vae"], jnp.concatenate([feature, one_hot], -1), k_vae, nets,
            cfg.vae_beta)
        updates, opt_state["vae"] = nets.vae_adam.update(g, opt_state["vae"])
        params["vae"] = optax.apply_updates(params["vae"], updates)
        log_d = jnp.zeros_like(log_q)
        if nets.discriminator is not None:
            (d_loss, log_d), g = jax.value_and_grad(discriminator_loss, has_aux=True)(
                params["discriminator"], feature, skill, nets)
            updates, opt_state["discriminator"] = nets.discriminator_adam.update(
                g, opt_state["discriminator"])
            params["discriminator"] = optax.apply_updates(params["discriminator"],
                                                          updates)
            metrics.update({"loss/discriminator": d_loss,  # share of d(z|s) > 1/2
                            "smm/discriminator_confident": jnp.mean(log_d > jnp.log(0.5))})
        log_p_star = nets.log_target(batch["next_obs"])  # pixels: 'uniform' only, zeros
        r_intr = intrinsic_reward(log_p_star, jax.lax.stop_gradient(log_q),
                                  jax.lax.stop_gradient(log_d), nets.num_skills, cfg)
        metrics.update({"loss/vae": v_loss, "smm/log_q": log_q.mean(),
                        "smm/log_target": log_p_star.mean()})
    sac_batch = {**batch, "obs": (batch["obs"], one_hot),
                 "next_obs": (batch["next_obs"], one_hot),
                 "reward": cfg.task_coef * batch["reward"] + cfg.intr_coef * r_intr}
    sac_batch.pop("skill")
    heads = ("actor", "critic", "log_alpha", "encoder")
    sac_state = sac.State({g: params[g] for g in heads}, state.target_critic,
                          {g: opt_state[g] for g in heads}, state.iteration)
    sac_state, sac_metrics = sac.learner_step(sac_state, sac_batch, k_sac, nets.sac, cfg)
    params.update(sac_state.params)
    opt_state.update(sac_state.opt_state)
    history, count = remember(state.history, state.history_count, params["actor"],
                              sac_state.iteration % cfg.history_every == 0)
    metrics.update(sac_metrics)
    metrics.update({"smm/intr_reward": r_intr.mean(),
                    "smm/task_reward": batch["reward"].mean()})
    return State(params, sac_state.target_critic, opt_state, history, count,
                 sac_state.iteration), metrics


def remember(history, count, actor, write):
    """Write ``actor`` into the ring at ``count % size`` where ``write``; a select of
    one slot, so no copy of the ring."""
    size = jax.tree.leaves(history)[0].shape[0]
    slot = count % size
    history = jax.tree.map(lambda ring, a: ring.at[slot].set(
        jnp.where(write, a, ring[slot])), history, actor)
    return history, count + write.astype(jnp.int32)


def draw_policy(state: State, key, num_envs, cfg: Config):
    """Per env, the snapshot an evaluation episode uses: a uniform index over the
    snapshots stored, or −1 (the current policy) with ``history_current_prob`` or
    while none is stored."""
    k_keep, k_idx = jax.random.split(key)
    stored = jnp.minimum(state.history_count, cfg.history_size)
    idx = jax.random.randint(k_idx, (num_envs,), 0, jnp.maximum(stored, 1))
    keep = jax.random.uniform(k_keep, (num_envs,)) < cfg.history_current_prob
    return jnp.where(keep | (stored == 0), -1, idx)


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build SMM's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.smm.Config, got {type(cfg).__name__}")
    nets = make_nets(cfg, env_spec)
    shape = env_spec.action_space.shape

    def init(key):
        k_sac, k_enc, k_vae, k_disc = jax.random.split(key, 4)
        obs = jnp.zeros(env_spec.obs_shape, jnp.dtype(env_spec.obs_dtype))
        one_hot = jnp.zeros(cfg.num_skills, jnp.float32)
        params = sac.init_params(k_sac, nets.sac._replace(encoder=None), nets.heads_spec,
                                 cfg)
        params["encoder"] = nets.sac.encoder.init(k_enc, (obs, one_hot))
        feature = nets.sac.encoder.apply(params["encoder"], obs, method=SkillEncoder.feature)
        x = jnp.concatenate([feature, one_hot])
        params["vae"] = nets.vae.init(k_vae, x, jnp.zeros(cfg.vae_code_dim))
        params["discriminator"] = (nets.discriminator.init(k_disc, feature)
                                   if nets.discriminator is not None else {})
        adams = {"vae": nets.vae_adam, "discriminator": nets.discriminator_adam}
        opt_state = {g: adams.get(g, nets.sac.adam).init(p) for g, p in params.items()}
        history = jax.tree.map(lambda p: jnp.zeros((cfg.history_size, *p.shape), p.dtype),
                               params["actor"])
        return State(params, params["critic"], opt_state, history, jnp.int32(0),
                     jnp.int32(0))

    def init_carry(num_envs):
        return {"skill": jnp.zeros(num_envs, jnp.int32),
                "policy": jnp.full(num_envs, -1, jnp.int32)}

    def act(state, carry, obs, first, key, eval=False):
        k_skill, k_policy, k_act = jax.random.split(key, 3)
        n = obs.shape[0]
        mode = eval and not cfg.eval_sample
        skill = jnp.where(first, jax.random.randint(k_skill, (n,), 0, cfg.num_skills),
                          carry["skill"])
        x = sac.encode(nets.sac, state.params,
                       (obs, jax.nn.one_hot(skill, cfg.num_skills)))
        if eval and cfg.eval_policy == "mixture":
            policy = jnp.where(first, draw_policy(state, k_policy, n, cfg), carry["policy"])
            actors = jax.tree.map(
                lambda ring, cur: jnp.where(
                    (policy >= 0).reshape(-1, *([1] * cur.ndim)),
                    ring[jnp.maximum(policy, 0)], cur), state.history,
                state.params["actor"])
            action = jax.vmap(lambda a, xi, k: sac.policy(nets.sac, {"actor": a}, xi, k,
                                                          mode, shape))(
                actors, x, jax.random.split(k_act, n))
        else:
            policy = carry["policy"]
            action = sac.policy(nets.sac, state.params, x, k_act, mode, shape)
        return action, {"skill": skill, "policy": policy}, {"skill": skill}

    def update(state, batch: Transition, key):
        policy_batch = sac.to_policy_batch(batch, nets.sac)
        policy_batch["skill"] = batch.extras["skill"]
        return learner_step(state, policy_batch, key, nets, cfg)

    return Agent(init=init, act=act, update=update, value=None, init_carry=init_carry)


SPEC = AlgoSpec(
    name="smm", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Box",),
    replay=replay,
    phases=PHASES,
)
