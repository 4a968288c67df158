"""Proto-RL's update on this CPU: purerl against URLB's PyTorch Proto agent.

    python benchmarks/run_proto_update.py --urlb-path DIR [--updates 100] [--repeats 3]

DIR holds URLB's ``agent/proto.py``, ``agent/ddpg.py`` and ``utils.py`` at commit
bb98f0c (see ``benchmarks/peers/urlb_proto.py``); the peer runs in
``benchmarks/.venvs/urlb`` (``bash benchmarks/peers/build_venvs.sh urlb``). Without
``--urlb-path`` only purerl's rows are measured.

One update = the prototype loss and its Adam step, the intrinsic reward (enqueue one
candidate per prototype, distance to the 3rd neighbour in the queue) and the actor-critic
step, reward-free, from states with the identity encoder, at two sets of sizes:

* ``preset``: the sizes of ``experiments/proto.py``'s ``dmc:cartpole-swingup`` preset
  (hidden 256, batch 256, 128 prototypes, queue 512; its MLP encoder is left out because
  URLB's state encoder is the identity), on cartpole's shapes (obs 5, action 1);
* ``urlb``: URLB's proto.yaml sizes (hidden 1024, batch 1024, 512 prototypes, queue
  2048), same shapes. Both: prototype dimension 128, projector hidden 512.

purerl is timed two ways: ``per call``, ``jax.jit(agent.update)`` called from Python in
sequence as the peer is (each call's state feeds the next; the round ends with
``block_until_ready``), and ``in scan``, ``--updates`` updates inside one compiled
``lax.scan``, which is how purerl's loop runs them. The actor-critic halves differ:
purerl's Proto is on SAC, as the paper's code (denisyarats/proto) is; URLB's is on DDPG
(no entropy temperature, a shared critic trunk). Results go to
``benchmarks/results/proto_update.{json,md}``.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_throughput import machine, without_flag  # noqa: E402

SIZES = {
    "preset": dict(hidden=256, batch=256, protos=128, queue=512),
    "urlb": dict(hidden=1024, batch=1024, protos=512, queue=2048),
}
OBS_DIM, ACTION_DIM, PROTO_DIM, PROJ_HIDDEN = 5, 1, 128, 512


def purerl_rows(name, size, args):
    import jax
    import jax.numpy as jnp

    from purerl.algos import proto
    from purerl.types import Box, EnvSpec, Transition

    cfg = proto.Config(hidden_sizes=(size["hidden"], size["hidden"]),
                       batch_size=size["batch"], num_prototypes=size["protos"],
                       queue_size=size["queue"], proto_dim=PROTO_DIM,
                       predictor_hidden=PROJ_HIDDEN, encoder="identity")
    spec = EnvSpec((OBS_DIM,), "float32", Box((-1.0,), (1.0,), (ACTION_DIM,)), 1000)
    agent = proto.make(cfg, spec)
    B, N = size["batch"], 8  # eight batches in turn, as the peer's replay_iter
    k = jax.random.split(jax.random.key(args.seed), 4)
    batches = Transition(
        obs=jax.random.normal(k[0], (N, B, OBS_DIM)),
        action=jax.random.uniform(k[1], (N, B, ACTION_DIM), minval=-1, maxval=1),
        reward=jnp.zeros((N, B)), discount=jnp.full((N, B), 0.99),
        terminated=jnp.zeros((N, B), bool), truncated=jnp.zeros((N, B), bool), extras={},
        bootstrap_value=jnp.zeros((N, B)), next_obs=jax.random.normal(k[2], (N, B, OBS_DIM)))
    batch_list = [jax.tree.map(lambda x: x[i], batches) for i in range(N)]
    state = agent.init(k[3])

    update = jax.jit(agent.update)

    def scan_updates(state, key):
        def body(s, xs):
            i, key = xs  # a traced index, so no batch is a compile-time constant
            batch = jax.tree.map(lambda x: x[i % N], batches)
            return update(s, batch, key)[0], None
        xs = (jnp.arange(args.updates), jax.random.split(key, args.updates))
        return jax.lax.scan(body, state, xs)[0]

    rows = []
    for mode, fn in (("per call", None), ("in scan", jax.jit(scan_updates))):
        t0 = time.perf_counter()
        if fn is None:
            s = state
            for i in range(args.warmup):
                s = update(s, batch_list[i % N], jax.random.key(i))[0]
        else:
            s = fn(state, jax.random.key(0))
        jax.block_until_ready(s)
        compile_s = time.perf_counter() - t0
        walls = []
        for r in range(args.repeats):
            keys = jax.block_until_ready(jax.random.split(jax.random.key(100 + r),
                                                          args.updates))
            t0 = time.perf_counter()
            if fn is None:
                for i, key in enumerate(keys):
                    s = update(s, batch_list[i % N], key)[0]
            else:
                s = fn(s, keys[0])
            jax.block_until_ready(s)
            walls.append(time.perf_counter() - t0)
        wall = sorted(walls)[(len(walls) - 1) // 2]
        rows.append({"sizes": name, "framework": "purerl", "mode": mode,
                     "updates_per_second": args.updates / wall, "walls": walls,
                     "warmup_seconds": compile_s, "jax": jax.__version__})
        print(f"  purerl {name} {mode}: {args.updates / wall:,.1f} updates/s", flush=True)
    return rows


def urlb_row(name, size, args):
    import subprocess

    py = os.path.join(ROOT, "benchmarks", ".venvs", "urlb", "bin", "python")
    cmd = [py, os.path.join(HERE, "peers", "urlb_proto.py"), "--urlb-path", args.urlb_path,
           "--obs-dim", str(OBS_DIM), "--action-dim", str(ACTION_DIM),
           "--batch-size", str(size["batch"]), "--hidden-dim", str(size["hidden"]),
           "--num-protos", str(size["protos"]), "--queue-size", str(size["queue"]),
           "--pred-dim", str(PROTO_DIM), "--proj-dim", str(PROJ_HIDDEN),
           "--updates", str(args.updates), "--warmup", str(args.warmup),
           "--repeats", str(args.repeats), "--seed", str(args.seed)]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env=without_flag(dict(os.environ)))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError("URLB peer failed")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row.update(sizes=name, mode="per call")
    print(f"  urlb {name}: {row['updates_per_second']:,.1f} updates/s", flush=True)
    return row


def table(rows):
    lines = ["| sizes | purerl per call | purerl in scan | URLB (PyTorch) | "
             "ratio per call | ratio in scan |", "|---|---:|---:|---:|---:|---:|"]
    for name in SIZES:
        get = {(r["framework"], r["mode"]): r["updates_per_second"]
               for r in rows if r["sizes"] == name}
        if not get:
            continue
        call, scan = get[("purerl", "per call")], get[("purerl", "in scan")]
        peer = get.get(("urlb", "per call"))
        s = SIZES[name]
        label = (f"{name} (hidden {s['hidden']}, batch {s['batch']}, "
                 f"{s['protos']} prototypes, queue {s['queue']})")
        ratio = (lambda x: f"{x / peer:.2f}x") if peer else (lambda x: "")
        lines.append(f"| {label} | {call:,.1f} | {scan:,.1f} | "
                     f"{f'{peer:,.1f}' if peer else 'not run'} | {ratio(call)} | "
                     f"{ratio(scan)} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--urlb-path", default=None)
    p.add_argument("--updates", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = p.parse_args()
    rows = []
    for name in args.sizes.split(","):
        rows += purerl_rows(name, SIZES[name], args)
        if args.urlb_path:
            rows.append(urlb_row(name, SIZES[name], args))
    out = {"machine": machine(), "updates": args.updates, "repeats": args.repeats,
           "shapes": {"obs": OBS_DIM, "action": ACTION_DIM, "proto_dim": PROTO_DIM,
                      "projector_hidden": PROJ_HIDDEN}, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "proto_update.json"), "w") as f:
        json.dump(out, f, indent=1)
    m = out["machine"]
    md = (f"# Proto-RL update: purerl vs URLB (PyTorch)\n\n"
          f"Updates/s (median of {args.repeats} rounds of {args.updates} updates), "
          f"reward-free, from states (obs {OBS_DIM}, action {ACTION_DIM}). Machine: "
          f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU. "
          f"Command: `python benchmarks/run_proto_update.py --urlb-path DIR`; see its "
          f"docstring for what one update is and how the two differ.\n\n{table(rows)}\n")
    with open(os.path.join(args.out, "proto_update.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
