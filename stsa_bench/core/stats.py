"""Uncertainty over clips: intervals and paired tests whose error rates hold at the suite sizes users have
(10 to 40 clips; simulated in docs/statistics.md by scripts/simulate_stats.py), and Holm's correction.

Per-clip metrics (a value per clip):
- interval of a mean: Student's t, mean ± t_{n-1} s / sqrt(n);
- paired tests of the mean difference d = method - baseline: `permutation` (default), the sign-flip test (Fisher
  1935; under the null each d_i is as likely to have either sign): exact over all 2^n sign vectors up to
  EXACT_UP_TO clips, seeded Monte Carlo above with p = (1 + count) / (1 + B) (Phipson & Smyth 2010); `ttest`, the
  paired t-test; `wilcoxon`, the signed-rank test (scipy's default).
Pooled metrics (FID, DME, FVD: one value over the frames of all clips), where drawing clips with replacement
duplicates their frames and biases the statistic:
- interval: the jackknife (Efron & Tibshirani 1993, ch. 11) deleting one of g blocks of clips at a time (each clip a
  block up to JACKKNIFE_BLOCKS clips; Shao & Tu 1995, sec. 2.3 for blocks), estimate ± t_{g-1} se_jack with
  se_jack^2 = (g - 1) / g sum_b (theta_(b) - theta_(.))^2: g recomputations of the metric, whatever the suite size;
- paired test: exchange permutation, each draw swaps the two methods' partials of each clip with probability 1/2
  and recomputes the difference (exact over all 2^n swaps when 2^n <= draws + 1); its p is the one figure of a
  pooled comparison (intervals belong to each method's value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
TESTS = ("permutation", "ttest", "wilcoxon")
EXACT_UP_TO = 20
"""The sign-flip test enumerates all 2^n sign vectors up to this many clips (2^20 sums, 8 MB)."""


JACKKNIFE_BLOCKS = 10
"""Blocks of a pooled metric's jackknife: each recomputes FID once (about 2 s for 40 clips on 2 cores)."""


@dataclass(frozen=True)
class Interval:
    """An estimate over clips, its standard deviation over clips (ddof=1; None for pooled statistics) and an interval."""

    estimate: float
    std: float | None
    low: float
    high: float


def t_quantile(n: int, level: float = LEVEL) -> float:
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, n - 1))


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of per-clip values, std over clips (ddof=1), Student's t interval (needs 2 values)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"an interval needs at least 2 clips, got {len(x)}")
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = t_quantile(len(x), level) * std / math.sqrt(len(x))
    return Interval(mean, std, mean - half, mean + half)


