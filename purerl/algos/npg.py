"""Natural policy gradient (Kakade 2001, "A natural policy gradient", NIPS 14, 2002).

The batch form of mjrl's ``algos/npg_cg.py`` (Rajeswaran et al. 2017, arXiv:1703.02660).
Per rollout of ``num_envs × num_steps`` steps:

1. Â = GAE(γ, λ) from the critic's V(s_t), standardised over the batch (mjrl
   ``process_paths``; baselines ``trpo_mpi`` does the same).
2. g = ∇L(θ_old) of the surrogate L(θ) = E[π_θ(a|s) / π_old(a|s) · Â] (mjrl's
   ``CPI_surrogate``; at θ_old its gradient is the vanilla policy gradient E[∇log π Â]).
3. x ≈ (F + λI)⁻¹ g by ``cg_iters`` conjugate-gradient steps started at x₀ = g (mjrl
   warm-starts CG at the gradient), F the Hessian of the mean KL(π_old ‖ π_θ) at θ_old,
   i.e. the Fisher matrix (Martens 2014, arXiv:1412.1193).
4. θ ← θ + α x with the normalised step α = √(δ / gᵀx): the quadratic KL model gives
   ½α² xᵀFx = δ / 2, so ``step_size`` δ is "twice the desired KL" (mjrl's
   ``normalized_step_size``). There is no line search; that is TRPO (``trpo.py``).
5. The critic regresses on the λ-returns Â + V(s_t) (unstandardised) with Adam over
   ``vf_epochs`` passes of minibatches of 64 (mjrl ``MLPBaseline``: Adam 1e-3,
   minibatch 64, 2 epochs in its example configs). mjrl fits Monte-Carlo returns of
   whole episodes; rollouts here are cut every ``num_steps``, so the target is the
   λ-return bootstrapped at the cut, as baselines' TRPO does.

The pieces TRPO shares (batch preparation, the surrogate, KL and Fisher-vector product,
the natural direction, the agent's init/act/value and the critic fit) are the module-
level functions below; ``trpo.py`` imports them.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from purerl.algos import common
from purerl.algos.base import Agent, AlgoSpec, stateless
from purerl.config import RunConfig, check_range, config
from purerl.networks import ValueNet
from purerl.ops.natural import conjugate_gradient, fisher_vector_product
from purerl.ops.returns import gae
from purerl.types import EnvSpec, Transition

# mjrl's NPG: 10 trajectories of 1000 steps per iteration.
RUN = RunConfig(total_steps=1_000_000, num_envs=10, num_steps=1000)


@config
class Config:
    """NPG hyperparameters. Defaults: mjrl's ``NPG`` and its example configs."""

    gamma: float = 0.995
    """Discount factor (mjrl ``rl_gamma``)."""
    gae_lambda: float = 0.97
    """GAE λ (mjrl ``rl_gae``); also the λ of the critic's λ-return targets."""
    reward_scale: float = 1.0
    """The driver multiplies rewards by this before the update."""
    step_size: float = 0.01
    """Normalised step size δ: α = √(δ / gᵀF⁻¹g), about twice the KL of a step (mjrl
    ``normalized_step_size``)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for F⁻¹g (mjrl ``FIM_invert_args['iters']``)."""
    cg_damping: float = 1e-4
    """λ in (F + λI)x = g (mjrl ``FIM_invert_args['damping']``)."""
    fvp_stride: int = 1
    """Fisher-vector products use every fvp_stride-th sample (mjrl: all samples)."""
    vf_lr: float = 1e-3
    """Adam learning rate of the critic (mjrl ``vf_learn_rate``)."""
    vf_epochs: int = 2
    """Passes of the critic over each batch (mjrl ``vf_epochs`` in its examples)."""
    vf_minibatch_size: int = 64
    """Critic minibatch size (mjrl ``vf_batch_size``)."""
    hidden_sizes: tuple = (32, 32)
    """Hidden layer widths of the actor and of the critic (mjrl ``policy_size``)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or silu."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions; mjrl's default)."""

    def __post_init__(self):
        check_natural_fields(self)
        check_range(self, "step_size", 0.0, low_open=True)



