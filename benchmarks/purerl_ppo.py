"""Throughput of purerl's PPO on CartPole-v1, one measurement per process.

    python benchmarks/purerl_ppo.py --num-seeds 8 --total-steps 500000 [--devices 2]

Prints one JSON line (the same fields as the peers in benchmarks/peers/). The run is
compiled ahead of time (``compile_seconds``), then timed on fresh keys with
``jax.block_until_ready``; peak RSS covers compile + training. ``--devices D`` splits
the CPU into D XLA host devices and shards the seed axis over them (purerl's way of
using every core); ``--devices 1`` is one device, seeds vmapped only.

Configuration (shared with the peers): 4 envs x 128 steps (batch 512), 4 epochs x 4
minibatches of 128, separate 64x64 tanh MLPs, Adam lr 2.5e-4 constant (eps 1e-5),
gamma 0.99, GAE lambda 0.95, clip 0.2 (value clipped too, as rejax always does), vf
coef 0.5, entropy 0.01, global grad-norm clip 0.5, per-minibatch advantage
normalisation. One evaluation (8 greedy episodes) at the end, inside the timed run.
"""

import argparse
import json
import sys

from purerl_timing import compile_and_time, use_host_devices


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-seeds", type=int, default=1)
    p.add_argument("--total-steps", type=int, default=500_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="timed runs; median reported")
    p.add_argument("--devices", type=int, default=1, help="XLA host devices (seed sharding)")
    p.add_argument("--no-vmap", action="store_true", help="with --num-seeds 1: no vmap")
    return p.parse_args(argv)


def config(total_steps):
    """``(ppo.Config, RunConfig)``: the hyperparameters and the run's loop settings."""
    import purerl
    from purerl.algos import ppo

    cfg = ppo.Config(
        num_epochs=4, num_minibatches=4, lr=2.5e-4, anneal_lr=False, gamma=0.99,
        gae_lambda=0.95, clip_eps=0.2, clip_value=True, vf_coef=0.5, ent_coef=0.01,
        max_grad_norm=0.5,
    )
    run = purerl.RunConfig(total_steps=total_steps, num_envs=4, num_steps=128,
                           num_evals=1, num_eval_envs=8)
    return cfg, run


def main(argv=None):
    args = parse_args(argv)
    if args.no_vmap and args.num_seeds != 1:
        sys.exit("--no-vmap needs --num-seeds 1")
    use_host_devices(args.devices)
    import jax
    import numpy as np

    import purerl
    from purerl.algos import ppo

    cfg, run = config(args.total_steps)
    timed = compile_and_time(
        purerl.make_train(ppo, purerl.envs.make("CartPole-v1"), cfg, run), args)
    runner, metrics, wall = timed["runner"], timed["metrics"], timed["wall"]
    walls, sharded = timed["walls"], timed["sharded"]
    compile_seconds = timed["compile_seconds"]
    steps = int(np.asarray(runner.env_steps).reshape(-1)[0])
    final = np.asarray(metrics["eval/return"]).reshape(args.num_seeds if not args.no_vmap else 1, -1)[:, -1]
    result = {
        "framework": "purerl",
        "version": purerl.__version__,
        "num_seeds": args.num_seeds,
        "total_steps": steps,
        "env_steps_per_second": steps * args.num_seeds / wall,
        "compile_seconds": compile_seconds,
        "wall_seconds": wall,
        "peak_rss_mb": timed["peak_rss_mb"],
        "final_return_mean": float(final.mean()),
        "notes": (
            f"{'jit(train), no vmap' if args.no_vmap else 'jit(vmap(train))'}"
            f"{f', seeds sharded over {args.devices} host devices' if sharded else ''}"
            f" on {jax.default_backend()}; timed runs (s): {[round(w, 3) for w in walls]}, "
            f"median reported; one final evaluation (8 greedy episodes) inside the timed run"
        ),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
