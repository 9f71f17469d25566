"""Paper-ready tables from result rows only: the STSA paper's Table I / II layout.

Rows = methods (GT last); columns grouped as Visual Quality (PSNR, SSIM, FID, LPIPS), Lip-Sync
(LipLMD, LSE-D, LSE-C), Stability (DME); best value bold, second underlined (GT excluded from
the ranking); a cell that could not be computed shows why.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import ResultRow, metric_directions, metric_groups, metric_name, read_rows

GT_METHODS = ("gt",)
GROUPS = (
    ("Visual Quality", ("psnr", "ssim", "fid", "lpips")),
    ("Lip-Sync", ("lipmd", "lse_d", "lse_c")),
    ("Stability", ("dme",)),
)
LABELS = {
    "psnr": "PSNR", "ssim": "SSIM", "ssim_skimage": "SSIM (skimage)", "fid": "FID", "lpips": "LPIPS",
    "lpips_vgg": "LPIPS (VGG)", "lipmd": "LipLMD", "lipmd_l2": "LipLMD (L2)", "lipmd_iod": "LipLMD (IOD)",
    "lse_d": "LSE-D", "lse_c": "LSE-C", "dme": "DME", "dme_dis": "DME (DIS)",
}  # fmt: skip
DECIMALS = {"psnr": 2, "fid": 2, "lipmd": 5, "lipmd_l2": 5, "lipmd_iod": 4}
DEFAULT_DECIMALS = 4



def base_name(name: str) -> str:
    """The paper column a variant belongs to (ssim_skimage -> ssim, dme_dis -> dme, ...)."""
    return name if name in ("lse_c", "lse_d") else name.split("_", 1)[0]


def fmt(name: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{DECIMALS.get(name, DEFAULT_DECIMALS)}f}"


@dataclass
class Cell:
    """One method x metric: mean over clips (or the pooled value), spread, counts, or why there is none."""

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


@dataclass
class Run:
    """A results directory as the report sees it: rows plus the run's provenance files."""

    path: Path
    rows: list[ResultRow]
    info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Run":
        path = Path(path)
        rows = read_rows(path / "results.jsonl")
        if not rows:
            raise FileNotFoundError(f"{path / 'results.jsonl'}: no result rows")
        info = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
        manifest = json.loads((path / "manifest.json").read_text()) if (path / "manifest.json").is_file() else {}
        return cls(path, rows, info, manifest)

    @property
    def methods(self) -> list[str]:
        ms = list(dict.fromkeys(r.method for r in self.rows))
        return [m for m in ms if m not in GT_METHODS] + [m for m in ms if m in GT_METHODS]

    @property
    def metrics(self) -> list[str]:
        """Metric ids in the paper's column order, variants after their base column."""
        ids = list(dict.fromkeys(r.metric for r in self.rows))
        order = [n for _, names in GROUPS for n in names]

        def key(metric_id: str):
            name = metric_name(metric_id)
            base = base_name(name)
            return (order.index(base) if base in order else len(order), name != base, name)

        return sorted(ids, key=key)

    @cached_property
    def directions(self) -> dict[str, bool]:
        return metric_directions(self.rows)

    def higher_is_better(self, name: str) -> bool | None:
        """The metric's direction as recorded in the rows; None for rows that do not record it."""
        return self.directions.get(name)

    def group(self, metric_id: str) -> str:
        """The display group: the paper's column group, else the group recorded in the rows."""
        name = metric_name(metric_id)
        paper = next((g for g, names in GROUPS if base_name(name) in names), None)
        return paper or metric_groups(self.rows).get(name) or "Other"

    @property
    def clips(self) -> list[str]:
        return list(dict.fromkeys(r.clip for r in self.rows if r.clip != POOLED))


def short_reason(errors: list[str]) -> str:
    """The most common failure, shortened for a table cell."""
    top = max(set(errors), key=errors.count)
    if "weights missing" in top:
        return "weights missing"
    if "no such file" in top or "missing (clip" in top:
        return "input missing"
    return top.split(": ", 1)[-1][:40]


