"""ACKTR: actor-critic using Kronecker-factored trust region (Wu et al. 2017,
arXiv:1708.05144), as OpenAI baselines' ``acktr`` runs it.

A2C's rollouts and training loss (n-step returns, no advantage normalisation), but
a natural-gradient step, the Fisher of actor *and* critic approximated block-diagonally
by K-FAC:

* Curvature comes from separate Fisher losses, not the training loss: the actor's is
  ``−mean log π(a|s)`` at the rollout's actions (sampled from the current π, so the
  true Fisher); the critic is a Gaussian around V with sampled targets
  ``ŷ = V + N(0, 1)``: ``vf_fisher_coef · mean((V − ŷ)²)`` (baselines': no ½, so the
  critic's output factor is ``S ≈ 4 vf_fisher_coef²``).
* Each dense layer's factors ``A = E[a aᵀ]`` (``a = [x, 1]``) and ``S = E[g gᵀ]`` are
  averaged over the ``cold_iter`` first updates, then kept as running averages
  (``stat_decay`` per update, refreshed every ``stats_update_period`` updates), and
  eigendecomposed every ``inverse_update_period`` updates (both 40 by default, see
  below).
* The training gradient is preconditioned exactly per layer,
  ``u = (A ⊗ S + damping·I)⁻¹ g`` (``kron_precondition_eigen``).
* Trust region: ``η = min(lr, sqrt(kl_clip / uᵀg))``, so the predicted KL
  ``½ η² uᵀF̂u ≤ ½ kl_clip = δ`` (baselines' ``kfac_clip`` is 2δ); then momentum,
  ``v ← m v + (1 − m) η u``, ``θ ← θ − v`` (baselines' TF momentum optimiser at
  rate ``lr (1 − m)`` on ``min(1, sqrt(kl_clip / (lr² uᵀg))) u``), restarted when
  K-FAC starts. Before, for ``cold_iter`` updates: momentum SGD at rate ``lr`` on the
  gradient clipped to norm ``max_grad_norm`` (baselines' cold start).

The Gaussian policy's state-independent log-std is not a dense layer. Its Fisher block
is known exactly, ``2·I`` (the score of log σ is z² − 1, z ~ N(0, 1), with
E[(z² − 1)²] = 2, uncorrelated with the mean's scores), so it is preconditioned by
``1 / (2 + damping)`` with no statistics.

Departures from baselines:

* Curvature refresh. Baselines updates the factors every update and eigendecomposes
  them asynchronously on another thread, using whichever decomposition is ready (so
  its runs are not deterministic, and the decompositions cost the training step
  nothing). Here both are synchronous and deterministic, and by default happen every
  40 updates (kfac-jax's names ``stats_update_period`` / ``inverse_update_period``;
  kfac-jax itself defaults to statistics every update, inverses every 5). The reason
  is cost: for 64x64 MLPs on a CPU, one refresh (a Fisher forward/backward, the
  factors' outer products and eight 64/65-sized LAPACK eigendecompositions) costs
  several A2C updates, while the preconditioned step alone costs little more than
  one (``benchmarks/results/update_cost.md``). ``stat_decay`` is per update, so
  the running average spans the same ~100 updates whatever the period (the learning
  results with both schedules are in ``benchmarks/results/learning/``); set both
  periods to 1 for baselines' schedule.
* Actor and critic are separate MLPs (baselines shares one torso), so their Fisher
  blocks are separate.

Metrics: ``kfac/eta``, ``kfac/quad`` and ``kfac/predicted_kl`` describe K-FAC steps;
while ``kfac/cold`` is 1 (the cold start's SGD steps) they are reported as 0.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from purerl.algos import common
from purerl.algos.a2c import advantages_and_targets
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_range, config
from purerl.networks import ValueNet
from purerl.networks_kfac import DenseStats, capture_dense_stats
from purerl.ops.kfac import (
    dense_factors,
    fold_bias,
    kron_precondition_eigen,
    symmetric_eigh,
    trust_region_scale,
    unfold_bias,
)
from purerl.types import EnvSpec, Transition

# baselines' ACKTR: 16 envs x 20 steps.
RUN = RunConfig(total_steps=1_000_000, num_envs=16, num_steps=20)
LOG_STD_FISHER = 2.0  # the exact Fisher of a Gaussian's log-std, per dimension


@config
class Config:
    """ACKTR hyperparameters. Defaults: baselines' ``acktr`` (``run_atari`` / ``learn``)."""

    gamma: float = 0.99
    """Discount factor."""
    use_gae: bool = False
    """Use GAE(λ) advantages instead of n-step returns minus V."""
    gae_lambda: float = 1.0
    """GAE λ (with use_gae; λ = 1 equals the n-step form)."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    lr: float = 0.25
    """Largest step size η_max (decayed linearly to 0 if anneal_lr)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    kl_clip: float = 0.001
    """Trust region 2δ (baselines' kfac_clip): η² uᵀg ≤ kl_clip."""
    momentum: float = 0.9
    """Momentum of the SGD step."""
    damping: float = 0.01
    """Tikhonov damping ε added to every Kronecker block A ⊗ S."""
    stat_decay: float = 0.99
    """Per-update decay of the running averages of the K-FAC factors (a refresh every
    T updates keeps stat_decay**T of the old average)."""
    cold_iter: int = 10
    """Updates of clipped momentum SGD (factors averaged) before K-FAC starts."""
    stats_update_period: int = 40
    """Update the factors' running averages every this many updates (T_stats; 1 is
    baselines'); the Fisher pass is skipped on the other updates."""
    inverse_update_period: int = 40
    """Eigendecompose the factors every this many updates (baselines: every update,
    asynchronously, off the critical path); amortises the eigendecompositions."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip of the cold-start SGD steps."""
    vf_coef: float = 0.5
    """Coefficient of the value loss mean((V − R)²) (baselines' MSE, no ½)."""
    vf_fisher_coef: float = 1.0
    """Coefficient of the critic's sampled Fisher loss."""
    ent_coef: float = 0.01
    """Entropy-bonus coefficient."""
    hidden_sizes: tuple = (64, 64)
    """Hidden layer widths of the actor and of the critic (separate networks)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions)."""

    def __post_init__(self):
        common.check_common_fields(self)
        check_range(self, "gae_lambda", 0.0, 1.0)
        check_range(self, "kl_clip", 0.0, low_open=True)
        check_range(self, "momentum", 0.0, 1.0, high_open=True)
        check_range(self, "damping", 0.0, low_open=True)
        check_range(self, "stat_decay", 0.0, 1.0, high_open=True)
        check_range(self, "cold_iter", 1)
        check_range(self, "stats_update_period", 1)
        check_range(self, "inverse_update_period", 1)
        check_range(self, "vf_coef", 0.0)
        check_range(self, "vf_fisher_coef", 0.0, low_open=True)


