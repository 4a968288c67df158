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
from collections.abc import Callable
from typing import Any, NamedTuple

from purerl.config import RunConfig, field_docs

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


def _parse_names(text: str) -> tuple:
    return tuple(x.strip() for x in text.split(",") if x.strip())


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
    parser.add_argument("--out", default=None, help="run directory")
    parser.add_argument("--seed", type=int, default=0, help="master PRNG seed")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    phases = parser.add_argument_group(
        "phases and snapshots (every run writes its agents to <out>/snapshot)")
    names = list(getattr(algo, "PHASES", {}))
    if names:
        phases.add_argument("--phase", choices=[*names, "both"], default=None,
                            help=f"run one phase of {name}'s protocol, or 'both' "
                                 f"({' then '.join(names)}, into <out>/<phase>)")
    phases.add_argument("--snapshot", default=None, metavar="DIR",
                        help="start the agents from this snapshot (fresh memory)")
    phases.add_argument("--restore", type=_parse_names, default=None, metavar="GROUPS",
                        help="with --snapshot: the parameter groups taken from it "
                             "(default: all)")
    phases.add_argument("--freeze", type=_parse_names, default=(), metavar="GROUPS",
                        help="parameter groups that no update changes")
    host = parser.add_argument_group(
        "host environments (--env gymnasium:<id> or dmc:<domain>-<task>)")
    host.add_argument("--pixels", action="store_true",
                      help="dm_control: observe 84x84 RGB renders (uint8)")
    host.add_argument("--action-repeat", type=int, default=None,
                      help="dm_control: repeat each action (default: the preset's, or 1)")
    host.add_argument("--frame-stack", type=int, default=None,
                      help="dm_control: stack the last frames (default: the preset's, "
                           "or 3 with --pixels, 1 without)")
    run = parser.add_argument_group(
        "run (RunConfig: budget, env counts, evaluation; default: the env preset's, "
        "else the algorithm's RUN)")
    _add_fields(run, RunConfig, algo.RUN)
    _add_fields(parser.add_argument_group("hyperparameters (Config)"), algo.Config,
                algo.Config())
    return parser


def _add_fields(group, cls, defaults) -> None:
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        default = getattr(defaults, field.name)
        kind, metavar = _field_type(field, default)
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind,
                           default=None, metavar=metavar,
                           help=f"{docs.get(field.name, '')} (default: {default})")


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
    """``(Config, RunConfig)`` = defaults (``Config()``, ``algo.RUN``) <- env preset <-
    command-line flags; a preset key that is neither is an error."""
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    config_fields = {f.name for f in dataclasses.fields(algo.Config)}
    values, run_values = {}, {}
    for key, value in _preset(args, presets).items():
        if key in ENV_OPTIONS:
            continue
        if key in run_fields:
            run_values[key] = value
        elif key in config_fields:
            values[key] = value
        else:
            raise ValueError(f"preset for {args.env} sets unknown field {key!r}")
    for name in config_fields | run_fields:
        given = getattr(args, name, None)
        if given is not None:
            (run_values if name in run_fields else values)[name] = given
    return algo.Config(**values), dataclasses.replace(algo.RUN, **run_values)


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
        out = _out_path(args, algo.__name__.rsplit(".", 1)[-1])
        start = args.snapshot
        for phase_name, phase in _phases(algo, args):
            phase_args = argparse.Namespace(**vars(args))
            if phase_name and getattr(args, "phase", None) == "both":
                phase_args.out = os.path.join(out, phase_name)
            else:
                phase_args.out = out
            try:
                config, run = resolve_config(algo, args, presets)
                config = dataclasses.replace(config, **phase.config)
                freeze = tuple(phase.freeze) + tuple(args.freeze)
                if host:
                    driver = _host_driver(algo, config, run, phase_args,
                                          env_options(args, presets), freeze)
                else:
                    driver = _jit_driver(algo, purerl.envs.make(args.env), config, run,
                                         phase_args, freeze)
                if phase.from_snapshot and start is None:
                    raise ValueError(
                        f"--phase {phase_name} starts from a snapshot: give --snapshot DIR "
                        f"(the snapshot/ directory of an earlier phase's run)")
                if start is not None and not args.resume:
                    purerl.snapshot.check(start, algo, driver.spec)
            except (ValueError, TypeError) as e:
                raise UsageError(str(e)) from None
            restore = args.restore if args.restore is not None else phase.restore
            status = _run(driver, algo, config, run, phase_args,
                          start=None if args.resume else start, restore=restore,
                          phase=phase_name)
            if status:
                return status
            start = os.path.join(phase_args.out, "snapshot")
        return 0
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


