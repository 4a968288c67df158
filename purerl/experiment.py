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
import warnings

from purerl.config import field_docs

LOOP_FLAGS = ("env", "num_seeds", "total_steps", "out", "seed", "resume", "progress",
              "pixels", "action_repeat", "frame_stack")
HOST_PREFIXES = ("gymnasium:", "dmc:")
# Options of make_host that a preset may set (dm_control: DrQ's conventions).
ENV_OPTIONS = ("action_repeat", "frame_stack")


def _rate(x):
    """A throughput for humans: whole numbers, but slow (pixel) runs keep 3 digits."""
    x = x or 0.0
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


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
    host = parser.add_argument_group(
        "host environments (--env gymnasium:<id> or dmc:<domain>-<task>)")
    host.add_argument("--pixels", action="store_true",
                      help="dm_control: observe 84x84 RGB renders (uint8)")
    host.add_argument("--action-repeat", type=int, default=None,
                      help="dm_control: repeat each action (default: the preset's, or 1)")
    host.add_argument("--frame-stack", type=int, default=None,
                      help="dm_control: stack the last frames (default: the preset's, "
                           "or 3 with --pixels, 1 without)")
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


def _preset(args, presets: dict) -> dict:
    """The env's preset; a nested ``"pixels"`` dict overrides it under ``--pixels``."""
    preset = dict(presets.get(args.env, {}))
    pixel_preset = preset.pop("pixels", {})
    if getattr(args, "pixels", False):
        preset.update(pixel_preset)
    return preset


def env_options(args, presets: dict) -> dict:
    """``make_host`` options: preset <- command line (dm_control defaults: DrQ's)."""
    preset = _preset(args, presets)
    options = {"pixels": bool(getattr(args, "pixels", False))}
    for name in ENV_OPTIONS:
        given = getattr(args, name, None)
        options[name] = given if given is not None else preset.get(name)
    if options["frame_stack"] is None:
        options["frame_stack"] = 3 if options["pixels"] else 1
    if options["action_repeat"] is None:
        options["action_repeat"] = 1
    return options


def resolve_config(algo, args, presets: dict):
    """Config = algorithm defaults <- env preset <- command-line flags."""
    values = {k: v for k, v in _preset(args, presets).items() if k not in ENV_OPTIONS}
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

        host = args.env.startswith(HOST_PREFIXES)
        if not host and (args.pixels or args.action_repeat or args.frame_stack):
            raise UsageError(
                "--pixels, --action-repeat and --frame-stack are host-env options "
                "(--env dmc:<domain>-<task>)")
        try:
            config = resolve_config(algo, args, presets)
            if host:
                options = env_options(args, presets)
                loop = _host_loop(algo, config, args, options)
            else:
                env = purerl.envs.make(args.env)
                purerl.loops.check_compatible(algo, env, config)
        except (ValueError, TypeError) as e:
            raise UsageError(str(e)) from None
        if host:
            return _run_host(loop, args, options)
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


