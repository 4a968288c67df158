"""Peer throughput benchmark: rejax PPO on gymnax CartPole-v1.

Runs inside its own virtual environment (benchmarks/.venvs/rejax, built by
benchmarks/peers/build_venvs.sh from requirements-rejax.txt), never inside
purerl's. Usage:

    benchmarks/.venvs/rejax/bin/python benchmarks/peers/rejax_ppo.py \
        --num-seeds 8 --total-steps 500000

All seeds are trained at once, the way rejax is meant to be used: one
``jax.jit(jax.vmap(algo.train))`` over a batch of PRNG keys. The function is
compiled ahead of time (``.lower(keys).compile()``, reported as
``compile_seconds``) and then run on fresh keys; only that run is timed
(``--repeats N`` times N runs, each on new keys, and reports the median;
the returns come from the last one).
The last line on stdout is one JSON object with the measurement.

Configuration (matched to purerl's benchmark config as far as rejax allows):
4 envs x 128 steps per rollout (batch 512), 4 epochs x 4 minibatches of 128,
separate 64x64 tanh MLPs for actor and critic, Adam lr 2.5e-4 (constant),
gamma 0.99, GAE lambda 0.95, clip eps 0.2, vf coef 0.5, entropy coef 0.01,
max_grad_norm 0.5, per-minibatch advantage normalisation, no observation or
reward normalisation.

Differences rejax 0.1.3 does not let us configure away (stock PPO kept on
purpose, so this measures rejax as shipped):
* Value clipping is always on: the critic loss is
  0.5 * max((v - target)^2, (v_old + clip(v - v_old, -eps, eps) - target)^2)
  with eps = clip_eps (0.2); there is no switch to turn it off.
* ``max_grad_norm`` is passed to ``optax.clip``, which clips each gradient
  *element* to [-0.5, 0.5]; it is not global-norm clipping.
* Actor and critic are separate flax TrainStates, each with its own Adam
  (optax defaults: b1 0.9, b2 0.999, eps 1e-8) and each updated from its own
  loss (actor: clipped surrogate - ent_coef * entropy; critic: vf_coef * value
  loss), i.e. two optimiser steps per minibatch rather than one joint step.
* Network init is flax's default (lecun-normal kernels, zero biases), not
  orthogonal init with gains sqrt(2) / 0.01 / 1.
* gymnax's CartPole ``done`` includes the 500-step time limit and rejax's GAE
  treats every ``done`` as terminal (no bootstrapping on truncation).
* Evaluation: rejax's train loop calls ``eval_callback`` every ``eval_freq``
  steps. We always set ``skip_initial_evaluation=True`` and ``eval_freq`` =
  total steps, so the callback runs exactly once, after the last iteration.
  ``--eval`` chooses what that callback is:
    after (default): a no-op during the timed run (the documented way to swap
      callbacks); afterwards, untimed, rejax's stock evaluation (128 episodes
      of the stochastic policy per seed) runs on the final train states and
      gives ``final_return_mean``.
    in-loop: the stock callback itself, so that one evaluation is inside the
      timed run (it costs ~0.8 s per run on the 2-core dev machine, a large
      share of a 100k-step run).
    none: no-op callback and no evaluation; ``final_return_mean`` is null.

``--no-vmap`` (only with ``--num-seeds 1``) times plain ``jax.jit(algo.train)``
instead; vmapping over a single key is measurably slower on CPU.
"""

import argparse
import json
import os
import resource
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-seeds", type=int, default=1,
                        help="independent training runs, vmapped inside one jit")
    parser.add_argument("--total-steps", type=int, default=500_000,
                        help="env steps per seed (rounded up to whole 512-step rollouts)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base seed for the PRNG keys")
    parser.add_argument("--eval", choices=("after", "in-loop", "none"), default="after",
                        help="after: stock evaluation once after the timed run "
                        "(untimed); in-loop: stock eval callback once at the end of "
                        "training, inside the timed run; none: no evaluation")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs (each on fresh keys); the median is reported")
    parser.add_argument("--no-vmap", action="store_true",
                        help="with --num-seeds 1: jit algo.train without vmap")
    return parser.parse_args(argv)


# purerl's benchmark configuration, in rejax's PPO field names.
NUM_ENVS = 4
NUM_STEPS = 128
NUM_EPOCHS = 4
NUM_MINIBATCHES = 4


def make_algo(total_steps, in_loop_eval):
    from rejax import PPO

    algo = PPO.create(
        env="CartPole-v1",
        num_envs=NUM_ENVS,
        num_steps=NUM_STEPS,
        num_epochs=NUM_EPOCHS,
        num_minibatches=NUM_MINIBATCHES,
        learning_rate=2.5e-4,  # constant: rejax PPO has no annealing
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,  # also used as the (always-on) value clipping range
        vf_coef=0.5,
        ent_coef=0.01,
        max_grad_norm=0.5,  # optax.clip: element-wise, not global norm
        normalize_observations=False,
        normalize_rewards=False,
        total_timesteps=total_steps,
        eval_freq=total_steps,  # one evaluation block == the whole run
        skip_initial_evaluation=True,
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)},
    )
    if not in_loop_eval:
        # Callbacks must return a pytree; an empty tuple costs nothing.
        algo = algo.replace(eval_callback=_no_eval)
    return algo


