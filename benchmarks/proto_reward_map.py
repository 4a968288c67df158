"""Where Proto-RL's intrinsic reward is high on a maze, and where the agent spends its
last steps: a diagnostic of a finished maze pre-training run.

    python experiments/proto.py --env Maze-Bottleneck-v0 --phase pretrain --num-seeds 8 \
        --total-steps 30000 --out runs/proto_bottleneck
    python benchmarks/proto_reward_map.py runs/proto_bottleneck [--seeds 8]

From the run's last checkpoint, per seed:

* the reward map: ``r_intr`` (``purerl.algos.proto.embed`` of each position, then
  ``purerl.ops.knn_distances`` to the seed's candidate queue, the k-th neighbour, as
  in training) on a 0.1-cell grid of the free cells, and its mean per region of the
  layout (the start room, the corridor, the far room);
* ``history entropy``: the kNN entropy of 3000 of all the seed's visited states
  drawn at random, against the uniform-random policy's on the same env, steps and
  seeds (``state_entropy`` is of the last window only);
* where the agent went: the fraction of all its steps (the replay's next
  observations) in each region, and of the last ``ENTROPY_WINDOW`` visited positions
  (the window that the ``state_entropy`` metric is computed on) in the start room;
* a control: the same kNN reward computed on positions (distances in cells, a queue
  of ``queue_size`` of the agent's visited states drawn at random, 8 draws averaged),
  i.e. what a reward that measured novelty in the maze's own metric would give; both
  rewards as the ratio far room / start room;
* with the identity encoder (z = normalize(W·obs + b), a linear map of a 2-d state),
  the foot of that affine plane, the position x0 minimising ‖W·x0 + b‖: there the
  normalisation is singular, and far from it (beyond ‖W·x0 + b‖ / ‖W‖) z depends
  mostly on the angle of the position about x0, not on its distance. ``R2(angle)`` is
  the fraction of the reward map's variance explained by that angle alone (means over
  90 angle bins). Not on the ``-Fourier`` ids, whose observation is not the position
  alone.

Results go to
``benchmarks/results/proto_reward_map_<layout>[_fourier][<suffix>].{json,md,png}``.
"""

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from run_throughput import machine  # noqa: E402

GRID = 0.1  # cells
HISTORY = 3000  # visited positions drawn for the history entropy
# Column ranges (ends excluded) of the regions of each layout with a corridor.
REGIONS = {"Bottleneck": {"start room": (1, 6), "corridor": (6, 12), "far room": (12, 17)}}


def load(run_dir):
    import orbax.checkpoint as ocp

    from purerl import checkpoint

    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    if results.get("algo") != "proto":
        raise SystemExit(f"{run_dir}: not a Proto-RL run (algo {results.get('algo')!r})")
    pointer = checkpoint.latest(os.path.join(run_dir, "checkpoint"))
    if pointer is None:
        raise SystemExit(f"{run_dir}: no checkpoint")
    path = os.path.join(os.path.abspath(run_dir), "checkpoint", pointer["path"])
    return results, ocp.StandardCheckpointer().restore(path)


def arena(env_id):
    """The ``purerl.envs.maze.Maze`` of a maze id: its cells (``free``), what it divides
    positions (cells) by (``scale``), its observation of positions (``observe``), and
    whether that carries Fourier features (``fourier``)."""
    from purerl.envs.maze import maze_from_id

    return maze_from_id(env_id)


def region_mean(values, columns):
    """Mean of a ``[rows, cols]`` map on the 0.1-cell grid over cell columns
    ``(c0, c1)``, NaN (walls) left out."""
    c0, c1 = columns
    return float(np.nanmean(values[:, int(c0 / GRID):int(c1 / GRID)]))


