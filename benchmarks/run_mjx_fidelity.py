"""mjx: tasks against dm_control over whole 1000-step episodes, both solver settings.

    python benchmarks/run_mjx_fidelity.py [--tasks cartpole-swingup,walker-walk]
                                          [--horizon 1000] [--seeds 0]

For each task, solver (``dmc``: dm_control's options, ``fast``: fewer iterations) and
precision (float32; float64 with ``jax_enable_x64``), ``purerl.testing.
mjx_against_dm_control`` steps the MJX env and dm_control's env from the same state
with the same uniform random actions, each held for ``--hold`` steps (50: held
actions carry the point mass and the reacher's finger through their targets, so their
rewards are not all zero; no random action sequence tried swings the pendulum up, so
its reward is compared on states, in the tests), two ways:

* open loop: each env runs on by itself; contact-rich tasks are chaotic, so small
  differences grow (this is the error a whole episode sees);
* one step: the MJX env restarts from dm_control's state before every step (each
  step's own error).

Writes ``benchmarks/results/mjx_fidelity.{json,md}``: max per-step reward error, max
observation error, and the episode returns of both (open loop).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

TASKS = ("cartpole-balance", "cartpole-swingup", "pendulum-swingup", "point_mass-easy",
         "reacher-easy", "cheetah-run", "walker-walk")


def measure(task, solver, horizon, seed, hold):
    """One row, in this process's precision (``JAX_ENABLE_X64``)."""
    import jax
    import numpy as np

    from purerl.testing import mjx_against_dm_control

    x64 = bool(jax.config.jax_enable_x64)
    row = {"task": task, "solver": solver, "precision": "float64" if x64 else "float32",
           "seed": seed}
    for mode in ("open_loop", "one_step"):
        out = mjx_against_dm_control("mjx:" + task, horizon, solver=solver, seed=seed,
                                     one_step=mode == "one_step", hold=hold)
        row[mode] = {
            "max_reward_error": float(np.abs(out["reward"] - out["reward_dmc"]).max()),
            "max_obs_error": float(out["obs_error"].max()),
            "return": float(out["reward"].sum()),
            "return_dmc": float(out["reward_dmc"].sum()),
            "truncation_agrees": bool((out["truncated"] == out["truncated_dmc"]).all()),
        }
    return row


def markdown(rows, meta) -> str:
    lines = [
        "# mjx: tasks against dm_control",
        "",
        f"{meta['horizon']} steps from dm_control's initial state (seed "
        f"{', '.join(map(str, meta['seeds']))}), the same uniform random actions, each "
        f"held for {meta['hold']} steps; "
        f"`python benchmarks/run_mjx_fidelity.py`. {meta['machine']}; {meta['versions']}.",
        "",
        "Open loop: each env runs by itself (chaotic contacts amplify float rounding). "
        "One step: the MJX env restarts from dm_control's state before every step. "
        "Errors are maxima over the steps (absolute; observations: over the vector).",
        "",
        "| task | solver | precision | reward err (one step) | obs err (one step) | "
        "reward err (open loop) | obs err (open loop) | return mjx | return dm_control |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        o, s = r["open_loop"], r["one_step"]
        lines.append(
            f"| {r['task']} | {r['solver']} | {r['precision']} | "
            f"{s['max_reward_error']:.1e} | {s['max_obs_error']:.1e} | "
            f"{o['max_reward_error']:.1e} | {o['max_obs_error']:.1e} | "
            f"{o['return']:.2f} | {o['return_dmc']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--solvers", default="dmc,fast")
    p.add_argument("--precisions", default="float32,float64")
    p.add_argument("--horizon", type=int, default=1000)
    p.add_argument("--seeds", default="0")
    p.add_argument("--hold", type=int, default=50,
                   help="each random action is held for this many steps")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--rows-to", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from purerl.experiment import use_compile_cache

    use_compile_cache()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.rows_to is None:
        # One process per precision: jax_enable_x64 is process-wide, and switching it
        # inside one process confuses jax's caches of MJX's inner jitted functions.
        rows = []
        for precision in args.precisions.split(","):
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                env = dict(os.environ, JAX_ENABLE_X64=str(int(precision == "float64")))
                subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:]),
                                "--rows-to", f.name], env=env, check=True)
                rows += json.load(open(f.name))
        order = {p: i for i, p in enumerate(args.precisions.split(","))}
        rows.sort(key=lambda r: (TASKS.index(r["task"]) if r["task"] in TASKS else 99,
                                 r["solver"], order[r["precision"]], r["seed"]))
        return write(args, rows, seeds)
    rows = []
    for task in args.tasks.split(","):
        for solver in args.solvers.split(","):
            for seed in seeds:
                t0 = time.perf_counter()
                row = measure(task, solver, args.horizon, seed, args.hold)
                rows.append(row)
                o, s = row["open_loop"], row["one_step"]
                print(f"{task:18s} {solver:4s} {row['precision']}: one step reward "
                      f"{s['max_reward_error']:.1e} obs {s['max_obs_error']:.1e}; open "
                      f"loop reward {o['max_reward_error']:.1e} obs "
                      f"{o['max_obs_error']:.1e}; return {o['return']:.2f} vs "
                      f"{o['return_dmc']:.2f} ({time.perf_counter() - t0:.0f}s)",
                      flush=True)
    with open(args.rows_to, "w") as f:
        json.dump(rows, f)
    return 0


def write(args, rows, seeds) -> int:
    from purerl import logging as plog

    meta = {"horizon": args.horizon, "seeds": seeds, "hold": args.hold,
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} cores, CPU only",
            "versions": ", ".join(f"{k} {v}" for k, v in plog.versions().items()
                                  if k in ("jax", "mujoco", "mujoco-mjx", "dm_control"))}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "mjx_fidelity.json"), "w") as f:
        json.dump({**meta, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, "mjx_fidelity.md"), "w") as f:
        f.write(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