def jackknife_interval(
    estimate: float, leave_out: Callable[[int], float], n: int, level: float = LEVEL, sizes: Sequence[int] | None = None
) -> Interval:
    """A statistic and estimate ± t_{g-1} se from `leave_out(b)`, the statistic without block b of g = n blocks.
    Blocks of `sizes` units (default 1 each) use the delete-m_b jackknife for unequal blocks (Busing, Meijer & van der
    Leeden 1999): with N units, h_b = N / m_b, pseudo-values p_b = h_b theta - (h_b - 1) theta_(b),
    theta_J = g theta - sum_b (1 - m_b / N) theta_(b), se^2 = (1 / g) sum_b (p_b - theta_J)^2 / (h_b - 1); equal blocks
    give the classical (g - 1) / g sum_b (theta_(b) - theta_(.))^2."""
    if n < 2:
        raise ValueError(f"a jackknife needs at least 2 clips, got {n}")
    m = np.ones(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    theta = np.array([leave_out(i) for i in range(n)], dtype=np.float64)
    h = m.sum() / m
    pseudo = h * estimate - (h - 1) * theta
    centre = n * estimate - float(((1 - m / m.sum()) * theta).sum())
    se = math.sqrt(float(((pseudo - centre) ** 2 / (h - 1)).sum()) / n)
    half = t_quantile(n, level) * se
    return Interval(float(estimate), None, float(estimate) - half, float(estimate) + half)


def blocks(units: Sequence[Sequence[int]], k: int = JACKKNIFE_BLOCKS) -> list[list[int]]:
    """The units (clips, or clip groups) dealt round-robin into at most k blocks, in order."""
    out: list[list[int]] = [[] for _ in range(min(k, len(units)))]
    for i, unit in enumerate(units):
        out[i % len(out)].extend(unit)
    return out


def _at_least(stats: np.ndarray, observed: float) -> int:
    """How many |stats| are at least |observed| (ties within float rounding count)."""
    return int(np.count_nonzero(np.abs(stats) >= abs(observed) * (1 - 1e-12) - 1e-300))


def sign_flip_p(d: Sequence[float], draws: int, seed: int) -> tuple[float, int]:
    """(two-sided p of mean(d) = 0 under sign symmetry, Monte Carlo draws used; 0 when exact). Exact over the 2^n
    sign vectors for n <= EXACT_UP_TO (the observed one among them), else (1 + count) / (1 + draws)."""
    d = np.asarray(d, dtype=np.float64)
    observed = float(d.sum())
    if len(d) <= EXACT_UP_TO:
        sums = np.zeros(1)
        for x in d:
            sums = np.concatenate([sums + x, sums - x])
        return _at_least(sums, observed) / len(sums), 0
    if draws < 1:
        raise ValueError(f"the sign-flip test of {len(d)} clips draws sign vectors: draws must be at least 1")
    rng = np.random.default_rng(seed)
    count, chunk = 0, max(1, 2**22 // len(d))
    for start in range(0, draws, chunk):
        signs = rng.integers(0, 2, size=(min(chunk, draws - start), len(d)), dtype=np.int8) * 2 - 1
        count += _at_least(signs @ d, observed)
    return (1 + count) / (1 + draws), draws


def ttest_p(d: Sequence[float]) -> float:
    """Two-sided paired t-test p of mean(d) = 0 (scipy.stats.ttest_1samp); 1.0 when every d is 0, 0.0 when all are
    the same non-zero value."""
    from scipy.stats import ttest_1samp

    d = np.asarray(d, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0
    return float(ttest_1samp(d, 0.0).pvalue)


def wilcoxon_p(d: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p of the differences (scipy.stats.wilcoxon); 1.0 when all are zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(d, dtype=np.float64)
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d).pvalue)


@dataclass(frozen=True)
class Comparison:
    """method - baseline on the same clips: difference, its interval, p-value (and Holm-adjusted p)."""

    diff: float
    low: float | None
    high: float | None
    """The difference's interval (None for pooled metrics: each method's value carries its own)."""
    p: float
    test: str
    n: int
    draws: int = 0
    """Monte Carlo draws behind p (0: exact, or a test without resampling)."""
    p_holm: float | None = None

    def significant(self, alpha: float = 1 - LEVEL) -> bool:
        return (self.p_holm if self.p_holm is not None else self.p) < alpha


def paired_mean_test(
    values: Sequence[float], baseline: Sequence[float], test: str = "permutation", draws: int = 9999, seed: int = 0, level: float = LEVEL
) -> Comparison:
    """Mean of the per-clip differences d = values - baseline, its t interval, and p from `test` (TESTS)."""
    d = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    iv = mean_interval(d, level)
    used = 0
    if test == "permutation":
        p, used = sign_flip_p(d, draws, seed)
    elif test == "ttest":
        p = ttest_p(d)
    elif test == "wilcoxon":
        p = wilcoxon_p(d)
    else:
        raise ValueError(f"unknown test {test!r} (one of {', '.join(TESTS)})")
    return Comparison(iv.estimate, iv.low, iv.high, p, test, len(d), used)


def exchange_p(observed: float, swapped: Callable[[np.ndarray], float], n: int, draws: int, seed: int) -> tuple[float, int]:
    """(two-sided p of a pooled difference under exchangeability of the two methods' per-clip partials, Monte Carlo
    draws used; 0 when exact). `swapped(mask)` recomputes the difference with the clips where mask is True swapped.
    Exact over all 2^n masks when 2^n <= draws + 1, else (1 + count) / (1 + draws)."""
    if 2**n <= draws + 1:
        masks = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
        stats = np.array([swapped(m) for m in masks])
        return _at_least(stats, observed) / len(stats), 0
    if draws < 1:
        raise ValueError("the exchange test draws swaps: draws must be at least 1")
    rng = np.random.default_rng(seed)
    stats = np.array([swapped(rng.integers(0, 2, n).astype(bool)) for _ in range(draws)])
    return (1 + _at_least(stats, observed)) / (1 + draws), draws


def draws_for(m: int, alpha: float) -> int:
    """Monte Carlo draws with which the smallest p a permutation test can give, 1 / (B + 1), survives Holm's
    correction over m comparisons twice over: 2 m / (B + 1) <= alpha (39 draws for one comparison at 0.05)."""
    return max(1, math.ceil(2 * m / alpha) - 1)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979): sort ascending, p_(i) * (m - i + 1), running max, cap 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
