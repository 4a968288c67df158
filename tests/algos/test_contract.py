"""The contract every algorithm module keeps with the driver, checked the same way for
all of them: a new algorithm gets these tests by being listed in ``CASES``.

* one evaluation block (act, env step, memory, updates, evaluation) keeps every leaf's
  shape and dtype, the carry included, and compiles once;
* the same key gives the same bits; different keys give different parameters;
* vmapping two blocks over seeds equals running each seed on its own.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import loops
from purerl.algos import (a2c, acktr, actor_critic, dreamer, npg, offpac, ppo, proto,
                          reinforce, sac, smm, trpo)
from purerl.testing import as_numpy, leaves_equal, split_config

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
                                             train_steps=2, buffer_size=64,
                                             learning_starts=8, deter_size=8,
                                             stoch_size=4, hidden_size=8, units=8,
                                             horizon=3, mode_samples=4)),
}
# The uniform-random baseline has no parameters to move: tests/algos/test_uniform.py.
NOT_LEARNING = {"uniform"}


def test_every_algorithm_is_listed():
    assert set(CASES) | NOT_LEARNING == set(purerl.algos.__all__)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    algo, env_id, fields = CASES[request.param]
    env = purerl.envs.make(env_id)
    cfg, run = split_config(algo, **tiny(algo), **fields)
    init, block, _ = loops.make_block(algo, env, cfg, run)
    # Compiling dominates these tests on CPU: both tests of a case share one compiled
    # block (``make_train`` is a scan of this block, so what holds for the block holds
    # for the run).
    return init, jax.jit(block)


def test_block_keeps_shapes_compiles_once_and_is_deterministic(case):
    init, block = case
    r0 = jax.jit(init)(jax.random.key(0))
    r1, m1 = block(r0)
    r2, m2 = block(r1)
    chex.assert_trees_all_equal_shapes_and_dtypes(r0, r1, r2)
    chex.assert_trees_all_equal_shapes_and_dtypes(m1, m2)
    assert int(r2.block) == 2 and int(r2.env_steps) > int(r1.env_steps) > 0
    # The updates did something: the agent's parameters moved in each block.
    assert not leaves_equal(r0.agent.params, r1.agent.params)
    assert not leaves_equal(r1.agent.params, r2.agent.params)
    for name, value in m2.items():
        # An env metric is NaN until the env has measured it (a maze's state entropy
        # needs a full window of positions).
        if not name.startswith("env/"):
            assert np.all(np.isfinite(np.asarray(value))), name
    # The same key gives the same bits; another key, other parameters.
    again = block(jax.jit(init)(jax.random.key(0)))
    assert leaves_equal(again, (r1, m1))
    other, _ = block(jax.jit(init)(jax.random.key(1)))
    assert not leaves_equal(other.agent.params, r1.agent.params)
    assert block._cache_size() == 1


def test_vmap_over_seeds_equals_separate_runs(case):
    init, block = case
    keys = jax.random.split(jax.random.key(3), 2)
    batched = jax.jit(jax.vmap(init))(keys)
    vblock = jax.jit(jax.vmap(block))
    for _ in range(2):
        batched, _ = vblock(batched)
    for i in range(2):
        alone, _ = block(jax.jit(init)(keys[i]))
        alone, _ = block(alone)
        mine = jax.tree.map(lambda x, i=i: x[i], batched.agent.params)
        for x, y in zip(as_numpy(mine), as_numpy(alone.agent.params), strict=True):
            np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


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
    agent = algo.make(cfg, env.spec, **({"num_updates": 4} if getattr(cfg, "anneal_lr", False)
                                       else {}))
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
