"""One report from one run's rows: the tables in every requested format, plots and the HTML page.

Used by `stsa-bench report` and by `stsa-bench ablate` (Table III); they differ only in the
`ReportSpec` they pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from stsa_bench.core.paths import atomic_write_text

from . import tables

REPORT_FORMATS = ("md", "tex", "csv", "json", "html")


@dataclass(frozen=True)
class ReportSpec:
    """What one report says around the results table."""

    title: str
    caption: str
    label: str
    stem: str = "table"
    """File names: <stem>.md, <stem>.tex, <stem>.csv, <stem>.json."""
    preface: str = ""
    per_clip: bool = True
    reference: Mapping[str, Any] | None = None
    reference_title: str = "Comparison with published numbers"


def default_spec(run: tables.Run, reference: Mapping[str, Any] | None = None) -> ReportSpec:
    suite = run.rows[0].suite
    return ReportSpec(f"{suite}: results", f"Quantitative results on {suite}.", f"tab:{suite}", reference=reference)


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def write_report(run: tables.Run, out: Path, formats: tuple[str, ...] | list[str], spec: ReportSpec) -> tuple[str, list[Path]]:
    """(the Markdown results table, the files written) for the requested formats."""
    out.mkdir(parents=True, exist_ok=True)
    prov = tables.provenance(run)
    md = tables.markdown(run)
    parts = [f"# {spec.title}\n"] + ([spec.preface + "\n"] if spec.preface else []) + [md]
    if spec.per_clip:
        parts += ["## Per clip\n", tables.per_clip_markdown(run)]
    if spec.reference:
        parts += [f"## {spec.reference_title}\n", tables.comparison_markdown(run, spec.reference)]
    parts.append(tables.provenance_markdown(prov))
    written = []
    if "md" in formats:
        written.append(_write(out / f"{spec.stem}.md", "\n".join(parts)))
    if "tex" in formats:
        written.append(_write(out / f"{spec.stem}.tex", tables.latex(run, caption=spec.caption, label=spec.label)))
    records = tables.tidy(run)
    if "csv" in formats:
        written.append(_write(out / f"{spec.stem}.csv", tables.to_csv(records)))
    if "json" in formats:
        written.append(_write(out / f"{spec.stem}.json", json.dumps({"provenance": prov, "cells": records}, indent=1)))
    if "html" in formats:
        from . import html, plots

        images = [p for p in plots.make_plots(run.rows, run.path, out / "plots") if p.suffix == ".png"]
        sections = [("Results", html.markdown_table_to_html(md.split("\n", 2)[2]))]
        if spec.reference:
            comparison = tables.comparison_markdown(run, spec.reference).split("\n", 2)[2]
            sections.append((spec.reference_title, html.markdown_table_to_html(comparison)))
        footer = "<pre>" + tables.provenance_markdown(prov).replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
        written.append(html.write_html(out / "report.html", f"stsa-bench: {run.rows[0].suite}", sections, images, footer))
    return md, written
