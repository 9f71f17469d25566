"""The end-of-run Markdown summary: rows = methods, columns = metrics, mean over clips."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from stsa_bench.core.results import ResultRow, metric_name


def summary_markdown(rows: list[ResultRow], directions: dict[str, bool] | None = None, max_failures: int = 30) -> str:
    """Mean of ok values per (method, metric) (the pooled value for pooled metrics), each method on its own clips;
    `n` clips, and failures counted in each cell and listed below."""
    from .aggregate import TableOptions, aggregate
    from .escape import md_cell, md_text
    from .tables import Run, method_counts

    directions = directions or {}
    methods = list(dict.fromkeys(r.method for r in rows))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    run = Run(Path("."), rows)
    table = aggregate(run, TableOptions(clips="own", intervals=False))

    def arrow(m: str) -> str:
        hib = directions.get(metric_name(m))
        return "" if hib is None else (" ↑" if hib else " ↓")

    def cell(c) -> str:
        if c is None:
            return "—"
        if c.pooled:
            text = f"{c.mean:.4f}" if c.mean is not None else "failed"
            return text + (f" (pooled; {c.n_failed} clips failed)" if c.n_failed else "")
        text = f"{c.mean:.4f}" if c.mean is not None else "—"
        return text + (f" ({c.n} ok, {c.n_failed} failed)" if c.n_failed else "")

    head = ["method"] + [metric_name(m) + arrow(m) for m in metrics] + ["n", "n_failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for method in methods:
        n, n_failed = method_counts(table, method)
        out = [md_cell(method)] + [cell(table.get((method, metric))) for metric in metrics] + [str(n), str(n_failed)]
        lines.append("| " + " | ".join(out) + " |")
    lines.append("")
    lines.append("Metric protocols: " + "; ".join(f"`{m}`" for m in metrics))
    failures = [r for r in rows if r.status == "failed"]
    if failures:
        groups: dict[str, list[ResultRow]] = defaultdict(list)
        for r in failures:
            groups[r.error or ""].append(r)
        lines += ["", f"**{len(failures)} failed rows**, {len(groups)} distinct reasons:", ""]
        for error, group in list(groups.items())[:max_failures]:
            clips = list(dict.fromkeys(md_text(r.clip) for r in group))
            which = list(dict.fromkeys(f"{md_text(r.method)}/{metric_name(r.metric)}" for r in group))
            def more(xs):
                return ", ".join(xs[:4]) + (f", … ({len(xs)})" if len(xs) > 4 else "")
            lines.append(f"- {md_text(error)} [{len(group)} rows; clips: {more(clips)}; {more(which)}]")
        if len(groups) > max_failures:
            lines.append(f"- … and {len(groups) - max_failures} more reasons in results.jsonl")
    return "\n".join(lines) + "\n"
