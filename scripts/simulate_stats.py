"""The error rates of stsa_bench.core.stats at the suite sizes users have, by simulation (docs/statistics.md).

    python scripts/simulate_stats.py               # the tables of docs/statistics.md (about a minute on 2 cores)
    python scripts/simulate_stats.py --sets 500    # quicker, coarser

Per-clip metrics. A clip's value is its difficulty plus the method's noise: x_i = c_i + e_i, y_i = c_i + f_i,
with c_i skewed (gamma, shape 2) and the noise drawn from one of NOISE. Under the null both methods' noise has the
same distribution, so the paired differences are symmetric about 0; the table gives each test's rejection rate at
alpha = 0.05 (its size). Coverage: how often the 95 % interval of a mean holds the true mean, for values drawn
from SHAPES. Pooled metrics: FID of synthetic features (16-d, 10 frames per clip) of two methods drawn from the
same distribution: the exchange test's rejection rate, and how often the jackknife interval holds the estimate
(the percentile bootstrap it replaced is shown beside it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stsa_bench.core import stats  # noqa: E402

SIZES = (10, 15, 30, 40)
ALPHA = 0.05
NOISE = {
    "normal": lambda rng, n: rng.normal(0, 1, n),
    "skewed (gamma 2)": lambda rng, n: rng.gamma(2.0, 1.0, n),
    "heavy-tailed (t3)": lambda rng, n: rng.standard_t(3, n),
}
SHAPES = {
    "normal": (lambda rng, n: rng.normal(30, 2, n), 30.0),
    "skewed (gamma 4)": (lambda rng, n: rng.gamma(4.0, 1.0, n), 4.0),
    "skewed (lognormal 0.5)": (lambda rng, n: rng.lognormal(0, 0.5, n), float(np.exp(0.125))),
}


def old_bootstrap_p(d: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> float:
    """The test this harness used before: the paired bootstrap shifted to the null."""
    means = d[rng.integers(0, len(d), (draws, len(d)))].mean(axis=1)
    obs = d.mean()
    return (1 + np.count_nonzero(np.abs(means - obs) >= abs(obs))) / (1 + draws)


def per_clip_size(sets: int, seed: int) -> list[str]:
    lines = ["| noise | test | " + " | ".join(f"n={n}" for n in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    for label, noise in NOISE.items():
        rates: dict[str, list[float]] = {"permutation": [], "ttest": [], "wilcoxon": [], "bootstrap (before)": []}
        for n in SIZES:
            rng = np.random.default_rng(seed + n)
            hits = dict.fromkeys(rates, 0)
            for s in range(sets):
                c = rng.gamma(2.0, 3.0, n)
                d = (c + noise(rng, n)) - (c + noise(rng, n))
                for test in stats.TESTS:
                    hits[test] += stats.paired_mean_test(d, np.zeros(n), test, 999, seed + s).p < ALPHA
                hits["bootstrap (before)"] += old_bootstrap_p(d, rng) < ALPHA
            for k in rates:
                rates[k].append(hits[k] / sets)
        lines += [f"| {label} | {k} | " + " | ".join(f"{r:.1%}" for r in v) + " |" for k, v in rates.items()]
    return lines


def per_clip_coverage(sets: int, seed: int) -> list[str]:
    lines = ["| values | interval | " + " | ".join(f"n={n}" for n in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    for label, (draw, mean) in SHAPES.items():
        cov_t, cov_b = [], []
        for n in SIZES:
            rng = np.random.default_rng(seed + 7 * n)
            ht = hb = 0
            for _ in range(sets):
                x = draw(rng, n)
                iv = stats.mean_interval(x)
                ht += iv.low <= mean <= iv.high
                boot = x[rng.integers(0, n, (2000, n))].mean(axis=1)
                lo, hi = np.quantile(boot, [0.025, 0.975])
                hb += lo <= mean <= hi
            cov_t.append(ht / sets)
            cov_b.append(hb / sets)
        lines.append(f"| {label} | t (now) | " + " | ".join(f"{c:.1%}" for c in cov_t) + " |")
        lines.append(f"| {label} | percentile bootstrap (before) | " + " | ".join(f"{c:.1%}" for c in cov_b) + " |")
    return lines


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.linalg import sqrtm

    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * np.trace(sqrtm(ca @ cb).real))


def pooled(sets: int, seed: int, n: int = 15, frames: int = 10, dim: int = 16, draws: int = 199) -> list[str]:
    rng = np.random.default_rng(seed)
    reject = jack_holds = boot_holds = 0
    ps, intervals, estimates = [], [], []
    for s in range(sets):
        gt = [rng.normal(0, 1, (frames, dim)) for _ in range(n)]
        a = [g + rng.normal(0.3, 1, (frames, dim)) for g in gt]
        b = [g + rng.normal(0.3, 1, (frames, dim)) for g in gt]
        g_all = np.concatenate(gt)

        def fid(parts: list[np.ndarray]) -> float:
            return frechet(np.concatenate(parts), g_all)

        observed = fid(a) - fid(b)

        def swapped(mask: np.ndarray) -> float:
            return fid([bb if m else aa for aa, bb, m in zip(a, b, mask)]) - fid([aa if m else bb for aa, bb, m in zip(a, b, mask)])

        p, _ = stats.exchange_p(observed, swapped, n, draws, seed + s)
        ps.append(p)
        reject += p < ALPHA
        est = fid(a)
        drop = [set(b) for b in stats.blocks([[i] for i in range(n)])]

        def left_out(k: int) -> float:
            keep = [i for i in range(n) if i not in drop[k]]
            return frechet(np.concatenate([a[i] for i in keep]), np.concatenate([gt[i] for i in keep]))

        iv = stats.jackknife_interval(est, left_out, len(drop), sizes=[len(b) for b in drop])
        jack_holds += iv.low <= est <= iv.high
        intervals.append((iv.low, iv.high))
        estimates.append(est)
        boot = [frechet(np.concatenate([a[i] for i in idx]), np.concatenate([gt[i] for i in idx])) for idx in rng.integers(0, n, (25, n))]
        lo, hi = np.quantile(boot, [0.025, 0.975])
        boot_holds += lo <= est <= hi
    from scipy.stats import kstest

    ks = kstest(ps, "uniform").pvalue
    truth = expected_fid(rng, n, frames, dim, 20 * sets)
    covered = np.mean([lo <= truth <= hi for lo, hi in intervals])
    return [
        f"FID of {n} clips x {frames} frames ({dim}-d features), two methods from one distribution, {sets} data sets:",
        "",
        f"- exchange test ({draws} draws): rejects {reject / sets:.1%} at alpha 0.05; its p-values against U(0, 1): "
        f"Kolmogorov-Smirnov p = {ks:.2f}",
        f"- the interval holds the estimate: jackknife over {stats.JACKKNIFE_BLOCKS} blocks (now) {jack_holds / sets:.0%}; percentile bootstrap of 25 draws "
        f"(before) {boot_holds / sets:.0%}",
        f"- the jackknife interval holds the expected FID of {n} such clips ({truth:.3f}, the mean of {20 * sets} estimates; "
        f"the population value, which no finite sample's FID estimates without bias, is lower) in {covered:.1%} of the data sets",
    ]


def expected_fid(rng: np.random.Generator, n: int, frames: int, dim: int, sets: int) -> float:
    """The mean FID estimate of n clips over many data sets: what an interval for a suite of this size should hold."""
    total = 0.0
    for _ in range(sets):
        gt = rng.normal(0, 1, (n * frames, dim))
        total += frechet(gt + rng.normal(0.3, 1, gt.shape), gt)
    return total / sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=2000, help="simulated data sets per cell (pooled: a tenth)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = [f"Size of the paired tests at alpha {ALPHA} under the null ({args.sets} data sets per cell, seed {args.seed}):", ""]
    out += per_clip_size(args.sets, args.seed)
    out += ["", f"Coverage of the 95 % interval of a mean ({args.sets} data sets per cell):", ""]
    out += per_clip_coverage(args.sets, args.seed)
    out += [""] + pooled(max(50, args.sets // 10), args.seed)
    out += ["", f"({time.perf_counter() - t0:.0f} s)"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
