"""From rows to table cells: which clips each method is compared on, mean or pooled value, spread,
a bootstrap interval, the rank in its column, and (with a baseline) a paired test against it.

Fair by default: methods are compared on the clips that every compared method scored (GT aside); the
clips left out are listed with the reason. Pooled metrics are recomputed on those clips from the run's
saved per-clip partials (`Run.pooled`).
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


@dataclass(frozen=True)
class TableOptions:
    """How a table aggregates clips; the CLI's `report` flags map onto these fields."""

    clips: str = "common"
    """common: every method on the clips all compared methods scored (GT aside) | own: each method's own clips."""
    resamples: int = 2000
    """Bootstrap draws for per-clip metrics (intervals and the paired test); 0 = no intervals."""
    pooled_resamples: int = 25
    """Bootstrap draws for pooled metrics: each draw recomputes the metric (a 40-clip FID draw takes 2.2 s on the 2-core dev CPU: 25 draws, 55 s)."""
    seed: int = 0
    level: float = stats.LEVEL
    baseline: str | None = None
    """Compare every other method with this one, per metric, on the clips both scored."""
    test: str = "bootstrap"
    """bootstrap: shifted paired bootstrap of the mean difference | wilcoxon: signed-rank (per-clip metrics)."""
    alpha: float = 0.05
    """Significance level after Holm's correction over all comparisons of the table."""
    min_clips: int = 10
    """No paired test on fewer clips in common (the bootstrap and the signed-rank test say little on a handful)."""

    def __post_init__(self) -> None:
        if self.clips not in CLIP_MODES:
            raise ConfigError(f"--clips {self.clips!r}{did_you_mean(self.clips, list(CLIP_MODES))}")
        if self.test not in stats.TESTS:
            raise ConfigError(f"--test {self.test!r}{did_you_mean(self.test, list(stats.TESTS))}")
        if self.resamples < 0 or self.pooled_resamples < 0:
            raise ConfigError("resample counts must be >= 0")


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
    clips: str = "own"
    """Which clips the value is over: `common` (the table's common clips) or `own` (this method's)."""
    vs: str | None = None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    p: float | None = None
    p_holm: float | None = None
    test: str | None = None
    significant: bool | None = None


@dataclass
class Table:
    run: Run
    options: TableOptions
    cells: dict[tuple[str, str], Cell]
    compared: list[str] | None = None
    """The common clips (clips=common), else None."""
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
    for clip in run.clips:
        reasons = [why for m in compared if (why := index.missing(m, clip))]
        if reasons:
            left[clip] = "; ".join(reasons)
        else:
            common.append(clip)
    return common, left


def aggregate(run: Run, options: TableOptions = TableOptions()) -> Table:
    """Every cell of the run's table under `options`, ranked; paired comparisons when a baseline is set."""
    index = _Index(run)
    compared, left = common_clips(run, index) if options.clips == "common" else (None, {})
    table = Table(run, options, {}, compared, left)
    for method in run.methods:
        for metric in run.metrics:
            if (method, metric) in index.present:
                table.cells[(method, metric)] = _cell(index, method, metric, compared, options, table.notes)
    _rank(run, table)
    if options.baseline:
        compare_with_baseline(table, index, options)
    return table


def _cell(index: _Index, method: str, metric: str, compared: list[str] | None, o: TableOptions, notes: list[str]) -> Cell:
    run = index.run
    name = metric_name(metric)
    rows = [r for c in run.clips if (r := index.by.get((c, method, metric))) is not None]
    failed = [r for r in rows if r.status == "failed"]
    if metric in index.pooled_metrics:
        return _pooled_cell(index, method, metric, compared, o, failed, notes)
    keep = set(compared) if compared is not None else None
    ok = [r.value for r in rows if r.status == "ok" and (keep is None or r.clip in keep)]
    cell = Cell(method, metric, name, None, None, len(ok), len(failed), False, clips="own" if keep is None else "common")
    if not ok:
        cell.reason = short_reason([r.error or "failed" for r in failed]) if failed else "no clip in common" if rows else "no rows"
        return cell
    cell.mean = statistics.fmean(ok)
    cell.std = statistics.stdev(ok) if len(ok) > 1 else None
    if o.resamples and len(ok) > 1:
        iv = stats.mean_interval(ok, o.resamples, o.seed, o.level)
        cell.ci_low, cell.ci_high = iv.low, iv.high
    return cell


