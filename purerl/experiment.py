"""The experiment-script contract (see docs/experiments.md), shared by ``experiments/<algo>.py``.

    python experiments/ppo.py [--env CartPole-v1] [--num-seeds 8] [--total-steps N]
                              [--out DIR] [--seed S] [--resume] [--<config field> VALUE ...]

Writes ``results.json``, ``metrics.jsonl``, ``curve.png`` and ``checkpoint/`` to the
run directory, shows a progress bar, prints a summary table. Bad arguments get a one-line
message and exit status 2; any other error exits non-zero.
"""

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import sys
import time

from purerl import distributed
from purerl.config import RunConfig, field_docs, float_fields, renamed_fields
from purerl.run_loop import UsageError, host_driver, jit_driver, run_experiment
from purerl.algos.base import spec_of

HOST_PREFIXES = ("gymnasium:", "dmc:")
# Options of make_host (or, for mjx: ids, make_mjx) that a preset may set
# (dm_control: DrQ's conventions).
HOST_OPTIONS = ("action_repeat", "frame_stack", "image_size")
ENV_OPTIONS = (*HOST_OPTIONS, "solver")
MJX_PREFIX = "mjx:"


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


def build_parser(algo, default_env: str, epilog: str | None = None) -> argparse.ArgumentParser:
    algo = spec_of(algo)
    name = algo.name
    parser = _Parser(
        prog=f"experiments/{name}.py",
        # The docstring's first paragraph: whole sentences, wrapped as written.
        description=(algo.doc or "").strip().split("\n\n")[0],
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # None = not given: --resume then takes the run's own value (see run.json).
    parser.add_argument("--env", default=None, help=f"environment id (default: {default_env})")
    parser.add_argument("--num-seeds", type=int, default=None, help="seeds, vmapped (default: 8)")
    parser.add_argument("--out", default=None,
                        help="run directory (default: a new runs/<env>__<algo>__<time>)")
    parser.add_argument("--seed", type=int, default=None, help="master PRNG seed (default: 0)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint, with its own "
                             "settings (run.json)")
    parser.add_argument("--allow-change", action="store_true",
                        help="with --resume: accept changed float hyperparameters (recorded "
                             "in results.json as changes_on_resume)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --out")
    parser.add_argument("--sweep", action="append", default=[], metavar="FIELD=V1,V2,..",
                        help="sweep a float hyperparameter (repeat the flag for a grid): "
                             "all points x seeds in one program, one results.json per "
                             "point in <out>/<field>=<value>/ and a summary (sweep.md, "
                             "sweep.png); no checkpoints, pure-JAX envs only")
    parser.add_argument("--no-compile-cache", dest="compile_cache", action="store_false",
                        help="do not use jax's persistent compilation cache (default: "
                             "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/purerl/jax)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    phases = parser.add_argument_group(
        "phases and snapshots (every run writes its agents to <out>/snapshot)")
    names = list(algo.phases)
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
        "dm_control environments (--env dmc:<domain>-<task> on the host, "
        "mjx:<domain>-<task> in JAX)")
    host.add_argument("--pixels", action="store_true",
                      help="dm_control: observe RGB renders (uint8, 84x84 unless "
                           "--image-size or the preset says otherwise)")
    host.add_argument("--action-repeat", type=int, default=None,
                      help="dm_control (dmc: and mjx:): repeat each action (default: the "
                           "preset's, or 1)")
    host.add_argument("--solver", choices=("dmc", "fast"), default=None,
                      help="mjx: only: MuJoCo solver options, dm_control's (dmc) or fewer "
                           "iterations (fast; see purerl.envs.mjx) (default: the preset's, "
                           "or dmc)")
    host.add_argument("--frame-stack", type=int, default=None,
                      help="dm_control: stack the last frames (default: the preset's, "
                           "or 3 with --pixels, 1 without)")
    host.add_argument("--image-size", type=int, default=None,
                      help="dm_control: height and width of the renders (default: the "
                           "preset's, or 84)")
    run = parser.add_argument_group(
        "run (RunConfig: budget, env counts, evaluation; default: the env preset's, "
        "else the algorithm's RUN)")
    _add_fields(run, RunConfig, algo.run)
    _add_fields(parser.add_argument_group("hyperparameters (Config)"), algo.config,
                algo.config())
    return parser