def _no_eval(algo, ts, rng):
    return ()


def main(argv=None):
    args = parse_args(argv)
    if args.num_seeds < 1 or args.total_steps < 1 or args.repeats < 1:
        sys.exit("--num-seeds, --total-steps and --repeats must be positive")
    if args.no_vmap and args.num_seeds != 1:
        sys.exit("--no-vmap needs --num-seeds 1")

    import jax
    import jax.numpy as jnp
    from importlib.metadata import version

    rejax_version = version("rejax")
    algo = make_algo(args.total_steps, in_loop_eval=args.eval == "in-loop")

    rollout = NUM_ENVS * NUM_STEPS
    iterations = -(-args.total_steps // rollout)  # what rejax's loop runs
    expected_steps = iterations * rollout

    def seed_keys(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), args.num_seeds)
        return keys[0] if args.no_vmap else keys

    train = jax.jit(algo.train if args.no_vmap else jax.vmap(algo.train))

    compile_keys = seed_keys(args.seed)
    t0 = time.perf_counter()
    compiled = train.lower(compile_keys).compile()
    compile_seconds = time.perf_counter() - t0

    # Timed run(s), each on fresh keys (not the ones used for lowering).
    walls = []
    for r in range(args.repeats):
        run_keys = jax.block_until_ready(seed_keys(args.seed + 1 + r))
        t0 = time.perf_counter()
        ts, evaluation = jax.block_until_ready(compiled(run_keys))
        walls.append(time.perf_counter() - t0)
    wall_seconds = sorted(walls)[(len(walls) - 1) // 2]  # median (lower middle)
    # Peak RSS of compile + training (taken before the optional evaluation).
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.no_vmap:  # give everything the seed axis the vmapped run has
        ts, evaluation = jax.tree.map(lambda x: x[None], (ts, evaluation))
    steps_per_seed = [int(s) for s in jax.device_get(ts.global_step).reshape(-1)]
    total_steps = steps_per_seed[0]
    if any(s != total_steps for s in steps_per_seed) or total_steps != expected_steps:
        print(f"warning: global_step {steps_per_seed} != expected {expected_steps}",
              file=sys.stderr)

    final_return_mean = None
    per_seed = None
    if args.eval == "after":
        # rejax's stock evaluation (what eval_callback does by default), run on
        # the final train states outside the timed region.
        stock = make_algo(args.total_steps, in_loop_eval=True)
        eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1000), args.num_seeds)
        evaluate = jax.jit(jax.vmap(lambda t, k: stock.eval_callback(stock, t, k)))
        _lengths, returns = evaluate(ts, eval_keys)  # (num_seeds, 128 episodes)
        returns = returns.reshape(args.num_seeds, -1)
    elif args.eval == "in-loop":
        _lengths, returns = evaluation  # (num_seeds, 1 evaluation, 128 episodes)
        returns = returns.reshape(args.num_seeds, -1)
    if args.eval != "none":
        per_seed = [round(float(r), 1) for r in jnp.mean(returns, axis=1)]
        final_return_mean = float(jnp.mean(returns))

    notes = [
        ("jax.jit(PPO.train), no vmap, 1 key" if args.no_vmap else
         f"jax.jit(jax.vmap(PPO.train)) over {args.num_seeds} key(s)") + " on "
        f"{jax.default_backend()} ({os.cpu_count()} cpus), AOT-compiled, timed run on "
        f"fresh keys; jax {jax.__version__}, gymnax CartPole-v1",
        f"{iterations} iterations x {rollout} steps per seed",
        f"timed runs (s): {[round(w, 3) for w in walls]}, median reported",
        "value clipping always on (rejax has no switch); max_grad_norm=0.5 is "
        "optax.clip (element-wise), not global-norm",
        "separate actor/critic Adam (optax eps 1e-8), flax default init (not orthogonal)",
        "time-limit truncation treated as terminal",
    ]
    if args.eval == "after":
        notes.append(
            "eval: skip_initial_evaluation=True, eval_freq=total_steps, no-op "
            "eval_callback in the timed run; then rejax's stock evaluation (128 "
            "stochastic episodes per seed) untimed on the final states -> "
            f"final_return_mean; per-seed means {per_seed}"
        )
    elif args.eval == "in-loop":
        notes.append(
            "eval: skip_initial_evaluation=True, eval_freq=total_steps -> stock "
            "callback runs once at the end (128 stochastic episodes per seed) inside "
            f"the timed run -> final_return_mean; per-seed means {per_seed}"
        )
    else:
        notes.append("eval: no-op eval_callback, no evaluation; final_return_mean null")

    result = {
        "framework": "rejax",
        "version": rejax_version,
        "num_seeds": args.num_seeds,
        "total_steps": total_steps,
        "env_steps_per_second": total_steps * args.num_seeds / wall_seconds,
        "compile_seconds": compile_seconds,
        "wall_seconds": wall_seconds,
        "peak_rss_mb": peak_rss_mb,
        "final_return_mean": final_return_mean,
        "notes": "; ".join(notes),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
