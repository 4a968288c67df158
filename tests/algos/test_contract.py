"""The contract every algorithm module keeps with the driver, checked the same way for
all of them: a new algorithm gets these tests by being listed in ``CASES``.

* ``purerl.testing.check_contract`` (the checks an out-of-tree algorithm runs too):
  one evaluation block (act, env step, memory, updates, evaluation) keeps every
  leaf's shape and dtype, the carry included, and compiles once; the same key gives
  the same bits, different keys different parameters; vmapping two blocks over seeds
  equals running each seed on its own;
* Box actions of two axes; Config floats refuse NaN and inf.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import loops
from purerl.algos import (a2c, acktr, actor_critic, dreamer, npg, offpac, ppo, proto,
                          reinforce, sac, smm, trpo)
from purerl.testing import check_contract, leaves_equal, split_config

TINY = dict(num_evals=2, num_eval_envs=2, hidden_sizes=(8, 8))


def tiny(algo) -> dict:
    """TINY, less the network widths of a Config that names its widths otherwise."""
    fields = {f.name for f in dataclasses.fields(algo.Config)}
    return {k: v for k, v in TINY.items() if k != "hidden_sizes" or k in fields}
CASES = {
    "reinforce": (reinforce, "CartPole-v1", dict(total_steps=600, num_envs=2)),
    "actor_critic": (actor_critic, "CartPole-v1", dict(total_steps=256, num_envs=4,
                                                       num_steps=8)),
    "a2c": (a2c, "CartPole-v1", dict(total_steps=256, num_envs=4, num_steps=8)),
    "offpac": (offpac, "CartPole-v1", dict(total_steps=256, num_envs=4, num_steps=8,
                                           replay_size=8, segment_length=4,
                                           batch_segments=4)),
    # mjrl's damping 1e-4 leaves the tiny net's Fisher near singular, and CG then
    # amplifies float32 rounding differences between batched and unbatched kernels
    # (6e-3 in the weights after one update; 1e-7 at damping 0.1, as TRPO's).
    "npg": (npg, "Pendulum-v1", dict(total_steps=256, num_envs=2, num_steps=32,
                                     vf_minibatch_size=16, cg_damping=0.1)),
    "trpo": (trpo, "Pendulum-v1", dict(total_steps=256, num_envs=2, num_steps=32,
                                       vf_minibatch_size=16)),
    "ppo": (ppo, "CartPole-v1", dict(total_steps=256, num_envs=4, num_steps=16)),
    "acktr": (acktr, "Pendulum-v1", dict(total_steps=256, num_envs=4, num_steps=8)),
    "sac": (sac, "Pendulum-v1", dict(total_steps=64, num_envs=2, num_steps=2,
                                     batch_size=8, buffer_size=64, learning_starts=8)),
    "proto": (proto, "Maze-Open-v0", dict(total_steps=64, num_envs=2, num_steps=2,
                                          batch_size=8, buffer_size=64, learning_starts=8,
                                          num_prototypes=4, queue_size=8, proto_dim=4,
                                          predictor_hidden=8, encoder="mlp",
                                          encoder_hidden=(8,), feature_dim=4)),
    "smm": (smm, "Maze-Open-v0", dict(total_steps=64, num_envs=2, num_steps=2,
                                      batch_size=8, buffer_size=64, learning_starts=8,
                                      vae_hidden=(8,), vae_code_dim=4,
                                      discriminator_hidden=(8,), history_size=2,
                                      history_every=4, eval_policy="mixture")),
    "dreamer": (dreamer, "Pendulum-v1", dict(total_steps=64, num_envs=2, num_steps=8,
                                             batch_size=2, sequence_length=4,
                                             updates_per_round=2, buffer_size=64,
                                             learning_starts=8, deter_size=8,
                                             stoch_size=4, hidden_size=8, units=8,
                                             horizon=3, mode_samples=4)),
}
# The uniform-random baseline has no parameters to move: tests/algos/test_uniform.py.
NOT_LEARNING = {"uniform"}


def test_every_algorithm_is_listed():
    assert set(CASES) | NOT_LEARNING == set(purerl.algos.__all__)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_contract_holds(name):
    """``purerl.testing.check_contract``: shapes and dtypes kept, one compilation,
    determinism, seeds differ, vmap equals separate runs (see there)."""
    algo, env_id, fields = CASES[name]
    cfg, run = split_config(algo, **tiny(algo), **fields)
    check_contract(algo, env_id, cfg, run)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items()
                                        if "Box" in c[0].SPEC.action_spaces))
def test_box_actions_with_two_axes(name):
    """A ``[2, 2]`` Box: the env gets actions of its shape, the policy's
    distribution flat vectors, and one block runs and trains."""
    algo, _, fields = CASES[name]
    env = purerl.envs.make("Probe-MatrixBandit-v0")
    cfg, run = split_config(algo, **tiny(algo), **fields)
    init, block, _ = loops.make_block(algo, env, cfg, run)
    r0 = jax.jit(init)(jax.random.key(0))
    agent = loops.make_agent(algo, cfg, env.spec, loops.schedule(run))
    obs = jnp.zeros((3, *env.spec.obs_shape))
    for eval_mode in (False, True):
        action, _, _ = agent.act(r0.agent, agent.init_carry(3), obs, jnp.ones(3, bool),
                                 jax.random.key(1), eval=eval_mode)
        assert action.shape == (3, 2, 2)
    r1, metrics = jax.jit(block)(r0)
    assert not leaves_equal(r0.agent.params, r1.agent.params)
    for key, value in metrics.items():
        assert np.all(np.isfinite(np.asarray(value))), key


@pytest.mark.parametrize("name", sorted(purerl.algos.__all__))
def test_float_fields_refuse_nan_and_inf(name):
    import dataclasses
    import math

    algo = getattr(purerl.algos, name)
    floats = [f.name for f in dataclasses.fields(algo.Config) if f.type in (float, "float")]
    for field in floats:
        with pytest.raises(ValueError, match=f"Config.{field} must be"):
            algo.Config(**{field: math.nan})
        if field not in getattr(algo.Config, "_infinite_ok", ()):
            with pytest.raises(ValueError, match=f"Config.{field} must be finite"):
                algo.Config(**{field: -math.inf})


def test_an_infinite_field_is_allowed_only_where_it_means_something():
    import math

    assert offpac.Config(clip_rho=math.inf).clip_rho == math.inf  # no truncation
    with pytest.raises(ValueError, match="Config.clip_c must be finite"):
        offpac.Config(clip_c=math.inf)