def _pooled_cell(index: _Index, method: str, metric: str, compared, o: TableOptions, failed: list[ResultRow], notes: list[str]) -> Cell:
    run = index.run
    row = index.pooled_rows[(method, metric)]
    have = index.partial_clips(method, metric)
    name = metric_name(metric)
    cell = Cell(method, metric, name, None, None, 0, len(failed), True, clips="own")
    if have is None:
        cell.n = len(run.clips) - len(failed)
        if row.status == "ok":
            cell.mean = row.value
        else:
            cell.reason = short_reason([r.error for r in failed if r.error] or [row.error or "failed"])
        if compared is not None and failed:
            notes.append(f"{method} {name}: pooled over its own clips (the run's partials are not readable)")
        return cell
    clips = [c for c in run.clips if c in have and (compared is None or c in compared)]
    cell.n, cell.clips = len(clips), "own" if compared is None else "common"
    if not clips:
        cell.reason = short_reason([r.error for r in failed if r.error] or ["no clip in common"])
        return cell
    try:
        same = row.status == "ok" and set(clips) == have
        cell.mean = row.value if same else run.pooled.value(method, metric, clips)
        if o.pooled_resamples and len(clips) > 1:
            iv = stats.statistic_interval(
                cell.mean, lambda idx: run.pooled.value(method, metric, [clips[i] for i in idx]), len(clips), o.pooled_resamples, o.seed, o.level
            )
            cell.ci_low, cell.ci_high = iv.low, iv.high
    except Exception as exc:  # noqa: BLE001 - a cell says why instead of ending the report
        cell.mean, cell.reason = None, short_reason([str(exc)])
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


def compare_with_baseline(table: Table, index: _Index, o: TableOptions) -> None:
    """Each non-GT method vs the baseline per metric on the clips both scored; Holm over all comparisons."""
    run = index.run
    if o.baseline not in run.methods:
        raise ConfigError(f"--baseline {o.baseline!r} has no rows{did_you_mean(o.baseline, run.methods)}")
    done: list[Cell] = []
    too_few = 0
    for metric in run.metrics:
        base = table.get((o.baseline, metric))
        if base is None or base.mean is None:
            continue
        for method in run.methods:
            cell = table.get((method, metric))
            if method in GT_METHODS or method == o.baseline or cell is None or cell.mean is None:
                continue
            comp = _compare(index, method, o.baseline, metric, table.compared, o)
            if comp is None:
                continue
            if comp.n < o.min_clips:
                too_few += 1
                continue
            cell.vs, cell.diff, cell.diff_low, cell.diff_high, cell.p, cell.test = (
                o.baseline, comp.diff, comp.low, comp.high, comp.p, comp.test
            )
            done.append(cell)
    if too_few:
        table.notes.append(f"{too_few} comparisons with {o.baseline} not tested: fewer than {o.min_clips} clips in common.")
    for cell, adjusted in zip(done, stats.holm([c.p for c in done])):
        cell.p_holm = adjusted
        cell.significant = adjusted < o.alpha


def _compare(index: _Index, method: str, baseline: str, metric: str, compared: Sequence[str] | None, o: TableOptions):
    run = index.run
    keep = set(compared) if compared is not None else set(run.clips)
    if metric in index.pooled_metrics:
        a, b = index.partial_clips(method, metric), index.partial_clips(baseline, metric)
        if a is None or b is None or not o.pooled_resamples:
            return None
        clips = [c for c in run.clips if c in a and c in b and c in keep]
        if len(clips) < 2:
            return None
        value = run.pooled.value

        def diff(idx: np.ndarray) -> float:
            chosen = [clips[i] for i in idx]
            return value(method, metric, chosen) - value(baseline, metric, chosen)

        observed = value(method, metric, clips) - value(baseline, metric, clips)
        return stats.paired_statistic_test(observed, diff, len(clips), o.pooled_resamples, o.seed, o.level)
    pairs = [
        (ra.value, rb.value)
        for c in run.clips
        if c in keep
        and (ra := index.by.get((c, method, metric))) is not None
        and (rb := index.by.get((c, baseline, metric))) is not None
        and ra.status == rb.status == "ok"
    ]
    if len(pairs) < 2 or not o.resamples:
        return None
    x, y = zip(*pairs)
    return stats.paired_mean_test(x, y, o.resamples, o.seed, o.test, o.level)
