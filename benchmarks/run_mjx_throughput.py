"""Env steps per second of the mjx: tasks under jit(vmap), against dm_control on the host.

    python benchmarks/run_mjx_throughput.py [--tasks cartpole-swingup,...]
        [--envs 1,16,64,256] [--solvers dmc,fast] [--out benchmarks/results]

For each task, solver and env count: one jitted program runs a ``lax.scan`` of
``purerl.envs.vectorize(make("mjx:<task>", solver=...), n).step`` with uniform random
actions (1000 steps for up to 16 envs, 250 above); it is compiled (timed), run once
to warm up and run again (timed). Steps/s counts every env's steps. The windows are
shorter than an episode (1000 steps), so resets are not in them: cheetah's reset
settles for 200 physics steps, at most a fifth more per episode.

dm_control on the host: ``suite.load(domain, task)`` stepped 1000 times in a Python
loop with random actions (one env; host envs are stepped one after another, so n
envs run at this rate divided by n per env).

Writes ``mjx_throughput.{json,md,png}`` under ``--out``.
"""

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

TASKS = ("cartpole-balance", "cartpole-swingup", "pendulum-swingup", "point_mass-easy",
         "reacher-easy", "cheetah-run", "walker-walk")


def mjx_rate(task: str, solver: str, num_envs: int) -> dict:
    import jax
    import jax.numpy as jnp

    from purerl.envs import make, vectorize

    env = vectorize(make("mjx:" + task, solver=solver), num_envs)
    shape = (num_envs, *env.spec.action_space.shape)
    length = 1000 if num_envs <= 16 else 250

    def rollout(key):
        state, _ = env.reset(key)

        def body(state, k):
            action = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)
            state, ts = env.step(state, action, k)
            return state, ts.reward.sum()

        _, rewards = jax.lax.scan(body, state, jax.random.split(key, length))
        return jnp.sum(rewards)

    t0 = time.perf_counter()
    compiled = jax.jit(rollout).lower(jax.random.key(0)).compile()
    compile_seconds = time.perf_counter() - t0
    compiled(jax.random.key(1)).block_until_ready()
    t0 = time.perf_counter()
    compiled(jax.random.key(2)).block_until_ready()
    seconds = time.perf_counter() - t0
    return {"task": task, "solver": solver, "num_envs": num_envs, "steps": length,
            "steps_per_second": num_envs * length / seconds,
            "compile_seconds": compile_seconds}


def host_rate(task: str, steps: int = 1000) -> float:
    import numpy as np
    from dm_control import suite

    domain, name = task.split("-")
    env = suite.load(domain, name, task_kwargs={"random": 0})
    spec = env.action_spec()
    actions = np.random.default_rng(0).uniform(spec.minimum, spec.maximum,
                                               (steps, *spec.shape))
    env.reset()
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    seconds = time.perf_counter() - t0
    env.close()
    return steps / seconds


def write(out: str, rows: list, host: dict, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(out, "mjx_throughput.json"), "w") as f:
        json.dump({**meta, "mjx": rows, "dm_control_host": host}, f, indent=1)
    envs = sorted({r["num_envs"] for r in rows})
    lines = [
        "# mjx: env steps per second",
        "",
        f"`python benchmarks/run_mjx_throughput.py`; {meta['machine']}; {meta['versions']}. "
        "jit(vmap) of the env step in a scan, random actions, all envs' steps counted; "
        "compile seconds in brackets. dm_control: one env stepped on the host.",
        "",
        "| task | solver | " + " | ".join(f"{n} envs" for n in envs)
        + " | dm_control host (1 env) |",
        "|---|---|" + "---:|" * (len(envs) + 1),
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        for solver in dict.fromkeys(r["solver"] for r in rows if r["task"] == task):
            cells = []
            for n in envs:
                match = [r for r in rows if (r["task"], r["solver"], r["num_envs"])
                         == (task, solver, n)]
                cells.append(f"{match[0]['steps_per_second']:,.0f} "
                             f"({match[0]['compile_seconds']:.0f} s)" if match else "")
            lines.append(f"| {task} | {solver} | " + " | ".join(cells)
                         + f" | {host.get(task, float('nan')):,.0f} |")
    with open(os.path.join(out, "mjx_throughput.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.6 * len(tasks), 2.8), sharey=True,
                             squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for solver, style in (("dmc", "o-"), ("fast", "s--")):
            pts = sorted((r["num_envs"], r["steps_per_second"]) for r in rows
                         if r["task"] == task and r["solver"] == solver)
            if pts:
                ax.plot(*zip(*pts), style, label=f"mjx {solver}")
        if task in host:
            ax.axhline(host[task], color="k", lw=1, ls=":", label="dm_control (host)")
        ax.set(xscale="log", yscale="log", title=task, xlabel="envs")
    axes[0][0].set_ylabel("env steps / s")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "mjx_throughput.png"), dpi=80)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--envs", default="1,16,64,256")
    p.add_argument("--solvers", default="dmc,fast")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    import jax

    from purerl import logging as plog

    rows, host = [], {}
    for task in args.tasks.split(","):
        host[task] = host_rate(task)
        print(f"{task}: dm_control host {host[task]:,.0f} steps/s", flush=True)
        for solver in args.solvers.split(","):
            for n in (int(x) for x in args.envs.split(",")):
                row = mjx_rate(task, solver, n)
                rows.append(row)
                print(f"  {solver:4s} {n:4d} envs: {row['steps_per_second']:10,.0f} steps/s "
                      f"(compile {row['compile_seconds']:.1f} s)", flush=True)
    versions = plog.versions()
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"{jax.default_backend()}",
            "versions": ", ".join(f"{k} {versions[k]}" for k in
                                  ("jax", "mujoco", "mujoco-mjx", "dm_control")
                                  if k in versions)}
    os.makedirs(args.out, exist_ok=True)
    write(args.out, rows, host, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