def _add_fields(group, cls, defaults) -> None:
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        default = getattr(defaults, field.name)
        kind, metavar = _field_type(field, default)
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind,
                           default=None, metavar=metavar,
                           help=f"{docs.get(field.name, '')} (default: {default})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for old, new in renamed_fields(cls).items():  # one release more, not in --help
        kind, _ = _field_type(fields[new], getattr(defaults, new))
        group.add_argument("--" + old.replace("_", "-"), dest=new, type=kind,
                           default=None, action=_OldFlag, help=argparse.SUPPRESS)


class _OldFlag(argparse.Action):
    """A renamed field's old flag: sets the new field and says so on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now --{self.dest.replace('_', '-')}; the old "
              "flag goes in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


FAMILIES = ("dmc:", "mjx:", "gymnasium:")


def preset_key(env_id: str, presets: dict) -> str | None:
    """The key of ``presets`` that applies to ``env_id``, most specific first: the
    exact id (``"dmc:cartpole-swingup"``), then its domain (``"dmc:cartpole"``, for
    every ``dmc:cartpole-<task>``), then its family (``"dmc:"``); None when none does
    (the algorithm's own defaults)."""
    if env_id in presets:
        return env_id
    family = next((f for f in FAMILIES if env_id.startswith(f)), None)
    if family is None:
        return None
    if family != "gymnasium:":
        domain = env_id.split("-", 1)[0]  # "dmc:cartpole" of "dmc:cartpole-swingup"
        if domain in presets:
            return domain
    return family if family in presets else None


def _preset(args, presets: dict) -> dict:
    """The env's preset (``preset_key``); a nested ``"pixels"`` dict overrides it
    under ``--pixels``."""
    key = preset_key(args.env, presets)
    preset = dict(presets[key]) if key is not None else {}
    pixel_preset = preset.pop("pixels", {})
    if getattr(args, "pixels", False):
        preset.update(pixel_preset)
    return preset


def env_options(args, presets: dict) -> dict:
    """``make_host`` options: preset <- command line (dm_control defaults: DrQ's)."""
    preset = _preset(args, presets)
    options = {"pixels": bool(getattr(args, "pixels", False))}
    for name in HOST_OPTIONS:
        given = getattr(args, name, None)
        options[name] = given if given is not None else preset.get(name)
    if options["frame_stack"] is None:
        options["frame_stack"] = 3 if options["pixels"] else 1
    if options["action_repeat"] is None:
        options["action_repeat"] = 1
    if options["image_size"] is None:  # make_host's default
        del options["image_size"]
    return options


def mjx_options(args, presets: dict) -> dict:
    """``make_mjx`` options of an ``mjx:`` id: preset <- command line."""
    preset = _preset(args, presets)
    options = {}
    for name, default in (("action_repeat", 1), ("solver", "dmc")):
        given = getattr(args, name, None)
        options[name] = given if given is not None else preset.get(name, default)
    return options


def make_jax_env(args, presets: dict):
    """``(env, extra results)`` of a pure-JAX ``--env``: ``mjx:`` ids with their
    options (recorded in results.json as ``env_options``), others as they are."""
    import purerl

    if args.env.startswith(MJX_PREFIX):
        options = mjx_options(args, presets)
        return purerl.envs.make(args.env, **options), {"env_options": options}
    return purerl.envs.make(args.env), {}


def resolve_config(algo, args, presets: dict):
    """``(Config, RunConfig)`` = defaults (``Config()``, ``algo.run``) <- env preset <-
    command-line flags; a preset key that is neither is an error."""
    algo = spec_of(algo)
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    config_fields = {f.name for f in dataclasses.fields(algo.config)}
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
    return algo.config(**values), dataclasses.replace(algo.run, **run_values)


def _parse_sweep(algo, items) -> dict:
    """``["lr=1e-4,3e-4", ...]`` -> ``{"lr": [1e-4, 3e-4], ...}``, checked."""
    from purerl import sweep

    values = {}
    for item in items:
        name, eq, text = item.partition("=")
        name = name.replace("-", "_")
        try:
            numbers = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            numbers = []
        if not eq or not numbers or not all(map(math.isfinite, numbers)):
            raise UsageError(f"--sweep {item}: expected FIELD=V1,V2,... with finite numbers")
        if name in values:
            raise UsageError(f"--sweep {name} is given twice")
        values[name] = numbers
    try:
        sweep.check_fields(algo, values)
    except ValueError as e:
        raise UsageError(f"--sweep: {e}") from None
    return values


def run_sweep(algo, args, presets: dict, host: bool) -> int:
    """``--sweep``: every point x seed in one compiled program (``purerl.sweep.run``);
    a results.json per point and a summary with 95% bootstrap intervals."""
    algo = spec_of(algo)
    import jax
    import numpy as np

    import purerl
    from purerl import logging as plog
    from purerl import stats, sweep
    from purerl.run_loop import _write_results, env_metrics

    if host or args.resume or getattr(args, "phase", None) or args.snapshot:
        raise UsageError("--sweep runs pure-JAX envs from scratch: not with a host env, "
                         "--resume, --phase or --snapshot")
    values = _parse_sweep(algo, args.sweep)
    name = algo.name
    # The points as given, in sweep.grid's order (it holds them in float32, as any
    # Config float is in the program).
    combos = [dict(zip(values, c)) for c in itertools.product(*values.values())]
    try:
        config, run = resolve_config(algo, args, presets)
        env, _ = make_jax_env(args, presets)
    except (ValueError, TypeError) as e:
        raise UsageError(_with_flag(str(e))) from None
    for point in combos:  # each passes the Config's checks; the sweep gave the value
        try:
            dataclasses.replace(config, **point)
        except (ValueError, TypeError) as e:
            field = re.match(r"(?:Run)?Config\.(\w+) ", str(e))
            item = next((i for i in args.sweep if field and
                         i.partition("=")[0].replace("-", "_") == field.group(1)), None)
            raise UsageError(f"{e} (--sweep {item})" if item else str(e)) from None
    try:
        points = sweep.grid(**values)
        fn, fn_args = sweep.program(algo, env, config, run, points, args.num_seeds,
                                    args.seed)
    except (ValueError, TypeError) as e:
        raise UsageError(_with_flag(str(e))) from None
    out = _create_run_dir(args, algo, name)
    num_points = len(next(iter(points.values())))
    print(f"{name} on {args.env}: sweep of {num_points} points "
          f"({', '.join(f'{k} in {v}' for k, v in values.items())}) x {args.num_seeds} "
          f"seeds, one program -> {out}")
    t0 = time.perf_counter()
    compiled = fn.lower(*fn_args).compile()
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, metrics = jax.block_until_ready(compiled(*fn_args))
    wall = time.perf_counter() - t0
    metrics = jax.tree.map(np.asarray, distributed.to_host(metrics))
    if not distributed.is_main():
        return 0
    rows = []
    for p, point in enumerate(combos):
        label = ",".join(f"{k}={v:g}" for k, v in point.items())
        point_args = argparse.Namespace(**{**vars(args), "out": os.path.join(out, label)})
        os.makedirs(point_args.out, exist_ok=True)
        steps = [int(s) for s in metrics["env_steps"][p, 0]]
        returns = [list(map(float, r)) for r in metrics["eval/return"][p].T]
        ran = steps[-1] * args.num_seeds * num_points
        # The env-reported metrics (a maze's coverage) per evaluation, as a run has them.
        history = [{k: v[p][:, i] for k, v in metrics.items() if k.startswith("env/")}
                   for i in range(len(steps))]
        _write_results(point_args.out, name, point_args, dataclasses.replace(config, **point),
                       run, steps[-1], steps, returns, wall, compile_seconds, ran / wall,
                       extra={"sweep": point, "sweep_points": num_points,
                              **env_metrics(history)}, echo=False)
        ci = stats.bootstrap_ci(returns[-1])
        rows.append({**point, "final_return": ci["value"], "ci95": ci["ci95"],
                     "out": label})
    plog.write_json_atomic(os.path.join(out, "sweep.json"),
                           {"algo": name, "env": args.env, "num_seeds": args.num_seeds,
                            "values": values, "points": rows, "wall_seconds": wall,
                            "compile_seconds": compile_seconds})
    table = ["| " + " | ".join(values) + " | final eval return [95% bootstrap] |",
             "|" + "---|" * (len(values) + 1)]
    for r in rows:
        table.append("| " + " | ".join(f"{r[k]:g}" for k in values) +
                     f" | {r['final_return']:.1f} [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}] |")
    with open(os.path.join(out, "sweep.md"), "w") as f:
        f.write(f"{name} on {args.env}, {args.num_seeds} seeds per point, one program "
                f"({wall:.1f} s + {compile_seconds:.1f} s compile; wall and env-steps/s "
                f"in each point's results.json are the whole program's).\n\n"
                + "\n".join(table) + "\n")
    _plot_sweep(os.path.join(out, "sweep.png"), values, rows, f"{name} on {args.env}")
    print("\n".join(table))
    return 0


def _plot_sweep(path, values, rows, title) -> None:
    """Final return (mean, 95% interval) against each swept value, the others fixed at
    each of their values (one line per combination of the rest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        others = [n for n in names if n != name]
        groups = {}
        for r in rows:
            groups.setdefault(tuple(r[n] for n in others), []).append(r)
        for key, group in groups.items():
            group.sort(key=lambda r: r[name])
            x = [r[name] for r in group]
            y = [r["final_return"] for r in group]
            lo = [r["final_return"] - r["ci95"][0] for r in group]
            hi = [r["ci95"][1] - r["final_return"] for r in group]
            label = ", ".join(f"{n}={v:g}" for n, v in zip(others, key)) or None
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=label)
        if len(values[name]) > 1 and min(values[name]) > 0:
            ax.set_xscale("log")
        ax.set(xlabel=name, ylabel="final eval return", title=title)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def use_compile_cache() -> None:
    """jax's persistent compilation cache: ``$JAX_COMPILATION_CACHE_DIR`` if set (jax
    reads it itself), else ``$XDG_CACHE_HOME/purerl/jax`` (``~/.cache/purerl/jax``);
    a rerun of the same program then skips most of its 5-15 s of compilation."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", os.path.join(root, "purerl", "jax"))


