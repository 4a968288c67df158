"""The experiment's run loop, one for both kinds of env (``purerl.experiment`` is the
command line in front of it).

A ``Driver`` wraps either loop behind ``init / prepare / block``: ``jit_driver`` a
``Trainer`` on a pure-JAX env, ``host_driver`` a ``HostLoop`` on host envs. ``run_experiment``
then owns what every run does the same way: blocks, ``metrics.jsonl`` (one line per
evaluation block, the same metrics for both loops), the progress line, a checkpoint
every 5 blocks and at the end (``--resume`` continues from the latest), ``results.json``
and ``curve.png``, and the agents' snapshot.
"""

import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from purerl.algos.base import spec_of


class UsageError(Exception):
    """A bad command line: reported in one line, exit status 2."""


def _rate(x):
    """A throughput for humans: whole numbers, but slow (pixel) runs keep 3 digits."""
    x = x or 0.0
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _first(x) -> int:
    """The value of a per-seed metric that is equal across seeds (e.g. env_steps)."""
    import numpy as np

    return int(np.asarray(x).reshape(-1)[0])


def _resume_or_start(args, ckpt_dir: str, metrics_path: str, runner):
    """``(runner, history, parts)``: fresh, or with ``--resume`` restored from the
    newest checkpoint that restores (one line on stderr when that is not ``LATEST``'s),
    with ``metrics.jsonl`` cut back to the blocks that checkpoint holds and ``parts``
    the timings of the invocations that ran them (see ``run_experiment``). A fresh
    start clears what an earlier run left in the directory (``--overwrite``)."""
    from purerl import checkpoint, distributed

    if not args.resume:
        if distributed.is_main():  # a stale checkpoint would be resumed, results read
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            results = os.path.join(os.path.dirname(metrics_path), "results.json")
            for path in (metrics_path, results):
                if os.path.exists(path):
                    os.remove(path)
        return runner, [], []
    try:
        runner, pointer = checkpoint.restore(ckpt_dir, runner)
    except checkpoint.NoCheckpoint as e:
        raise UsageError(f"--resume: {e}: --overwrite starts the run again") from None
    step = int(pointer["step"])
    if pointer["skipped"] and distributed.is_main():
        passed = checkpoint.describe(pointer["skipped"])
        print(f"--resume: continuing from {pointer['path']} (block {step}), the newest "
              f"checkpoint that restores; passed over {passed}", file=sys.stderr)
    history = []
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            history = [json.loads(line) for line in f][:step]
    if len(history) < step:
        raise UsageError(f"--resume: {metrics_path} holds {len(history)} blocks, the "
                         f"checkpoint {step}: --overwrite starts the run again")
    distributed.barrier("read metrics.jsonl")  # every process has read it
    if distributed.is_main():
        with open(metrics_path, "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
    return runner, history, list(pointer.get("parts", []))


def _complete(out: str, num_evals: int) -> bool:
    """Whether ``out`` holds this run finished: results.json with every evaluation."""
    try:
        with open(os.path.join(out, "results.json")) as f:
            return len(json.load(f)["eval_steps"]) == num_evals
    except (OSError, ValueError, KeyError, TypeError):
        return False


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


def jit_driver(algo, env, config, run, args, freeze=(), extra=None) -> Driver:
    import jax

    import purerl
    from purerl import distributed

    trainer = purerl.Trainer(algo, env, config, run, num_seeds=args.num_seeds,
                             freeze=freeze)

    def prepare(runner, resumed, blocks_done):
        if trainer.sharding is not None:  # restored or snapshot-started leaves
            runner = distributed.to_global(runner, trainer.sharding)
        trainer.compile(runner)
        return runner

    def block(runner, on_iteration):
        runner, metrics = trainer.run(runner, 1)
        jax.block_until_ready(runner)
        return runner, jax.tree.map(lambda x: x[0], metrics)

    return Driver(lambda key: trainer.init(key), prepare, block, trainer.schedule,
                  lambda: trainer.compile_seconds, lambda: 0, lambda: None, extra or {},
                  env.spec)


def host_driver(algo, config, run, args, options, freeze=()) -> Driver:
    """Host envs (``num_seeds * num_envs`` for training, ``num_seeds * num_eval_envs``
    for evaluation, seeded apart) and the ``HostLoop`` that drives them. Resuming
    restores the agents (replay included), keys and counters exactly; the host envs
    cannot be checkpointed, so their episodes restart at the resume."""
    import purerl

    seeds, env_kw = args.num_seeds, _dmc_only(args, options)
    train = purerl.envs.make_host(args.env, seeds * run.num_envs, seed=args.seed * 100_003,
                                  **env_kw)
    evaluation = purerl.envs.make_host(args.env, seeds * run.num_eval_envs,
                                       seed=args.seed * 100_003 + 50_000, **env_kw)
    loop = purerl.host_loop.HostLoop(algo, train, config, run, num_seeds=seeds,
                                 eval_env=evaluation, freeze=freeze)
    timing = {"compile": 0.0, "first": True}

    def prepare(runner, resumed, blocks_done):
        if resumed:  # fresh episodes, seeded apart from the interrupted ones
            loop.reset(seed=args.seed * 100_003 + 1_000 * (blocks_done + 1))
        return runner

    def block(runner, on_iteration):
        start = time.perf_counter()

        def first_done(i, metrics):
            # This invocation's first iteration compiles act and learn: timed apart.
            if timing["first"]:
                timing["compile"] = time.perf_counter() - start
                timing["first"] = False
                on_iteration(timing["compile"])

        return loop.block(runner, callback=first_done)

    def close():
        train.close()
        evaluation.close()

    return Driver(loop.init, prepare, block, loop.schedule, lambda: timing["compile"],
                  lambda: run.batch_size, close, {"env_options": options, "host": True},
                  train.spec)


def run_experiment(driver: Driver, algo, config, run, args, start=None, restore=None,
         phase=None) -> int:
    """The experiment loop: blocks, metrics.jsonl, progress, checkpoints, results, and
    the agents' snapshot at the end. ``start``: a snapshot to start the agents from
    (parameter groups ``restore``, all if None). ``--resume`` of a complete run changes
    nothing.

    Each invocation (the first, each ``--resume``) is a part of the run, ``{"blocks":
    [first, last], "wall_seconds", "compute_seconds", "compile_seconds", "steps"}``,
    carried in the checkpoints: results.json's ``wall_seconds``, ``compile_seconds``
    and throughput sum the parts that ran the blocks it holds (an interrupted part
    counts to its last checkpoint: the blocks after it were run again)."""
    algo = spec_of(algo)
    import jax
    import numpy as np

    from purerl import checkpoint, distributed, snapshot
    from purerl import logging as plog

    main = distributed.is_main()  # the one process that writes
    name = algo.name
    out = _run_dir(args.out)
    sched = driver.schedule
    if args.resume and _complete(out, sched.num_evals):
        print(f"{name} on {args.env}: the run in {out} is complete ({sched.num_evals} "
              f"evaluations): nothing to resume, its files are left as they are")
        driver.close()
        return 0
    ckpt_dir = os.path.join(out, "checkpoint")
    metrics_path = os.path.join(out, "metrics.jsonl")
    runner = driver.init(jax.random.key(args.seed))
    if start is not None:
        try:
            saved = snapshot.load(start, runner.agent, algo, driver.spec)
            runner = runner._replace(agent=snapshot.restore_groups(runner.agent, saved,
                                                                   restore))
        except ValueError as e:
            raise UsageError(str(e)) from None
    runner, history, parts = _resume_or_start(args, ckpt_dir, metrics_path, runner)
    start_block = len(history)
    repeat = _action_repeat(driver)
    print(_banner(name, args, driver, run, out, repeat))
    runner = driver.prepare(runner, args.resume, start_block)
    if driver.compile_seconds():
        print(f"compiled in {driver.compile_seconds():.1f}s")

    compute_seconds, excluded = 0.0, [0.0]
    loop_start = time.perf_counter()

    def this_part(end):
        """This invocation's part of the run, to block ``end``."""
        steps = _steps_done(history, end) - _steps_done(history, start_block)
        if end > start_block:  # host: the compiling first iteration, timed apart
            steps -= driver.uncounted_steps() * args.num_seeds
        return {"blocks": [start_block, end],
                "wall_seconds": time.perf_counter() - loop_start - excluded[0],
                "compute_seconds": compute_seconds - excluded[0],
                "compile_seconds": driver.compile_seconds() or 0.0, "steps": steps}

    done = parts  # the parts that ran the blocks of the newest checkpoint
    for index in range(start_block, sched.num_evals):
        t0 = time.perf_counter()
        runner, metrics = driver.block(runner, lambda seconds: excluded.__setitem__(0, seconds))
        compute_seconds += time.perf_counter() - t0
        row = {"block": index + 1, **{k: np.asarray(v) for k, v in metrics.items()}}
        if main:
            plog.write_jsonl(metrics_path, [row])
        history.append(plog.to_python(row))
        bad = first_non_finite(row, runner.agent)
        if bad is not None:
            what, seed = bad
            last = checkpoint.latest(ckpt_dir)
            driver.close()
            if not main:
                return 3
            print(file=sys.stderr)
            print(f"stopped: {what} is not finite in seed {seed} at env step "
                  f"{_first(row['env_steps'])} (block {index + 1}); "
                  + (f"the last good checkpoint is block {last['step']}: --resume --out "
                     f"{out} continues from it (--allow-change to change a float "
                     f"hyperparameter)" if last else "no checkpoint was written yet"),
                  file=sys.stderr)
            return 3
        if args.progress and main:
            last = np.asarray(history[-1]["eval/return"], dtype=float)
            print(f"\r[{index + 1:>3}/{sched.num_evals}] step "
                  f"{_first(history[-1]['env_steps']):>9} eval return {last.mean():8.1f} "
                  f"± {last.std():6.1f}", end="", flush=True, file=sys.stderr)
        if (index + 1) % 5 == 0 or index + 1 == sched.num_evals:
            done = parts + [this_part(index + 1)]
            checkpoint.save(ckpt_dir, runner, step=index + 1, metadata={"parts": done})
    if args.progress and main:
        print(file=sys.stderr)
    compute = sum(p["compute_seconds"] for p in done)
    ran = sum(p["steps"] for p in done)
    eval_steps = [_first(h["env_steps"]) for h in history]
    eval_returns = [list(np.asarray(h["eval/return"], dtype=float).reshape(-1))
                    for h in history]
    if main:
        _write_results(out, name, args, config, run, sched.total_steps, eval_steps,
                       eval_returns, sum(p["wall_seconds"] for p in done),
                       sum(p["compile_seconds"] for p in done),
                       ran / compute if compute > 0 and ran > 0 else None,
                       extra={**driver.extra, "phase": phase, "snapshot_from": start,
                              "processes": jax.process_count(),
                              "devices": jax.device_count(),
                              "steps_run": np.asarray(history[-1]["env_steps"]).reshape(
                                  -1).tolist(),
                              "parts": done,
                              "train_returns": train_returns(history),
                              **env_metrics(history)},
                       repeat=repeat)
    snapshot.save(os.path.join(out, "snapshot"), runner.agent, algo, driver.spec, config)
    driver.close()
    return 0


def _steps_done(history, blocks: int) -> int:
    """Env steps of all seeds together in the first ``blocks`` blocks."""
    import numpy as np

    return int(np.sum(history[blocks - 1]["env_steps"])) if blocks else 0


def _banner(name, args, driver, run, out, repeat) -> str:
    """The run's first line: algorithm, env, seeds, the steps and evaluations it runs,
    and what was asked where that differs (``loops.schedule``'s rule)."""
    sched = driver.schedule
    steps = sched.total_steps
    asked = f"asked {run.total_steps}" if steps != run.total_steps else ""
    if repeat == 1:
        budget = f"{steps} env steps" + (f" ({asked})" if asked else "")
    else:
        budget = (f"{steps} agent steps ({asked + '; ' if asked else ''}{steps * repeat} "
                  f"env frames, action repeat {repeat})")
    if sched.iterations_per_eval == 0:  # episodic: whole episodes, up to the budget
        budget = "at most " + budget
    evals = f"{sched.num_evals} evaluations" + (
        f" (asked {run.num_evals})" if sched.num_evals != run.num_evals else "")
    options = driver.extra.get("env_options")
    where = f"{args.env} {options}" if options else args.env
    preset = getattr(args, "preset", None)
    where += (" (its preset)" if preset == args.env else f" (preset {preset})" if preset
              else " (no preset)")
    return f"{name} on {where}: {args.num_seeds} seeds x {budget}, {evals} -> {out}"


def first_non_finite(row: dict, agent_state):
    """``(name, seed)`` of the first block metric or parameter leaf that is NaN or
    infinite for some seed, or None. Env-reported metrics (``env/...``, NaN until
    measured), evaluation metrics and a seed's update metrics in a block where it did
    not train (``train/rounds`` 0: NaN by ``loops.block_metrics``) are not checked.
    One reduction per leaf per block, outside the compiled loop: nothing is added to
    the training step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from purerl import distributed

    rounds = row.get("train/rounds")
    trained = None if rounds is None else np.asarray(rounds).reshape(-1) > 0
    for name, value in row.items():
        if name == "block" or name.startswith(("env/", "eval/")):
            continue
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            bad = ~np.isfinite(value.reshape(value.shape[0], -1)).all(1)
            if trained is not None:
                bad &= trained
            if bad.any():
                return name, int(np.argmax(bad))
    params = getattr(agent_state, "params", agent_state)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in leaves:
        if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim:
            ok = distributed.to_host(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)).all(1))
            if not ok.all():
                return f"parameter {jax.tree_util.keystr(path)}", int(np.argmin(ok))
    return None


def _action_repeat(driver) -> int:
    """Env frames per agent step (dm_control's action repeat; 1 elsewhere)."""
    return int((driver.extra.get("env_options") or {}).get("action_repeat") or 1)


def train_returns(history) -> list:
    """The mean return of the training episodes that ended in each block,
    ``[evaluations][seeds]`` like ``eval_returns``; null where none ended. Beside the
    evaluation it shows what the behaviour policy (exploration noise included) gets."""
    import numpy as np

    rows = []
    for h in history:
        ret = np.asarray(h["train/episode_return"], dtype=float).reshape(-1)
        ended = np.asarray(h["train/episodes"]).reshape(-1) > 0
        rows.append([float(r) if e else None for r, e in zip(ret, ended)])
    return rows


def env_metrics(history) -> dict:
    """The env-reported metrics at each evaluation (``env/<name>/last``, e.g. a maze's
    ``coverage``), ``[evaluations][seeds]`` like ``eval_returns``; NaN (not measured
    yet) becomes null."""
    import numpy as np

    def seeds(value):
        return [None if not np.isfinite(x) else float(x)
                for x in np.asarray(value, dtype=float).reshape(-1)]

    names = [k for k in (history[-1] if history else {})
             if k.startswith("env/") and k.endswith("/last")]
    return {k[len("env/"):-len("/last")]: [seeds(h[k]) for h in history] for k in names}


def _write_results(out, name, args, config, run, total_steps, eval_steps, eval_returns,
                   wall, compile_seconds, steps_per_second, extra=None, repeat=1,
                   echo=True) -> None:
    """``results.json`` + ``curve.png`` (the results format in docs/experiments.md) and the
    closing summary. ``total_steps`` and ``num_evals`` are what the schedule ran,
    ``*_requested`` what ``run`` asked (``loops.schedule`` says how they differ). With
    an action repeat, steps are agent steps and every count also appears in env
    frames (``*_frames``), the unit of the dm_control papers."""
    import numpy as np

    from purerl import logging as plog

    final = eval_returns[-1]
    results = {
        "algo": name,
        "env": args.env,
        "preset": getattr(args, "preset", None),
        "num_seeds": args.num_seeds,
        "seed": args.seed,
        "total_steps": total_steps,
        "total_steps_requested": run.total_steps,
        "num_evals": len(eval_steps),
        "num_evals_requested": run.num_evals,
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
        "changes_on_resume": getattr(args, "changes_on_resume", []),
        "action_repeat": repeat,
        "step_unit": "env steps" if repeat == 1 else "agent steps",
        "total_frames": total_steps * repeat,
        "eval_frames": [s * repeat for s in eval_steps],
        "env_frames_per_second": steps_per_second * repeat if steps_per_second else None,
        **(extra or {}),
    }
    plog.write_json_atomic(os.path.join(out, "results.json"), results)
    unit = results["step_unit"]
    plog.plot_curve(os.path.join(out, "curve.png"), eval_steps, eval_returns,
                    f"{name} on {args.env}", xlabel=f"{unit} (per seed)" + (
                        "" if repeat == 1 else f"; x {repeat} = env frames"))
    if not echo:
        return
    print(plog.summary_table(eval_steps, eval_returns, unit))
    rate = f"{_rate(steps_per_second)} env-steps/s" if repeat == 1 else (
        f"{_rate(steps_per_second)} agent-steps/s "
        f"({_rate(results['env_frames_per_second'])} env frames/s)")
    ran = results.get("steps_run") or [total_steps]
    if min(ran) < total_steps:  # episodic: whole episodes, so some steps go unused
        print(f"ran {min(ran)} to {max(ran)} {unit} per seed of at most {total_steps} "
              f"(asked {run.total_steps})")
    parts = len(results.get("parts") or [])
    print(f"final eval return: mean {np.mean(final):.1f}, min {np.min(final):.1f}, "
          f"max {np.max(final):.1f} over {args.num_seeds} seeds | {rate} | wall "
          f"{wall:.1f}s + compile {compile_seconds:.1f}s"
          + (f" over {parts} parts (resumed)" if parts > 1 else ""))


def _run_dir(out: str) -> str:
    os.makedirs(out, exist_ok=True)
    return out


def _dmc_only(args, options) -> dict:
    if args.env.startswith("dmc:"):
        return options
    if options["pixels"] or options["action_repeat"] != 1 or options["frame_stack"] != 1:
        raise ValueError("--pixels, --action-repeat and --frame-stack are dm_control "
                         "options (--env dmc:<domain>-<task>)")
    return {}