def _phases(algo, args) -> list:
    """``[(name, Phase)]`` to run: one phase, both in order, or (no --phase) one
    unnamed phase that starts from --snapshot if given."""
    from purerl.snapshot import Phase

    phases = getattr(algo, "PHASES", {})
    chosen = getattr(args, "phase", None)
    if chosen is None:
        return [(None, Phase(from_snapshot=args.snapshot is not None))]
    if chosen == "both":
        return list(phases.items())
    return [(chosen, phases[chosen])]


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


class Driver(NamedTuple):
    """One run loop for both kinds of env: ``block(runner, on_iteration)`` runs one
    evaluation block and returns ``(runner, metrics)`` (numpy, seed axis first)."""

    init: Callable  # key -> runner
    prepare: Callable  # (runner, resumed: bool, blocks_done: int) -> runner (compiles)
    block: Callable  # (runner, on_iteration) -> (runner, metrics)
    schedule: Any  # loops.Schedule
    compile_seconds: Callable  # () -> seconds, after prepare (host: the first iteration)
    uncounted_steps: Callable  # () -> env steps per seed of compiling iterations
    close: Callable
    extra: dict  # more fields for results.json
    spec: Any  # the env's EnvSpec


def _jit_driver(algo, env, config, run, args, freeze=()) -> Driver:
    import jax

    import purerl

    trainer = purerl.Trainer(algo, env, config, run, num_seeds=args.num_seeds,
                             freeze=freeze)

    def prepare(runner, resumed, blocks_done):
        if resumed and trainer.sharding is not None:
            runner = jax.device_put(runner, trainer.sharding)
        trainer.compile(runner)
        return runner

    def block(runner, on_iteration):
        runner, metrics = trainer.run(runner, 1)
        jax.block_until_ready(runner)
        return runner, jax.tree.map(lambda x: x[0], metrics)

    return Driver(lambda key: trainer.init(key), prepare, block, trainer.schedule,
                  lambda: trainer.compile_seconds, lambda: 0, lambda: None, {}, env.spec)


def _host_driver(algo, config, run, args, options, freeze=()) -> Driver:
    """Host envs (``num_seeds * num_envs`` for training, ``num_seeds * num_eval_envs``
    for evaluation, seeded apart) and the ``HostLoop`` that drives them. Resuming
    restores the agents (replay included), keys and counters exactly; the host envs
    cannot be checkpointed, so their episodes restart at the resume."""
    import time as _time

    import purerl

    seeds, env_kw = args.num_seeds, _dmc_only(args, options)
    train = purerl.envs.make_host(args.env, seeds * run.num_envs, seed=args.seed * 100_003,
                                  **env_kw)
    evaluation = purerl.envs.make_host(args.env, seeds * run.num_eval_envs,
                                       seed=args.seed * 100_003 + 50_000, **env_kw)
    loop = purerl.loops.HostLoop(algo, train, config, run, num_seeds=seeds,
                                 eval_env=evaluation, freeze=freeze)
    timing = {"compile": 0.0, "first": True}

    def prepare(runner, resumed, blocks_done):
        if resumed:  # fresh episodes, seeded apart from the interrupted ones
            loop.reset(seed=args.seed * 100_003 + 1_000 * (blocks_done + 1))
        return runner

    def block(runner, on_iteration):
        start = _time.perf_counter()

        def first_done(i, metrics):
            # This invocation's first iteration compiles act and learn: timed apart.
            if timing["first"]:
                timing["compile"] = _time.perf_counter() - start
                timing["first"] = False
                on_iteration(timing["compile"])

        return loop.block(runner, callback=first_done)

    def close():
        train.close()
        evaluation.close()

    return Driver(loop.init, prepare, block, loop.schedule, lambda: timing["compile"],
                  lambda: run.batch_size, close, {"env_options": options, "host": True},
                  train.spec)


