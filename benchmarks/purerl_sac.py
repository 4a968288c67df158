"""Throughput of purerl's SAC on Pendulum-v1, one measurement per process.

    python benchmarks/purerl_sac.py --num-seeds 8 --total-steps 20000 [--devices 2]

Prints one JSON line (the same fields as ``benchmarks/peers/rejax_sac.py``). The run is
compiled ahead of time (``compile_seconds``), then timed on fresh keys with
``jax.block_until_ready``; peak RSS covers compile + training. ``--devices D`` splits
the CPU into D XLA host devices and shards the seed axis over them (purerl's way of
using every core); ``--devices 1`` is one device, seeds vmapped only.

Configuration (shared with the peer): 1 env, one gradient update after every env step
(``num_steps`` 1, ``updates_per_round`` 1) once ``learning_starts`` (1000) steps have been
collected, i.e. ``total_steps - learning_starts + 1`` updates per seed; batch 256
sampled uniformly from the replay; separate actor and twin critics, each 256x256 ReLU
MLPs; Adam lr 1e-3 (the SB3 zoo's Pendulum setting) for actor, critics and
temperature; gamma 0.99, tau 0.005, initial alpha 1, target entropy -|A| = -1; a
replay of ``total_steps`` transitions (it never wraps; ``--buffer-size`` changes it).
Uniform random actions before ``learning_starts``. One evaluation (8 greedy episodes
of 200 steps) at the end, inside the timed run. ``updates_per_seed`` is read back from
the actor's Adam step count, so it checks the one-update-per-step claim.
"""

import argparse
import json
import sys

from purerl_timing import compile_and_time, use_host_devices

LEARNING_STARTS = 1000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-seeds", type=int, default=1)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="timed runs; median reported")
    p.add_argument("--devices", type=int, default=1,
                   help="XLA host devices (seed sharding)")
    p.add_argument("--no-vmap", action="store_true", help="with --num-seeds 1: no vmap")
    p.add_argument("--learning-starts", type=int, default=LEARNING_STARTS,
                   help="env steps before the first update")
    p.add_argument("--buffer-size", type=int, default=None,
                   help="replay capacity per seed (default: --total-steps)")
    return p.parse_args(argv)


def config(total_steps, learning_starts=LEARNING_STARTS, buffer_size=None):
    """``(sac.Config, RunConfig)``: the hyperparameters and the run's loop settings."""
    import purerl
    from purerl.algos import sac

    cfg = sac.Config(
        updates_per_round=1, batch_size=256, buffer_size=buffer_size or total_steps,
        learning_starts=learning_starts, lr=1e-3, gamma=0.99, tau=0.005,
        init_alpha=1.0, target_entropy_scale=1.0, hidden_sizes=(256, 256),
        activation="relu",
    )
    run = purerl.RunConfig(total_steps=total_steps, num_envs=1, num_steps=1, num_evals=1,
                           num_eval_envs=8)
    return cfg, run


def main(argv=None):
    args = parse_args(argv)
    if args.num_seeds < 1 or args.total_steps < 1 or args.repeats < 1:
        sys.exit("--num-seeds, --total-steps and --repeats must be positive")
    if args.no_vmap and args.num_seeds != 1:
        sys.exit("--no-vmap needs --num-seeds 1")
    use_host_devices(args.devices)
    import jax
    import numpy as np
    import optax

    import purerl
    from purerl.algos import sac

    cfg, run = config(args.total_steps, args.learning_starts, args.buffer_size)
    timed = compile_and_time(
        purerl.make_train(sac, purerl.envs.make("Pendulum-v1"), cfg, run), args)
    runner, metrics, wall = timed["runner"], timed["metrics"], timed["wall"]
    walls, sharded = timed["walls"], timed["sharded"]
    compile_seconds = timed["compile_seconds"]
    peak_rss_mb = timed["peak_rss_mb"]
    seeds = 1 if args.no_vmap else args.num_seeds
    steps = int(np.asarray(runner.env_steps).reshape(-1)[0])
    # Adam's step count of the actor == gradient updates taken (per seed).
    actor_opt = runner.agent.opt_state["actor"]
    counts = np.asarray(optax.tree_utils.tree_get(actor_opt, "count"))
    updates = [int(c) for c in counts.reshape(-1)]
    expected = max(0, steps - max(args.learning_starts, 1) + 1)
    if any(u != expected for u in updates):
        print(f"warning: updates per seed {updates} != expected {expected}",
              file=sys.stderr)
    final = np.asarray(metrics["eval/return"]).reshape(seeds, -1)[:, -1]
    result = {
        "framework": "purerl",
        "version": purerl.__version__,
        "num_seeds": args.num_seeds,
        "total_steps": steps,
        "updates_per_seed": updates[0],
        "env_steps_per_second": steps * args.num_seeds / wall,
        "compile_seconds": compile_seconds,
        "wall_seconds": wall,
        "peak_rss_mb": peak_rss_mb,
        "final_return_mean": float(final.mean()),
        "notes": (
            f"{'jit(train), no vmap' if args.no_vmap else 'jit(vmap(train))'}"
            f"{f', seeds sharded over {args.devices} host devices' if sharded else ''}"
            f" on {jax.default_backend()}; replay {cfg.buffer_size}, learning_starts "
            f"{cfg.learning_starts}, {updates[0]} updates per seed; timed runs (s): "
            f"{[round(w, 3) for w in walls]}, median reported; one final evaluation "
            f"(8 greedy episodes) inside the timed run; per-seed returns "
            f"{[round(float(x), 1) for x in final]}"
        ),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
