"""Hyperparameter sweeps as one program: float ``Config`` fields crossed with seeds.

A ``Config``'s float fields are pytree leaves (``purerl.config``), so a run can take
them as traced arguments: ``train_fn`` returns ``train(values, key)``, the whole run of
``make_train`` with ``config`` updated by ``values`` (a dict of scalars), and ``run``
runs it for every point and seed inside one ``jit``. Fields that fix shapes or loop
counts (ints, bools, strings, tuples) cannot be swept: they are refused by name.

    points = sweep.grid(lr=[1e-4, 3e-4, 1e-3], ent_coef=[0.0, 0.01])   # 6 points
    runner, metrics = sweep.run(ppo, env, ppo.Config(), run, points, seeds=8)
    metrics["eval/return"]          # [6 points, 8 seeds, evaluations, ...]

Each point is its separate run to the bit (a ``Trainer`` with that value and the same
seeds, sharded the same way): the points are mapped one after another, each a vmap over
the seeds. What decides the bits on XLA:CPU is the batch shape (measured: a traced or a
constant learning rate give the same bits, a points x seeds vmap does not), so
``batch_points`` > 1, which vmaps points together for an accelerator's sake, gives up
the bit-equality for float32 agreement.
"""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from purerl import config as config_lib
from purerl import distributed
from purerl.loops import make_train
from purerl.algos.base import spec_of


def float_fields(algo) -> list[str]:
    """The sweepable fields of ``algo.config``."""
    algo = spec_of(algo)
    return config_lib.float_fields(algo.config)


def check_fields(algo, names) -> None:
    """A one-line ``ValueError`` for a name that is not a float field of the Config."""
    algo = spec_of(algo)
    floats = float_fields(algo)
    fields = {f.name: f for f in dataclasses.fields(algo.config)}
    for name in names:
        if name not in fields:
            raise ValueError(f"{algo.name}.Config has no field {name!r}; float fields "
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


def program(algo, env, config, run_config, points: dict, seeds: int, seed: int = 0,
            batch_points: int = 1):
    """``(fn, args)``: the jitted program of ``run`` and its arguments, for compiling
    ahead of time (``fn.lower(*args).compile()``); its output's leaves are
    ``[points, seeds, ...]``.

    The points run one after another (``lax.map``), each a ``vmap`` over the seeds, the
    seed axis sharded over all devices when it divides evenly: the batch shapes of a
    separate run, so each point is that run to the bit. ``batch_points`` > 1 vmaps
    that many points together (more parallel work for an accelerator); XLA then picks
    kernels for a points x seeds batch, and a point agrees with its run to float32
    rounding only."""
    train = jax.vmap(train_fn(algo, env, config, run_config, points), in_axes=(None, 0))
    if batch_points < 1:
        raise ValueError(f"batch_points must be >= 1, got {batch_points}")
    values = {k: jnp.asarray(v, jnp.float32) for k, v in points.items()}
    keys = jax.random.split(jax.random.key(seed), seeds)

    def all_points(values, keys):
        return jax.lax.map(lambda v: train(v, keys), values,
                           batch_size=None if batch_points == 1 else batch_points)

    sharding = distributed.seed_sharding(seeds)
    if sharding is None:
        return jax.jit(all_points), (values, keys)
    shardings = (NamedSharding(sharding.mesh, P()), sharding)
    fn = jax.jit(all_points, in_shardings=shardings,
                 out_shardings=NamedSharding(sharding.mesh, P(None, "seed")))
    # Placed first: across processes (purerl.distributed) the devices are everyone's.
    args = tuple(distributed.to_global(a, sh) for a, sh in zip((values, keys), shardings))
    return fn, args


def run(algo, env, config, run_config, points: dict, seeds: int, seed: int = 0,
        batch_points: int = 1):
    """All points x ``seeds`` seeds in one ``jit``: leaves ``[points, seeds, ...]``.
    Every point gets the same seed keys (``split(key(seed), seeds)``), so points differ
    by their values alone."""
    fn, args = program(algo, env, config, run_config, points, seeds, seed, batch_points)
    return fn(*args)