def check_natural_fields(cfg) -> None:
    """Validate the fields NPG and TRPO share (loop, GAE, CG and critic fields)."""
    common.check_common_fields(cfg)
    check_range(cfg, "gae_lambda", 0.0, 1.0)
    check_range(cfg, "cg_iters", 1)
    check_range(cfg, "cg_damping", 0.0)
    check_range(cfg, "fvp_stride", 1)
    check_range(cfg, "vf_lr", 0.0, low_open=True)
    check_range(cfg, "vf_epochs", 1)
    check_range(cfg, "vf_minibatch_size", 1)


def check_run(cfg, run: RunConfig) -> None:
    """What NPG and TRPO need of a rollout of ``run.batch_size`` steps."""
    batch = run.batch_size
    if batch < 2:
        raise ValueError(f"RunConfig.num_envs * num_steps must be >= 2 (advantages are "
                         f"standardised over the batch), got {batch}")
    if cfg.vf_minibatch_size > batch:
        raise ValueError(f"Config.vf_minibatch_size must be <= RunConfig.num_envs * "
                         f"num_steps = {batch}, got {cfg.vf_minibatch_size}")
    if cfg.fvp_stride > batch:
        raise ValueError(f"Config.fvp_stride must be <= RunConfig.num_envs * num_steps = "
                         f"{batch}, got {cfg.fvp_stride}")


class State(NamedTuple):
    params: dict  # {"actor": ..., "critic": ...}
    vf_opt_state: optax.OptState  # Adam over the flat critic parameters
    iteration: jax.Array  # int32, updates done so far


class Parts(NamedTuple):
    """What an NPG/TRPO agent is built from; ``agent.update`` is left to the module."""

    actor: object  # PolicyNet
    critic: object  # ValueNet
    vf_opt: common.FlatOptimizer
    agent: Agent  # init, act, value (update None)


def make_parts(cfg, env_spec: EnvSpec) -> Parts:
    """Actor, critic, critic optimiser and the agent's init/act/value."""
    actor = common.make_actor(cfg, env_spec)
    obs_ndim = len(env_spec.obs_shape)
    critic = ValueNet(cfg.hidden_sizes, cfg.activation, obs_ndim=obs_ndim)
    vf_opt = common.flat_optimizer(optax.scale_by_adam())  # Adam ε 1e-8, as baselines

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros(env_spec.obs_shape, jnp.float32)
        params = {"actor": actor.init(k_actor, obs),
                  "critic": critic.init(k_critic, obs)}
        return State(params, vf_opt.init(params["critic"]), jnp.int32(0))

    def act(state, obs, key, eval=False):
        # No log-prob in extras: the update recomputes π_old from θ_old and the rollout.
        dist = actor.apply(state.params["actor"], obs)
        action, _ = common.sample(dist, key, env_spec, eval)
        return action, {}

    def value(state, obs):
        return critic.apply(state.params["critic"], obs)

    agent = stateless(init, act, None, value)
    return Parts(actor, critic, vf_opt, agent)


def prepare_batch(batch: Transition, lam, env_spec: EnvSpec) -> dict:
    """The rollout as flat ``[N, ...]`` arrays: obs, action (flat for Box), the
    batch-standardised GAE advantage, the λ-return target Â + V and the value V."""
    values = batch.extras["value"]
    all_values = jnp.concatenate([values, batch.bootstrap_value[None]], axis=0)
    adv = gae(batch.reward, batch.discount, all_values, lam)
    data = {"obs": batch.obs, "action": common.flat_action(batch.action, env_spec),
            "advantage": adv, "target": adv + values, "value": values}
    data = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), data)
    data["advantage"] = common.standardize(data["advantage"])
    return data


class PolicyProblem(NamedTuple):
    """Functions of the flat actor parameters θ near θ_old (see ``policy_problem``)."""

    loss: callable  # θ -> −E[π_θ/π_old · Â], the negated surrogate (minimised)
    kl: callable  # θ -> E[KL(π_old ‖ π_θ)] over the whole batch
    fvp: callable  # v -> (F + λI) v at θ_old