def _epilog(algo, presets: dict) -> str:
    """``--help``'s tail: the known env ids, the presets, where runs go."""
    from purerl.envs import known_ids

    lines = ["environments: " + ", ".join(known_ids())
             + "; host: gymnasium:<id>, dmc:<domain>-<task>",
             "presets (--env: fields; a domain such as dmc:cartpole applies to each of its "
             "tasks, a family such as dmc: to each of its ids):"]
    groups = {}  # envs sharing one preset are listed together
    for env_id, preset in presets.items():
        groups.setdefault(repr(preset), (preset, []))[1].append(env_id)
    for preset, ids in groups.values():
        fields = ", ".join(f"{k}={v}" for k, v in preset.items())
        lines.append(f"  {', '.join(ids)}: {fields}")
    lines.append("runs go to --out, default runs/<env>__<algo>__<time>/ (results.json, "
                 "metrics.jsonl, curve.png, checkpoint/, snapshot/, run.json)")
    return "\n".join(lines)


def _groups(algo, config, driver) -> list:
    """The names of the agent's parameter groups (``state.params``' keys)."""
    algo = spec_of(algo)
    import jax

    from purerl import loops

    agent = loops.make_agent(algo, config, driver.spec, driver.schedule)
    return list(jax.eval_shape(agent.init, jax.random.key(0)).params)


