"""Aggregate results across seeds and tasks, with intervals (numpy, on the host).

The estimators of Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (arXiv:2108.13264;
library ``google-research/rliable``), written here from the paper:

* ``iqm``: the interquartile mean, the mean of the middle 50% of all runs' scores
  pooled over tasks (25% trimmed from each end, as ``scipy.stats.trim_mean``);
* ``bootstrap_ci``: a stratified percentile bootstrap: each resample redraws the runs
  of every task with replacement, separately per task (the strata), and applies the
  statistic; the interval is the resamples' (α/2, 1 − α/2) percentiles;
* ``performance_profile``: the run-score distribution, the fraction of runs whose
  score exceeds τ, averaged over tasks, for each τ.

Scores are ``[runs, tasks]`` arrays (one column per task; a 1-d array is one task), as
rliable's score matrices. rliable itself is not a dependency: its 1.2.0 release fails
to import with the arch and pandas versions that resolve beside purerl's pins.
"""

import numpy as np


def _matrix(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be [runs, tasks] (or [runs]), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (drop the runs that did not report)")
    return scores


def iqm(scores) -> float:
    """Interquartile mean of all scores pooled: sort, drop ``floor(n / 4)`` from each
    end, average the rest."""
    flat = np.sort(_matrix(scores).reshape(-1))
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def mean(scores) -> float:
    """Mean over tasks of the per-task mean score (the same as the pooled mean when
    every task has the same number of runs)."""
    return float(_matrix(scores).mean(0).mean())


def median(scores) -> float:
    """Median over tasks of the per-task mean score."""
    return float(np.median(_matrix(scores).mean(0)))


def _resample(scores: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, runs, tasks]``: one index draw per (resample, run, task), so the
    runs are redrawn within each task (the strata)."""
    runs, tasks = scores.shape
    idx = np.random.default_rng(seed).integers(0, runs, size=(resamples, runs, tasks))
    return np.take_along_axis(scores[None], idx, axis=1)


def bootstrap_ci(scores, statistic=mean, resamples: int = 10_000, alpha: float = 0.05,
                 seed: int = 0) -> dict:
    """The statistic and its stratified-bootstrap percentile interval.

    Args:
      scores: ``[runs, tasks]`` (or ``[runs]``).
      statistic: ``scores [runs, tasks] -> float`` (``mean``, ``median``, ``iqm``, ...).
      resamples: bootstrap resamples.
      alpha: 1 − the interval's coverage (0.05: a 95% interval).
      seed: the resampling RNG's seed (numpy ``default_rng``), so a table is
        reproducible.

    Returns:
      ``{"value", "ci95" (or "ci<coverage>"): [low, high], "runs", "tasks"}``.
    """
    scores = _matrix(scores)
    runs, tasks = scores.shape
    resampled = _resample(scores, resamples, seed)
    if statistic is mean:  # vectorised; the same numbers as the loop below
        values = resampled.mean(1).mean(1)
    else:
        values = np.array([statistic(x) for x in resampled])
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": float(statistic(scores)),
            f"ci{round(100 * (1 - alpha))}": [float(lo), float(hi)],
            "runs": runs, "tasks": tasks}


def performance_profile(scores, taus) -> np.ndarray:
    """``P(score > τ)`` for each τ: per task the fraction of runs above τ, averaged
    over tasks. Returns ``[len(taus)]``."""
    scores = _matrix(scores)
    taus = np.asarray(taus, dtype=float).reshape(-1)
    return (scores[None, :, :] > taus[:, None, None]).mean(1).mean(1)


def performance_profile_ci(scores, taus, resamples: int = 2_000, alpha: float = 0.05,
                           seed: int = 0) -> dict:
    """``performance_profile`` with a pointwise stratified-bootstrap band:
    ``{"profile", "low", "high"}``, each ``[len(taus)]``."""
    scores = _matrix(scores)
    taus = np.asarray(taus, dtype=float).reshape(-1)
    resampled = _resample(scores, resamples, seed)  # [R, runs, tasks]
    curves = (resampled[:, None] > taus[None, :, None, None]).mean(2).mean(2)  # [R, taus]
    low, high = np.percentile(curves, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return {"profile": performance_profile(scores, taus), "low": low, "high": high}
