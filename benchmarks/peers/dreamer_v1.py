"""Peer update benchmark: danijar/dreamer (Dreamer v1, TensorFlow 2) training steps on
random 64x64 pixel episodes.

Runs inside its own virtual environment (benchmarks/.venvs/dreamer, built by
``bash benchmarks/peers/build_venvs.sh dreamer`` from requirements-dreamer.txt), never
inside purerl's. The reference is not a package: its files are loaded, unedited, from
a directory the caller names. Usage:

    benchmarks/.venvs/dreamer/bin/python benchmarks/peers/dreamer_v1.py \
        --dreamer-path DIR [--updates 10] [--repeats 3]

DIR holds ``dreamer.py``, ``models.py``, ``tools.py`` and ``wrappers.py`` from
github.com/danijar/dreamer at commit 56d4d44 (56d4d444dfd0582b0e79dab80aebbea74c0ce40d,
the repository's last), for example

    for f in dreamer.py models.py tools.py wrappers.py; do git show HEAD:$f > DIR/$f; done

None of them is copied into this repository. The reference was written for TensorFlow
2.2, which has no CPython 3.11 wheel; on TensorFlow 2.15 two names it uses are gone,
and this script puts them back before importing it, changing no computation:
``tensorflow.keras.mixed_precision.experimental`` (``Policy``, ``global_policy``,
``set_policy``, ``LossScaleOptimizer(opt, "dynamic")``: the same objects under their
stable names) and ``MirroredStrategy.experimental_run_v2`` (renamed ``run``).

What is timed: ``Dreamer.train(batch)``, the reference's ``tf.function`` training step
(world model, imagination of 15 steps from every posterior state, actor and value, with
their three Adam steps) at its default sizes and batch (50 sequences of 50 steps), in
float32 (``--precision 32``: mixed precision is a GPU setting). Episodes of 501 random
uint8 frames are written to a temporary directory for the reference's own data
pipeline; one batch is drawn from it and reused, so no input pipeline is timed.
``--warmup`` steps run first; then ``--repeats`` rounds of ``--updates`` steps each are
timed and the median round is reported. The last line on stdout is one JSON object.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
import types


def shim_tensorflow():
    import tensorflow as tf

    prec = types.ModuleType("tensorflow.keras.mixed_precision.experimental")
    mp = tf.keras.mixed_precision
    prec.Policy = mp.Policy
    prec.global_policy = mp.global_policy
    prec.set_policy = mp.set_global_policy
    prec.LossScaleOptimizer = lambda opt, loss_scale: mp.LossScaleOptimizer(
        opt, dynamic=loss_scale == "dynamic")
    sys.modules[prec.__name__] = prec
    tf.keras.mixed_precision.experimental = prec
    strategy = tf.distribute.MirroredStrategy
    if not hasattr(strategy, "experimental_run_v2"):
        strategy.experimental_run_v2 = strategy.run
    # Keras 2.11+ optimizers: the new Adam has no ``variables()`` method, only used by
    # the reference's checkpointing (not run here).
    return tf


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dreamer-path", required=True)
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--action-dim", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = shim_tensorflow()
    sys.path.insert(0, os.path.abspath(args.dreamer_path))
    import gym
    import numpy as np

    import dreamer
    import tools

    rng = np.random.default_rng(args.seed)
    tmp = pathlib.Path(tempfile.mkdtemp())
    config = dreamer.define_config()
    config.logdir = tmp
    config.precision = 32
    config.log_scalars = False
    config.log_images = False
    length = 501  # a 1000-frame episode at action repeat 2, plus the first step
    episodes = [{"image": rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8),
                 "action": rng.uniform(-1, 1, (length, args.action_dim)).astype(np.float32),
                 "reward": rng.uniform(0, 1, length).astype(np.float32)}
                for _ in range(4)]
    tools.save_episodes(tmp / "episodes", episodes)
    writer = tf.summary.create_file_writer(str(tmp))
    writer.set_as_default()
    space = gym.spaces.Box(-1.0, 1.0, (args.action_dim,), dtype=np.float32)
    t0 = time.perf_counter()
    agent = dreamer.Dreamer(config, tmp / "episodes", space, writer)  # runs one step
    batch = next(agent._dataset)
    for _ in range(args.warmup):
        agent.train(batch)
    warmup = time.perf_counter() - t0
    walls = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(args.updates):
            agent.train(batch)
        # The step's outputs are variables: reading one waits for the last update.
        agent._value.variables[0].numpy()
        walls.append(time.perf_counter() - t0)
    wall = sorted(walls)[(len(walls) - 1) // 2]
    print(json.dumps({
        "framework": "danijar/dreamer (TensorFlow)", "updates_per_second": args.updates / wall,
        "walls": walls, "warmup_seconds": warmup, "tensorflow": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "batch": [config.batch_size, config.batch_length], "precision": config.precision,
    }))


if __name__ == "__main__":
    main()
