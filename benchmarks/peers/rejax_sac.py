"""Peer throughput benchmark: rejax SAC on gymnax Pendulum-v1.

Runs inside its own virtual environment (benchmarks/.venvs/rejax, built by
benchmarks/peers/build_venvs.sh from requirements-rejax.txt), never inside
purerl's. Usage:

    benchmarks/.venvs/rejax/bin/python benchmarks/peers/rejax_sac.py \
        --num-seeds 8 --total-steps 20000

All seeds are trained at once, the way rejax is meant to be used: one
``jax.jit(jax.vmap(algo.train))`` over a batch of PRNG keys (``--no-vmap`` with one
seed: plain ``jax.jit(algo.train)``). The function is compiled ahead of time
(``.lower(keys).compile()``, reported as ``compile_seconds``) and then run on fresh
keys; only that run is timed (``--repeats N`` times N runs and reports the median).
The last line on stdout is one JSON object with the measurement.

Configuration (matched to benchmarks/purerl_sac.py as far as rejax allows):
``num_envs`` 1 and ``num_epochs`` 1, so every train iteration is one env step followed
by one gradient update (rejax's loop runs ``total_timesteps / num_envs`` iterations,
each ``num_envs`` env steps then ``num_epochs`` updates); batch 256; twin critics
(``num_critics`` 2) and the actor are 256x256 ReLU MLPs (``hidden_layer_sizes`` is a
top-level option of rejax's SAC: inside ``agent_kwargs`` it would be overwritten by
the (64, 64) default); Adam lr 1e-3 for actor, critics and temperature; gamma 0.99;
``polyak`` 0.995 (= tau 0.005); initial alpha 1 (log alpha 0, fixed in rejax);
target entropy -|A| = -1 (fixed in rejax for continuous actions); no observation or
reward normalisation; a replay of ``total_steps`` transitions (``--buffer-size``).
``fill_buffer`` = learning_starts - 1 = 999: rejax starts updating once
``global_step > fill_buffer`` (purerl once ``env_steps >= learning_starts``), so both
take exactly ``total_steps - 999`` updates per seed. ``updates_per_seed`` is read back
from the actor's TrainState step count.

Differences rejax 0.1.3 does not let us configure away (stock SAC kept on purpose, so
this measures rejax as shipped):
* Warm-up: before ``fill_buffer`` steps rejax acts with its (untrained) policy, not
  uniform random actions.
* Replay sampling: without replacement, via ``jax.random.choice(replace=False, p=...)``
  over the whole capacity (a Gumbel top-k over ``buffer_size`` entries every gradient
  step), so its cost grows with ``buffer_size``; purerl draws 256 uniform indices with
  replacement from the filled slots.
* Update order per gradient step: actor (against the critics before their step),
  then critics (next actions from the actor just updated), then temperature; purerl
  updates critics, then actor (against the updated critics), then temperature. The
  same three losses, one Adam step each, on the same minibatch.
* Temperature loss is -alpha * (log pi + H) on log alpha (gradient scaled by alpha);
  purerl's (and SB3's) is -log alpha * (log pi + H).
* The Polyak target update runs every env step (also during warm-up, where the critic
  has not moved so it is a no-op in value); purerl's runs after every gradient step.
  With one update per step after warm-up these coincide.
* Gymnax 0.0.9's Pendulum ``done`` is the 200-step time limit and rejax's TD target
  treats every ``done`` as terminal (no bootstrapping on truncation); purerl
  bootstraps from the final observation (Pendulum never terminates).
* Actor: separate mean and log-std heads, log-std clipped to [-10, 2]; purerl's one
  head (orthogonal init, gain 0.01) with log-std squashed by tanh into [-5, 2].
* Network init is flax's default (lecun-normal kernels, zero biases), not orthogonal.
* ``max_grad_norm`` defaults to inf: an ``optax.clip(inf)`` stays in every optimiser
  chain (element-wise, a no-op in value).
* Under vmap, the ``lax.cond`` that skips updates before ``fill_buffer`` has a batched
  predicate, so both branches run every step (purerl's warm-up cond is vmapped too);
  rejax's cond carries the whole train state, replay included.
* Evaluation: rejax's train loop calls ``eval_callback`` every ``eval_freq`` steps. We
  always set ``skip_initial_evaluation=True`` and ``eval_freq`` = total steps, so the
  callback runs exactly once, after the last iteration. ``--eval`` chooses what it is:
    after (default): a no-op during the timed run; afterwards, untimed, rejax's stock
      evaluation (128 episodes of the stochastic policy per seed) runs on the final
      train states and gives ``final_return_mean``.
    in-loop: the stock callback itself, inside the timed run (128 x 200 steps per
      seed, 16x the 8 greedy episodes purerl evaluates).
    none: no-op callback and no evaluation; ``final_return_mean`` is null.
"""

