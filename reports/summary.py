"""The end-of-run Markdown summary: rows = methods, columns = metrics, mean over clips."""

from __future__ import annotations

from collections import defaultdict

from stsa_bench.results import POOLED_CLIP as POOLED
from stsa_bench.results import ResultRow, metric_name




def summary_markdown(rows: list[ResultRow], directions: dict[str, bool] | None = None, max_failures: int = 30) -> str:
    """Mean of ok values per (method, metric); `n` clips, and failures counted in each cell and listed below."""
    directions = directions or {}
    methods = list(dict.fromkeys(r.method for r in rows))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    cells: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        cells[(r.method, r.metric)].append(r)

    def arrow(m: str) -> str:
        hib = directions.get(metric_name(m))
        return "" if hib is None else (" ↑" if hib else " ↓")

    head = ["method"] + [metric_name(m) + arrow(m) for m in metrics] + ["n", "n_failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for method in methods:
        out = [method]
        clips, failed_clips = set(), set()
        for metric in metrics:
            group = cells.get((method, metric), [])
            pooled = [r for r in group if r.clip == POOLED]
            per_clip = [r for r in group if r.clip != POOLED]
            ok = [r.value for r in per_clip if r.status == "ok"]
            n_fail = sum(r.status == "failed" for r in per_clip)
            clips.update(r.clip for r in per_clip)
            failed_clips.update(r.clip for r in per_clip if r.status == "failed")
            if pooled:
                p = pooled[0]
                cell = f"{p.value:.4f}" if p.status == "ok" else "failed"
                if n_fail:
                    cell += f" (pooled; {n_fail} clips failed)"
            else:
                cell = f"{sum(ok) / len(ok):.4f}" if ok else "—"
                if n_fail:
                    cell += f" ({len(ok)} ok, {n_fail} failed)"
            out.append(cell)
        out += [str(len(clips)), str(len(failed_clips))]
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
            clips = list(dict.fromkeys(r.clip for r in group))
            which = list(dict.fromkeys(f"{r.method}/{metric_name(r.metric)}" for r in group))
            more = lambda xs: ", ".join(xs[:4]) + (f", … ({len(xs)})" if len(xs) > 4 else "")  # noqa: E731
            lines.append(f"- {error} [{len(group)} rows; clips: {more(clips)}; {more(which)}]")
        if len(groups) > max_failures:
            lines.append(f"- … and {len(groups) - max_failures} more reasons in results.jsonl")
    return "\n".join(lines) + "\n"