def _with_flag(message: str) -> str:
    """A config error ("Config.lr must be ...") with the flag that sets the field;
    a parameter group's ("freeze: ...") with its flag."""
    if message.startswith(("freeze: ", "restore: ")):
        return "--" + message
    m = re.match(r"(?:Run)?Config\.(\w+) ", message)
    return f"{message} (flag --{m.group(1).replace('_', '-')})" if m else message


def main(algo, presets: dict, default_env: str = "CartPole-v1", argv=None) -> int:
    """Parse, train, write; returns the exit status."""
    algo = spec_of(algo)
    out = args = None
    try:
        _join_processes()  # before anything starts JAX's backend (the env registry)
        parser = build_parser(algo, default_env, _epilog(algo, presets))
        args = parser.parse_args(argv)
        args.progress = args.progress and distributed.is_main()
        name = algo.name
        args.changes_on_resume = _check_run_dir(args, algo, name, default_env)
        args.preset = preset_key(args.env, presets)
        distributed.barrier("checked the run directory")  # before process 0 writes it
        if args.compile_cache:
            use_compile_cache()
        if args.num_seeds < 1:
            raise UsageError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        import purerl

        host = args.env.startswith(HOST_PREFIXES)
        if host and distributed.is_multiprocess():
            raise UsageError(f"--env {args.env}: a multi-process run needs a pure-JAX env "
                             f"(host envs step in one process)")
        mjx = args.env.startswith(MJX_PREFIX)
        if not host and (args.pixels or args.frame_stack or args.image_size
                         or (args.action_repeat and not mjx)):
            raise UsageError(
                "--pixels, --action-repeat, --frame-stack and --image-size are dm_control "
                "options (--env dmc:<domain>-<task>; mjx:<domain>-<task> takes "
                "--action-repeat)")
        if args.solver and not mjx:
            raise UsageError("--solver is an option of mjx:<domain>-<task> envs")
        start = args.snapshot
        if args.restore is not None and start is None and not any(
                phase.from_snapshot for _, phase in _phases(algo, args)):
            raise UsageError("--restore needs --snapshot DIR (the groups it takes come "
                             "from a snapshot)")
        if args.sweep:
            return run_sweep(algo, args, presets, host)
        out = None
        for phase_name, phase in _phases(algo, args):
            phase_args = argparse.Namespace(**vars(args))
            try:
                config, run = resolve_config(algo, args, presets)
                config = dataclasses.replace(config, **_phase_settings(phase, args))
                freeze = tuple(phase.freeze) + tuple(args.freeze)
                if host:
                    driver = host_driver(algo, config, run, phase_args,
                                          env_options(args, presets), freeze)
                else:
                    env, extra = make_jax_env(args, presets)
                    driver = jit_driver(algo, env, config, run, phase_args, freeze, extra)
                if phase.from_snapshot and start is None:
                    raise ValueError(
                        f"--phase {phase_name} starts from a snapshot: give --snapshot DIR "
                        f"(the snapshot/ directory of an earlier phase's run)")
                if start is not None and not args.resume:
                    purerl.snapshot.check(start, algo, driver.spec)
                if args.restore:
                    purerl.snapshot.check_groups(algo, _groups(algo, config, driver),
                                                 args.restore, "restore")
            except (ValueError, TypeError) as e:
                raise UsageError(_with_flag(str(e))) from None
            if out is None:  # the command line holds up: now the directory is written
                out = _create_run_dir(args, algo, name)
            both = phase_name and getattr(args, "phase", None) == "both"
            phase_args.out = os.path.join(out, phase_name) if both else out
            restore = args.restore if args.restore is not None else phase.restore
            status = run_experiment(driver, algo, config, run, phase_args,
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
        if args is not None and args.sweep:
            print("interrupted: a sweep does not resume (run it again with --overwrite)",
                  file=sys.stderr)
        elif out is None:
            print("interrupted before the run directory was written: nothing was written",
                  file=sys.stderr)
        else:
            name = algo.name
            print(f"interrupted: resume with: python experiments/{name}.py --resume "
                  f"--out {out}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, traceback on demand
        if os.environ.get("PURERL_TRACEBACK"):
            raise
        print(f"error: {type(e).__name__}: {e} (PURERL_TRACEBACK=1 for a traceback)",
              file=sys.stderr)
        return 1


def _phase_settings(phase, args) -> dict:
    """The Config fields ``phase`` sets, less those the command line gives: a flag
    such as ``--intr-coef`` wins over the phase's value. Under ``--phase both`` one
    flag would replace the value of every phase, so it is refused there."""
    given = [k for k in phase.config if getattr(args, k, None) is not None]
    if given and getattr(args, "phase", None) == "both":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags}: set by each phase of the protocol; with --phase both "
                         f"it would replace every phase's value: run the phases one at a "
                         f"time (--phase NAME, then --snapshot DIR)")
    return {k: v for k, v in phase.config.items() if k not in given}