class KronFactors(NamedTuple):
    """One dense layer's Fisher block ≈ A ⊗ S (bias folded in, ``fold_bias``)."""

    A: jax.Array  # [d_in + 1, d_in + 1]  E[a aᵀ], a = [x, 1]
    S: jax.Array  # [d_out, d_out]        E[g gᵀ], g = ∂(Fisher loss)/∂(output)


class Eigen(NamedTuple):
    """One layer's factors' eigendecompositions (``kron_precondition_eigen`` order)."""

    evals_a: jax.Array  # [d_in + 1]
    evecs_a: jax.Array  # [d_in + 1, d_in + 1]
    evals_s: jax.Array  # [d_out]
    evecs_s: jax.Array  # [d_out, d_out]


class State(NamedTuple):
    params: dict  # {"actor": {"params": ...}, "critic": {"params": ...}}
    velocity: dict  # like params: the last step Δθ (momentum)
    factors: dict  # like params, a KronFactors at each dense layer's path
    eigen: dict  # like factors, Eigen of the factors at the last decomposition
    iteration: jax.Array  # int32, updates done so far


def _map_dense(fn, params: dict) -> dict:
    """``fn(layer)`` for every dense layer (a dict with kernel and bias) of ``params``,
    in a dict mirroring its tree; other parameters are dropped."""
    out = {}
    for name, node in params.items():
        if isinstance(node, dict):
            out[name] = fn(node) if "kernel" in node else _map_dense(fn, node)
    return out


def _is_factors(x):
    return isinstance(x, (KronFactors, DenseStats))


def initial_factors(params: dict):
    """Zero factors (accumulated during the cold start) and identity eigenbases."""

    def zeros(layer):
        d_in, d_out = layer["kernel"].shape
        return KronFactors(jnp.zeros((d_in + 1, d_in + 1)), jnp.zeros((d_out, d_out)))

    def identity(layer):
        d_in, d_out = layer["kernel"].shape
        return Eigen(
            jnp.zeros(d_in + 1), jnp.eye(d_in + 1), jnp.zeros(d_out), jnp.eye(d_out)
        )

    return _map_dense(zeros, params), _map_dense(identity, params)