def _run(driver: Driver, algo, config, run, args, start=None, restore=None,
         phase=None) -> int:
    """The experiment loop: blocks, metrics.jsonl, progress, checkpoints, results, and
    the agents' snapshot at the end. ``start``: a snapshot to start the agents from
    (parameter groups ``restore``, all if None)."""
    import jax
    import numpy as np

    from purerl import checkpoint, snapshot
    from purerl import logging as plog

    name = algo.__name__.rsplit(".", 1)[-1]
    out = _run_dir(args, name)
    ckpt_dir = os.path.join(out, "checkpoint")
    metrics_path = os.path.join(out, "metrics.jsonl")
    sched = driver.schedule
    runner = driver.init(jax.random.key(args.seed))
    if start is not None:
        try:
            saved = snapshot.load(start, runner.agent, algo, driver.spec)
            runner = runner._replace(agent=snapshot.restore_groups(runner.agent, saved,
                                                                   restore))
        except ValueError as e:
            raise UsageError(str(e)) from None
    runner, history = _start(args, ckpt_dir, metrics_path, runner)
    start_block = len(history)
    print(f"{name} on {args.env}{' ' + str(driver.extra['env_options']) if driver.extra else ''}"
          f": {args.num_seeds} seeds x {sched.total_steps} env steps, {sched.num_evals} "
          f"evaluations -> {out}")
    runner = driver.prepare(runner, args.resume, start_block)
    if driver.compile_seconds():
        print(f"compiled in {driver.compile_seconds():.1f}s")

    compute_seconds, excluded = 0.0, [0.0]
    loop_start = time.perf_counter()
    for index in range(start_block, sched.num_evals):
        t0 = time.perf_counter()
        runner, metrics = driver.block(runner, lambda seconds: excluded.__setitem__(0, seconds))
        compute_seconds += time.perf_counter() - t0
        row = {"block": index + 1, **{k: np.asarray(v) for k, v in metrics.items()}}
        plog.write_jsonl(metrics_path, [row])
        history.append(plog.to_python(row))
        if args.progress:
            last = np.asarray(history[-1]["eval/return"], dtype=float)
            print(f"\r[{index + 1:>3}/{sched.num_evals}] step "
                  f"{_first(history[-1]['env_steps']):>9} eval return {last.mean():8.1f} "
                  f"± {last.std():6.1f}", end="", flush=True, file=sys.stderr)
        if (index + 1) % 5 == 0 or index + 1 == sched.num_evals:
            checkpoint.save(ckpt_dir, runner, step=index + 1)
    if args.progress:
        print(file=sys.stderr)
    compile_seconds = driver.compile_seconds()
    compute_seconds -= excluded[0]  # host: the compiling first iteration
    wall = time.perf_counter() - loop_start - excluded[0]
    blocks = sched.num_evals - start_block
    ran = (blocks * sched.steps_per_eval - driver.uncounted_steps()) * args.num_seeds
    if sched.iterations_per_eval == 0 and blocks:  # episodic: steps vary per seed
        ran = int(np.sum(history[-1]["env_steps"])) - (
            int(np.sum(history[start_block - 1]["env_steps"])) if start_block else 0)
    eval_steps = [_first(h["env_steps"]) for h in history]
    eval_returns = [list(np.asarray(h["eval/return"], dtype=float).reshape(-1))
                    for h in history]
    _write_results(out, name, args, config, run, sched.total_steps, eval_steps,
                   eval_returns, wall, compile_seconds,
                   ran / compute_seconds if compute_seconds > 0 and ran > 0 else None,
                   extra={**driver.extra, "phase": phase, "snapshot_from": start})
    snapshot.save(os.path.join(out, "snapshot"), runner.agent, algo, driver.spec, config)
    driver.close()
    return 0


def _write_results(out, name, args, config, run, total_steps, eval_steps, eval_returns,
                   wall, compile_seconds, steps_per_second, extra=None) -> None:
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
        "run": dataclasses.asdict(run),
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


def _out_path(args, name: str) -> str:
    return args.out or os.path.join(
        "runs", f"{args.env.replace(':', '_')}__{name}__{time.strftime('%Y%m%d-%H%M%S')}"
    )


def _run_dir(args, name: str) -> str:
    out = _out_path(args, name)
    os.makedirs(out, exist_ok=True)
    return out


def _dmc_only(args, options) -> dict:
    if args.env.startswith("dmc:"):
        return options
    if options["pixels"] or options["action_repeat"] != 1 or options["frame_stack"] != 1:
        raise ValueError("--pixels, --action-repeat and --frame-stack are dm_control "
                         "options (--env dmc:<domain>-<task>)")
    return {}
