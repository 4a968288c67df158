"""Exploration on the maze: Proto-RL and SMM against SAC with zero reward and the
uniform policy, then fine-tuning from the Proto and SMM snapshots against SAC from
scratch; SMM with a non-uniform target; SMM's historical averaging at test time.

    python benchmarks/run_exploration.py [--layout Bottleneck] [--num-seeds 8] \
        [--pretrain-steps 30000] [--finetune-steps 30000] [--suffix _60k] \
        [--arms uniform,sac_zero_reward,proto] [--fourier]

Every arm is an experiment-script command (printed as it runs), 8 seeds vmapped in
one compiled program, the same reward-free budget for the pre-training arms and the
same fine-tuning budget for the fine-tuning arms. SAC runs with Proto's maze preset
(same networks, batch, learning rates, temperature, targets), and SMM's maze preset
has the same SAC settings, so the arms differ by the reward. Reported per arm: the
final coverage, kNN state entropy and grid KLs to the uniform and the corridor target
(pre-training) and eval return (fine-tuning), as the mean over seeds with a 95%
percentile-bootstrap interval (10,000 resamples of the seeds).

Two SMM-only measurements:

* ``smm_fixed_alpha`` (and its fine-tuning): SMM with its reference's SAC temperature,
  α fixed at 1 and τ 0.001, against the maze preset's tuned α (``smm``).
* ``proto_finetune_original``: fine-tuning from the Proto snapshot restoring only the
  actor and the representation, as the original's first release (``proto_finetune``
  restores every group).
* ``smm_corridor``: SMM pre-trained with ``--target corridor`` (p* puts 95% of its mass
  on the layout's corridor, see ``purerl.envs.maze.target_masses``); its ``kl_corridor``
  curve, KL(ρ ‖ p*) of the recent-visit histogram on the grid, against the other arms'.
* Historical averaging: from the SMM (uniform target) snapshot, ``--test-episodes``
  episodes per env (4 envs) of the snapshot mixture (one of the last 10 actor
  snapshots per episode, the current one with probability 0.1, as the reference's
  test config) against the last policy alone; coverage of those test episodes (fresh
  coverage grid), actions sampled and, separately, the mode.

``--fourier`` runs every arm on the ``-Fourier`` ids (the position followed by 14 fixed
random Fourier features of it, see ``purerl.envs.maze``).

Results go to ``benchmarks/results/exploration_<layout>[_fourier]<suffix>.{json,md,png}``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SMM_REFERENCE_SAC = "--autotune-alpha false --init-alpha 1.0 --tau 0.001"
ROOT = os.path.dirname(HERE)


def bootstrap(values, resamples=10_000, seed=0):
    """Mean and 95% percentile-bootstrap interval of the mean over seeds
    (``purerl.stats.bootstrap_ci``); seeds that did not report are left out."""
    from purerl import stats

    values = [float(v) for v in values if v is not None]
    ci = stats.bootstrap_ci(values, stats.mean, resamples=resamples, seed=seed)
    return {"mean": ci["value"], "ci95": ci["ci95"], "seeds": values}


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def test_coverage(snapshot_dir, env_id, eval_policy, sample, episodes, num_envs=4):
    """Coverage (a fresh grid) of ``episodes`` test episodes in each of ``num_envs``
    envs, per seed of an SMM snapshot, with ``eval_policy`` ('last' or 'mixture'),
    actions sampled or the mode; one compiled program vmapped over the seeds."""
    import jax
    import jax.numpy as jnp

    from purerl import envs
    from purerl import snapshot as snap
    from purerl.algos import smm

    with open(os.path.join(snapshot_dir, snap.META)) as f:
        meta = json.load(f)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()}
    cfg = smm.Config(**{**fields, "eval_policy": eval_policy, "eval_sample": sample,
                        "history_current_prob": 0.1})
    env = envs.make(env_id)
    agent = smm.make(cfg, env.spec)
    seeds = meta["num_seeds"]
    like = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), seeds))
    states = snap.load(snapshot_dir, like, smm, env.spec)
    venv = envs.vectorize(env, num_envs)

    def run(state, key):
        k_reset, key = jax.random.split(key)
        env_state, ts = venv.reset(k_reset)

        def step(c, k):
            env_state, obs, carry, first = c
            k_act, k_env = jax.random.split(k)
            action, carry, _ = agent.act(state, carry, obs, first, k_act, eval=True)
            env_state, ts = venv.step(env_state, action, k_env)
            done = ts.terminated | ts.truncated
            return (env_state, ts.obs, carry, done), ts.info["metrics"]["coverage"][0]

        c = (env_state, ts.obs, agent.init_carry(num_envs), jnp.ones(num_envs, bool))
        keys = jax.random.split(key, episodes * env.spec.max_episode_steps)
        return jax.lax.scan(step, c, keys)[1][-1]

    cov = jax.jit(jax.vmap(run))(states, jax.random.split(jax.random.key(1), seeds))
    return [float(x) for x in np.asarray(cov)]


def historical_averaging(snapshot_dir, env_id, episodes):
    out = {"episodes_per_env": episodes, "num_envs": 4, "history_current_prob": 0.1}
    for sample in (True, False):
        for policy in ("mixture", "last"):
            key = f"{policy}_{'sampled' if sample else 'mode'}"
            out[key] = bootstrap(test_coverage(snapshot_dir, env_id, policy, sample,
                                               episodes))
            print(f"  historical averaging {key}: coverage {out[key]['mean']:.3f}",
                  flush=True)
    return out


def run_arm(name, command, out):
    print(f"$ python {command} --out {out}", flush=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, *command.split(), "--out", out,
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    print(f"  -> {time.time() - t0:.0f}s, coverage {np.mean(results['coverage'][-1]):.3f}, "
          f"return {results['final_return_mean']:.1f}", flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layout", default="Bottleneck")
    p.add_argument("--num-seeds", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, default=30_000)
    p.add_argument("--finetune-steps", type=int, default=30_000)
    p.add_argument("--test-episodes", type=int, default=8)
    p.add_argument("--suffix", default="")
    p.add_argument("--arms", default="", help="comma-separated subset of the arms "
                   "(default: all); fine-tuning arms need their pre-training arm")
    p.add_argument("--fourier", action="store_true",
                   help="observe the position and its random Fourier features (16-d)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    obs = "-Fourier" if args.fourier else ""
    free, goal = f"Maze-{args.layout}{obs}-v0", f"Maze-{args.layout}-Goal{obs}-v0"
    common = f"--num-seeds {args.num_seeds}"
    sac = sac_flags()
    pre, fine = f"--total-steps {args.pretrain_steps}", f"--total-steps {args.finetune_steps}"
    loop = "--num-envs 1 --num-steps 1 --num-evals 10 --num-eval-envs 4"
    tmp = tempfile.mkdtemp(prefix="exploration_")
    from purerl.algos.proto import RESTORE_ORIGINAL

    arms = {
        "uniform": f"experiments/uniform.py --env {free} {common} {pre} {loop}",
        "sac_zero_reward": f"experiments/sac.py --env {free} {common} {pre} {sac}",
        "proto": f"experiments/proto.py --env {free} --phase pretrain {common} {pre}",
        "proto_finetune": (f"experiments/proto.py --env {goal} --phase finetune "
                           f"--snapshot {tmp}/proto/snapshot {common} {fine}"),
        "sac_scratch": f"experiments/sac.py --env {goal} {common} {fine} {sac}",
        "smm": f"experiments/smm.py --env {free} --phase pretrain {common} {pre}",
        "smm_finetune": (f"experiments/smm.py --env {goal} --phase finetune "
                         f"--snapshot {tmp}/smm/snapshot {common} {fine}"),
        "smm_corridor": (f"experiments/smm.py --env {free} --phase pretrain "
                         f"--target corridor {common} {pre}"),
        # The original's first release restores the actor and the representation
        # (proto.RESTORE_ORIGINAL); critic and alpha start fresh.
        "proto_finetune_original": (f"experiments/proto.py --env {goal} --phase finetune "
                                    f"--snapshot {tmp}/proto/snapshot --restore "
                                    f"{','.join(RESTORE_ORIGINAL)} {common} {fine}"),
        # SMM's reference SAC: alpha fixed at 1, tau 0.001 (fine-tuned as smm_finetune).
        "smm_fixed_alpha": (f"experiments/smm.py --env {free} --phase pretrain "
                            f"{SMM_REFERENCE_SAC} {common} {pre}"),
        "smm_fixed_alpha_finetune": (f"experiments/smm.py --env {goal} --phase finetune "
                                     f"--snapshot {tmp}/smm_fixed_alpha/snapshot "
                                     f"{common} {fine}"),
    }
    if args.arms:
        chosen = args.arms.split(",")
        unknown = set(chosen) - set(arms)
        if unknown:
            p.error(f"--arms: unknown {sorted(unknown)}; arms are {', '.join(arms)}")
        arms = {k: v for k, v in arms.items() if k in chosen}
    results, summary = {}, {}
    for name, command in arms.items():
        results[name] = run_arm(name, command, os.path.join(tmp, name))
        r = results[name]
        summary[name] = {
            "command": f"python {command}",
            "eval_steps": r["eval_steps"],
            "coverage": bootstrap(r["coverage"][-1]),
            "state_entropy": bootstrap(r["state_entropy"][-1]),
            "kl_uniform": bootstrap(r["kl_uniform"][-1]),
            "kl_corridor": bootstrap(r["kl_corridor"][-1]),
            "kl_corridor_curve": [mean_or_none(c) for c in r["kl_corridor"]],
            "final_return": bootstrap(r["final_returns"]),
            "coverage_curve": [float(np.mean(c)) for c in r["coverage"]],
            "return_curve": [float(np.mean(e)) for e in r["eval_returns"]],
            "wall_seconds": r["wall_seconds"],
            "env_steps_per_second": r["env_steps_per_second"],
        }
    finetuned = any(n.endswith(("_finetune", "_scratch")) for n in arms)
    report = {"layout": args.layout, "env": free, "num_seeds": args.num_seeds,
              "pretrain_steps": args.pretrain_steps,
              "finetune_steps": args.finetune_steps if finetuned else None,
              "machine": machine(), "versions": next(iter(results.values()))["versions"],
              "arms": summary}
    if "smm" in results:
        report["historical_averaging"] = historical_averaging(
            os.path.join(tmp, "smm", "snapshot"), free, args.test_episodes)
    os.makedirs(args.out, exist_ok=True)
    fourier = "_fourier" if args.fourier else ""
    stem = os.path.join(args.out, f"exploration_{args.layout}{fourier}{args.suffix}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(table(report))
    plot(report, stem + ".png")
    print(table(report))
    return 0


def sac_flags() -> str:
    """SAC's flags for Proto's maze preset: the same loop, networks, batch, learning
    rates and the Proto Config defaults that differ from SAC's (temperature, targets,
    log-std bound)."""
    import dataclasses

    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import proto as proto_script  # experiments/proto.py

    from purerl.algos import proto, sac

    sac_fields = {f.name for f in dataclasses.fields(sac.Config)}
    run_fields = {"total_steps", "num_envs", "num_steps", "num_evals", "num_eval_envs"}
    values = {k: getattr(proto.Config(), k) for k in sac_fields
              if getattr(proto.Config(), k) != getattr(sac.Config(), k)}
    values.update({k: v for k, v in proto_script.MAZE.items()
                   if k in sac_fields or k in run_fields})
    values.pop("total_steps", None)

    def flag(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return " ".join(f"--{k.replace('_', '-')} {flag(v)}" for k, v in sorted(values.items()))


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU"


def table(report) -> str:
    fine = (f"fine-tuning {report['finetune_steps']} on the sparse goal"
            if report.get("finetune_steps") else "no fine-tuning arms in this run")
    env = report.get("env", f"Maze-{report['layout']}-v0")
    rows = [f"{env}: {report['num_seeds']} seeds; pre-training "
            f"{report['pretrain_steps']} reward-free env steps, {fine}. Mean over seeds "
            f"[95% bootstrap interval]. Machine: {report['machine']}.", "",
            "| arm | coverage | state entropy (nats) | KL to uniform | KL to corridor | "
            "final eval return | wall (s) |",
            "|---|---|---|---|---|---|---|"]

    def cell(stat):
        return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"

    for name, arm in report["arms"].items():
        rows.append(f"| {name} | {cell(arm['coverage'])} | {cell(arm['state_entropy'])} "
                    f"| {cell(arm['kl_uniform'])} | {cell(arm['kl_corridor'])} "
                    f"| {cell(arm['final_return'])} | {arm['wall_seconds']:.0f} |")
    rows += ["", "Coverage at each evaluation (mean over seeds):"]
    steps = None
    for name, arm in report["arms"].items():
        if arm["eval_steps"] != steps:  # a new header where the budget changes
            steps = arm["eval_steps"]
            rows += ["", "| arm | " + " | ".join(f"{s // 1000}k" for s in steps) + " |",
                     "|---|" + "---|" * len(steps)]
        rows.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in arm["coverage_curve"])
                    + " |")
    ha = report.get("historical_averaging")
    if ha:
        rows += ["", f"SMM historical averaging: coverage of {ha['episodes_per_env']} test "
                 f"episodes in each of {ha['num_envs']} envs from the SMM snapshot (mixture: "
                 f"one of the stored actor snapshots per episode, the current one with "
                 f"probability {ha['history_current_prob']}).", "",
                 "| actions | snapshot mixture | last policy |", "|---|---|---|"]
        for kind in ("sampled", "mode"):
            rows.append(f"| {kind} | {cell(ha[f'mixture_{kind}'])} | "
                        f"{cell(ha[f'last_{kind}'])} |")
    rows += ["", "Commands:", ""] + [f"    {a['command']}" for a in report["arms"].values()]
    return "\n".join(rows) + "\n"


def plot(report, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def present(*names):  # a run of some --arms has only those
        return [n for n in names if n in report["arms"]]

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.6))
    for name in present("proto", "smm", "smm_fixed_alpha", "sac_zero_reward", "uniform"):
        arm = report["arms"][name]
        ax1.plot(arm["eval_steps"], arm["coverage_curve"], label=name)
    ax1.set(xlabel="env steps (reward-free)", ylabel="coverage (mean over seeds)",
            title=f"{report.get('env', 'Maze-' + report['layout'])}: pre-training")
    for name in present("proto_finetune", "proto_finetune_original", "smm_finetune",
                        "smm_fixed_alpha_finetune", "sac_scratch"):
        arm = report["arms"][name]
        ax2.plot(arm["eval_steps"], arm["return_curve"], label=name)
    ax2.set(xlabel="env steps (goal task)", ylabel="eval return (mean over seeds)",
            title="fine-tuning")
    for name in present("smm_corridor", "smm", "proto", "sac_zero_reward", "uniform"):
        arm = report["arms"][name]
        steps = [s for s, v in zip(arm["eval_steps"], arm["kl_corridor_curve"]) if v is not None]
        ax3.plot(steps, [v for v in arm["kl_corridor_curve"] if v is not None], label=name)
    ax3.set(xlabel="env steps (reward-free)", ylabel="KL(ρ ‖ p*corridor) (nats)",
            title="distance to the corridor target")
    for ax in (ax1, ax2, ax3):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    sys.exit(main())
