"""SAC throughput on Pendulum-v1: purerl vs rejax, in one run.

    python benchmarks/run_sac_throughput.py [--total-steps 20000] [--seeds 1,8] \
        [--repeats 3]

Each measurement is its own process (so peak RSS is that measurement's): purerl's from
``benchmarks/purerl_sac.py`` in this environment, rejax's from
``benchmarks/peers/rejax_sac.py`` in its own virtual environment (rejax 0.1.3 needs
gymnax<1.0), built first by ``benchmarks/peers/build_venvs.sh``. Both run the same
off-policy configuration: 1 env, one gradient update per env step after 1000 warm-up
steps, batch 256, 256x256 ReLU MLPs for the actor and the twin critics, lr 1e-3 (see
the scripts' docstrings for what rejax cannot match). One seed runs without vmap;
more seeds are vmapped inside one jit (and, for purerl, also sharded over one XLA
host device per core). Results go to
``benchmarks/results/sac_throughput.{json,md,png}``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from run_throughput import ROOT, baseline_rows, machine, run_json

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ("rejax",)

CONFIG = ("Pendulum-v1, 1 env, 1 gradient update per env step (num_steps 1, "
          "updates_per_round 1) after {learning_starts} warm-up steps, batch 256, replay "
          "{buffer} transitions, actor and twin critics 256x256 ReLU MLPs, Adam lr "
          "1e-3, "
          "gamma 0.99, tau 0.005, initial alpha 1, target entropy -1")

DIFFERENCES = [
    "rejax samples the replay without replacement by a Gumbel top-k over the whole "
    "capacity every update (cost grows with the buffer size); purerl draws uniform "
    "indices with replacement",
    "rejax acts with its untrained policy during warm-up; purerl with uniform random "
    "actions",
    "rejax treats the 200-step time limit as terminal; purerl bootstraps it",
    "rejax updates actor, critics, temperature in that order (temperature loss on "
    "alpha); purerl critics, actor, temperature (loss on log alpha)",
    "actor head: rejax separate mean/log-std layers, log-std clipped to [-10, 2], "
    "flax default init; purerl one orthogonal head, log-std tanh-squashed into [-5, 2]",
    "evaluation: purerl's 8 greedy episodes are inside the timed run; rejax's stock "
    "evaluation (128 stochastic episodes per seed) runs after it, untimed",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--total-steps", type=int, default=20_000, help="env steps per seed")
    p.add_argument("--seeds", default="1,8", help="comma-separated seed counts")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    p.add_argument("--learning-starts", type=int, default=1000,
                   help="warm-up env steps before the first update")
    p.add_argument("--buffer-size", type=int, default=None,
                   help="replay capacity per seed (default: --total-steps)")
    p.add_argument("--peers", default="rejax",
                   help="peers to run: rejax or '' for none")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="a checkout of another purerl commit: its purerl rows run beside "
                   "this tree's")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    p.add_argument("--timeout", type=int, default=7200, help="seconds per measurement")
    args = p.parse_args(argv)
    baseline = baseline_rows(args.baseline)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    peers = [s for s in args.peers.split(",") if s]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        p.error(f"unknown peers {unknown}; known: {list(PEERS)}")
    if peers:
        subprocess.run(["bash", "benchmarks/peers/build_venvs.sh", *peers], cwd=ROOT,
                       check=True)
    py = sys.executable
    cores = os.cpu_count() or 1
    buffer = args.buffer_size or args.total_steps
    rows = []
    start = time.time()

    def measure(config, cmd, env=None):
        result = run_json(cmd, env, timeout=args.timeout)
        if env is not None:
            result["framework"] = "purerl (baseline commit)"
        rows.append({"config": config, **result})

    for n in seeds:
        common = ["--num-seeds", str(n), "--total-steps", str(args.total_steps),
                  "--repeats", str(args.repeats),
                  "--learning-starts", str(args.learning_starts),
                  "--buffer-size", str(buffer)]
        single = ["--no-vmap"] if n == 1 else []
        measure("purerl", [py, "benchmarks/purerl_sac.py", *common, *single])
        if n > 1 and cores > 1 and n % cores == 0:
            measure(f"purerl, seeds sharded over {cores} host devices",
                    [py, "benchmarks/purerl_sac.py", *common, "--devices", str(cores)])
        if baseline:
            label, root, env = baseline
            script = os.path.join(root, "benchmarks", "purerl_sac.py")
            measure(f"purerl @ {label}", [py, script, *common, *single], env)
            if n > 1 and cores > 1 and n % cores == 0:
                measure(f"purerl @ {label}, seeds sharded over {cores} host devices",
                        [py, script, *common, "--devices", str(cores)], env)
        if "rejax" in peers:
            measure("rejax", ["benchmarks/.venvs/rejax/bin/python",
                              "benchmarks/peers/rejax_sac.py", *common, *single])

    def best(framework, n):
        return max((r["env_steps_per_second"] for r in rows
                    if r["framework"] == framework and r["num_seeds"] == n),
                   default=None)

    ratios = {}
    for n in seeds:
        ours = best("purerl", n)
        ratios[f"{n}_seeds"] = {}
        for peer in peers:
            theirs = best(peer, n)
            ratios[f"{n}_seeds"][peer] = ours / theirs if ours and theirs else None
    import jax

    command = (f"python benchmarks/run_sac_throughput.py "
               f"--total-steps {args.total_steps} --seeds {args.seeds} "
               f"--repeats {args.repeats}")
    if args.learning_starts != 1000:
        command += f" --learning-starts {args.learning_starts}"
    if args.buffer_size:
        command += f" --buffer-size {args.buffer_size}"
    config = CONFIG.format(learning_starts=args.learning_starts, buffer=buffer)
    report = {
        "benchmark": "SAC Pendulum-v1 throughput (env-steps/s, all seeds together, "
                     "compilation excluded)",
        "config": config,
        "differences": DIFFERENCES if peers else [],
        "command": command,
        "machine": machine(),
        "jax": jax.__version__,
        "total_steps_per_seed": args.total_steps,
        "learning_starts": args.learning_starts,
        "buffer_size": buffer,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d"),
        "wall_seconds": round(time.time() - start, 1),
        "results": rows,
        "ratio_purerl_best_over_peer": ratios,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sac_throughput.json"), "w") as f:
        json.dump(report, f, indent=2)
    m = report["machine"]
    lines = [
        "# SAC throughput on Pendulum-v1",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU; "
        f"jax {report['jax']}; {report['date']}. Command: `{command}`.",
        "",
        f"{config}. Env-steps/s counts all seeds, excludes compilation, median of "
        f"{args.repeats} timed run(s); {args.total_steps:,} env steps per seed.",
        "",
        "| seeds | implementation | env-steps/s | updates/seed | compile s "
        "| peak RSS MiB | final return |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        comp = "" if r["compile_seconds"] is None else f"{r['compile_seconds']:.1f}"
        ret = "" if r["final_return_mean"] is None else f"{r['final_return_mean']:.0f}"
        lines.append(f"| {r['num_seeds']} | {r['config']} "
                     f"| {r['env_steps_per_second']:,.0f} | {r['updates_per_seed']:,} "
                     f"| {comp} | {r['peak_rss_mb']:.0f} | {ret} |")
    if any(v is not None for vals in ratios.values() for v in vals.values()):
        lines += ["", "Ratio (best purerl row / best row of the peer):", ""]
        for key, vals in ratios.items():
            for peer, v in vals.items():
                if v is not None:
                    lines.append(f"- {key.replace('_', ' ')}: {v:.2f}x {peer}")
    if report["differences"]:
        lines += ["", "What rejax 0.1.3 does not let us match (details in "
                  "`benchmarks/peers/rejax_sac.py`):", ""]
        lines += [f"- {d}" for d in report["differences"]]
    lines += ["", "Final returns are not comparable across rows: purerl reports 8 "
              "greedy evaluation episodes, rejax 128 stochastic ones."]
    with open(os.path.join(args.out, "sac_throughput.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(rows, os.path.join(args.out, "sac_throughput.png"), m["cores"])
    print("\n".join(lines))
    return 0


def _plot(rows, path, cores):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5), dpi=80)
    labels = [f"{r['num_seeds']} seed{'s' if r['num_seeds'] > 1 else ''}\n{r['config']}"
              for r in rows]
    colors = {"purerl": "tab:blue", "rejax": "tab:orange"}
    ax.barh(range(len(rows)), [r["env_steps_per_second"] for r in rows],
            color=[colors.get(r["framework"], "gray") for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("env-steps/s (all seeds; 1 update per env step)")
    ax.set_title(f"SAC Pendulum-v1 throughput, {cores}-core CPU")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
