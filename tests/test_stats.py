"""core.stats: bootstrap intervals and paired tests against scipy, Holm's correction, seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from stsa_bench.core import stats


def clips(seed: int, n: int = 40) -> np.ndarray:
    """Per-clip PSNR of a baseline: clip difficulty varies a lot (sd 1.5 dB)."""
    return np.random.default_rng(seed).normal(31.0, 1.5, n)


def test_mean_interval_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(1).gamma(2.0, 1.0, 40)
    ours = stats.mean_interval(x, 20000, seed=3)
    ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(4)).confidence_interval
    width = ref.high - ref.low
    assert ours.estimate == pytest.approx(x.mean())
    assert ours.std == pytest.approx(x.std(ddof=1))
    assert abs(ours.low - ref.low) < 0.03 * width and abs(ours.high - ref.high) < 0.03 * width


def test_seeded_and_deterministic():
    x = clips(0)
    a, b, c = (stats.mean_interval(x, 500, seed=s) for s in (7, 7, 8))
    assert a == b and a != c
    p1 = stats.paired_mean_test(x + 0.1, x, 500, seed=7)
    assert p1 == stats.paired_mean_test(x + 0.1, x, 500, seed=7)


def test_a_real_half_db_difference_is_detected_and_noise_is_not():
    base = clips(0)
    rng = np.random.default_rng(1)
    better = base + 0.5 + rng.normal(0, 0.5, 40)
    noise = base + rng.normal(0, 0.5, 40)
    real = stats.paired_mean_test(better, base, 4000, seed=0)
    none = stats.paired_mean_test(noise, base, 4000, seed=0)
    assert real.p < 0.001 and real.low > 0 and real.significant()
    assert none.p > 0.05 and none.low < 0 < none.high and not none.significant()
    for test in stats.TESTS:
        assert stats.paired_mean_test(better, base, 2000, 0, test).p < 0.001
        assert stats.paired_mean_test(noise, base, 2000, 0, test).p > 0.05


def test_false_positive_rate_under_the_null_is_near_alpha():
    rejected = 0
    for seed in range(200):
        base = clips(seed)
        other = base + np.random.default_rng(seed + 1000).normal(0, 0.5, 40)
        rejected += stats.paired_mean_test(other, base, 1000, seed).p < 0.05
    assert 0.0 < rejected / 200 < 0.10


def test_wilcoxon_is_scipys_signed_rank():
    d = np.random.default_rng(2).normal(0.2, 1.0, 30)
    base = clips(3, 30)
    assert stats.paired_mean_test(base + d, base, 100, 0, "wilcoxon").p == pytest.approx(sps.wilcoxon(d).pvalue, rel=1e-9, abs=1e-12)
    assert stats.wilcoxon_p(np.zeros(5)) == 1.0


def test_paired_bootstrap_interval_matches_scipy_on_the_differences():
    base = clips(5)
    other = base + np.random.default_rng(6).normal(0.3, 0.8, 40)
    ours = stats.paired_mean_test(other, base, 20000, seed=1)
    ref = sps.bootstrap((other - base,), np.mean, n_resamples=20000, method="percentile", rng=np.random.default_rng(2)).confidence_interval
    width = ref.high - ref.low
    assert abs(ours.low - ref.low) < 0.03 * width and abs(ours.high - ref.high) < 0.03 * width


def test_holm_known_answer():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_shifted_p_and_statistic_interval():
    draws = np.random.default_rng(0).normal(1.0, 1.0, 10000)
    p = stats.shifted_p(1.0, draws)
    assert p == pytest.approx(2 * sps.norm.sf(1.0), abs=0.02)
    iv = stats.statistic_interval(2.0, lambda idx: float(np.arange(10)[idx].mean()), 10, 2000, seed=0)
    assert iv.estimate == 2.0 and iv.low < 4.5 < iv.high
    with pytest.raises(ValueError):
        stats.paired_mean_test([1.0], [0.0], 10, 0)