def reward_map(results, saved, seeds):
    import jax
    import jax.numpy as jnp

    from purerl import envs
    from purerl.algos import proto
    from purerl.ops import knn_distances

    config = {k: tuple(v) if isinstance(v, list) else v for k, v in results["config"].items()}
    cfg = proto.Config(**config)
    nets = proto.make_nets(cfg, envs.make(results["env"]).spec)
    maze_env = arena(results["env"])
    layout = maze_env.layout
    free, scale = np.asarray(maze_env.free), maze_env.scale
    height, width = free.shape
    xs = np.stack(np.meshgrid(np.arange(GRID / 2, width, GRID),
                              np.arange(GRID / 2, height, GRID)), -1)
    cells = np.floor(xs).astype(int)
    on_free = free[cells[..., 1], cells[..., 0]]
    agent, env_state = saved["agent"], saved["env_state"]

    @jax.jit
    def rewards(encoder, projector, queue):
        obs = maze_env.observe(jnp.asarray(xs.reshape(-1, 2), jnp.float32))
        # As the run measured r_intr: between embeddings, or states (reward_on='obs').
        points = proto.embed(nets, encoder, projector, obs) if cfg.reward_on == "embedding" \
            else obs
        return knn_distances(points, queue, cfg.knn_k).reshape(xs.shape[:2])

    @jax.jit
    def position_knn(queue):
        return knn_distances(jnp.asarray(xs.reshape(-1, 2)), queue, cfg.knn_k).reshape(
            xs.shape[:2])

    one = lambda tree, s: jax.tree.map(lambda x: x[s], tree)  # noqa: E731
    rows = []
    for s in range(min(seeds, len(agent["encoder_queue"]))):
        params = agent["params"]
        r = np.asarray(rewards(one(params["encoder"], s), one(params["projector"], s),
                               agent["encoder_queue"][s]))
        r = np.where(on_free, r, np.nan)
        cursor, window = int(env_state["cursor"][s]), env_state["window"][s]
        recent = (window[:cursor] if cursor < len(window)  # not yet filled
                  else np.roll(window, -(cursor % len(window)), axis=0))  # oldest first
        row = {"seed": s, "map": r,
               "window": recent,
               "state_entropy": float(env_state["entropy"][s]),
               "coverage": float(results["coverage"][-1][s])}
        for name, columns in REGIONS.get(layout, {}).items():
            row[f"reward {name}"] = region_mean(r, columns)
        # The position leads every maze observation.
        visited = saved["memory"]["data"]["next_obs"][s][:int(saved["memory"]["size"][s]), :2]
        for name, (c0, c1) in REGIONS.get(layout, {}).items():
            x = visited[:, 0] * scale
            row[f"steps in {name}"] = float(np.mean((x >= c0) & (x < c1)))
        # The control: the same kNN reward with distances between positions (cells),
        # its queue queue_size of the agent's visited states, 8 draws averaged.
        draws = np.random.default_rng(s).integers(0, len(visited), (8, cfg.queue_size))
        in_cells = np.mean([position_knn(visited[d] * scale) for d in draws], axis=0)
        in_cells = np.where(on_free, in_cells, np.nan)
        if "far room" in REGIONS.get(layout, {}):
            start, far = REGIONS[layout]["start room"], REGIONS[layout]["far room"]
            row["r_intr far/start"] = region_mean(r, far) / region_mean(r, start)
            row["position kNN far/start"] = (region_mean(in_cells, far)
                                             / region_mean(in_cells, start))
        row["history entropy"] = history_entropy(visited * scale, s)
        c0, c1 = REGIONS.get(layout, {}).get("start room", (0, width))
        row["window in start room"] = float(np.mean((recent[:, 0] >= c0) & (recent[:, 0] < c1)))
        if cfg.encoder == "identity" and not maze_env.fourier:  # a 2-d obs only
            kernel = np.asarray(params["projector"]["params"]["kernel"][s])
            bias = np.asarray(params["projector"]["params"]["bias"][s])
            foot, *_ = np.linalg.lstsq(kernel.T, -bias, rcond=None)
            row["foot"] = (foot * scale).tolist()
            row["plane distance"] = float(np.linalg.norm(kernel.T @ foot + bias))
            angle = np.arctan2(xs[..., 1] - foot[1] * scale, xs[..., 0] - foot[0] * scale)
            a, v = angle[on_free], r[on_free]
            bins = np.digitize(a, np.linspace(a.min(), a.max(), 90))
            means = np.zeros_like(v)
            for b in np.unique(bins):
                means[bins == b] = v[bins == b].mean()
            row["R2(angle)"] = float(1 - np.sum((v - means) ** 2) / np.sum((v - v.mean()) ** 2))
        rows.append(row)
    return layout, (width, height), rows


def history_entropy(positions, seed) -> float:
    """kNN entropy (k = 3, nats) of ``HISTORY`` of the visited positions (cells) drawn
    at random, dithered as the maze's ``state_entropy`` is."""
    import jax.numpy as jnp

    from purerl.envs.maze import DITHER
    from purerl.ops import knn_entropy

    rng = np.random.default_rng(seed)
    x = positions[rng.choice(len(positions), min(HISTORY, len(positions)), replace=False)]
    x = x + rng.uniform(-DITHER, DITHER, x.shape)
    return float(knn_entropy(jnp.asarray(x, jnp.float32), 3))


def uniform_history_entropy(env_id, steps, seeds) -> list:
    """``history_entropy`` of the uniform-random policy's visited positions on the same
    env, steps and number of seeds (one env per seed, as the maze preset runs)."""
    import jax

    from purerl import envs
    from purerl.memory import random_actions

    env = envs.make(env_id)
    scale = arena(env_id).scale

    def walk(key):
        def step(state, k):
            k_act, k_env = jax.random.split(k)
            action = random_actions(env.spec.action_space, k_act, 1)[0]
            state, ts = env.step(state, action, k_env)
            return state, ts.info["final_obs"][..., :2]

        key, k_reset = jax.random.split(key)
        state, _ = env.reset(k_reset)
        return jax.lax.scan(step, state, jax.random.split(key, steps))[1]

    visited = np.asarray(jax.jit(jax.vmap(walk))(jax.random.split(jax.random.key(0), seeds)))
    return [history_entropy(v * scale, s) for s, v in enumerate(visited)]


