"""From rows to table cells: which clips each method is compared on, mean or pooled value, spread, an interval,
the rank in its column, and (with a baseline) a paired test against it, Holm-corrected over a stated family.

Fair by default: methods are compared on the clips that every compared method scored (GT aside); the clips left
out are listed with the reason. Pooled metrics are recomputed on those clips from the run's saved per-clip
partials (`Run.pooled`). The statistics are stsa_bench.core.stats; one rule (`min_clips`) says when there are too
few clips (or clip groups) for an interval or a test, and the cell says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stsa_bench.core import stats
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.registry import did_you_mean
from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import ResultRow, metric_name

from .runs import GT_METHODS, Run

CLIP_MODES = ("common", "own")
FAMILIES = ("metric", "table")


@dataclass(frozen=True)
class TableOptions:
    """How a table aggregates clips; the CLI's `report` flags map onto these fields."""

    clips: str = "common"
    """common: every method on the clips all compared methods scored (GT aside) | own: each method's own clips."""
    intervals: bool = True
    """95 % intervals of each cell (per-clip metrics: t; pooled: jackknife, which recomputes the metric n times)."""
    baseline: str | None = None
    """Compare every other method with this one, per metric, on the clips both scored."""
    test: str = "permutation"
    """Per-clip metrics: permutation (sign flips of the differences) | ttest (paired t) | wilcoxon (signed rank)."""
    resamples: int = 9999
    """Monte Carlo sign flips of the permutation test beyond stats.EXACT_UP_TO clips (exact enumeration below)."""
    pooled_resamples: int | None = None
    """Exchange draws of pooled metrics' tests (each recomputes the metric twice); None: stats.draws_for(the family)."""
    family: str = "metric"
    """Holm's family: metric (the comparisons of one metric with the baseline) | table (every comparison of the table)."""
    min_clips: int = 10
    """No interval and no test over fewer clips (or clip groups with `group`): the cell says why."""
    group: bool = False
    """Resample by the suite's clip groups (speaker or source video, manifest `group`) instead of by clip."""
    seed: int = 0
    level: float = stats.LEVEL
    alpha: float = 0.05
    """Significance level after Holm's correction."""

    def __post_init__(self) -> None:
        for flag, value, known in (("--clips", self.clips, CLIP_MODES), ("--test", self.test, stats.TESTS), ("--family", self.family, FAMILIES)):
            if value not in known:
                raise ConfigError(f"{flag} {value!r}{did_you_mean(value, list(known))}")
        if self.resamples < 0 or (self.pooled_resamples is not None and self.pooled_resamples < 1) or self.min_clips < 2:
            raise ConfigError("--resamples must be >= 0, --pooled-resamples >= 1 and --min-clips >= 2")
        if self.baseline and self.test == "permutation" and self.resamples < 1:
            raise ConfigError(f"--test permutation draws --resamples sign flips beyond {stats.EXACT_UP_TO} clips: give --resamples 1 or "
                              "more (default 9999), or --test ttest or wilcoxon, which draw nothing")  # fmt: skip


@dataclass
class Cell:
    """One method x metric: mean over clips (or the pooled value), spread, interval, counts, or why there is none."""

    method: str
    metric: str
    name: str
    mean: float | None
    std: float | None
    n: int
    n_failed: int
    pooled: bool
    reason: str | None = None
    rank: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str | None = None
    ci_reason: str | None = None
    """Why the cell has no interval (too few clips, a failed recomputation)."""
    clips: str = "own"
    """Which clips the value is over: `common` (the table's common clips) or `own` (this method's)."""
    vs: str | None = None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p: float | None = None
    p_holm: float | None = None
    test: str | None = None
    test_n: int | None = None
    """Clips (or groups) the test used."""
    tested_on: list[str] | None = None
    draws: int | None = None
    """Monte Carlo draws behind p (0: exact or no resampling)."""
    test_reason: str | None = None
    significant: bool | None = None
    direction: str | None = None
    """better | worse (against the baseline, by the metric's direction) | differs (direction unknown); None: not significant."""


@dataclass
class Table:
    run: Run
    options: TableOptions
    cells: dict[tuple[str, str], Cell]
    compared: list[str] | None = None
    """The common clips (clips=common), else None."""
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    families: dict[str, list[str]] = field(default_factory=dict)
    """Holm's families: name (a metric id, or 'table') -> the methods compared with the baseline in it."""
    pooled_draws: int | None = None

    def get(self, key: tuple[str, str]) -> Cell | None:
        return self.cells.get(key)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.cells

    def __getitem__(self, key: tuple[str, str]) -> Cell:
        return self.cells[key]

    def items(self):
        return self.cells.items()