import argparse
import json
import os
import resource
import sys
import time

LEARNING_STARTS = 1000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-seeds", type=int, default=1,
                        help="independent training runs, vmapped inside one jit")
    parser.add_argument("--total-steps", type=int, default=20_000,
                        help="env steps per seed")
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
    parser.add_argument("--learning-starts", type=int, default=LEARNING_STARTS,
                        help="env steps before the first update "
                        "(fill_buffer = this - 1)")
    parser.add_argument("--buffer-size", type=int, default=None,
                        help="replay capacity per seed (default: --total-steps)")
    return parser.parse_args(argv)


def make_algo(total_steps, learning_starts, buffer_size, in_loop_eval):
    from rejax import SAC

    algo = SAC.create(
        env="Pendulum-v1",
        num_envs=1,
        num_epochs=1,  # gradient updates per train iteration (= per env step here)
        batch_size=256,
        buffer_size=buffer_size,
        # Updates start when global_step > fill_buffer, i.e. at step learning_starts.
        fill_buffer=max(learning_starts - 1, 0),
        learning_rate=1e-3,
        gamma=0.99,
        polyak=0.995,  # tau 0.005
        target_update_freq=1,
        num_critics=2,
        hidden_layer_sizes=(256, 256),  # top-level: SAC.create_agent reads it there
        agent_kwargs={"activation": "relu"},
        normalize_observations=False,
        normalize_rewards=False,
        total_timesteps=total_steps,
        eval_freq=total_steps,  # one evaluation block == the whole run
        skip_initial_evaluation=True,
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

    from importlib.metadata import version

    import jax
    import jax.numpy as jnp

    rejax_version = version("rejax")
    buffer_size = args.buffer_size or args.total_steps
    algo = make_algo(args.total_steps, args.learning_starts, buffer_size,
                     in_loop_eval=args.eval == "in-loop")
    widths = [leaf.shape for leaf in jax.tree.leaves(
        algo.init_state(jax.random.PRNGKey(0)).actor_ts.params)]
    if (3, 256) not in widths or (256, 256) not in widths:
        sys.exit(f"unexpected actor layer shapes {widths}")
    expected_updates = max(0, args.total_steps - algo.fill_buffer)

    def seed_keys(seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), args.num_seeds)
        return keys[0] if args.no_vmap else keys

    train = jax.jit(algo.train if args.no_vmap else jax.vmap(algo.train))

    t0 = time.perf_counter()
    compiled = train.lower(seed_keys(args.seed)).compile()
    compile_seconds = time.perf_counter() - t0

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
    if any(s != args.total_steps for s in steps_per_seed):
        print(f"warning: global_step {steps_per_seed} != {args.total_steps}",
              file=sys.stderr)
    updates = [int(u) for u in jax.device_get(ts.actor_ts.step).reshape(-1)]
    if any(u != expected_updates for u in updates):
        print(f"warning: updates per seed {updates} != expected {expected_updates}",
              file=sys.stderr)

    final_return_mean = None
    per_seed = None
    if args.eval == "after":
        stock = make_algo(args.total_steps, args.learning_starts, buffer_size,
                          in_loop_eval=True)
        eval_keys = jax.random.split(jax.random.PRNGKey(args.seed + 1000),
                                     args.num_seeds)
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
        ("jax.jit(SAC.train), no vmap, 1 key" if args.no_vmap else
         f"jax.jit(jax.vmap(SAC.train)) over {args.num_seeds} key(s)") + " on "
        f"{jax.default_backend()} ({os.cpu_count()} cpus), AOT-compiled, timed run on "
        f"fresh keys; jax {jax.__version__}, gymnax Pendulum-v1",
        f"{total_steps} iterations of 1 env step + 1 update (after "
        f"fill_buffer={algo.fill_buffer}); {updates[0]} updates per seed; "
        f"replay {buffer_size}",
        f"timed runs (s): {[round(w, 3) for w in walls]}, median reported",
        "replay sampled without replacement (Gumbel top-k over the whole capacity); "
        "policy actions (not uniform) during warm-up; time limit treated as terminal",
        "update order actor, critic, alpha; alpha loss on alpha (not log alpha); "
        "log-std clipped to [-10, 2]; flax default init",
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
            "eval: stock callback once at the end (128 stochastic episodes per seed) "
            f"inside the timed run -> final_return_mean; per-seed means {per_seed}"
        )
    else:
        notes.append("eval: no-op eval_callback, no evaluation; final_return_mean null")

    result = {
        "framework": "rejax",
        "version": rejax_version,
        "num_seeds": args.num_seeds,
        "total_steps": total_steps,
        "updates_per_seed": updates[0],
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