def _start(args, ckpt_dir: str, metrics_path: str, runner):
    """``(runner, history)``: fresh, or with ``--resume`` restored from the latest
    checkpoint, with ``metrics.jsonl`` cut back to the blocks that checkpoint holds."""
    from purerl import checkpoint

    history = []
    if args.resume:
        if checkpoint.latest(ckpt_dir) is None:
            raise UsageError(f"--resume: no checkpoint in {ckpt_dir}")
        runner, pointer = checkpoint.restore(ckpt_dir, runner)
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                history = [json.loads(line) for line in f][: int(pointer["step"])]
        with open(metrics_path, "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)
    return runner, history


def _run(algo, env, config, args) -> int:
    import jax
    import numpy as np

    import purerl
    from purerl import checkpoint
    from purerl import logging as plog

    name = algo.__name__.rsplit(".", 1)[-1]
    out = _run_dir(args, name)
    ckpt_dir = os.path.join(out, "checkpoint")
    metrics_path = os.path.join(out, "metrics.jsonl")

    trainer = purerl.Trainer(algo, env, config, num_seeds=args.num_seeds)
    runner, history = _start(args, ckpt_dir, metrics_path,
                             trainer.init(jax.random.key(args.seed)))
    if args.resume and trainer.sharding is not None:
        runner = jax.device_put(runner, trainer.sharding)

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
    # This invocation's env steps, all seeds (episodic rollouts vary per seed).
    ran_steps = int(np.asarray(runner.env_steps).astype(np.int64).sum() - steps_before)
    _write_results(out, name, args, config, trainer.schedule.total_steps, eval_steps,
                   eval_returns, wall, trainer.compile_seconds,
                   ran_steps / compute_seconds if compute_seconds else None)
    return 0


def _write_results(out, name, args, config, total_steps, eval_steps, eval_returns, wall,
                   compile_seconds, steps_per_second, extra=None) -> None:
    """``results.json`` + ``curve.png`` and the closing summary (DESIGN.md format)."""
    import numpy as np

    from purerl import logging as plog

    final = eval_returns[-1]
    results = {
        "algo": name,
        "env": args.env,
        "num_seeds": args.num_seeds,
        "total_steps": total_steps,
        "eval_steps": eval_steps,
        "eval_returns": eval_returns,
        "final_returns": final,
        "final_return_mean": float(np.mean(final)),
        "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "env_steps_per_second": steps_per_second,
        "config": dataclasses.asdict(config),
        "versions": plog.versions(),
        "resumed": bool(args.resume),
        **(extra or {}),
    }
    plog.write_json_atomic(os.path.join(out, "results.json"), results)
    plog.plot_curve(os.path.join(out, "curve.png"), eval_steps, eval_returns,
                    f"{name} on {args.env}")
    print(plog.summary_table(eval_steps, eval_returns))
    print(f"final eval return: mean {np.mean(final):.1f}, min {np.min(final):.1f}, "
          f"max {np.max(final):.1f} over {args.num_seeds} seeds | "
          f"{_rate(steps_per_second)} env-steps/s | wall {wall:.1f}s "
          f"+ compile {compile_seconds:.1f}s")


def _run_dir(args, name: str) -> str:
    out = args.out or os.path.join(
        "runs", f"{args.env.replace(':', '_')}__{name}__{time.strftime('%Y%m%d-%H%M%S')}"
    )
    os.makedirs(out, exist_ok=True)
    return out


def _host_loop(algo, config, args, options):
    """Host envs (``num_seeds * num_envs`` for training, ``num_seeds * num_eval_envs``
    for evaluation, seeded apart) and the ``HostLoop`` that drives them."""
    import purerl

    seeds = args.num_seeds
    train = purerl.envs.make_host(args.env, seeds * config.num_envs,
                                  seed=args.seed * 100_003, **_dmc_only(args, options))
    evaluation = purerl.envs.make_host(args.env, seeds * config.num_eval_envs,
                                       seed=args.seed * 100_003 + 50_000,
                                       **_dmc_only(args, options))
    return purerl.loops.HostLoop(algo, train, config, num_seeds=seeds, eval_env=evaluation)


def _dmc_only(args, options) -> dict:
    if args.env.startswith("dmc:"):
        return options
    if options["pixels"] or options["action_repeat"] != 1 or options["frame_stack"] != 1:
        raise ValueError("--pixels, --action-repeat and --frame-stack are dm_control "
                         "options (--env dmc:<domain>-<task>)")
    return {}


def _run_host(loop, args, options) -> int:
    """The experiment loop on host envs: the same outputs as ``_run``.

    Resuming restores the agents (replay included), keys and counters exactly; the
    host envs cannot be checkpointed, so their episodes restart at the resume.
    """
    import jax
    import numpy as np

    from purerl import checkpoint
    from purerl import logging as plog

    algo, config = loop.algo, loop.config
    name = algo.__name__.rsplit(".", 1)[-1]
    out = _run_dir(args, name)
    ckpt_dir = os.path.join(out, "checkpoint")
    metrics_path = os.path.join(out, "metrics.jsonl")
    sched = loop.schedule
    runner, history = _start(args, ckpt_dir, metrics_path, loop.init(jax.random.key(args.seed)))
    if args.resume:
        # Fresh episodes, seeded apart from the interrupted ones.
        loop.reset(seed=args.seed * 100_003 + 1_000 * (len(history) + 1))

    print(f"{name} on {args.env} {options} (host envs): {args.num_seeds} seeds x "
          f"{sched.total_steps} env steps, {sched.num_evals} evaluations -> {out}")
    compute_seconds = 0.0
    compile_seconds = 0.0
    uncounted = 0  # the compiling first iteration's steps: not in env-steps/s
    steps_before = int(runner.env_steps)
    start = time.perf_counter()
    start_block = len(history)
    for block in range(start_block, sched.num_evals):
        t0 = time.perf_counter()
        first_block = block == start_block
        if first_block:
            # This invocation's first iteration compiles act and update: timed apart.
            runner, first = loop.run(runner, 1)
            compile_seconds = time.perf_counter() - t0
            uncounted = sched.steps_per_iteration
            runner, rest = loop.run(runner, sched.iterations_per_eval - 1)
            metrics = {k: np.concatenate([first[k], rest[k]]) if k in rest else first[k]
                       for k in first}
        else:
            runner, metrics = loop.run(runner, sched.iterations_per_eval)
        train_seconds = time.perf_counter() - t0 - (compile_seconds if first_block else 0)
        block_steps = sched.steps_per_eval - (uncounted if first_block else 0)
        returns = loop.evaluate(runner)
        compute_seconds += train_seconds
        row = {"block": block + 1}
        # A block without finished episodes has all-NaN episode stats: NaN, silently.
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for key, values in metrics.items():
                values = np.asarray(values, dtype=float)
                row[key] = (values[-1] if key == "env_steps"
                            else np.nanmean(values, axis=0))
        row["eval/return"] = returns
        row["env_steps_per_second"] = (block_steps * args.num_seeds / train_seconds
                                       if block_steps and train_seconds > 0 else None)
        plog.write_jsonl(metrics_path, [row])
        history.append(plog.to_python(row))
        if args.progress:
            print(f"\r[{block + 1:>3}/{sched.num_evals}] step "
                  f"{_first(history[-1]['env_steps']):>9} eval return "
                  f"{np.mean(returns):8.1f} ± {np.std(returns):6.1f}", end="", flush=True,
                  file=sys.stderr)
        if (block + 1) % 5 == 0 or block + 1 == sched.num_evals:
            checkpoint.save(ckpt_dir, runner, step=block + 1)
    if args.progress:
        print(file=sys.stderr)
    wall = time.perf_counter() - start - compile_seconds
    ran = (int(runner.env_steps) - steps_before - uncounted) * args.num_seeds
    eval_steps = [_first(h["env_steps"]) for h in history]
    eval_returns = [list(np.asarray(h["eval/return"], dtype=float).reshape(-1))
                    for h in history]
    _write_results(out, name, args, config, sched.total_steps, eval_steps, eval_returns,
                   wall, compile_seconds, ran / compute_seconds if compute_seconds else None,
                   extra={"env_options": options, "host": True})
    loop.host_env.close()
    loop.eval_env.close()
    return 0
