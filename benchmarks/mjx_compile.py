"""Where the first ``mjx:`` run's time goes: PPO on ``mjx:cartpole-swingup`` (its
preset, 2 seeds, 4096 steps), with no compilation cache, split into its parts.

    python benchmarks/mjx_compile.py [--before DIR] [--name NAME]

Each part is timed in a fresh process (nothing cached, ``JAX_COMPILATION_CACHE_DIR``
unset): ``make`` (loading the model), ``init`` (the seeds' first reset and agent init,
compiled and run), the block program's trace and lowering to StableHLO, its XLA
compilation, and one run of it. Then the whole script, ``python experiments/ppo.py
--env mjx:cartpole-swingup --num-seeds 2 --total-steps 4096 --no-compile-cache``, as a
user starts it (its wall clock, and the compile seconds it reports).

Then the same script twice with the persistent compilation cache on (the scripts'
default) in a fresh cache directory: the second run's compile seconds and wall.

``--before DIR`` also measures a checkout of an earlier commit (e.g. ``git worktree
add DIR <commit>``) with this environment's packages, for a before/after table.
Writes ``benchmarks/results/mjx_compile<name>.{json,md}``.
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
ROOT = os.path.dirname(HERE)
ENV_ID = "mjx:cartpole-swingup"
FLAGS = ["--env", ENV_ID, "--num-seeds", "2", "--total-steps", "4096"]

# Runs inside the measured tree (its purerl and experiments/ppo.py's presets).
PARTS = r"""
import importlib.util, json, sys, time
start = time.perf_counter()
import jax
import purerl
from purerl import experiment
from purerl.algos import ppo
spec = importlib.util.spec_from_file_location("ppo_script", "experiments/ppo.py")
script = importlib.util.module_from_spec(spec); spec.loader.exec_module(script)
args = experiment.build_parser(ppo, FLAGS[1]).parse_args(FLAGS)
config, run = experiment.resolve_config(ppo, args, script.PRESETS)
times = {"import": time.perf_counter() - start}
t = time.perf_counter(); env = purerl.envs.make(FLAGS[1]); times["make"] = time.perf_counter() - t
trainer = purerl.Trainer(ppo, env, config, run, num_seeds=2)
t = time.perf_counter(); runner = jax.block_until_ready(trainer.init(jax.random.key(0)))
times["init"] = time.perf_counter() - t
t = time.perf_counter(); lowered = trainer._block.lower(runner)
times["trace_and_lower"] = time.perf_counter() - t
t = time.perf_counter(); block = lowered.compile(); times["xla_compile"] = time.perf_counter() - t
t = time.perf_counter(); jax.block_until_ready(block(runner)); times["first_block"] = time.perf_counter() - t
times["stablehlo_chars"] = len(lowered.as_text())
print("PARTS " + json.dumps(times))
"""


def measure(tree: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["PYTHONPATH"] = tree
    code = f"FLAGS = {FLAGS!r}\n" + PARTS
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env,
                         capture_output=True, text=True, check=True)
    parts = json.loads(next(line for line in out.stdout.splitlines()
                            if line.startswith("PARTS "))[6:])
    run_dir = os.path.join("/tmp", f"mjx_compile_{os.getpid()}_{len(tree)}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "experiments/ppo.py", *FLAGS, "--no-compile-cache",
                    "--no-progress", "--overwrite", "--out", run_dir], cwd=tree, env=env,
                   capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    # The scripts' default: the persistent compilation cache. A second run with the
    # same shapes loads the executables (tracing and lowering still run).
    with tempfile.TemporaryDirectory() as cache:
        cached = {}
        for attempt in ("first", "second"):
            start = time.perf_counter()
            subprocess.run([sys.executable, "experiments/ppo.py", *FLAGS, "--no-progress",
                            "--overwrite", "--out", run_dir], cwd=tree,
                           env={**env, "JAX_COMPILATION_CACHE_DIR": cache},
                           capture_output=True, text=True, check=True)
            with open(os.path.join(run_dir, "results.json")) as f:
                cached[attempt] = {"wall": time.perf_counter() - start,
                                   "compile": json.load(f)["compile_seconds"]}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                            capture_output=True, text=True).stdout.strip()
    return {"tree": tree, "commit": commit, "parts": parts, "script_wall_seconds": wall,
            "script_compile_seconds": results["compile_seconds"],
            "script_run_wall_seconds": results["wall_seconds"], "with_cache": cached}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default=None, help="a checkout of an earlier commit")
    p.add_argument("--name", default="")
    args = p.parse_args()
    rows = ([measure(os.path.abspath(args.before))] if args.before else []) + [measure(ROOT)]
    import jax

    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}; "
               f"jax {jax.__version__}")
    stem = os.path.join(HERE, "results", f"mjx_compile{args.name}")
    with open(stem + ".json", "w") as f:
        json.dump({"machine": machine, "flags": FLAGS, "rows": rows}, f, indent=1)
    labels = [("make", "make (load the model)"), ("init", "init: first reset, compiled and run"),
              ("trace_and_lower", "block: trace and lower"),
              ("xla_compile", "block: XLA compile"), ("first_block", "block: first run")]
    head = " | ".join(f"{r['commit']}" for r in rows)
    lines = [f"PPO on {ENV_ID}, its preset, 2 seeds, 4096 steps, no compilation cache; "
             f"`python benchmarks/mjx_compile.py{' --before DIR' if args.before else ''}`; "
             f"{machine}. Seconds, each part in a fresh process.", "",
             f"| part | {head} |", "|---|" + "---:|" * len(rows)]
    for key, label in labels:
        lines.append(f"| {label} | " + " | ".join(f"{r['parts'][key]:.1f}" for r in rows)
                     + " |")
    lines.append("| StableHLO of the block (MB) | " + " | ".join(
        f"{r['parts']['stablehlo_chars'] / 1e6:.2f}" for r in rows) + " |")
    lines.append("| the script: compile seconds it reports | " + " | ".join(
        f"{r['script_compile_seconds']:.1f}" for r in rows) + " |")
    lines.append("| the script: whole process, wall | " + " | ".join(
        f"{r['script_wall_seconds']:.1f}" for r in rows) + " |")
    lines.append("| the script, cache on, second run: compile seconds | " + " | ".join(
        f"{r['with_cache']['second']['compile']:.1f}" for r in rows) + " |")
    lines.append("| the script, cache on, second run: whole process | " + " | ".join(
        f"{r['with_cache']['second']['wall']:.1f}" for r in rows) + " |")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
