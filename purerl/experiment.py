"""The experiment-script contract (DESIGN.md), shared by ``experiments/<algo>.py``.

    python experiments/ppo.py [--env CartPole-v1] [--num-seeds 8] [--total-steps N]
                              [--out DIR] [--seed S] [--resume] [--<config field> VALUE ...]

Writes ``results.json``, ``metrics.jsonl``, ``curve.png`` and ``checkpoint/`` to the
run directory, shows a progress bar, prints a summary table. Bad arguments get a one-line
message and exit status 2; any other error exits non-zero.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

from purerl.config import field_docs

LOOP_FLAGS = ("env", "num_seeds", "total_steps", "out", "seed", "resume", "progress")


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_tuple(text: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _field_type(field, default):
    if isinstance(default, bool):
        return _parse_bool, "BOOL"
    if isinstance(default, int):
        return int, "INT"
    if isinstance(default, float):
        return float, "FLOAT"
    if isinstance(default, tuple):
        return _parse_tuple, "INTS"
    return str, "STR"


def build_parser(algo, default_env: str) -> argparse.ArgumentParser:
    name = algo.__name__.rsplit(".", 1)[-1]
    parser = _Parser(
        prog=f"experiments/{name}.py",
        description=(algo.__doc__ or "").strip().splitlines()[0],
    )
    parser.add_argument("--env", default=default_env, help="environment id")
    parser.add_argument("--num-seeds", type=int, default=8, help="seeds, vmapped")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="env steps per seed (default: the env preset's)")
    parser.add_argument("--out", default=None, help="run directory")
    parser.add_argument("--seed", type=int, default=0, help="master PRNG seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    docs = field_docs(algo.Config)
    defaults = algo.Config()
    for field in dataclasses.fields(algo.Config):
        if field.name == "total_steps":
            continue
        default = getattr(defaults, field.name)
        kind, metavar = _field_type(field, default)
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=kind,
            default=None,
            metavar=metavar,
            help=f"{docs.get(field.name, '')} (default: {default})",
        )
    return parser


def resolve_config(algo, args, presets: dict):
    """Config = algorithm defaults <- env preset <- command-line flags."""
    values = dict(presets.get(args.env, {}))
    for field in dataclasses.fields(algo.Config):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    if args.total_steps is not None:
        values["total_steps"] = args.total_steps
    return algo.Config(**values)


def main(algo, presets: dict, default_env: str = "CartPole-v1", argv=None) -> int:
    """Parse, train, write; returns the exit status."""
    try:
        parser = build_parser(algo, default_env)
        args = parser.parse_args(argv)
        if args.num_seeds < 1:
            raise UsageError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        import purerl

        try:
            config = resolve_config(algo, args, presets)
            env = purerl.envs.make(args.env)
            purerl.loops.check_compatible(algo, env, config)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
        return _run(algo, env, config, args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume --out <run dir>", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback on demand
        if os.environ.get("PURERL_TRACEBACK"):
            raise
        print(f"error: {type(e).__name__}: {e} (PURERL_TRACEBACK=1 for a traceback)",
              file=sys.stderr)
        return 1


def _first(x) -> int:
    """The value of a per-seed metric that is equal across seeds (e.g. env_steps)."""
    import numpy as np

    return int(np.asarray(x).reshape(-1)[0])


def _run(algo, env, config, args) -> int:
    import jax
    import numpy as np

    import purerl
    from purerl import checkpoint
    from purerl import logging as plog

    name = algo.__name__.rsplit(".", 1)[-1]
    out = args.out or os.path.join(
        "runs", f"{args.env}__{name}__{time.strftime('%Y%m%d-%H%M%S')}"
    )
    os.makedirs(out, exist_ok=True)
    ckpt_dir = os.path.join(out, "checkpoint")
    metrics_path = os.path.join(out, "metrics.jsonl")

    trainer = purerl.Trainer(algo, env, config, num_seeds=args.num_seeds)
    runner = trainer.init(jax.random.key(args.seed))
    history = []
    if args.resume:
        if checkpoint.latest(ckpt_dir) is None:
            raise UsageError(f"--resume: no checkpoint in {ckpt_dir}")
        runner, _ = checkpoint.restore(ckpt_dir, runner)
        if trainer.sharding is not None:
            runner = jax.device_put(runner, trainer.sharding)
        if os.path.exists(metrics_path):
            done = int(checkpoint.latest(ckpt_dir)["step"])
            with open(metrics_path) as f:
                history = [json.loads(line) for line in f][:done]
        with open(metrics_path, "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)

    print(f"{name} on {args.env}: {args.num_seeds} seeds x {trainer.schedule.total_steps} "
          f"env steps, {trainer.schedule.num_evals} evaluations -> {out}")
    trainer.compile(runner)
    print(f"compiled in {trainer.compile_seconds:.1f}s")

    compute_seconds = 0.0

    def on_block(index, metrics):
        row = {"block": index + 1, **{k: np.asarray(v) for k, v in metrics.items()}}
        plog.write_jsonl(metrics_path, [row])
        history.append(plog.to_python(row))

    steps_before = np.asarray(runner.env_steps).astype(np.int64).sum()
    start = time.perf_counter()
    remaining = trainer.num_blocks - int(np.asarray(runner.block).reshape(-1)[0])
    for _ in range(remaining):
        t0 = time.perf_counter()
        runner, _ = trainer.run(runner, 1, progress=False, callback=on_block)
        jax.block_until_ready(runner)
        compute_seconds += time.perf_counter() - t0
        done = len(history)
        if args.progress:
            last = np.asarray(history[-1]["eval/return"], dtype=float)
            print(f"\r[{done:>3}/{trainer.num_blocks}] step {_first(history[-1]['env_steps']):>9} "
                  f"eval return {last.mean():8.1f} ± {last.std():6.1f}", end="", flush=True,
                  file=sys.stderr)
        if done % 5 == 0 or done == trainer.num_blocks:
            checkpoint.save(ckpt_dir, runner, step=done)
    if args.progress:
        print(file=sys.stderr)
    wall = time.perf_counter() - start

    eval_steps = [_first(h["env_steps"]) for h in history]
    eval_returns = [list(np.asarray(h["eval/return"], dtype=float).reshape(-1)) for h in history]
    final = eval_returns[-1]
    # This invocation's env steps, all seeds (episodic rollouts vary per seed).
    ran_steps = int(np.asarray(runner.env_steps).astype(np.int64).sum() - steps_before)
    results = {
        "algo": name,
        "env": args.env,
        "num_seeds": args.num_seeds,
        "total_steps": trainer.schedule.total_steps,
        "eval_steps": eval_steps,
        "eval_returns": eval_returns,
        "final_returns": final,
        "final_return_mean": float(np.mean(final)),
        "wall_seconds": wall,
        "compile_seconds": trainer.compile_seconds,
        "env_steps_per_second": ran_steps / compute_seconds if compute_seconds else None,
        "config": dataclasses.asdict(config),
        "versions": plog.versions(),
        "resumed": bool(args.resume),
    }
    plog.write_json_atomic(os.path.join(out, "results.json"), results)
    plog.plot_curve(os.path.join(out, "curve.png"), eval_steps, eval_returns,
                    f"{name} on {args.env}")
    print(plog.summary_table(eval_steps, eval_returns))
    print(f"final eval return: mean {np.mean(final):.1f}, min {np.min(final):.1f}, "
          f"max {np.max(final):.1f} over {args.num_seeds} seeds | "
          f"{results['env_steps_per_second'] or 0:,.0f} env-steps/s | wall {wall:.1f}s "
          f"+ compile {trainer.compile_seconds:.1f}s")
    return 0