def _phases(algo, args) -> list:
    """``[(name, Phase)]`` to run: one phase, both in order, or (no --phase) one
    unnamed phase that starts from --snapshot if given."""
    algo = spec_of(algo)
    from purerl.snapshot import Phase

    phases = algo.phases
    chosen = getattr(args, "phase", None)
    if chosen is None:
        return [(None, Phase(from_snapshot=args.snapshot is not None))]
    if chosen == "both":
        return list(phases.items())
    return [(chosen, phases[chosen])]


RUN_FILE = "run.json"
# The command-line settings a run directory remembers (with every Config and RunConfig
# field given), so that ``--resume --out DIR`` alone continues the same run.
REMEMBERED = ("env", "num_seeds", "seed", "phase", "snapshot", "restore", "freeze",
              "pixels", "action_repeat", "frame_stack", "image_size", "solver")
DEFAULTS = {"num_seeds": 8, "seed": 0}


def _settings(args, algo) -> dict:
    algo = spec_of(algo)
    fields = [f.name for cls in (RunConfig, algo.config) for f in dataclasses.fields(cls)]
    return {k: _plain(getattr(args, k)) for k in (*REMEMBERED, *fields) if hasattr(args, k)}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _unset(key: str, value) -> bool:
    """Not given on the command line: None, or the off value of a flag without one
    (``--pixels``, ``--freeze``)."""
    return value is None or (key == "pixels" and value is False) or (
        key == "freeze" and value == ())


