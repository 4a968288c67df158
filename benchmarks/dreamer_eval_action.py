"""Dreamer's evaluation action, measured on one trained agent: the deterministic
``tanh(mean)`` ("mean") against the reference's mode ("mode": the most likely of 100
tanh-Normal samples, danijar/dreamer ``tools.SampleDist.mode`` at 56d4d44), from the
same snapshot, on the same evaluation episodes.

    python benchmarks/dreamer_eval_action.py RUN_DIR [--episodes 10] [--name NAME]

``RUN_DIR`` is a finished ``experiments/dreamer.py`` run on a ``dmc:`` env (its
``snapshot/`` and ``results.json``). Every seed of the snapshot is evaluated on
``--episodes`` episodes per action (envs seeded as the run's evaluation envs are not:
fresh seeds, the same for both actions). Also reported: the actor's σ (of the
pre-tanh Normal) along the "mean" episodes, since the mode's bias towards ±1 grows
with σ. Writes ``benchmarks/results/dreamer_eval_action_<name>.{json,md}``.
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(run_dir: str, episodes: int, seed: int = 12_345) -> dict:
    import jax
    import jax.numpy as jnp

    import purerl
    from purerl import snapshot
    from purerl.algos import dreamer

    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    fields = {f.name for f in dataclasses.fields(dreamer.Config)}
    values = {k: tuple(v) if isinstance(v, list) else v
              for k, v in results["config"].items() if k in fields}
    options = {k: v for k, v in results["env_options"].items()}
    seeds = results["num_seeds"]
    env = purerl.envs.make_host(results["env"], seeds * episodes, seed=seed, **options)
    out = {}
    for name in ("mean", "mode"):
        cfg = dreamer.Config(**{**values, "eval_action": name})
        agent = dreamer.make(cfg, env.spec)
        like = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), seeds))
        state = snapshot.load(os.path.join(run_dir, "snapshot"), like, dreamer, env.spec)
        nets = dreamer.make_nets(cfg, env.spec)

        def one(s, c, o, f, k, agent=agent, nets=nets, cfg=cfg):
            a, c, _ = agent.act(s, c, o, f, k, eval=True)
            _, std = dreamer.actor_dist(nets, s.params["actor"], dreamer.features(c[0]), cfg)
            return a, c, std.mean()

        act = jax.jit(jax.vmap(one))

        ts = env.reset(seed)
        carry = jax.vmap(lambda _: agent.init_carry(episodes))(jnp.arange(seeds))
        first = np.ones(env.num_envs, bool)
        done = np.zeros(env.num_envs, bool)
        returns = np.zeros(env.num_envs)
        stds = []
        key = jax.random.key(seed)
        for t in range(env.spec.max_episode_steps):
            obs = np.asarray(ts.obs).reshape(seeds, episodes, *env.spec.obs_shape)
            keys = jax.random.split(jax.random.fold_in(key, t), seeds)
            a, carry, std = act(state, carry, obs, first.reshape(seeds, episodes), keys)
            stds.append(np.asarray(std))
            ts = env.step(np.asarray(a).reshape(env.num_envs, -1))
            first = ts.terminated | ts.truncated
            returns = np.where(first & ~done, ts.info["episode_return"], returns)
            done |= first
            if done.all():
                break
        per_seed = returns.reshape(seeds, episodes)
        out[name] = {"per_seed_mean": per_seed.mean(1).tolist(),
                       "mean": float(per_seed.mean()),
                       "actor_std_mean": float(np.mean(stds))}
    env.close()
    return {"run": os.path.abspath(run_dir), "env": results["env"], "num_seeds": seeds,
            "episodes_per_seed": episodes, "total_frames": results["total_frames"],
            "run_eval_action": results["config"].get("eval_action", "mode"),
            "run_final_returns": results["final_returns"], "actions": out}


def table(report: dict) -> str:
    rows = [f"Dreamer on {report['env']} after {report['total_frames']} frames: one "
            f"snapshot ({report['num_seeds']} seeds), {report['episodes_per_seed']} "
            f"episodes per seed and action, the same env seeds for every action.", "",
            "| evaluation action | mean return | per seed | actor σ (mean over steps) |",
            "|---|---:|---|---:|"]
    for name, r in report["actions"].items():
        seeds = ", ".join(f"{x:.1f}" for x in r["per_seed_mean"])
        rows.append(f"| {name} | {r['mean']:.1f} | {seeds} | {r['actor_std_mean']:.3f} |")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--name", default=None, help="results file suffix (default: the env)")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    report = evaluate(args.run_dir, args.episodes)
    name = args.name or report["env"].replace(":", "-")
    stem = os.path.join(args.out, f"dreamer_eval_action_{name}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(table(report))
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