def _kron_factors(stats):
    """DenseStats of a batch-mean loss -> KronFactors (per-example gradients: × N)."""
    return jax.tree.map(
        lambda s: KronFactors(
            *dense_factors(s.inputs, s.out_grads * s.out_grads.shape[0])
        ),
        stats,
        is_leaf=_is_factors,
    )


def fisher_factors(params, obs, action, key, actor, critic, vf_fisher_coef):
    """This batch's K-FAC factors of actor and critic, from the sampled Fisher losses.

    Actor: ``−mean log π(a|s)`` at the rollout's actions, which the on-policy driver
    has just sampled from the current policy (baselines' ``acktr_disc``): the true
    Fisher, not the empirical one. Critic: ``vf_fisher_coef · mean((V − ŷ)²)`` with
    targets ``ŷ = V + N(0, 1)`` sampled here and held fixed.

    Args:
      params: ``{"actor": ..., "critic": ...}`` (flax variable dicts).
      obs: ``[..., *obs_shape]``; leading dims are examples.
      action: ``[..., *action_shape]`` actions sampled from π(·|obs).
      key: PRNG key for the critic's targets.
      actor, critic: the flax modules.
      vf_fisher_coef: weight of the critic's Fisher loss.

    Returns:
      KronFactors at the paths of the dense layers in ``params``.
    """

    def actor_fisher_loss(dist):
        return -dist.log_prob(action).mean()

    def critic_fisher_loss(v):
        target = jax.lax.stop_gradient(v + jax.random.normal(key, v.shape))
        return vf_fisher_coef * jnp.mean((v - target) ** 2)

    _, _, actor_stats = capture_dense_stats(
        actor, params["actor"]["params"], actor_fisher_loss, obs
    )
    _, _, critic_stats = capture_dense_stats(
        critic, params["critic"]["params"], critic_fisher_loss, obs
    )
    return {
        "actor": {"params": _kron_factors(actor_stats)},
        "critic": {"params": _kron_factors(critic_stats)},
    }


def _eigh(m):
    """``symmetric_eigh`` over any leading dims, one matrix per LAPACK call."""
    return jax.vmap(_eigh)(m) if m.ndim > 2 else symmetric_eigh(m)


def decompose(factors):
    """Eigen of every layer's factors."""
    return jax.tree.map(
        lambda f: Eigen(*_eigh(f.A), *_eigh(f.S)), factors, is_leaf=_is_factors
    )


def natural_gradient(grads: dict, eigen: dict, damping) -> dict:
    """``(F̂ + damping·I)⁻¹ grads``, layer by layer (``eigen`` at the layers' paths).

    Dense layers: the exact Kronecker solve with the bias row folded in. The Gaussian
    log-std: ``grads / (2 + damping)`` (its exact Fisher block is ``2·I``).
    """
    out = {}
    for name, g in grads.items():
        if isinstance(g, dict) and "kernel" in g:
            folded = fold_bias(g["kernel"], g["bias"])
            kernel, bias = unfold_bias(
                kron_precondition_eigen(folded, *eigen[name], damping)
            )
            out[name] = {"kernel": kernel, "bias": bias}
        elif isinstance(g, dict):
            out[name] = natural_gradient(g, eigen[name], damping)
        elif name == "log_std":
            out[name] = g / (LOG_STD_FISHER + damping)
        else:
            raise ValueError(
                f"ACKTR cannot precondition parameter {name!r}: only dense "
                "layers and a Gaussian log-std are supported"
            )
    return out


def acktr_loss(params, batch, adv, targets, actor, critic, cfg, env_spec):
    """The training loss (baselines): PG − c_ent H + c_vf mean((V − R)²)."""
    dist = actor.apply(params["actor"], batch.obs)
    log_prob = dist.log_prob(common.flat_action(batch.action, env_spec))
    pg_loss = common.policy_gradient_loss(log_prob, adv)
    v_loss = common.squared_error(critic.apply(params["critic"], batch.obs), targets)
    entropy = dist.entropy().mean()
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
    return loss, {
        "loss/total": loss,
        "loss/actor": pg_loss,
        "loss/value": v_loss,
        "loss/entropy": entropy,
    }


