"""One report from one run's rows: the tables in every requested format, plots and the HTML page.

Used by `stsa-bench report` and by `stsa-bench ablate` (Table III); they differ only in the
`ReportSpec` they pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


def default_spec(table: tables.Table, reference: Mapping[str, Any] | None = None) -> ReportSpec:
    suite = table.run.rows[0].suite
    return ReportSpec(f"{suite}: results", f"Quantitative results on {suite}.", f"tab:{suite}", reference=reference)


def clip_scope(table: tables.Table) -> dict:
    """The clips the table compares and those left out, with the reasons."""
    return {"mode": table.options.clips, "compared": table.compared, "left_out": table.left_out, "all": table.run.clips}


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)
    return path


def write_report(table: tables.Table, out: Path, formats: tuple[str, ...] | list[str], spec: ReportSpec) -> tuple[str, list[Path]]:
    """(the Markdown results table, the files written) for the requested formats."""
    out.mkdir(parents=True, exist_ok=True)
    run = table.run
    prov = tables.provenance(run)
    prov["table"] = {**asdict(table.options), "pooled_draws": table.pooled_draws, "holm_families": table.families}
    md = tables.markdown(table)
    parts = [f"# {spec.title}\n"] + ([spec.preface + "\n"] if spec.preface else []) + [md]
    if spec.per_clip:
        parts += ["## Per clip\n", tables.per_clip_markdown(run)]
    if spec.reference:
        parts += [f"## {spec.reference_title}\n", tables.comparison_markdown(table, spec.reference)]
    parts.append(tables.provenance_markdown(prov))
    written = []
    if "md" in formats:
        written.append(_write(out / f"{spec.stem}.md", "\n".join(parts)))
    if "tex" in formats:
        written.append(_write(out / f"{spec.stem}.tex", tables.latex(table, caption=spec.caption, label=spec.label)))
    records = tables.tidy(table)
    if "csv" in formats:
        written.append(_write(out / f"{spec.stem}.csv", tables.to_csv(records)))
    if "json" in formats:
        written.append(_write(out / f"{spec.stem}.json", json.dumps({"provenance": prov, "clips": clip_scope(table), "cells": records}, indent=1)))
    if "html" in formats:
        from . import clip_view, html, plots

        images = [p for p in plots.make_plots(run.rows, run.path, out / "plots") if p.suffix == ".png"]
        sections = [("Results", html.markdown_table_to_html(md.split("\n", 2)[2]))]
        if spec.reference:
            comparison = tables.comparison_markdown(table, spec.reference).split("\n", 2)[2]
            sections.append((spec.reference_title, html.markdown_table_to_html(comparison)))
        view = clip_view.ClipView(run, out) if spec.per_clip else None
        sections += view.sections() if view else []
        footer = "<pre>" + tables.provenance_markdown(prov).replace("&", "&amp;").replace("<", "&lt;") + "</pre>"
        page = html.write_html(out / "report.html", f"stsa-bench: {run.rows[0].suite}", sections, images, footer,
                               css=clip_view.CSS if view else "", script=clip_view.SCRIPT if view else "")  # fmt: skip
        written.append(page)
    return md, written
