"""purerl.stats against independent oracles: scipy's trimmed mean, scipy's bootstrap,
a slow per-task resampling loop, and hand-counted profiles."""

import numpy as np
import pytest
from scipy import stats as sps

from purerl import stats


def test_iqm_is_the_25_percent_trimmed_mean_of_all_scores():
    rng = np.random.default_rng(0)
    for runs, tasks in ((8, 1), (10, 3), (5, 7), (3, 1)):
        x = rng.standard_cauchy((runs, tasks))
        np.testing.assert_allclose(stats.iqm(x), sps.trim_mean(x.reshape(-1), 0.25),
                                   rtol=1e-12)
    # Robust to one wild seed, unlike the mean.
    x = np.array([1.0, 1.1, 0.9, 1.0, 1e6, 1.05, 0.95, 1.0])
    assert abs(stats.iqm(x) - 1.0) < 0.05 and stats.mean(x) > 1e5


def test_one_task_bootstrap_matches_scipys_percentile_bootstrap():
    x = np.random.default_rng(1).normal(3.0, 2.0, 12)
    ours = stats.bootstrap_ci(x, resamples=20_000)["ci95"]
    ref = sps.bootstrap((x,), np.mean, method="percentile", n_resamples=20_000,
                        random_state=np.random.default_rng(2)).confidence_interval
    np.testing.assert_allclose(ours, [ref.low, ref.high], atol=0.06)


def test_stratified_bootstrap_resamples_within_each_task():
    # Two tasks on very different scales: a resample that mixed runs across tasks
    # would move the per-task means far outside the slow loop's interval.
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(0.0, 1.0, 10), rng.normal(100.0, 1.0, 10)], axis=1)
    ours = stats.bootstrap_ci(x, stats.mean, resamples=20_000, seed=4)
    loop_rng = np.random.default_rng(5)
    values = []
    for _ in range(20_000):
        cols = [x[loop_rng.integers(0, 10, 10), t] for t in range(2)]
        values.append(np.mean([c.mean() for c in cols]))
    np.testing.assert_allclose(ours["ci95"], np.percentile(values, [2.5, 97.5]), atol=0.03)
    assert ours["value"] == pytest.approx(x.mean(0).mean())
    assert ours["runs"] == 10 and ours["tasks"] == 2
    # The same seed gives the same interval; another gives a slightly different one.
    assert stats.bootstrap_ci(x, seed=4, resamples=2000) == stats.bootstrap_ci(
        x, seed=4, resamples=2000)
    assert stats.bootstrap_ci(x, seed=5, resamples=2000) != stats.bootstrap_ci(
        x, seed=4, resamples=2000)
    assert "ci90" in stats.bootstrap_ci(x, alpha=0.1, resamples=100)


def test_performance_profile_counts_runs_above_tau_per_task():
    x = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    np.testing.assert_allclose(stats.performance_profile(x, [-1.0, 1.5, 25.0, 100.0]),
                               [1.0, (0.5 + 1.0) / 2, (0.0 + 0.5) / 2, 0.0])


def test_performance_profile_band_is_a_per_task_resampling_loop():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 2))
    taus = np.linspace(-2, 2, 9)
    band = stats.performance_profile_ci(x, taus, resamples=300, seed=7)
    np.testing.assert_array_equal(band["profile"], stats.performance_profile(x, taus))
    # Oracle: the same index draws, one resample and one task at a time.
    idx = np.random.default_rng(7).integers(0, 6, size=(300, 6, 2))
    curves = np.array([np.mean([np.mean(x[idx[r, :, t], t][:, None] > taus, 0)
                                for t in range(2)], 0) for r in range(300)])
    np.testing.assert_allclose(band["low"], np.percentile(curves, 2.5, axis=0))
    np.testing.assert_allclose(band["high"], np.percentile(curves, 97.5, axis=0))
    assert np.all(band["low"] <= band["profile"]) and np.all(band["profile"] <= band["high"])


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="must be finite"):
        stats.iqm([1.0, np.nan])
    with pytest.raises(ValueError, match=r"\[runs, tasks\]"):
        stats.bootstrap_ci(np.zeros((2, 2, 2)))