def short_reason(errors: list[str]) -> str:
    """The most common failure, shortened for a table cell."""
    top = max(set(errors), key=errors.count)
    if "weights missing" in top:
        return "weights missing"
    if "no such file" in top or "missing (clip" in top:
        return "input missing"
    return top.split(": ", 1)[-1][:40]


class _Index:
    """Rows by (clip, method, metric), pooled rows by (method, metric), partial clip sets memoised."""

    def __init__(self, run: Run):
        self.run = run
        self.by = {(r.clip, r.method, r.metric): r for r in run.rows if r.clip != POOLED}
        self.pooled_rows = {(r.method, r.metric): r for r in run.rows if r.clip == POOLED}
        self.present = {(r.method, r.metric) for r in run.rows}
        self.pooled_metrics = {x for _, x in self.pooled_rows}
        self.scored = {(r.method, r.metric) for r in run.rows if r.status == "ok"}
        """(method, metric) with at least one value: a metric that failed on every clip of a method (e.g. its
        weights are missing) says so in its cell and does not shrink the clips the others are compared on."""
        self._partials: dict[tuple[str, str], set[str] | None] = {}
        self.clips = self._clips()
        """The run's clips in manifest order: those with per-clip rows and those with pooled partials only."""

    def _clips(self) -> list[str]:
        have = set(self.run.clips)
        for method, metric in self.pooled_rows:
            have |= self.partial_clips(method, metric) or set()
        listed = list((self.run.manifest.get("clips") or {}).keys())
        return [c for c in listed if c in have] + [c for c in self.run.clips if c not in listed]

    def partial_clips(self, method: str, metric: str) -> set[str] | None:
        key = (method, metric)
        if key not in self._partials:
            self._partials[key] = self.run.pooled.clips(method, metric) if self.run.pooled else None
        return self._partials[key]

    def missing(self, method: str, clip: str) -> str | None:
        """Why `method` did not score `clip` on every metric it has (None: it did)."""
        for metric in self.run.metrics:
            if (method, metric) not in self.scored:
                continue
            r = self.by.get((clip, method, metric))
            name = metric_name(metric)
            if r is not None and r.status == "failed":
                return f"{method} failed ({name}: {short_reason([r.error or 'failed'])})"
            if metric in self.pooled_metrics:
                have = self.partial_clips(method, metric)
                if have is not None and clip not in have:
                    return f"{method} has no {name} partial"
            elif r is None:
                return f"{method} has no {name} row"
        return None


def common_clips(run: Run, index: _Index) -> tuple[list[str], dict[str, str]]:
    """(clips every non-GT method scored on all its metrics, {left-out clip: reasons})."""
    compared = [m for m in run.methods if m not in GT_METHODS] or run.methods
    common, left = [], {}
    for clip in index.clips:
        reasons = [why for m in compared if (why := index.missing(m, clip))]
        if reasons:
            left[clip] = "; ".join(reasons)
        else:
            common.append(clip)
    return common, left


def clip_groups(run: Run, options: TableOptions) -> dict[str, str] | None:
    """{clip: group} from the manifest when `group` is asked for (a ConfigError when the suite records none)."""
    if not options.group:
        return None
    groups = {c: e.get("group") for c, e in (run.manifest.get("clips") or {}).items() if e.get("group")}
    if not groups:
        raise ConfigError("--group: this run's manifest records no clip groups (the lrs2 and cmlr suites do; runs made before "
                          "groups were recorded do not)")  # fmt: skip
    return groups


def units(clips: Sequence[str], groups: dict[str, str] | None) -> list[list[int]]:
    """The resampling units over `clips`: each clip alone, or the clips of one group together (indices)."""
    if groups is None:
        return [[i] for i in range(len(clips))]
    by: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by.setdefault(groups.get(c, c), []).append(i)
    return list(by.values())


def aggregate(run: Run, options: TableOptions = TableOptions()) -> Table:
    """Every cell of the run's table under `options`, ranked; paired comparisons when a baseline is set."""
    index = _Index(run)
    compared, left = common_clips(run, index) if options.clips == "common" else (None, {})
    table = Table(run, options, {}, compared, left)
    groups = clip_groups(run, options)
    for method in run.methods:
        for metric in run.metrics:
            if (method, metric) in index.present:
                table.cells[(method, metric)] = _cell(index, method, metric, compared, options, table.notes, groups)
    _rank(run, table)
    if options.baseline:
        from .compare import compare_with_baseline

        compare_with_baseline(table, index, options, groups)
    return table


def _too_few(n: int, o: TableOptions) -> str | None:
    unit = "clip groups" if o.group else "clips"
    return f"{n} {unit} < {o.min_clips}" if n < o.min_clips else None


