"""Hyperparameter sweeps as one program: float ``Config`` fields vmapped, crossed with
seeds.

A ``Config``'s float fields are pytree leaves (``purerl.config``), so a run can take
them as traced arguments: ``train_fn`` returns ``train(values, key)``, the whole run of
``make_train`` with ``config`` updated by ``values`` (a dict of scalars), and ``run``
vmaps it over points and over seeds inside one ``jit``. Fields that fix shapes or loop
counts (ints, bools, strings, tuples) cannot be swept: they are refused by name.

    points = sweep.grid(lr=[1e-4, 3e-4, 1e-3], ent_coef=[0.0, 0.01])   # 6 points
    runner, metrics = sweep.run(ppo, env, ppo.Config(), run, points, seeds=8)
    metrics["eval/return"]          # [6 points, 8 seeds, evaluations, ...]

Each point computes the maths of its own run, but not its bits: XLA:CPU compiles a
batched hyperparameter's arithmetic (a broadcast operand) differently from a scalar or
folded constant, and even a different batch size of points x seeds picks different
kernels, so a point agrees with the run of that value alone to float32 rounding at the
first updates (tested: parameters within 1e-5 after one block of PPO and SAC) and
drifts apart from there, as two runs on different hardware would.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp

from purerl import config as config_lib
from purerl.loops import make_train


def float_fields(algo) -> list[str]:
    """The sweepable fields of ``algo.Config``."""
    return config_lib.float_fields(algo.Config)


def check_fields(algo, names) -> None:
    """A one-line ``ValueError`` for a name that is not a float field of the Config."""
    floats = float_fields(algo)
    fields = {f.name: f for f in dataclasses.fields(algo.Config)}
    for name in names:
        if name not in fields:
            raise ValueError(f"{algo.__name__}.Config has no field {name!r}; float fields "
                             f"(sweepable): {', '.join(floats)}")
        if name not in floats:
            kind = getattr(fields[name].type, "__name__", fields[name].type)
            raise ValueError(f"Config.{name} is {kind}: it fixes shapes, loop counts or the "
                             f"program, so it cannot be swept; float fields: "
                             f"{', '.join(floats)}")


def grid(**values) -> dict:
    """Every combination of the given values: ``{name: float32 [P]}``, P the product of
    the lengths, the last name varying fastest."""
    names = list(values)
    points = list(itertools.product(*(list(values[n]) for n in names)))
    return {n: jnp.asarray([p[i] for p in points], jnp.float32) for i, n in enumerate(names)}


def train_fn(algo, env, config, run, names):
    """``train(values, key) -> (runner, metrics)``: ``make_train`` with ``config``'s
    fields ``names`` set from ``values`` (scalars, traced or not)."""
    check_fields(algo, names)
    names = tuple(names)

    def train(values, key):
        if set(values) != set(names):
            raise ValueError(f"expected values for {sorted(names)}, got {sorted(values)}")
        cfg = dataclasses.replace(config, **values)
        return make_train(algo, env, cfg, run)(key)

    return train


def program(algo, env, config, run_config, points: dict, seeds: int, seed: int = 0):
    """``(fn, args, unflatten)``: the jitted program of ``run`` and its arguments, for
    compiling ahead of time (``fn.lower(*args).compile()``); ``unflatten`` turns its
    output's leading points x seeds axis into ``[points, seeds]``."""
    train = train_fn(algo, env, config, run_config, points)
    num_points = len(next(iter(points.values())))
    keys = jax.random.split(jax.random.key(seed), seeds)
    # One flat batch of points x seeds, reshaped to [points, seeds] after.
    flat_values = {k: jnp.repeat(jnp.asarray(v, jnp.float32), seeds) for k, v in points.items()}
    flat_keys = jnp.tile(keys, (num_points,))

    def unflatten(out):
        return jax.tree.map(lambda x: x.reshape(num_points, seeds, *x.shape[1:]), out)

    return jax.jit(jax.vmap(train)), (flat_values, flat_keys), unflatten


def run(algo, env, config, run_config, points: dict, seeds: int, seed: int = 0):
    """All points x ``seeds`` seeds in one ``jit``: leaves ``[points, seeds, ...]``.
    Every point gets the same seed keys (``split(key(seed), seeds)``), so points differ
    by their values alone."""
    fn, args, unflatten = program(algo, env, config, run_config, points, seeds, seed)
    return unflatten(fn(*args))
