"""Uncertainty over clips: a seeded percentile bootstrap, paired comparisons and Holm's correction.

Clips are the unit of resampling (Efron & Tibshirani, An Introduction to the Bootstrap, 1993):
a resample draws n clips with replacement from the n clips of a cell. Intervals are percentile
intervals (ch. 13); the paired test resamples the per-clip differences and reads a two-sided p-value
from the bootstrap distribution shifted to the null (ch. 16.4). Pooled metrics (FID, DME) are resampled
the same way, by recomputing them from the resampled clips' saved partial states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
TESTS = ("bootstrap", "wilcoxon")


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) clip indices drawn with replacement; the same (n, resamples, seed) give the same draws,
    so cells and the two sides of a paired comparison share their resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(stats: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The (1-level)/2 and (1+level)/2 quantiles of a bootstrap distribution (linear interpolation)."""
    stats = np.asarray(stats, dtype=np.float64)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def shifted_p(observed: float, stats: np.ndarray) -> float:
    """Two-sided p of `observed` != 0: the share of the null-shifted bootstrap distribution
    (stats - observed) at least as far from 0 as `observed`, as (1 + count) / (1 + B)."""
    stats = np.asarray(stats, dtype=np.float64)
    far = np.count_nonzero(np.abs(stats - observed) >= abs(observed) - 1e-12 * max(1.0, abs(observed)))
    return float((1 + far) / (1 + len(stats)))


@dataclass(frozen=True)
class Interval:
    """An estimate over clips with its standard deviation over clips (ddof=1) and a bootstrap interval."""

    estimate: float
    std: float | None
    low: float
    high: float


def mean_interval(values: Sequence[float], resamples: int, seed: int, level: float = LEVEL) -> Interval:
    """Mean of per-clip values, std over clips (ddof=1), percentile interval of the bootstrap means."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no values")
    std = float(x.std(ddof=1)) if len(x) > 1 else None
    means = x[resample_indices(len(x), resamples, seed)].mean(axis=1)
    return Interval(float(x.mean()), std, *percentile_interval(means, level))


def statistic_interval(
    estimate: float, resampled: Callable[[np.ndarray], float], n: int, resamples: int, seed: int, level: float = LEVEL
) -> Interval:
    """A statistic over n clips (e.g. FID pooled over their frames) and the percentile interval of
    `resampled(idx)` over bootstrap draws of clip indices."""
    stats = np.array([resampled(idx) for idx in resample_indices(n, resamples, seed)])
    return Interval(float(estimate), None, *percentile_interval(stats, level))


@dataclass(frozen=True)
class Comparison:
    """method - baseline on the same clips: difference, its interval, p-value (and Holm-adjusted p)."""

    diff: float
    low: float
    high: float
    p: float
    test: str
    n: int
    p_holm: float | None = None

    def significant(self, alpha: float = 1 - LEVEL) -> bool:
        return (self.p_holm if self.p_holm is not None else self.p) < alpha


def paired_mean_test(
    values: Sequence[float], baseline: Sequence[float], resamples: int, seed: int, test: str = "bootstrap", level: float = LEVEL
) -> Comparison:
    """Mean of the per-clip differences d = values - baseline, a percentile interval of the bootstrap means
    of d, and p from the shifted bootstrap (`bootstrap`) or the Wilcoxon signed-rank test (`wilcoxon`, scipy's
    default: exact distribution for n <= 50 without ties, zero differences dropped)."""
    d = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if len(d) < 2:
        raise ValueError(f"a paired comparison needs at least 2 clips, got {len(d)}")
    means = d[resample_indices(len(d), resamples, seed)].mean(axis=1)
    low, high = percentile_interval(means, level)
    if test == "bootstrap":
        p = shifted_p(float(d.mean()), means)
    elif test == "wilcoxon":
        p = wilcoxon_p(d)
    else:
        raise ValueError(f"unknown test {test!r} (one of {', '.join(TESTS)})")
    return Comparison(float(d.mean()), low, high, p, test, len(d))


def paired_statistic_test(
    observed: float, resampled: Callable[[np.ndarray], float], n: int, resamples: int, seed: int, level: float = LEVEL
) -> Comparison:
    """A paired bootstrap of a difference of pooled statistics: `resampled(idx)` returns the difference
    recomputed on the clips idx (both methods on the same draw); shifted-bootstrap p."""
    stats = np.array([resampled(idx) for idx in resample_indices(n, resamples, seed)])
    return Comparison(float(observed), *percentile_interval(stats, level), shifted_p(observed, stats), "bootstrap", n)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of the differences (scipy.stats.wilcoxon); 1.0 when all are zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(d, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979): sort ascending, p_(i) * (m - i + 1), running max, cap 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
