"""PPO throughput on CartPole-v1: purerl vs rejax vs PureJaxRL vs Stable-Baselines3.

    python benchmarks/run_throughput.py [--total-steps 200000] [--seeds 1,8,32] [--repeats 3]
        [--purejaxrl-path DIR]

Each measurement is its own process (so peak RSS is that measurement's): purerl's from
``benchmarks/purerl_ppo.py`` in this environment, the peers' from
``benchmarks/peers/*.py`` in their own virtual environments (rejax 0.1.3 needs
gymnax<1.0 and SB3 2.9.2 needs gymnasium 1.4, which purerl's gymnax 1.0.1 refuses),
built first by ``benchmarks/peers/build_venvs.sh``. PureJaxRL is not a package: its
``purejaxrl/ppo.py`` and ``wrappers.py`` at commit 31756b1 are loaded, unedited, from the
directory given by ``--purejaxrl-path`` or ``$PURERL_PUREJAXRL_PPO`` (that directory, or
its ppo.py); without it the purejaxrl peer is skipped with a note on how to get the
files. All runs share one configuration:
4 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh MLPs (see the scripts'
docstrings for what each library cannot match). Results go to
``benchmarks/results/ppo_throughput.{json,md,png}``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from purerl.xla import ENV_VAR as DEFAULT_SCHEDULER, without_flag  # noqa: E402

PUREJAXRL_ENV_VAR = "PURERL_PUREJAXRL_PPO"


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem_gib,
            "platform": platform.platform(), "python": platform.python_version()}


def run_json(cmd: list[str], env: dict | None = None, timeout: int = 1800) -> dict:
    print("$", " ".join(f"{k}={v}" for k, v in (env or {}).items()), " ".join(cmd), flush=True)
    # Every process starts from XLA's default flags: purerl's processes add their own
    # on import (purerl/xla.py), the peers must run as shipped.
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**without_flag(dict(os.environ)), **(env or {})})
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise RuntimeError(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  -> {result['env_steps_per_second']:,.0f} env-steps/s, "
          f"compile {result['compile_seconds'] or 0:.1f}s, "
          f"peak {result['peak_rss_mb']:.0f} MiB", flush=True)
    return result


def _purejaxrl_dir(path: str | None) -> str | None:
    """The absolute directory holding PureJaxRL's ppo.py and wrappers.py, or None
    (with a printed note on how to get them) when ``path`` is unset or lacks them."""
    if path and not os.path.exists(path):
        problem = f"{path} does not exist"
    elif path:
        path = os.path.abspath(path)
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        missing = [f for f in ("ppo.py", "wrappers.py")
                   if not os.path.isfile(os.path.join(directory, f))]
        if not missing:
            return directory
        problem = f"{', '.join(missing)} not found in {directory}"
    else:
        problem = f"no --purejaxrl-path and ${PUREJAXRL_ENV_VAR} unset"
    print(f"note: skipping the purejaxrl peer ({problem}). To run it, take its files "
          "at commit 31756b1 from a clone of https://github.com/luchris429/purejaxrl:\n"
          "    git show 31756b1:purejaxrl/ppo.py > DIR/ppo.py\n"
          "    git show 31756b1:purejaxrl/wrappers.py > DIR/wrappers.py\n"
          f"  then pass --purejaxrl-path DIR (or set {PUREJAXRL_ENV_VAR}=DIR).", flush=True)
    return None


def baseline_rows(root: str | None):
    """``(label, root, env)`` for a baseline checkout: its purerl is imported first."""
    if root is None:
        return None
    root = os.path.abspath(root)
    commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    return commit, root, {"PYTHONPATH": root}


def merge_rounds(results: list[dict]) -> dict:
    """One row from several processes of one measurement: the process with the median
    env-steps/s (its compile time, memory and return), plus every process's rate."""
    ordered = sorted(results, key=lambda r: r["env_steps_per_second"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["rounds_env_steps_per_second"] = [round(r["env_steps_per_second"]) for r in results]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--total-steps", type=int, default=200_000, help="env steps per seed")
    p.add_argument("--sb3-steps", type=int, default=50_000, help="env steps for SB3 (slow)")
    p.add_argument("--seeds", default="1,8,32", help="comma-separated seed counts")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    p.add_argument("--rounds", type=int, default=1,
                   help="processes per measurement, alternating between implementations "
                   "(the median process is reported)")
    p.add_argument("--peers", default="rejax,sb3,purejaxrl",
                   help="peers to run ('' for none)")
    p.add_argument("--purejaxrl-path", default=os.environ.get(PUREJAXRL_ENV_VAR),
                   help="directory with purejaxrl/ppo.py and wrappers.py at commit "
                   f"31756b1, or that ppo.py (default: ${PUREJAXRL_ENV_VAR})")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="a checkout of another purerl commit (e.g. `git worktree add DIR "
                   "<commit>`): its purerl rows run beside this tree's, same rounds")
    p.add_argument("--timeout", type=int, default=900,
                   help="seconds per process; a peer past it is killed and its run "
                   "recorded as failed")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    peers = [s for s in args.peers.split(",") if s]
    baseline = baseline_rows(args.baseline)
    purejaxrl_dir = None
    if "purejaxrl" in peers:
        purejaxrl_dir = _purejaxrl_dir(args.purejaxrl_path)
        if purejaxrl_dir is None:
            peers.remove("purejaxrl")
    if peers:
        subprocess.run(["bash", "benchmarks/peers/build_venvs.sh", *peers], cwd=ROOT, check=True)
    py = sys.executable
    cores = os.cpu_count() or 1
    steps, reps = str(args.total_steps), str(args.repeats)
    rows, failures = [], []
    start = time.time()
    for n in seeds:
        common = ["--num-seeds", str(n), "--total-steps", steps, "--repeats", reps]
        single = ["--no-vmap"] if n == 1 else []
        # name -> (command, extra environment variables)
        ours = [py, "benchmarks/purerl_ppo.py", *common, *single]
        commands = {"purerl": (ours, None)}
        if n == 1:
            # What purerl/prng.py's CPU lowering contributes: the same run on jax's own
            # rolled-loop threefry (the peers run on that one).
            commands["purerl, jax's rolled threefry (PURERL_ROLLED_THREEFRY=1)"] = (
                ours, {"PURERL_ROLLED_THREEFRY": "1"})
        # What purerl/xla.py's flag contributes: purerl's fastest layout again with
        # XLA's default (concurrency-optimised) CPU scheduling, the peers' one.
        fastest = "purerl"
        if n > 1 and cores > 1 and n % cores == 0:
            ours = [py, "benchmarks/purerl_ppo.py", *common, "--devices", str(cores)]
            fastest = f"purerl, seeds sharded over {cores} host devices"
            commands[fastest] = (ours, None)
        commands[f"{fastest}, XLA's default scheduler ({DEFAULT_SCHEDULER}=1)"] = (
            ours, {DEFAULT_SCHEDULER: "1"})
        if baseline:
            label, root, env = baseline
            script = os.path.join(root, "benchmarks", "purerl_ppo.py")
            commands[f"purerl @ {label}"] = ([py, script, *common, *single], env)
            if fastest != "purerl":
                commands[f"purerl @ {label}, seeds sharded over {cores} host devices"] = (
                    [py, script, *common, "--devices", str(cores)], env)
        if "rejax" in peers:
            commands["rejax"] = (["benchmarks/.venvs/rejax/bin/python",
                                  "benchmarks/peers/rejax_ppo.py", *common, *single], None)
        if "purejaxrl" in peers:
            # One device only: its flax orthogonal init deadlocks XLA:CPU when the seed
            # axis is sharded over host devices.
            commands["purejaxrl"] = (["benchmarks/.venvs/purejaxrl/bin/python",
                                      "benchmarks/peers/purejaxrl_ppo.py",
                                      "--purejaxrl-path", purejaxrl_dir,
                                      *common, *single], None)
        # Rounds alternate the implementations, so that a slow spell of this shared
        # machine hits all of them rather than one.
        runs = {name: [] for name in commands}
        for r in range(args.rounds):
            for name, (cmd, env) in commands.items():
                try:
                    result = run_json(cmd, env, timeout=args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    if name.startswith("purerl"):
                        raise
                    # A peer that fails or hangs costs its row, not the benchmark.
                    failures.append(f"{name} at {n} seeds, round {r + 1}: "
                                    f"{type(e).__name__}: {str(e)[:160]}")
                    print("  -> FAILED:", failures[-1], flush=True)
                    continue
                if name.startswith("purerl @"):
                    result["framework"] = "purerl (baseline commit)"
                runs[name].append(result)
        rows.extend({"config": name, **merge_rounds(results)}
                    for name, results in runs.items() if results)
        if "sb3" in peers and n == 1:
            rows.append({"config": "sb3 (torch, 1 thread)", **run_json(
                ["benchmarks/.venvs/sb3/bin/python", "benchmarks/peers/sb3_ppo.py",
                 "--num-seeds", "1", "--total-steps", str(args.sb3_steps)])})

    def ratio(n, other):
        ours = max((r["env_steps_per_second"] for r in rows
                    if r["framework"] == "purerl" and r["num_seeds"] == n), default=None)
        theirs = max((r["env_steps_per_second"] for r in rows
                       if r["framework"] == other and r["num_seeds"] == n), default=None)
        return None if not ours or not theirs else ours / theirs

    ratios = {f"{n}_seeds": {peer: ratio(n, peer) for peer in peers} for n in seeds}
    import jax

    report = {
        "benchmark": "PPO CartPole-v1 throughput (env-steps/s, all seeds together, "
                     "compilation excluded)",
        "config": "4 envs x 128 steps, 4 epochs x 4 minibatches, 64x64 tanh MLPs, "
                  "lr 2.5e-4 constant, gamma 0.99, lambda 0.95, clip 0.2",
        "machine": machine(),
        "jax": jax.__version__,
        "total_steps_per_seed": args.total_steps,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d"),
        "wall_seconds": round(time.time() - start, 1),
        "results": rows,
        "failed_peer_processes": failures,
        "ratio_purerl_best_over_peer": ratios,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ppo_throughput.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [
        "# PPO throughput on CartPole-v1",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB, no GPU; jax {report['jax']}; "
        f"{report['date']}. Command: `python benchmarks/run_throughput.py "
        f"--total-steps {args.total_steps} --repeats {args.repeats} --rounds {args.rounds}"
        f"{' --baseline <checkout of ' + baseline[0] + '>' if baseline else ''}`.",
        "",
        f"{report['config']}. Env-steps/s counts all seeds, excludes compilation, "
        f"median of {args.repeats} timed runs per process; {args.rounds} process(es) "
        "per row, run in rounds alternating between the implementations, the median "
        "process reported (every process's rate in the last column).",
        "",
        "| seeds | implementation | env-steps/s | compile s | peak RSS MiB | final return "
        "| all rounds |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        comp = "" if r["compile_seconds"] is None else f"{r['compile_seconds']:.1f}"
        ret = "" if r["final_return_mean"] is None else f"{r['final_return_mean']:.0f}"
        lines.append(f"| {r['num_seeds']} | {r['config']} | {r['env_steps_per_second']:,.0f} "
                     f"| {comp} | {r['peak_rss_mb']:.0f} | {ret} "
                     f"| {', '.join(f'{x:,}' for x in r.get('rounds_env_steps_per_second', []))} |")
    lines += ["", "Ratio (best purerl row / best row of the peer):", ""]
    for key, vals in ratios.items():
        for peer, v in vals.items():
            if v is not None:
                lines.append(f"- {key.replace('_', ' ')}: {v:.2f}x {peer}")
    lines += ["", "Final returns are not comparable across rows: purerl reports 8 greedy "
              "evaluation episodes, rejax 128 stochastic ones, SB3 its last training "
              "episodes (and runs fewer steps)."]
    if "purejaxrl" in peers:
        lines[-1] += (" PureJaxRL reports the training episodes completed in its last "
                      "update (stochastic policy).")
    if failures:
        lines += ["", "Peer processes that failed (their rows use the other rounds):", ""]
        lines += [f"- {f}" for f in failures]

    with open(os.path.join(args.out, "ppo_throughput.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(rows, os.path.join(args.out, "ppo_throughput.png"))
    print("\n".join(lines))
    return 0


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=80)
    labels = [f"{r['num_seeds']} seed{'s' if r['num_seeds'] > 1 else ''}\n{r['config']}"
              for r in rows]
    colors = {"purerl": "tab:blue", "rejax": "tab:orange", "sb3": "tab:green",
              "purejaxrl": "tab:red", "purerl (baseline commit)": "tab:cyan"}
    ax.barh(range(len(rows)), [r["env_steps_per_second"] for r in rows],
            color=[colors.get(r["framework"], "gray") for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("env-steps/s (all seeds)")
    ax.set_title("PPO CartPole-v1 throughput, 2-core CPU")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
