"""Dreamer's training step on this CPU: purerl against danijar/dreamer (TensorFlow 2),
and purerl's whole-run throughput on Pendulum-v1 for 1 and 8 seeds.

    python benchmarks/run_dreamer_update.py --dreamer-path DIR [--updates 3] [--repeats 3]

DIR holds danijar/dreamer's ``dreamer.py``, ``models.py``, ``tools.py`` and
``wrappers.py`` at commit 56d4d44 (see ``benchmarks/peers/dreamer_v1.py``); the peer runs
in ``benchmarks/.venvs/dreamer`` (``bash benchmarks/peers/build_venvs.sh dreamer``).
Without ``--dreamer-path`` only purerl's rows are measured.

One step = the world-model loss (conv encoder, RSSM filter over 50 steps, conv decoder,
reward head) and its Adam step, imagination of 15 steps from all 2500 posterior states,
the actor's and the value's losses and Adam steps, at the paper's sizes (GRU 200, z 30,
400-wide heads, depth 32) and batch (50 sequences of 50 steps of 64x64x3 frames, one
action dimension), float32 in both. purerl is timed as ``jax.jit(agent.update)``
called in sequence, as the peer's ``tf.function`` is, and as ``--updates`` updates
inside one compiled ``lax.scan`` (how its loop runs them).

Throughput: ``experiments/dreamer.py --env Pendulum-v1`` with its preset (50k env
steps, training included) for 1 seed (``--seeds``), and the 8-seed figures of the
committed learning run (``benchmarks/results/learning/dreamer_Pendulum-v1.json``, the
same command with ``--num-seeds 8``); env steps/s counts all seeds' steps.

Results go to ``benchmarks/results/dreamer_update.{json,md}``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_throughput import machine, without_flag  # noqa: E402

BATCH, LENGTH, ACTION_DIM = 50, 50, 1


def purerl_rows(args):
    import jax
    import jax.numpy as jnp

    from purerl.algos import dreamer
    from purerl.types import Box, EnvSpec, Transition

    spec = EnvSpec((64, 64, 3), "uint8", Box((-1.0,), (1.0,), (ACTION_DIM,)), 500)
    agent = dreamer.make(dreamer.Config(), spec)
    k = jax.random.split(jax.random.key(args.seed), 5)
    frames = jax.random.randint(k[0], (LENGTH, BATCH, 64, 64, 3), 0, 256).astype(jnp.uint8)
    batch = Transition(
        obs=frames, next_obs=jnp.roll(frames, -1, axis=0),
        action=jax.random.uniform(k[1], (LENGTH, BATCH, ACTION_DIM), minval=-1, maxval=1),
        reward=jax.random.uniform(k[2], (LENGTH, BATCH)),
        discount=jnp.full((LENGTH, BATCH), 0.99), terminated=jnp.zeros((LENGTH, BATCH), bool),
        truncated=jnp.zeros((LENGTH, BATCH), bool), extras={},
        bootstrap_value=jnp.zeros(BATCH))
    state = agent.init(k[3])
    update = jax.jit(agent.update)

    def scan_updates(state, key):
        def body(s, key):
            return update(s, batch, key)[0], None
        return jax.lax.scan(body, state, jax.random.split(key, args.updates))[0]

    rows = []
    for mode, fn in (("per call", None), ("in scan", jax.jit(scan_updates))):
        t0 = time.perf_counter()
        s = update(state, batch, k[4])[0] if fn is None else fn(state, k[4])
        jax.block_until_ready(s)
        warmup = time.perf_counter() - t0
        walls = []
        for r in range(args.repeats):
            keys = jax.random.split(jax.random.key(100 + r), args.updates)
            t0 = time.perf_counter()
            if fn is None:
                for key in keys:
                    s = update(s, batch, key)[0]
            else:
                s = fn(s, keys[0])
            jax.block_until_ready(s)
            walls.append(time.perf_counter() - t0)
        wall = sorted(walls)[(len(walls) - 1) // 2]
        rows.append({"framework": "purerl", "mode": mode,
                     "updates_per_second": args.updates / wall, "walls": walls,
                     "warmup_seconds": warmup, "jax": jax.__version__})
        print(f"  purerl {mode}: {args.updates / wall:.3f} updates/s", flush=True)
    return rows


def peer_row(args):
    py = os.path.join(ROOT, "benchmarks", ".venvs", "dreamer", "bin", "python")
    cmd = [py, os.path.join(HERE, "peers", "dreamer_v1.py"), "--dreamer-path",
           args.dreamer_path, "--updates", str(args.updates), "--repeats", str(args.repeats),
           "--action-dim", str(ACTION_DIM), "--seed", str(args.seed)]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=without_flag(dict(os.environ)))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError("danijar/dreamer peer failed")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["mode"] = "per call"
    print(f"  danijar/dreamer: {row['updates_per_second']:.3f} updates/s", flush=True)
    return row


def throughput_rows(seeds):
    rows = []
    for n in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "experiments/dreamer.py", "--env", "Pendulum-v1",
                   "--num-seeds", str(n), "--no-progress", "--no-compile-cache", "--out", tmp]
            print("$", " ".join(cmd[1:-2]), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(tmp, "results.json")) as f:
                r = json.load(f)
        rows.append({"num_seeds": n, "env_steps_per_second": r["env_steps_per_second"],
                     "wall_seconds": r["wall_seconds"], "compile_seconds": r["compile_seconds"],
                     "total_steps": r["total_steps"],
                     "final_return_mean": r["final_return_mean"]})
        print(f"  {n} seeds: {r['env_steps_per_second']:.0f} env steps/s", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dreamer-path", default=None)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default="1", help="throughput runs (empty: none)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--keep-steps", action="store_true",
                   help="keep the training-step rows of the committed dreamer_update.json "
                        "(and its settings) and rerun only the Pendulum throughput")
    args = p.parse_args()
    if args.keep_steps:
        with open(os.path.join(args.out, "dreamer_update.json")) as f:
            kept = json.load(f)
        rows, args.updates, args.repeats = kept["rows"], kept["updates"], kept["repeats"]
    else:
        rows = purerl_rows(args)
        if args.dreamer_path:
            rows.append(peer_row(args))
    runs = throughput_rows([int(s) for s in args.seeds.split(",") if s])
    learning = os.path.join(args.out, "learning", "dreamer_Pendulum-v1.json")
    if os.path.exists(learning):
        with open(learning) as f:
            r = json.load(f)
        runs.append({"num_seeds": r["num_seeds"], "total_steps": r["total_steps"],
                     "env_steps_per_second": r["env_steps_per_second"],
                     "wall_seconds": r["wall_seconds"], "compile_seconds": r["compile_seconds"],
                     "final_return_mean": r["final_return_mean"],
                     "source": "benchmarks/results/learning/dreamer_Pendulum-v1.json"})
    out = {"machine": machine(), "updates": args.updates, "repeats": args.repeats,
           "batch": [BATCH, LENGTH], "rows": rows, "pendulum": runs}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dreamer_update.json"), "w") as f:
        json.dump(out, f, indent=1)
    get = {(r["framework"], r["mode"]): r["updates_per_second"] for r in rows}
    peer = get.get(("danijar/dreamer (TensorFlow)", "per call"))
    ratio = (lambda x: f"{x / peer:.2f}x") if peer else (lambda x: "")
    m = out["machine"]
    lines = ["# Dreamer training step: purerl vs danijar/dreamer (TensorFlow 2)\n",
             f"Steps/s (median of {args.repeats} rounds of {args.updates} steps) at the "
             f"paper's sizes, batch {BATCH} x {LENGTH} of 64x64x3 frames, float32. Machine: "
             f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU. Command: "
             f"`python benchmarks/run_dreamer_update.py --dreamer-path DIR`.\n",
             "| implementation | steps/s | ratio to the peer |", "|---|---:|---:|"]
    for (fw, mode), v in get.items():
        lines.append(f"| {fw} ({mode}) | {v:.3f} | {ratio(v) if fw == 'purerl' else ''} |")
    if runs:
        lines += ["", "Pendulum-v1, `experiments/dreamer.py` preset (training included):", "",
                  "| seeds | env steps | env steps/s (all seeds) | wall s | compile s | "
                  "final return (mean) |", "|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            lines.append(f"| {r['num_seeds']} | {r['total_steps']} | "
                         f"{r['env_steps_per_second']:.0f} | {r['wall_seconds']:.0f} | "
                         f"{r['compile_seconds']:.0f} | {r['final_return_mean']:.1f} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "dreamer_update.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
