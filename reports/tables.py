"""Paper-ready tables from result rows only: the STSA paper's Table I / II layout.

Rows = methods (GT last); columns grouped as Visual Quality (PSNR, SSIM, FID, LPIPS), Lip-Sync
(LipLMD, LSE-D, LSE-C), Stability (DME); best value bold, second underlined (GT excluded from
the ranking); a cell that could not be computed shows why.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from stsa_bench.core import stats
from stsa_bench.core.environment import summary
from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import metric_name

from .aggregate import Cell, Table, TableOptions, aggregate
from .escape import csv_safe, md_cell, md_code, md_text, tex_escape
from .runs import GROUPS, GT_METHODS, Run

LABELS = {
    "psnr": "PSNR", "ssim": "SSIM", "ssim_skimage": "SSIM (skimage)", "fid": "FID", "lpips": "LPIPS",
    "lpips_vgg": "LPIPS (VGG)", "lipmd": "LipLMD", "lipmd_l2": "LipLMD (L2)", "lipmd_iod": "LipLMD (IOD)",
    "lse_d": "LSE-D", "lse_c": "LSE-C", "dme": "DME", "dme_dis": "DME (DIS)", "fvd": "FVD",
    "fvd_styleganv": "FVD (StyleGAN-V)", "csim": "CSIM", "csim_fullframe": "CSIM (full frame)",
}  # fmt: skip
DECIMALS = {"psnr": 2, "fid": 2, "lipmd": 5, "lipmd_l2": 5, "lipmd_iod": 4}
DEFAULT_DECIMALS = 4
MARKS = {"better": "†", "worse": "‡", "differs": "*"}
"""A significant difference from the baseline, by direction (the metric's higher_is_better)."""
TEX_MARKS = {"better": r"$^\dagger$", "worse": r"$^\ddagger$", "differs": r"$^*$"}

__all__ = ["Cell", "Run", "Table", "TableOptions", "aggregate"]


def fmt(name: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{DECIMALS.get(name, DEFAULT_DECIMALS)}f}"


def _label(run: Run, metric: str) -> str:
    name = metric_name(metric)
    hib = run.higher_is_better(name)
    arrow = "" if hib is None else ("↑" if hib else "↓")
    return f"{LABELS.get(name, name)}{arrow}"


def method_counts(table: Table, method: str) -> tuple[int, int]:
    """(clips the method's cells are over, clips with at least one failed row of the method)."""
    run = table.run
    failed = {r.clip for r in run.rows if r.method == method and r.clip != POOLED and r.status == "failed"}
    if table.compared is not None:
        return len(table.compared), len(failed)
    clips = {r.clip for r in run.rows if r.method == method and r.clip != POOLED}
    ns = [c.n for (m, _), c in table.items() if m == method]
    return (len(clips) if clips else max(ns, default=0)), len(failed)


def _value_text(c: Cell, bold: tuple[str, str], under: tuple[str, str], spread: Callable[[str], str], marks: dict[str, str]) -> str:
    text = fmt(c.name, c.mean)
    if c.rank == 1:
        text = bold[0] + text + bold[1]
    elif c.rank == 2:
        text = under[0] + text + under[1]
    if c.std is not None:
        text += spread(fmt(c.name, c.std))
    if c.direction:
        text += marks[c.direction]
    return text


def skipped_line(run: Run) -> str:
    if not run.skipped:
        return ""
    return f"**{len(run.skipped)} lines of results.jsonl are not rows and were skipped** (--skip-bad-rows): " + "; ".join(run.skipped[:5])


def scope_line(table: Table) -> str:
    """Which clips the cells are over, in one sentence."""
    run = table.run
    if table.compared is None:
        return "Each method on its own clips (n per cell)."
    n_all = len(run.clips)
    line = f"Methods compared on the {len(table.compared)} clips of {n_all} that every compared method scored (GT aside)"
    return line + (f"; {len(table.left_out)} left out (listed below)." if table.left_out else ".")


def interval_line(table: Table) -> str:
    o = table.options
    if not o.intervals:
        return ""
    unit = "clip groups (cluster-robust, groups from the suite)" if o.group else "clips"
    return (
        f"Values: mean ± standard deviation over clips (pooled metrics: one value over the frames of all clips). "
        f"{o.level:.0%} intervals: Student's t over {unit} for per-clip metrics; jackknife for pooled metrics (each of at most "
        f"{stats.JACKKNIFE_BLOCKS} blocks of {'groups' if o.group else 'clips'} left out in turn, the metric recomputed from the partials); "
        f"none over fewer than {o.min_clips} {unit.split(' (')[0]}."
    )


TEST_TEXT = {
    "permutation": "sign-flip permutation test of the mean difference (exact up to {exact} {unit}, else {draws} Monte Carlo sign flips, seed {seed})",
    "ttest": "paired t-test of the mean difference",
    "wilcoxon": "Wilcoxon signed-rank test of the differences",
}


def significance_line(table: Table) -> str:
    """The legend of the marks, the tests, their draws and seed, Holm's family, and the clips every test used."""
    from .compare import family_line

    o = table.options
    if not o.baseline:
        return ""
    unit = "clip groups" if o.group else "clips"
    tested = [c for _, c in table.items() if c.p is not None]
    per_clip = TEST_TEXT[o.test].format(exact=stats.EXACT_UP_TO, unit=unit, draws=o.resamples, seed=o.seed)
    per_clip += " on the groups' summed differences" if o.group else ""
    pooled = (f"; pooled metrics: exchange permutation of the two methods' per-{unit[:-1]} partials ({table.pooled_draws} draws, "
              f"every exchange enumerated when they are fewer, seed {o.seed}; no interval of the difference)" if table.pooled_draws else "")  # fmt: skip
    if table.compared is not None:
        clips = f"Every test is over the table's {len(table.compared)} common clips"
        sizes = sorted({len(c.tested_on) for c in tested if c.tested_on is not None and len(c.tested_on) != len(table.compared)})
        clips += f" ({', '.join(map(str, sizes))} for tests missing a partial)" if sizes else ""
    else:
        clips = "Each test is over the clips both methods scored (n in the comparison table)"
    return (f"{MARKS['better']} better, {MARKS['worse']} worse than {o.baseline} ({MARKS['differs']}: differs, direction unknown) at "
            f"α = {o.alpha:g} after Holm's correction. {family_line(table)} Per-clip metrics: {per_clip}{pooled}. {clips}; "
            f"none over fewer than {o.min_clips} {unit}.")  # fmt: skip


def markdown(table: Table) -> str:
    """GitHub Markdown: best **bold**, second <ins>underlined</ins>, ± std, † significant vs the baseline,
    failed cells say why; then the intervals, the comparisons and the clips left out."""
    run = table.run
    own = table.compared is None
    head = ["Method"] + [_label(run, m) for m in run.metrics] + ["n", "n_failed"]
    lines = [
        "Columns: " + " · ".join(f"{g}: {', '.join(LABELS[n] for n in names)}" for g, names in GROUPS) + ".",
        "",
        *([skipped_line(run), ""] if run.skipped else []),
        scope_line(table),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for method in run.methods:
        row = [md_cell(method)]
        for metric in run.metrics:
            c = table.get((method, metric))
            if c is None:
                row.append("")
                continue
            if c.mean is None:
                row.append(f"— ({c.reason})")
                continue
            text = _value_text(c, ("**", "**"), ("<ins>", "</ins>"), lambda s: f" ± {s}", MARKS)
            if own and c.n_failed:
                text += f" ({c.n_failed} failed)"
            if own:
                text += f" (n={c.n})"
            row.append(text)
        n, n_failed = method_counts(table, method)
        lines.append("| " + " | ".join(row + [str(n), str(n_failed)]) + " |")
    extra = [x for x in (interval_line(table), significance_line(table)) if x] + table.notes
    lines += [""] + extra if extra else []
    parts = ["\n".join(lines) + "\n"]
    if any(c.ci_low is not None or c.ci_reason for _, c in table.items()):
        parts.append(intervals_markdown(table))
    if table.options.baseline:
        parts.append(comparisons_markdown(table))
    if table.left_out:
        parts.append(left_out_markdown(table))
    return "\n".join(parts)


def intervals_markdown(table: Table) -> str:
    run = table.run
    lines = [f"#### {table.options.level:.0%} confidence intervals", "", "| Method | " + " | ".join(_label(run, m) for m in run.metrics) + " |",
             "|:---|" + "---:|" * len(run.metrics)]  # fmt: skip
    for method in run.methods:
        cols = []
        for metric in run.metrics:
            cols.append(interval_text(table.get((method, metric))))
        lines.append(f"| {md_cell(method)} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def interval_text(c: Cell | None) -> str:
    """A cell's interval, or why it has none."""
    if c is None or c.mean is None:
        return ""
    if c.ci_low is not None:
        return f"[{fmt(c.name, c.ci_low)}, {fmt(c.name, c.ci_high)}]"
    return f"— ({c.ci_reason})" if c.ci_reason else ""


def comparisons_markdown(table: Table) -> str:
    run, base = table.run, table.options.baseline
    lines = [f"#### Paired comparison with {base}", "", "method − baseline: difference [interval], Holm-adjusted p, clips (or groups) tested.", "",
             "| Method | " + " | ".join(_label(run, m) for m in run.metrics) + " |", "|:---|" + "---:|" * len(run.metrics)]  # fmt: skip
    for method in run.methods:
        if method == base or method in GT_METHODS:
            continue
        cols = []
        for metric in run.metrics:
            c = table.get((method, metric))
            if c is None or c.diff is None:
                cols.append(f"— ({c.test_reason})" if c is not None and c.test_reason else "")
                continue
            mark = MARKS[c.direction] if c.direction else ""
            interval = f" [{c.diff_low:+.4g}, {c.diff_high:+.4g}]" if c.diff_low is not None else ""
            cols.append(f"{c.diff:+.4g}{interval} p={c.p_holm:.3g}{mark} (n={c.test_n})")
        lines.append(f"| {md_cell(method)} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def left_out_markdown(table: Table) -> str:
    lines = ["#### Clips left out of the comparison", ""]
    lines += [f"- {md_code(clip)}: {md_text(why)}" for clip, why in table.left_out.items()]
    return "\n".join(lines) + "\n"


def latex(table: Table, caption: str = "Quantitative results.", label: str = "tab:results") -> str:
    """A booktabs table (needs \\usepackage{booktabs}); best \\textbf, second \\underline, $\\pm$ std,
    $^\\dagger$ significant vs the baseline; the clip scope and test as a footnote, the intervals in a second table."""
    run = table.run
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
        f"% environment: {environment_line(run.environments)}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * len(metrics) + "cc}",
        r"\toprule",
        " & ".join([""] + [rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(g)}}}" for g, n in spans] + ["", ""]) + r" \\",
    ]
    col, rules = 2, []
    for _, n in spans:
        rules.append(rf"\cmidrule(lr){{{col}-{col + n - 1}}}")
        col += n
    out.append(" ".join(rules))
    head = ["Method"] + [tex_escape(LABELS.get(metric_name(m), metric_name(m))) + arrows[run.higher_is_better(metric_name(m))] for m in metrics]
    out.append(" & ".join(head + ["$n$", "failed"]) + r" \\")
    out.append(r"\midrule")
    for method in run.methods:
        if method in GT_METHODS and len(run.methods) > 1:
            out.append(r"\midrule")
        row = [tex_escape("GT" if method == "gt" else method)]
        for metric in metrics:
            c = table.get((method, metric))
            if c is None or c.mean is None:
                row.append(r"\textit{" + tex_escape(c.reason if c else "") + "}" if c else "")
                continue
            row.append(_value_text(c, (r"\textbf{", "}"), (r"\underline{", "}"), lambda s: rf"\,{{\scriptsize$\pm${s}}}", TEX_MARKS))
        n, n_failed = method_counts(table, method)
        out.append(" & ".join(row + [str(n), str(n_failed)]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = [skipped_line(run).replace("**", ""), scope_line(table), interval_line(table), significance_line(table)]
    out.append(r"\par\smallskip{\footnotesize " + tex_escape(" ".join(x for x in notes if x)) + "}")
    out.append(r"\end{table}")
    if any(c.ci_low is not None or c.ci_reason for _, c in table.items()):
        out += [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(f'{table.options.level:.0%} confidence intervals of Table')} \ref{{{label}}}.}}",
                r"\begin{tabular}{l" + "c" * len(metrics) + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]  # fmt: skip
        for method in run.methods:
            cols = [tex_escape(interval_text(table.get((method, metric)))) for metric in metrics]
            out.append(" & ".join([tex_escape("GT" if method == "gt" else method)] + cols) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def tidy(table: Table) -> list[dict]:
    """One record per method x metric: mean, std, interval, n, n_failed, pooled, clips, reason, and the
    comparison with the baseline (diff, interval, p, Holm-adjusted p, significant)."""
    run = table.run
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
    """RFC 4180 CSV (CRLF rows, so a field holding a line break is quoted), each cell through csv_safe."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: csv_safe(";".join(v) if isinstance(v, list) else v) for k, v in r.items()} for r in records)
    return buf.getvalue()


def per_clip_markdown(run: Run) -> str:
    """One table per per-clip metric: rows = clips, columns = methods; failed cells say 'failed'."""
    values = {(r.clip, r.method, r.metric): r for r in run.rows if r.clip != POOLED}
    parts = []
    for metric in run.metrics:
        if not any(k[2] == metric for k in values):
            continue
        name = metric_name(metric)
        parts += [f"#### {_label(run, metric)} per clip", "", "| clip | " + " | ".join(md_cell(m) for m in run.methods) + " |", "|:---|" + "---:|" * len(run.methods)]
        for clip in run.clips:
            cols = []
            for method in run.methods:
                r = values.get((clip, method, metric))
                cols.append("" if r is None else fmt(name, r.value) if r.status == "ok" else "failed")
            parts.append(f"| {md_cell(clip)} | " + " | ".join(cols) + " |")
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


def comparison_markdown(table: Table, reference: dict) -> str:
    """Ours vs the published value, with the difference, for every method x paper column both have."""
    run = table.run
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
            lines.append(f"| {md_cell(method)} | {LABELS.get(name, name)} | {ours} | {fmt(name, ref[name])} | {diff} |")
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
        "runs": [str(p) for p in run.paths],
        "method_config_hash": {m: sorted({r.method_config_hash for r in run.rows if r.method == m and r.method_config_hash}) for m in run.methods},
        "weights_sha256": {k: sorted(v) for k, v in sorted(weights.items())},
        "method_weights_sha256": {k: sorted(v) for k, v in sorted(methods.items())},
        "metric_ids": run.metrics,
        "environment": run.environments,
        "run_created": run.info.get("created"),
        "report_date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def environment_line(envs: list[dict]) -> str:
    """The environments of a report's rows on one line (each as core.environment.summary), or why there is none."""
    return " | ".join(summary(e) for e in envs) if envs else summary({})


def provenance_markdown(p: dict) -> str:
    lines = ["Provenance:", ""]
    for key, value in p.items():
        if key == "environment":
            value = environment_line(value)
        elif isinstance(value, dict):
            value = "; ".join(f"{k}: {', '.join(str(x)[:16] for x in v) if isinstance(v, list) else v}" for k, v in value.items()) or "none"
        elif isinstance(value, list):
            value = ", ".join(f"`{v}`" for v in value)
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"
