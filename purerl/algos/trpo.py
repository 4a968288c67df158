"""Trust Region Policy Optimization (Schulman et al. 2015, arXiv:1502.05477).

    maximise  L(θ) = E[π_θ(a|s) / π_old(a|s) · Â]   subject to   E[KL(π_old ‖ π_θ)] ≤ δ

solved approximately as in the paper's appendix C and baselines ``trpo_mpi``
(``trpo_mpi.py``). Per rollout of ``num_envs × num_steps`` steps:

1. Â = GAE(γ, λ), standardised over the batch; g = ∇L(θ_old).
2. s ≈ (F + λI)⁻¹ g by ``cg_iters`` CG steps from 0, F the Fisher matrix (Hessian of
   the mean KL at θ_old) estimated on every ``fvp_stride``-th sample (baselines'
   ``arr[::5]``). These steps are NPG's (``npg.policy_problem``/``natural_direction``).
3. The full step β s with β = √(2δ / sᵀ(F + λI)s) is the largest step whose quadratic
   KL model ½β² sᵀFs reaches δ (baselines: ``lm = √(½ sᵀFs / δ)``, step ``s / lm``).
4. Backtracking line search (``purerl.ops.backtracking_line_search``): try
   θ + 0.5ⁱ β s, i = 0..9, and keep the first candidate that improves the surrogate and
   whose *measured* KL is ≤ ``kl_accept_factor · max_kl``; if none does, keep θ_old.
   The default factor 1 enforces the paper's constraint exactly, as sb3-contrib's TRPO
   does (``kl_div < target_kl``); baselines accepts up to 1.5 δ (factor 1.5).
   ``accept_ratio`` > 0 adds modular_rl's Armijo test (actual/expected improvement).
5. The critic regresses on the TD(λ) returns Â + V with Adam, ``vf_epochs`` passes of
   minibatches of 64 (baselines ``vf_iters`` 5, ``vf_stepsize`` 1e-3, minibatch 64).

Defaults are baselines' ``trpo_mpi/defaults.py::mujoco``: 1024 steps a batch, max_kl
0.01, cg_iters 10, cg_damping 0.1, γ 0.99, λ 0.98, a 32×32 tanh MLP, observation
normalisation, no entropy bonus.
"""

import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from purerl.algos import npg
from purerl.algos.base import Agent, AlgoSpec
from purerl.config import RunConfig, check_range, config
from purerl.ops.natural import backtracking_line_search
from purerl.types import EnvSpec, Transition

# baselines' trpo_mpi MuJoCo setting: 1024 steps per batch, observations normalised.
RUN = RunConfig(total_steps=1_000_000, num_envs=1, num_steps=1024, normalize_obs=True)
check_run = npg.check_run
State = npg.State


@config
class Config:
    """TRPO hyperparameters. Defaults: baselines' trpo_mpi MuJoCo setting (``defaults.mujoco``)."""

    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.98
    """GAE λ; also the λ of the critic's TD(λ) targets."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    max_kl: float = 0.01
    """Trust-region radius δ on the mean KL(π_old ‖ π_θ)."""
    kl_accept_factor: float = 1.0
    """The line search accepts a step with measured KL ≤ this × max_kl: 1 is the
    paper's constraint (and sb3-contrib's), baselines uses 1.5."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for F⁻¹g (baselines ``cg_iters``)."""
    cg_damping: float = 0.1
    """λ in (F + λI)s = g (baselines ``cg_damping``)."""
    fvp_stride: int = 5
    """Fisher-vector products use every fvp_stride-th sample (baselines: 5)."""
    max_backtracks: int = 10
    """Line-search candidates tried before keeping θ_old (baselines: 10)."""
    backtrack_coef: float = 0.5
    """Step shrink factor per backtrack (baselines: 0.5; sb3-contrib: 0.8)."""
    accept_ratio: float = 0.0
    """Minimum actual/expected surrogate improvement (modular_rl: 0.1; baselines: 0,
    any improvement)."""
    vf_lr: float = 1e-3
    """Adam learning rate of the critic (baselines ``vf_stepsize``)."""
    vf_epochs: int = 5
    """Passes of the critic over each batch (baselines ``vf_iters``)."""
    vf_minibatch_size: int = 64
    """Critic minibatch size (baselines: 64)."""
    hidden_sizes: tuple = (32, 32)
    """Hidden layer widths of the actor and of the critic (baselines: 32×2)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions; baselines: 0)."""

    def __post_init__(self):
        npg.check_natural_fields(self)
        check_range(self, "max_kl", 0.0, low_open=True)
        check_range(self, "kl_accept_factor", 0.0, low_open=True)
        check_range(self, "max_backtracks", 1)
        check_range(self, "backtrack_coef", 0.0, 1.0, low_open=True, high_open=True)
        check_range(self, "accept_ratio", 0.0, 1.0, high_open=True)



def trust_region_step(problem: npg.PolicyProblem, theta, cfg):
    """TRPO's step from θ_old = ``theta`` (flat): the natural direction scaled to the
    KL radius, then the backtracking line search. Returns ``(new_theta, metrics)``."""
    _, g, s = npg.natural_direction(problem, theta, cfg.cg_iters, warm_start=False)
    s_f_s = jnp.vdot(s, problem.fvp(s))
    # A zero gradient gives s = 0 and sᵀFs = 0: no step rather than 0 · ∞.
    beta = jnp.where(s_f_s > 0, jnp.sqrt(2.0 * cfg.max_kl / jnp.maximum(s_f_s, 1e-30)),
                     0.0)
    full_step = beta * s
    expected = jnp.vdot(g, full_step)  # first-order surrogate gain of the full step
    new_theta, info = backtracking_line_search(
        lambda th: (problem.loss(th), problem.kl(th)), theta, full_step, expected,
        max_kl=cfg.kl_accept_factor * cfg.max_kl, max_backtracks=cfg.max_backtracks,
        accept_ratio=cfg.accept_ratio, backtrack_coef=cfg.backtrack_coef)
    metrics = {
        "loss/actor": info["loss"],
        "trpo/kl": info["kl"],
        "trpo/accepted": info["accepted"].astype(jnp.float32),
        "trpo/step_fraction": info["step_fraction"],
        "trpo/num_backtracks": info["num_backtracks"].astype(jnp.float32),
        "trpo/improvement": info["improvement"],
        "trpo/expected_improvement": expected,
        "trpo/grad_norm": jnp.linalg.norm(g),
    }
    return new_theta, metrics


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build TRPO's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.trpo.Config, got {type(cfg).__name__}")
    parts = npg.make_parts(cfg, env_spec)

    def update(state, batch: Transition, key):
        data = npg.prepare_batch(batch, cfg.gae_lambda, env_spec)
        theta, unravel = ravel_pytree(state.params["actor"])
        problem = npg.policy_problem(parts.actor, unravel, theta, data, cfg.fvp_stride,
                                     cfg.cg_damping)
        new_theta, metrics = trust_region_step(problem, theta, cfg)
        critic_params, vf_opt_state, vf_metrics = npg.fit_critic(
            parts, state, data, key, cfg)
        params = {"actor": unravel(new_theta), "critic": critic_params}
        metrics.update(vf_metrics)
        return State(params, vf_opt_state, state.iteration + 1), metrics

    return parts.agent._replace(update=update)


SPEC = AlgoSpec(
    name="trpo", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    check_run=check_run,
)