def grouped_mean_interval(values: Sequence[float], parts: list[list[int]], level: float) -> stats.Interval:
    """The mean over clips with a cluster-robust t interval over groups (Cameron & Miller 2015): se^2 =
    G / (G - 1) sum_g (T_g - mean n_g)^2 / N^2, T_g a group's sum, t with G - 1 degrees of freedom."""
    x = np.asarray(values, dtype=np.float64)
    mean, n, g = float(x.mean()), len(x), len(parts)
    resid = np.array([x[p].sum() - mean * len(p) for p in parts])
    se = float(np.sqrt(g / (g - 1) * (resid**2).sum()) / n)
    half = stats.t_quantile(g, level) * se
    return stats.Interval(mean, float(x.std(ddof=1)), mean - half, mean + half)


def _cell(index: _Index, method: str, metric: str, compared: list[str] | None, o: TableOptions, notes: list[str], groups) -> Cell:
    name = metric_name(metric)
    rows = [r for c in index.clips if (r := index.by.get((c, method, metric))) is not None]
    failed = [r for r in rows if r.status == "failed"]
    if metric in index.pooled_metrics:
        return _pooled_cell(index, method, metric, compared, o, failed, notes, groups)
    keep = set(compared) if compared is not None else None
    ok = [r for r in rows if r.status == "ok" and (keep is None or r.clip in keep)]
    cell = Cell(method, metric, name, None, None, len(ok), len(failed), False, clips="own" if keep is None else "common")
    if not ok:
        cell.reason = short_reason([r.error or "failed" for r in failed]) if failed else "no clip in common" if rows else "no rows"
        return cell
    values = [r.value for r in ok]
    cell.mean = statistics.fmean(values)
    cell.std = statistics.stdev(values) if len(values) > 1 else None
    if o.intervals:
        parts = units([r.clip for r in ok], groups)
        cell.ci_reason = _too_few(len(parts), o)
        if cell.ci_reason is None:
            iv = grouped_mean_interval(values, parts, o.level) if groups else stats.mean_interval(values, o.level)
            cell.ci_low, cell.ci_high, cell.ci_method = iv.low, iv.high, "t"
    return cell


def _pooled_cell(index: _Index, method: str, metric: str, compared, o: TableOptions, failed: list[ResultRow], notes: list[str], groups) -> Cell:
    run = index.run
    row = index.pooled_rows[(method, metric)]
    have = index.partial_clips(method, metric)
    name = metric_name(metric)
    cell = Cell(method, metric, name, None, None, 0, len(failed), True, clips="own")
    if have is None:
        cell.n = len(index.clips) - len(failed)
        if row.status == "ok":
            cell.mean = row.value
            cell.ci_reason = "the run's partials are not readable" if o.intervals else None
        else:
            cell.reason = short_reason([r.error for r in failed if r.error] or [row.error or "failed"])
        if compared is not None and failed:
            notes.append(f"{method} {name}: pooled over its own clips (the run's partials are not readable)")
        return cell
    clips = [c for c in index.clips if c in have and (compared is None or c in compared)]
    cell.n, cell.clips = len(clips), "own" if compared is None else "common"
    if not clips:
        cell.reason = short_reason([r.error for r in failed if r.error] or ["no clip in common"])
        return cell
    try:
        same = row.status == "ok" and set(clips) == have
        cell.mean = row.value if same else run.pooled.value(method, metric, clips)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a cell says why instead of ending the report
        cell.reason = short_reason([str(exc)])
        return cell
    if o.intervals:
        parts = units(clips, groups)
        cell.ci_reason = _too_few(len(parts), o)
        if cell.ci_reason is None:
            drop = [set(b) for b in stats.blocks(parts)]
            try:
                iv = stats.jackknife_interval(
                    cell.mean, lambda i: run.pooled.value(method, metric, [c for j, c in enumerate(clips) if j not in drop[i]]), len(drop), o.level,
                    [len(b) for b in drop],
                )  # fmt: skip
                cell.ci_low, cell.ci_high, cell.ci_method = iv.low, iv.high, "jackknife"
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001
                cell.ci_reason = short_reason([str(exc)])
    return cell


def _rank(run: Run, table: Table) -> None:
    for metric in run.metrics:
        hib = run.higher_is_better(metric_name(metric))
        ranked = [c for (m, x), c in table.items() if x == metric and m not in GT_METHODS and c.mean is not None]
        if hib is None or not ranked:
            continue
        values = sorted({c.mean for c in ranked}, reverse=hib)
        for c in ranked:
            c.rank = values.index(c.mean) + 1
