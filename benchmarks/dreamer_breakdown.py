"""Where Dreamer's pixel training step spends its time on this CPU: purerl's parts, and
the same convolution stacks written in TensorFlow 2 (Keras layers, in the dreamer peer's
venv) to separate the backend's convolutions from the rest.

    python benchmarks/dreamer_breakdown.py            # purerl parts + TF stacks

Parts, each forward and backward (the gradient of a sum), at the paper's sizes and
batch (50 x 50 = 2500 frames of 64x64x3, features 230 = GRU 200 + z 30):
  encoder  4 convolutions k4 s2, depth 32·2^i, on 2500 frames (purerl runs it on
           ``obs`` and on ``next_obs``: twice per step);
  decoder  Dense to 1024, then transposed convolutions k5, k5, k6, k6 stride 2;
  step     the whole ``agent.update`` (``run_dreamer_update.py`` times it against the peer).
Writes ``benchmarks/results/dreamer_breakdown.{json,md}``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_throughput import machine, without_flag  # noqa: E402

N, FEAT = 2500, 230

TF_CODE = r"""
import json, sys, time
import numpy as np
import tensorflow as tf
N, FEAT, repeats = 2500, 230, int(sys.argv[1])
tf.random.set_seed(0)
enc = tf.keras.Sequential([tf.keras.layers.Conv2D(32 * 2**i, 4, 2, activation="relu")
                           for i in range(4)] + [tf.keras.layers.Flatten()])
dec = tf.keras.Sequential([tf.keras.layers.Dense(1024), tf.keras.layers.Reshape((1, 1, 1024)),
    tf.keras.layers.Conv2DTranspose(128, 5, 2, activation="relu"),
    tf.keras.layers.Conv2DTranspose(64, 5, 2, activation="relu"),
    tf.keras.layers.Conv2DTranspose(32, 6, 2, activation="relu"),
    tf.keras.layers.Conv2DTranspose(3, 6, 2)])
x = tf.random.uniform((N, 64, 64, 3)) - 0.5
f = tf.random.normal((N, FEAT))
enc(x[:1]); dec(f[:1])
def grads(net, inp):
    @tf.function
    def g(inp):
        with tf.GradientTape() as tape:
            out = tf.reduce_sum(net(inp))
        return tape.gradient(out, net.trainable_variables)
    return g
out = {}
for name, net, inp in (("encoder", enc, x), ("decoder", dec, f)):
    g = grads(net, inp)
    g(inp)
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter(); r = g(inp); _ = [v.numpy() for v in r]
        walls.append(time.perf_counter() - t0)
    out[name] = sorted(walls)[(len(walls) - 1) // 2]
out["tensorflow"] = tf.__version__
print(json.dumps(out))
"""


def time_fn(fn, args, repeats):
    import jax

    jax.block_until_ready(fn(*args))
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        walls.append(time.perf_counter() - t0)
    return sorted(walls)[(len(walls) - 1) // 2]


def purerl_parts(repeats):
    import jax

    from purerl.algos import dreamer

    k = jax.random.split(jax.random.key(0), 4)
    enc, dec = dreamer.PixelEncoder(), dreamer.PixelDecoder()
    x = jax.random.uniform(k[0], (N, 64, 64, 3)) - 0.5
    f = jax.random.normal(k[1], (N, FEAT))
    pe, pd = enc.init(k[2], x[:1]), dec.init(k[3], f[:1])
    grad = lambda net: jax.jit(jax.grad(lambda p, inp: net.apply(p, inp).sum()))  # noqa: E731
    return {"encoder": time_fn(grad(enc), (pe, x), repeats),
            "decoder": time_fn(grad(dec), (pd, f), repeats), "jax": jax.__version__}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    ours = purerl_parts(args.repeats)
    print("purerl", ours, flush=True)
    py = os.path.join(ROOT, "benchmarks", ".venvs", "dreamer", "bin", "python")
    proc = subprocess.run([py, "-c", TF_CODE, str(args.repeats)], capture_output=True,
                          text=True, env=without_flag(dict(os.environ)))
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit("the TensorFlow stacks failed")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    print("tensorflow", theirs, flush=True)
    step = None
    path = os.path.join(args.out, "dreamer_update.json")
    if os.path.exists(path):
        with open(path) as fh:
            rows = json.load(fh)["rows"]
        step = {r["framework"]: 1.0 / r["updates_per_second"] for r in rows
                if r.get("mode") == "per call"}
    out = {"machine": machine(), "repeats": args.repeats, "batch_frames": N,
           "purerl": ours, "tensorflow": theirs, "step_seconds": step}
    with open(os.path.join(args.out, "dreamer_breakdown.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    lines = ["# Dreamer's pixel step, by part: purerl (XLA:CPU) and the same stacks in "
             "TensorFlow\n",
             f"Forward + backward seconds (median of {args.repeats}) on {N} frames of "
             f"64x64x3, the paper's layer sizes; machine {out['machine']['cpu']}, "
             f"{out['machine']['cores']} cores. Command: `python "
             f"benchmarks/dreamer_breakdown.py`.\n",
             "| part | purerl s | TensorFlow s | purerl / TF |", "|---|---:|---:|---:|"]
    for part in ("encoder", "decoder"):
        lines.append(f"| {part} | {ours[part]:.2f} | {theirs[part]:.2f} | "
                     f"{ours[part] / theirs[part]:.1f}x |")
    if step:
        lines.append(f"| whole step (`dreamer_update.json`) | "
                     f"{step.get('purerl', float('nan')):.1f} | "
                     f"{step.get('danijar/dreamer (TensorFlow)', float('nan')):.1f} | |")
        lines.append("\npurerl's step runs the encoder twice (on `obs` and `next_obs`) and "
                     "the decoder once.")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "dreamer_breakdown.md"), "w") as fh:
        fh.write(md)
    print(md)


if __name__ == "__main__":
    main()