def cells(run: Run) -> dict[tuple[str, str], Cell]:
    """Aggregate rows into cells and rank each column (1 = best, GT excluded)."""
    groups: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for r in run.rows:
        groups[(r.method, r.metric)].append(r)
    out: dict[tuple[str, str], Cell] = {}
    for (method, metric), rows in groups.items():
        name = metric_name(metric)
        pooled_rows = [r for r in rows if r.clip == POOLED]
        per_clip = [r for r in rows if r.clip != POOLED]
        failed = [r for r in per_clip if r.status == "failed"]
        ok = [r.value for r in per_clip if r.status == "ok"]
        if pooled_rows:
            p = pooled_rows[0]
            value = p.value if p.status == "ok" else None
            cell = Cell(method, metric, name, value, None, len(run.clips) - len(failed), len(failed), True)
            if value is None:
                cell.reason = short_reason([r.error for r in failed] or [p.error or "failed"])
        else:
            mean = statistics.fmean(ok) if ok else None
            std = statistics.pstdev(ok) if len(ok) > 1 else (0.0 if ok else None)
            cell = Cell(method, metric, name, mean, std, len(ok), len(failed), False)
            if mean is None:
                cell.reason = short_reason([r.error or "failed" for r in failed]) if failed else "no rows"
        out[(method, metric)] = cell
    for metric in run.metrics:
        hib = run.higher_is_better(metric_name(metric))
        ranked = [c for (m, x), c in out.items() if x == metric and m not in GT_METHODS and c.mean is not None]
        if hib is None or not ranked:
            continue
        values = sorted({c.mean for c in ranked}, reverse=hib)
        for c in ranked:
            c.rank = values.index(c.mean) + 1
    return out


def _label(run: Run, metric: str) -> str:
    name = metric_name(metric)
    hib = run.higher_is_better(name)
    arrow = "" if hib is None else ("↑" if hib else "↓")
    return f"{LABELS.get(name, name)}{arrow}"


def method_counts(run: Run, table: dict, method: str) -> tuple[int, int]:
    """(clips with rows, clips with at least one failed row) of one method."""
    ms = [table[(method, x)] for x in run.metrics if (method, x) in table]
    clips = {r.clip for r in run.rows if r.method == method and r.clip != POOLED}
    failed = {r.clip for r in run.rows if r.method == method and r.clip != POOLED and r.status == "failed"}
    return (len(clips) if clips else max((c.n for c in ms), default=0)), len(failed)