def changed_flags(results) -> str:
    """The run's config fields that differ from the maze preset, as flags."""
    sys.path.insert(0, os.path.join(ROOT, "experiments"))
    import proto as proto_script  # experiments/proto.py

    from purerl.algos import proto
    from purerl.experiment import preset_key

    key = preset_key(results["env"], proto_script.PRESETS)
    preset = {**{f.name: f.default for f in dataclasses.fields(proto.Config)},
              **(proto_script.PRESETS[key] if key else {})}
    flags = ""
    for name, value in results["config"].items():
        default = preset.get(name)
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            text = ",".join(map(str, value)) if isinstance(value, list) else value
            flags += f" --{name.replace('_', '-')} {text}"
    return flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a finished experiments/proto.py maze run")
    parser.add_argument("--seeds", type=int, default=8, help="seeds to map (default 8)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--suffix", default="", help="appended to the result files' stem")
    args = parser.parse_args()
    results, saved = load(args.run_dir)
    layout, (width, height), rows = reward_map(results, saved, args.seeds)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 if len(rows) > 1 else 1
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols,
                             figsize=(5 * cols, 1.6 * ((len(rows) + cols - 1) // cols)),
                             squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        im = ax.imshow(row["map"], extent=(0, width, height, 0), cmap="viridis")
        ax.scatter(row["window"][:, 0], row["window"][:, 1], s=1, c="red")
        if "foot" in row:
            ax.plot(*row["foot"], "kx", ms=6, mew=2)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_title(f"seed {row['seed']}: r_intr, last {len(row['window'])} positions "
                     f"(red), foot (x)", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    fourier = "_fourier" if arena(results["env"]).fourier else ""
    stem = os.path.join(args.out_dir, f"proto_reward_map_{layout}{fourier}{args.suffix}")
    fig.savefig(stem + ".png", dpi=50)

    keys = [k for k in rows[0] if k not in ("seed", "map", "window")]
    table = [{"seed": r["seed"], **{k: r[k] for k in keys}} for r in rows]
    uniform = uniform_history_entropy(results["env"], results["total_steps"],
                                      results["num_seeds"])
    with open(stem + ".json", "w") as f:
        json.dump({"run": results["env"], "total_steps": results["total_steps"],
                   "uniform_history_entropy": uniform,
                   "config": results["config"], "machine": machine(), "seeds": table},
                  f, indent=1)
    fmt = lambda v: (f"({v[0]:.2f}, {v[1]:.2f})" if isinstance(v, list)  # noqa: E731
                     else f"{v:.3f}")
    import jax

    backend = jax.default_backend()
    command = (f"python experiments/proto.py --env {results['env']} --phase "
               f"{results.get('phase') or 'pretrain'} --num-seeds {results['num_seeds']} "
               f"--total-steps {results['total_steps']}{changed_flags(results)} --out RUN")
    lines = [f"Proto-RL on {results['env']}, {results['total_steps']} reward-free steps, "
             f"the run's last checkpoint: the intrinsic reward map and where the agent went, "
             f"per seed. Run: `{command}`, then "
             f"`python benchmarks/proto_reward_map.py RUN` (plot "
             f"`{os.path.basename(stem)}.png`). Machine: {machine()['cpu']}, "
             f"{machine()['cores']} cores, JAX on {backend}.", "",
             "Columns: the final `state_entropy` and `coverage`; the mean r_intr over each "
             "region's free cells (0.1-cell grid); the fraction of all the agent's steps in "
             "each region; r_intr's far room / start room ratio, and the same ratio for the "
             "control, the kNN reward on positions (cells) against a queue of the agent's "
             "visited states; the fraction of the last window of positions in the start room; "
             + ("the foot of z = normalize(W obs + b) (cells), its distance ‖W x0 + b‖, and "
                "the share of the reward map's variance explained by the angle about the foot; "
                if "foot" in keys else "") +
             f"`history entropy`, the kNN entropy of {HISTORY} of all the seed's visited "
             "states drawn at random (the uniform-random policy on the same env, steps and "
             f"seeds: {np.mean(uniform):.2f} nats on average, "
             f"{min(uniform):.2f} to {max(uniform):.2f}).",
             "", "| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += ["| " + " | ".join([str(r["seed"])] + [fmt(r[k]) for k in keys]) + " |"
              for r in table]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