def _check_run_dir(args, algo, name: str, default_env: str) -> list:
    """Settle the run's settings before anything is written; return the changes a
    resume makes (a list of dicts).

    ``--resume`` reads ``<out>/run.json``: the algorithm must match, settings not given
    take the run's values, and a given value that differs is refused unless it is a
    float hyperparameter and ``--allow-change`` is set; accepted changes are recorded.
    A new run's ``--out`` must not hold a run, unless ``--overwrite``."""
    algo = spec_of(algo)
    from purerl import checkpoint

    changes = []
    if args.resume:
        if not args.out:
            raise UsageError("--resume needs --out DIR (the run to continue)")
        path = os.path.join(args.out, RUN_FILE)
        if os.path.exists(path):
            with open(path) as f:
                stored = json.load(f)
            if stored["algo"] != name:
                raise UsageError(f"--resume: {args.out} holds a {stored['algo']} run "
                                 f"(resume it with experiments/{stored['algo']}.py)")
            changes = list(stored.get("changes_on_resume", []))
            floats = set(float_fields(algo.config))
            ckpt = checkpoint.latest(os.path.join(args.out, "checkpoint"))
            # What the run used (presets and defaults resolved), where it says so.
            used = {}
            if os.path.exists(os.path.join(args.out, "results.json")):
                with open(os.path.join(args.out, "results.json")) as f:
                    used = json.load(f).get("config", {})
            renamed = renamed_fields(algo.config)
            for key, old in stored["settings"].items():
                key = renamed.get(key, key)  # a run saved under a field's old name
                new = getattr(args, key, None)
                if _unset(key, new):
                    setattr(args, key, tuple(old) if isinstance(old, list) else old)
                    continue
                if _plain(new) == old:
                    continue
                flag = "--" + key.replace("_", "-")
                if key not in floats:
                    raise UsageError(f"--resume: this run has {flag} {old}, got {_plain(new)}; "
                                     f"only float hyperparameters can change on resume")
                if not args.allow_change:
                    raise UsageError(f"--resume: this run has {flag} {old}, got {new}: add "
                                     f"--allow-change to continue with the new value")
                changes.append({"field": key, "from": used.get(key, old), "to": new,
                                "at_block": ckpt["step"] if ckpt else None})
    elif args.out and os.path.isdir(args.out) and _holds_run(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out} holds a run: --resume to continue it, "
                         f"--overwrite to replace it")
    args.env = args.env or default_env
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return changes


def _join_processes() -> None:
    """``purerl.distributed.initialize`` from the environment; on processes other than
    0 the printed output is dropped (process 0 reports the run)."""
    try:
        joined = distributed.initialize()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if joined and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")


def _create_run_dir(args, algo, name: str) -> str:
    """The run directory (``--out``, or a new unique default one), with ``run.json``;
    across processes process 0 creates it and every process gets its name."""
    if not distributed.is_multiprocess():
        return _write_run_dir(args, algo, name)
    said = ""
    if distributed.is_main():
        try:
            said = "out:" + _write_run_dir(args, algo, name)
        except UsageError as e:
            said = "error:" + str(e)
    said = distributed.broadcast_text(said)
    if said.startswith("error:"):
        raise UsageError(said[len("error:"):])
    args.out = said[len("out:"):]
    return args.out


def _write_run_dir(args, algo, name: str) -> str:
    from purerl import logging as plog

    if args.resume and not os.path.isdir(args.out):
        raise UsageError(f"--resume: no checkpoint in {args.out} (no such directory)")
    try:
        if not args.out:
            args.out = _new_run_dir(args.env, name)
        os.makedirs(args.out, exist_ok=True)
        plog.write_json_atomic(os.path.join(args.out, RUN_FILE),
                               {"algo": name, "preset": getattr(args, "preset", None),
                                "settings": _settings(args, algo),
                                "changes_on_resume": args.changes_on_resume})
    except OSError as e:
        raise UsageError(f"--out {args.out}: {e.strerror or e}") from None
    return args.out


def _holds_run(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f))
               for f in (RUN_FILE, "results.json", "metrics.jsonl", "checkpoint"))


def _new_run_dir(env: str, name: str) -> str:
    """``runs/<env>__<algo>__<time>``, with ``-2``, ``-3``... if another run (even one
    started in the same second) has it: ``os.makedirs`` without ``exist_ok`` claims it."""
    base = os.path.join("runs", f"{env.replace(':', '_')}__{name}__"
                                f"{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs("runs", exist_ok=True)
    for i in range(1, 10_000):
        path = base if i == 1 else f"{base}-{i}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"no free run directory under {base}")
