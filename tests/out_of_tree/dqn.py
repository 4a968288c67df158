"""DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning",
Nature 518), written outside the library against purerl's public contract only: a
Config, ``make(config, env_spec) -> purerl.Agent`` and one ``purerl.AlgoSpec``. No
purerl file knows it; ``tests/test_out_of_tree.py`` trains it through ``make_train``
and through this file's command line, and runs ``purerl.testing.check_contract`` on it.

    python tests/out_of_tree/dqn.py --env CartPole-v1 --num-seeds 8

The schedules are written in env steps, which the driver passes because the spec
says ``reads_env_steps=True``: ``act`` gets ``env_steps`` (ε decays linearly from
``eps_start`` to ``eps_end`` over ``eps_steps``) and the batch carries
``batch.env_steps`` (the target network is copied every ``target_every`` env steps).
The replay (``purerl.memory.Replay``) holds ``buffer_size`` transitions and starts
after ``learning_starts`` uniform random steps; one update of ``batch_size`` samples
follows every ``num_envs * num_steps`` env steps (``RUN``: every 10).

The loss is the squared TD error against ``r + batch.next_obs_discount *
max_a' Q_target(s', a')`` on ``next_obs``: the flat replay's ``next_obs_discount``
is γ(1 − terminated), so a step cut by the time limit bootstraps from its true last
observation. Defaults: CleanRL's ``dqn.py`` for CartPole-v1 (vwxyzjn/cleanrl v1.0.0):
Adam 2.5e-4, replay 10,000, batch 128, γ 0.99, a 120-84 ReLU Q-network, train every
10 env steps, target copy every 500, ε 1 -> 0.05 over half of 500k steps, 10,000
warm-up steps.
"""

import os
import sys
from typing import NamedTuple

if __name__ == "__main__":  # one XLA host device per core: seeds sharded over them
    os.environ.setdefault(
        "XLA_FLAGS", f"--xla_force_host_platform_device_count={os.cpu_count() or 1}")

import jax
import jax.numpy as jnp
import optax

import purerl
from purerl.config import check_range, config
from purerl.networks import MLP


@config
class Config:
    """DQN hyperparameters (CleanRL's CartPole-v1 setting)."""

    lr: float = 2.5e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    hidden_sizes: tuple = (120, 84)
    """Q-network widths (ReLU)."""
    buffer_size: int = 10_000
    """Replay capacity in transitions."""
    batch_size: int = 128
    """Transitions per update."""
    learning_starts: int = 10_000
    """Env steps of uniform random actions before the first update."""
    target_every: int = 500
    """Env steps between copies of the online network into the target."""
    eps_start: float = 1.0
    """ε of ε-greedy at env step 0."""
    eps_end: float = 0.05
    """ε after ``eps_steps`` env steps."""
    eps_steps: int = 250_000
    """Env steps of the linear ε decay."""

    def __post_init__(self):
        for name in ("buffer_size", "batch_size", "target_every", "eps_steps"):
            check_range(self, name, 1)
        check_range(self, "lr", 0.0, low_open=True)
        for name in ("gamma", "eps_start", "eps_end"):
            check_range(self, name, 0.0, 1.0)


RUN = purerl.RunConfig(total_steps=500_000, num_envs=1, num_steps=10, num_evals=20,
                       num_eval_envs=8)


class State(NamedTuple):
    params: dict  # {"q": ..., "target_q": ...}: the target is a parameter group
    opt_state: optax.OptState
    synced_at: jax.Array  # int32 env step of the last target copy


def epsilon(cfg: Config, env_steps):
    frac = jnp.clip(env_steps / cfg.eps_steps, 0.0, 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def make(cfg: Config, env_spec) -> purerl.Agent:
    num_actions = env_spec.action_space.n
    q_net = MLP(hidden=cfg.hidden_sizes, out_dim=num_actions, activation="relu")
    opt = optax.adam(cfg.lr)

    def init(key):
        q = q_net.init(key, jnp.zeros(env_spec.obs_shape, jnp.float32))
        return State({"q": q, "target_q": q}, opt.init(q), jnp.int32(0))

    def act(state, obs, key, eval=False, env_steps=0):
        greedy = q_net.apply(state.params["q"], obs).argmax(-1).astype(jnp.int32)
        if eval:
            return greedy, {}
        k_explore, k_action = jax.random.split(key)
        explore = jax.random.uniform(k_explore, greedy.shape) < epsilon(cfg, env_steps)
        random = jax.random.randint(k_action, greedy.shape, 0, num_actions)
        return jnp.where(explore, random, greedy), {}

    def loss(q_params, target_params, batch):
        q = q_net.apply(q_params, batch.obs)
        q = jnp.take_along_axis(q, batch.action[..., None], -1)[..., 0]
        next_q = q_net.apply(target_params, batch.next_obs).max(-1)
        target = batch.reward + batch.next_obs_discount * next_q
        td = q - jax.lax.stop_gradient(target)
        return jnp.mean(td**2), {"loss/td": jnp.mean(td**2), "q/mean": q.mean()}

    def update(state, batch, key):
        del key
        params = state.params
        grads, metrics = jax.grad(loss, has_aux=True)(params["q"], params["target_q"],
                                                     batch)
        updates, opt_state = opt.update(grads, state.opt_state, params["q"])
        q = optax.apply_updates(params["q"], updates)
        sync = batch.env_steps - state.synced_at >= cfg.target_every
        target = jax.tree.map(lambda new, old: jnp.where(sync, new, old), q,
                              params["target_q"])
        synced_at = jnp.where(sync, batch.env_steps, state.synced_at)
        metrics["explore/epsilon"] = epsilon(cfg, batch.env_steps)
        return State({"q": q, "target_q": target}, opt_state, synced_at), metrics

    return purerl.stateless(init, act, update)


def replay(cfg: Config) -> purerl.Replay:
    return purerl.Replay(capacity=cfg.buffer_size, batch_size=cfg.batch_size,
                         learning_starts=cfg.learning_starts)


SPEC = purerl.AlgoSpec(name="dqn", config=Config, make=make, run=RUN, doc=__doc__,
                       action_spaces=("Discrete",), replay=replay, reads_env_steps=True,
                       discounting=lambda cfg: (cfg.gamma, 1.0))

if __name__ == "__main__":
    from purerl import experiment

    sys.exit(experiment.main(SPEC, {}, default_env="CartPole-v1"))
