"""Metrics out of jit: jsonl, summary tables, learning-curve plots, versions."""

import json
import math
import os
import platform

import numpy as np


def to_python(x):
    """numpy/jax scalars and arrays -> plain Python (JSON-safe; NaN -> None)."""
    if isinstance(x, dict):
        return {k: to_python(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_python(v) for v in x]
    if hasattr(x, "tolist"):
        return to_python(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_jsonl(path: str, rows) -> None:
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(to_python(row)) + "\n")


def write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_python(obj), f, indent=2)
    os.replace(tmp, path)


def versions() -> dict:
    """Versions of the packages that decide the numbers."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("purerl", "jax", "jaxlib", "flax", "optax", "chex", "distrax", "gymnax",
                 "mujoco", "mujoco-mjx", "dm_control"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        import jax

        out["jax_backend"] = jax.default_backend()
        out["jax_devices"] = len(jax.devices())
    except Exception:  # noqa: BLE001 - versions must never fail a run
        pass
    return out


def plot_curve(path: str, steps, returns, title: str, xlabel: str = "env steps (per seed)") -> None:
    """Mean ± one std (shaded, clipped to min/max) and min/max (dotted) of eval returns
    across seeds.

    Args:
      steps: ``[P]`` env steps of each evaluation.
      returns: ``[P, num_seeds]`` evaluation returns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(steps)
    returns = np.asarray(returns, dtype=float)
    mean, std = returns.mean(1), returns.std(1)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    # Markers: a run with one evaluation has one point, which a line alone never draws.
    ax.plot(steps, mean, marker="o", ms=4, label=f"mean of {returns.shape[1]} seeds")
    # Clipped to the seeds' range: a band past the best seed (or the best possible
    # return) would show returns no seed had.
    lo, hi = returns.min(1), returns.max(1)
    ax.fill_between(steps, np.clip(mean - std, lo, hi), np.clip(mean + std, lo, hi),
                    alpha=0.3, label="± 1 std (within min / max)")
    ax.plot(steps, lo, ":", marker="_", ms=10, color="gray", lw=1, label="min / max")
    ax.plot(steps, hi, ":", marker="_", ms=10, color="gray", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary_table(steps, returns, unit: str = "env steps") -> str:
    """A small text table of the evaluation returns across seeds."""
    returns = np.asarray(returns, dtype=float)
    lines = [f"{unit:>12} {'mean':>9} {'std':>8} {'min':>9} {'max':>9}"]
    for s, r in zip(np.asarray(steps), returns):
        lines.append(
            f"{int(s):>12d} {r.mean():>9.1f} {r.std():>8.1f} {r.min():>9.1f} {r.max():>9.1f}"
        )
    return "\n".join(lines)