def policy_problem(actor, unravel, theta, data, fvp_stride: int,
                   damping) -> PolicyProblem:
    """The surrogate, the KL and the damped Fisher-vector product at ``theta`` = θ_old.

    π_old is evaluated once from ``theta``, outside the functions, so it is a constant
    to their derivatives. The FVP is the Hessian-vector product of the mean KL on every
    ``fvp_stride``-th sample (baselines' ``arr[::5]`` speed-up), never including an
    entropy term (an entropy bonus has no place in the trust-region constraint).
    """
    obs, action, adv = data["obs"], data["action"], data["advantage"]
    old = actor.apply(unravel(theta), obs)
    old_log_prob = old.log_prob(action)
    sub_obs = obs[::fvp_stride]
    old_sub = actor.apply(unravel(theta), sub_obs)

    def loss(th):
        log_prob = actor.apply(unravel(th), obs).log_prob(action)
        return -(jnp.exp(log_prob - old_log_prob) * adv).mean()

    def kl(th):
        return old.kl_divergence(actor.apply(unravel(th), obs)).mean()

    def kl_sub(th):
        return old_sub.kl_divergence(actor.apply(unravel(th), sub_obs)).mean()

    return PolicyProblem(loss, kl, fisher_vector_product(kl_sub, theta, damping))


def natural_direction(problem: PolicyProblem, theta, cg_iters: int, warm_start: bool):
    """``(loss, g, x)``: the surrogate loss at θ_old, the policy gradient g = −∇loss
    and x ≈ (F + λI)⁻¹ g by CG, started at x₀ = g (mjrl) or at 0 (baselines)."""
    loss, grad = jax.value_and_grad(problem.loss)(theta)
    g = -grad
    x = conjugate_gradient(problem.fvp, g, num_iters=cg_iters,
                           x0=g if warm_start else None)
    return loss, g, x


def fit_critic(parts: Parts, state: State, data: dict, key, cfg):
    """The critic's new parameters and Adam state, and its metrics."""
    critic_params, vf_opt_state, loss = common.fit_value(
        parts.critic, parts.vf_opt, state.params["critic"], state.vf_opt_state,
        data["obs"], data["target"], cfg.vf_lr, key, cfg.vf_epochs,
        cfg.vf_minibatch_size)
    explained = 1.0 - jnp.var(data["target"] - data["value"]) / (
        jnp.var(data["target"]) + 1e-8)
    return critic_params, vf_opt_state, {"loss/value": loss,
                                         "value/explained_variance": explained}


def make(cfg: Config, env_spec: EnvSpec) -> Agent:
    """Build NPG's pure functions for an environment spec."""
    if not isinstance(cfg, Config):
        raise TypeError(f"expected purerl.algos.npg.Config, got {type(cfg).__name__}")
    parts = make_parts(cfg, env_spec)

    def update(state, batch: Transition, key):
        data = prepare_batch(batch, cfg.gae_lambda, env_spec)
        theta, unravel = ravel_pytree(state.params["actor"])
        problem = policy_problem(parts.actor, unravel, theta, data, cfg.fvp_stride,
                                 cfg.cg_damping)
        loss, g, x = natural_direction(problem, theta, cfg.cg_iters, warm_start=True)
        g_x = jnp.vdot(g, x)
        # mjrl: α = √|δ / (gᵀx + 1e-20)|; a zero gradient gives x = 0 and no step.
        alpha = jnp.sqrt(jnp.abs(cfg.step_size / (g_x + 1e-20)))
        new_theta = theta + alpha * x
        new_loss = problem.loss(new_theta)
        critic_params, vf_opt_state, metrics = fit_critic(parts, state, data, key, cfg)
        params = {"actor": unravel(new_theta), "critic": critic_params}
        metrics.update({
            "loss/actor": new_loss,
            "npg/kl": problem.kl(new_theta),
            "npg/step_size": alpha,
            "npg/improvement": loss - new_loss,
            "npg/grad_norm": jnp.linalg.norm(g),
            "npg/gFg": g_x,
        })
        return State(params, vf_opt_state, state.iteration + 1), metrics

    return parts.agent._replace(update=update)


SPEC = AlgoSpec(
    name="npg", config=Config, make=make, run=RUN, doc=__doc__,
    action_spaces=("Discrete", "Box"),
    check_run=check_run,
)
