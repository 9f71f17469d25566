"""Paired comparisons with a baseline: per metric, each other method on the clips both scored (the table's common
clips in `common` mode), Holm's correction over a stated family, and a direction-aware mark (stsa_bench.core.stats
has the tests and intervals)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stsa_bench.core import stats
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.registry import did_you_mean

from .aggregate import Cell, Table, TableOptions, _Index, _too_few, grouped_mean_interval, short_reason, units
from .runs import GT_METHODS


def compare_with_baseline(table: Table, index: _Index, o: TableOptions, groups: dict[str, str] | None) -> None:
    """Each non-GT method vs the baseline per metric; Holm within each family (`o.family`); marks by direction."""
    run = index.run
    if o.baseline not in run.methods:
        raise ConfigError(f"--baseline {o.baseline!r} has no rows{did_you_mean(o.baseline, run.methods)}")
    pairs: list[Cell] = []
    for metric in run.metrics:
        base = table.get((o.baseline, metric))
        if base is None or base.mean is None:
            continue
        for method in run.methods:
            cell = table.get((method, metric))
            if method not in GT_METHODS and method != o.baseline and cell is not None and cell.mean is not None:
                pairs.append(cell)
    family_of = {(c.method, c.metric): c.metric if o.family == "metric" else "table" for c in pairs}
    candidates: dict[str, int] = {}
    for cell in pairs:
        candidates[family_of[(cell.method, cell.metric)]] = candidates.get(family_of[(cell.method, cell.metric)], 0) + 1
    pooled = [c for c in pairs if c.metric in index.pooled_metrics]
    if pooled:
        worst = max(candidates[family_of[(c.method, c.metric)]] for c in pooled)
        table.pooled_draws = stats.draws_for(worst, o.alpha) if o.pooled_resamples is None else o.pooled_resamples
        if worst / (table.pooled_draws + 1) >= o.alpha:
            table.notes.append(f"Warning: with {table.pooled_draws} exchange draws the smallest p of a pooled test is "
                               f"1/{table.pooled_draws + 1}: after Holm over {worst} comparisons none can reach α = {o.alpha:g}.")  # fmt: skip
    done: dict[str, list[Cell]] = {}
    for cell in pairs:
        comp, clips, why = _compare(index, cell.method, cell.metric, table, o, groups)
        cell.vs = o.baseline
        if comp is None:
            cell.test_reason = why
            continue
        cell.diff, cell.diff_low, cell.diff_high, cell.p, cell.test = comp.diff, comp.low, comp.high, comp.p, comp.test
        cell.test_n, cell.tested_on, cell.draws = comp.n, clips, comp.draws
        done.setdefault(family_of[(cell.method, cell.metric)], []).append(cell)
    table.families = {name: [c.method if o.family == "metric" else f"{c.method}/{c.name}" for c in cells] for name, cells in done.items()}
    for cells in done.values():
        for cell, adjusted in zip(cells, stats.holm([c.p for c in cells])):
            cell.p_holm = adjusted
            cell.significant = adjusted < o.alpha
            if cell.significant:
                hib = run.higher_is_better(cell.name)
                cell.direction = "differs" if hib is None else "better" if (cell.diff > 0) == hib else "worse"


def _compare(index: _Index, method: str, metric: str, table: Table, o: TableOptions, groups) -> tuple[stats.Comparison | None, list[str], str | None]:
    """(the comparison or None, the clips it used, why there is none)."""
    run = index.run
    keep = set(table.compared) if table.compared is not None else set(index.clips)
    if metric in index.pooled_metrics:
        a, b = index.partial_clips(method, metric), index.partial_clips(o.baseline, metric)
        if a is None or b is None:
            return None, [], "the run's partials are not readable"
        clips = [c for c in index.clips if c in a and c in b and c in keep]
        parts = units(clips, groups)
        if (why := _too_few(len(parts), o)) is not None:
            return None, clips, why
        try:
            return _pooled(run.pooled, method, o.baseline, metric, clips, parts, table.pooled_draws, o), clips, None
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - the cell says why instead of ending the report
            return None, clips, short_reason([str(exc)])
    found = [(c, ra.value, rb.value) for c in index.clips if c in keep
             and (ra := index.by.get((c, method, metric))) is not None and (rb := index.by.get((c, o.baseline, metric))) is not None
             and ra.status == rb.status == "ok"]  # fmt: skip
    clips = [c for c, _, _ in found]
    parts = units(clips, groups)
    if (why := _too_few(len(parts), o)) is not None:
        return None, clips, why
    x = np.array([v for _, v, _ in found])
    y = np.array([v for _, _, v in found])
    if groups is None:
        return stats.paired_mean_test(x, y, o.test, o.resamples, o.seed, o.level), clips, None
    d = x - y
    iv = grouped_mean_interval(d, parts, o.level)
    sums = np.array([d[p].sum() for p in parts])
    used = 0
    if o.test == "permutation":
        p, used = stats.sign_flip_p(sums, o.resamples, o.seed)
    else:
        p = stats.ttest_p(sums) if o.test == "ttest" else stats.wilcoxon_p(sums)
    return stats.Comparison(iv.estimate, iv.low, iv.high, p, o.test, len(parts), used), clips, None


def _pooled(source, method: str, baseline: str, metric: str, clips: Sequence[str], parts: list[list[int]], draws: int, o: TableOptions):
    """value(method) - value(baseline) over `clips`, and the exchange test's p by unit (no interval: each method's
    value has its jackknife interval)."""
    diff = source.value(method, metric, clips) - source.value(baseline, metric, clips)
    owner = np.zeros(len(clips), dtype=int)
    for u, part in enumerate(parts):
        owner[part] = u
    engine = source.exchange(method, baseline, metric, clips)

    def swapped(mask: np.ndarray) -> float:
        return engine(mask[owner])

    p, used = stats.exchange_p(swapped(np.zeros(len(parts), dtype=bool)), swapped, len(parts), draws, o.seed)
    return stats.Comparison(diff, None, None, p, "exchange", len(parts), used)


def family_line(table: Table) -> str:
    """Holm's family in one sentence."""
    if not table.families:
        return ""
    if list(table.families) == ["table"]:
        return f"Holm's family: the table's {len(table.families['table'])} tested comparisons with {table.options.baseline}."
    sizes = "/".join(map(str, sorted({len(v) for v in table.families.values()})))
    n = len(table.families)
    return f"Holm's family: per metric ({n} famil{'y' if n == 1 else 'ies'}), the {sizes} methods tested against {table.options.baseline}."