def markdown(run: Run) -> str:
    """GitHub Markdown: best **bold**, second <ins>underlined</ins>, failed cells say why."""
    table = cells(run)
    head = ["Method"] + [_label(run, m) for m in run.metrics] + ["n", "n_failed"]
    lines = [
        "Columns: " + " · ".join(f"{g}: {', '.join(LABELS[n] for n in names)}" for g, names in GROUPS) + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for method in run.methods:
        row = [method]
        for metric in run.metrics:
            c = table.get((method, metric))
            if c is None:
                row.append("")
                continue
            text = fmt(c.name, c.mean) if c.mean is not None else f"— ({c.reason})"
            if c.rank == 1:
                text = f"**{text}**"
            elif c.rank == 2:
                text = f"<ins>{text}</ins>"
            if c.n_failed and c.mean is not None:
                text += f" ({c.n_failed} failed)"
            row.append(text)
        n, n_failed = method_counts(run, table, method)
        row += [str(n), str(n_failed)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        s = s.replace(a, b)
    return s


def latex(run: Run, caption: str = "Quantitative results.", label: str = "tab:results") -> str:
    """A booktabs table (needs \\usepackage{booktabs}); best \\textbf, second \\underline."""
    table = cells(run)
    metrics = run.metrics
    spans: list[tuple[str, int]] = []
    for metric in metrics:
        group = run.group(metric)
        if spans and spans[-1][0] == group:
            spans[-1] = (group, spans[-1][1] + 1)
        else:
            spans.append((group, 1))
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$", None: ""}
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * len(metrics) + "cc}",
        r"\toprule",
        " & ".join([""] + [rf"\multicolumn{{{n}}}{{c}}{{{_tex_escape(g)}}}" for g, n in spans] + ["", ""]) + r" \\",
    ]
    col, rules = 2, []
    for _, n in spans:
        rules.append(rf"\cmidrule(lr){{{col}-{col + n - 1}}}")
        col += n
    out.append(" ".join(rules))
    head = ["Method"] + [_tex_escape(LABELS.get(metric_name(m), metric_name(m))) + arrows[run.higher_is_better(metric_name(m))] for m in metrics]
    out.append(" & ".join(head + ["$n$", "failed"]) + r" \\")
    out.append(r"\midrule")
    for method in run.methods:
        if method in GT_METHODS and len(run.methods) > 1:
            out.append(r"\midrule")
        row = [_tex_escape("GT" if method == "gt" else method)]
        for metric in metrics:
            c = table.get((method, metric))
            if c is None or c.mean is None:
                row.append(r"\textit{" + _tex_escape(c.reason if c else "") + "}" if c else "")
                continue
            text = fmt(c.name, c.mean)
            row.append(rf"\textbf{{{text}}}" if c.rank == 1 else rf"\underline{{{text}}}" if c.rank == 2 else text)
        n, n_failed = method_counts(run, table, method)
        out.append(" & ".join(row + [str(n), str(n_failed)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def tidy(run: Run) -> list[dict]:
    """One record per method x metric: mean, std, n, n_failed, pooled, reason."""
    table = cells(run)
    records = []
    for method in run.methods:
        for metric in run.metrics:
            c = table.get((method, metric))
            if c is not None:
                d = asdict(c)
                d.pop("rank")
                records.append({"suite": run.rows[0].suite, **d})
    return records


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def per_clip_markdown(run: Run) -> str:
    """One table per per-clip metric: rows = clips, columns = methods; failed cells say 'failed'."""
    values = {(r.clip, r.method, r.metric): r for r in run.rows if r.clip != POOLED}
    parts = []
    for metric in run.metrics:
        if not any(k[2] == metric for k in values):
            continue
        name = metric_name(metric)
        parts += [f"#### {_label(run, metric)} per clip", "", "| clip | " + " | ".join(run.methods) + " |", "|:---|" + "---:|" * len(run.methods)]
        for clip in run.clips:
            cols = []
            for method in run.methods:
                r = values.get((clip, method, metric))
                cols.append("" if r is None else fmt(name, r.value) if r.status == "ok" else "failed")
            parts.append(f"| {clip} | " + " | ".join(cols) + " |")
        parts.append("")
    return "\n".join(parts)


def load_reference(name_or_path: str) -> dict:
    """Published numbers: configs/reference/<name>.yaml or a YAML path ({name, source, values: {method: {metric: v}}})."""
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR

    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / "reference" / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / "reference").glob("*.yaml"))
        raise FileNotFoundError(f"no reference {name_or_path!r} (known: {', '.join(known)}, or a YAML path)")
    return OmegaConf.to_container(OmegaConf.load(path))


def comparison_markdown(run: Run, reference: dict) -> str:
    """Ours vs the published value, with the difference, for every method x paper column both have."""
    table = cells(run)
    lines = [
        f"Reference: {reference.get('source', reference.get('name'))}",
        "",
        "| method | metric | ours | reference | ours − reference |",
        "|:---|:---|---:|---:|---:|",
    ]
    for method in run.methods:
        ref = reference["values"].get(method, {})
        for metric in run.metrics:
            name = metric_name(metric)
            if name not in ref or (method, metric) not in table:
                continue
            c = table[(method, metric)]
            diff = fmt(name, c.mean - ref[name]) if c.mean is not None else "—"
            ours = fmt(name, c.mean) if c.mean is not None else f"— ({c.reason})"
            lines.append(f"| {method} | {LABELS.get(name, name)} | {ours} | {fmt(name, ref[name])} | {diff} |")
    return "\n".join(lines) + "\n"


def provenance(run: Run) -> dict:
    """Harness version and git sha, config hash, suite manifest hash, weights sha256 per metric and per method, dates."""
    import datetime as _dt

    weights, methods = defaultdict(set), defaultdict(set)
    for r in run.rows:
        if r.weights_sha:
            weights[metric_name(r.metric)].add(r.weights_sha)
        if r.method_weights_sha:
            methods[r.method].add(r.method_weights_sha)
    return {
        "suite": run.rows[0].suite,
        "harness_version": sorted({r.harness_version for r in run.rows}),
        "git_sha": sorted({r.git_sha for r in run.rows}),
        "config_hash": sorted({r.config_hash for r in run.rows}),
        "suite_manifest_hash": run.manifest.get("manifest_hash"),
        "weights_sha256": {k: sorted(v) for k, v in sorted(weights.items())},
        "method_weights_sha256": {k: sorted(v) for k, v in sorted(methods.items())},
        "metric_ids": run.metrics,
        "run_created": run.info.get("created"),
        "report_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def provenance_markdown(p: dict) -> str:
    lines = ["Provenance:", ""]
    for key, value in p.items():
        if isinstance(value, dict):
            value = "; ".join(f"{k}: {', '.join(x[:16] for x in v)}" for k, v in value.items()) or "none"
        elif isinstance(value, list):
            value = ", ".join(f"`{v}`" for v in value)
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"