def make(cfg: Config, env_spec: EnvSpec, num_updates: int | None = None) -> Agent:
    """Build ACKTR's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.acktr.Config, got {type(cfg).__name__}")
    num_updates = common.updates_of(num_updates, RUN)
    actor = common.make_actor(cfg, env_spec)
    critic = ValueNet(
        cfg.hidden_sizes, cfg.activation, obs_ndim=len(env_spec.obs_shape)
    )

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {
            "actor": actor.init(k_actor, obs),
            "critic": critic.init(k_critic, obs),
        }
        factors, eigen = initial_factors(params)
        velocity = jax.tree.map(jnp.zeros_like, params)
        return State(params, velocity, factors, eigen, jnp.int32(0))

    def act(state, obs, key, eval=False):
        action, _ = common.sample(
            actor.apply(state.params["actor"], obs), key, env_spec, eval
        )
        return action, {}

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    def average_factors(operand):
        """A plain average over the cold start, then running averages."""
        # Float hyperparameters come in the operand: they may be traced (a sweep).
        (decay, vf_fisher_coef), params, obs, action, key, factors, cold = operand
        new = fisher_factors(params, obs, action, key, actor, critic, vf_fisher_coef)
        # stat_decay is per update: a stats update every T updates keeps decay**T of
        # the old average, so the average spans the same number of updates for any T.
        decay = decay**cfg.stats_update_period
        keep = jnp.where(cold, 1.0, decay)
        add = jnp.where(cold, 1.0 / cfg.cold_iter, 1.0 - decay)
        return jax.tree.map(lambda f, n: keep * f + add * n, factors, new)

    def update(state, batch: Transition, key):
        t = state.iteration
        adv, targets = advantages_and_targets(batch, cfg.use_gae, cfg.gae_lambda)
        grads, metrics = jax.grad(acktr_loss, has_aux=True)(
            state.params, batch, adv, targets, actor, critic, cfg, env_spec
        )
        lr = common.linear_lr(cfg.lr, t, num_updates, cfg.anneal_lr)

        cold, since = t < cfg.cold_iter, t - cfg.cold_iter
        hyper = (cfg.stat_decay, cfg.vf_fisher_coef)
        action = common.flat_action(batch.action, env_spec)
        operand = (hyper, state.params, batch.obs, action, key, state.factors, cold)
        stats_now = cold | (since % cfg.stats_update_period == 0)
        factors = common.when(average_factors)(stats_now, operand, state.factors)
        refresh = (since >= 0) & (since % cfg.inverse_update_period == 0)
        eigen = common.when(decompose)(refresh, factors, state.eigen)

        # K-FAC: u = (F̂ + εI)⁻¹ g, step η u with η capped by the trust region, momentum
        # restarted when K-FAC starts. Cold start: momentum SGD on the clipped gradient.
        # Leaf by leaf, as one expression: flattening to a vector and selecting between
        # two velocities cost more than this update's arithmetic.
        nat = natural_gradient(grads, eigen, cfg.damping)
        eta = trust_region_scale(nat, grads, lr, cfg.kl_clip / 2.0)
        grad_norm = optax.global_norm(grads)
        clip = jnp.minimum(1.0, cfg.max_grad_norm / (grad_norm + 1e-12))
        keep = jnp.where(since == 0, 0.0, cfg.momentum)
        scale_u = jnp.where(cold, 0.0, (1.0 - cfg.momentum) * eta)
        scale_g = jnp.where(cold, lr * clip, 0.0)
        velocity = jax.tree.map(lambda v, u, g: keep * v + scale_u * u + scale_g * g,
                                state.velocity, nat, grads)
        params = jax.tree.map(jnp.subtract, state.params, velocity)

        quad = sum(jnp.vdot(u, g) for u, g in zip(
            jax.tree.leaves(nat), jax.tree.leaves(grads), strict=True))
        metrics.update(
            {
                "opt/grad_norm": grad_norm,
                "opt/lr": lr,
                # The step size and the KL it predicts belong to K-FAC steps: 0
                # (masked) while the cold start takes SGD steps instead.
                "kfac/eta": jnp.where(cold, 0.0, eta),
                "kfac/quad": jnp.where(cold, 0.0, quad),
                "kfac/predicted_kl": jnp.where(cold, 0.0, 0.5 * eta**2 * quad),
                "kfac/cold": cold.astype(jnp.float32),
            }
        )
        return State(params, velocity, factors, eigen, t + 1), metrics

    return stateless(init, act, update, value)


SPEC = AlgoSpec(
    name="acktr", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    needs_num_updates=True,
)
