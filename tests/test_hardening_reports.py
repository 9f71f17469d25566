"""Hostile labels in reports (issue 30): CSV cells that a spreadsheet would run as formulas, and method labels that
break or inject into Markdown, LaTeX and HTML."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from reports import tables
from reports.build import ReportSpec, write_report
from reports.html import _split_row
from reports.summary import summary_markdown
from stsa_bench.core.results import ResultRow

FORMULAS = ["-1+1", "@SUM(A1)", '=HYPERLINK("http://example.invalid")', "+cmd", "\tx", "\rx"]
INJECT = ["x|y", "<img src=x onerror=alert(1)>", "a\\b^c"]


def run_of(methods: list[str], n: int = 3) -> tables.Run:
    rows = [ResultRow("syn", f"c{i}", m, "psnr[synthetic]", 30.0 + i + k, 25, "ok", None, "cfg", "git", higher_is_better=True)
            for k, m in enumerate(methods) for i in range(n)]  # fmt: skip
    return tables.Run(Path("."), rows, manifest={"clips": {f"c{i}": {} for i in range(n)}})


def test_csv_cells_that_start_a_formula_are_text(tmp_path):
    """Item 1 (OWASP CSV injection): labels starting with = + - @ tab or CR get a leading ', numbers stay numbers, the
    JSON keeps the raw label."""
    table = tables.aggregate(run_of(FORMULAS + ["plain"]))
    write_report(table, tmp_path, ("csv", "json"), ReportSpec("t", "c", "tab:t", per_clip=False))
    with open(tmp_path / "table.csv", newline="") as f:
        records = list(csv.DictReader(f))
    methods = [r["method"] for r in records]
    assert methods == ["'" + m for m in FORMULAS] + ["plain"]
    assert "'=HYPERLINK(\"http://example.invalid\")" in methods
    assert all(float(r["mean"]) > 0 for r in records)
    assert tables.csv_safe("-1.5") == "-1.5" and tables.csv_safe(-1.5) == -1.5
    cells = json.loads((tmp_path / "table.json").read_text())["cells"]
    assert [c["method"] for c in cells] == FORMULAS + ["plain"]


def test_labels_cannot_break_or_inject_into_markdown_latex_and_html(tmp_path):
    """Item 2: a label with | kept one cell; <img onerror> shown as text in table.md, summary.md and report.html;
    LaTeX escapes ^ and the backslash."""
    run = run_of(INJECT)
    table = tables.aggregate(run)
    md = tables.markdown(table)
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({len(_split_row(line)) for line in rows}) <= 1, block
    assert "| x\\|y |" in md
    for text in (md, summary_markdown(run.rows), tables.per_clip_markdown(run)):
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    write_report(table, tmp_path, ("md", "tex", "html"), ReportSpec("t", "c", "tab:t"))
    page = (tmp_path / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "<td>x|y</td>" in page
    tex = (tmp_path / "table.tex").read_text()
    assert r"a\textbackslash{}b\^{}c" in tex and "a\\b^c" not in tex


def test_video_links_of_odd_clip_names_are_url_encoded(tmp_path):
    """Issue 30: `#`, `%` and `?` in a clip name broke the per-clip page's video links."""
    import re
    import urllib.parse

    from reports.clip_view import ClipView
    from stsa_bench.core.layout import video_path

    clip = "a#b%20c?d"
    rows = [ResultRow("syn", clip, m, "psnr[synthetic]", 30.0, 25, "ok", None, "cfg", "git") for m in ("gt", "static")]
    run = tables.Run(tmp_path / "run", rows, manifest={"clips": {clip: {}}}, paths=[tmp_path / "run"])
    for method in ("gt", "static"):
        video = video_path(tmp_path / "run", method, clip)
        video.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(b"\\x00")
    page = tmp_path / "report"
    page.mkdir()
    html = "\n".join(h for _, h in ClipView(run, page).sections())
    sources = re.findall(r'<video[^>]* src="([^"]+)"', html)
    assert len(sources) == 2 and all("#" not in s and "?" not in s for s in sources)
    assert all((page / urllib.parse.unquote(s)).resolve().is_file() for s in sources)


def test_results_folders_of_nested_ids_and_decomposed_names(tmp_path):
    """Review of issue 30: a speaker folder holding nested ids' results was reported as matching no clip; a results file
    named in NFD was not found once clip ids became NFC."""
    import unicodedata

    from baselines.base import build_method

    results = tmp_path / "results"
    (results / "spk").mkdir(parents=True)
    (results / "spk" / "00001.mp4").write_bytes(b"x")
    (results / "extra.mp4").write_bytes(b"x")
    (results / "lost").mkdir()
    decomposed = unicodedata.normalize("NFD", "caf\u00e9")
    (results / f"{decomposed}.mp4").write_bytes(b"x")
    method = build_method("results", {"dir": str(results)})
    assert [p.name for p in method.unmatched(["spk/00001", "caf\u00e9"])] == ["extra.mp4", "lost"]
    assert method.path_for("caf\u00e9").name == f"{decomposed}.mp4" and method.path_for("caf\u00e9").exists()


def test_hostile_labels_in_lists_and_left_out_clips(tmp_path):
    """Review of issue 30: lists (failures, left-out clips) showed md_cell's table escapes (a&amp;b, \\|) or raw HTML."""
    from reports.html import markdown_table_to_html

    run = run_of(["base", "a&b|<i>x</i>"], n=12)
    run.rows = [r if r.clip != "c0" or r.method == "base" else ResultRow(**{**r.__dict__, "value": None, "status": "failed",
                "error": "c0.mp4: <b>no</b> face & more"}) for r in run.rows]  # fmt: skip
    table = tables.aggregate(run)
    md = tables.markdown(table)
    line = next(x for x in md.splitlines() if x.startswith("- ") and "c0" in x)
    assert line.startswith("- `c0`: a&amp;b|&lt;i&gt;x&lt;/i&gt; failed") and "<i>" not in line
    summary = summary_markdown(run.rows)
    failure = next(x for x in summary.splitlines() if x.startswith("- c0.mp4"))
    assert "&lt;b&gt;no&lt;/b&gt; face &amp; more" in failure and "a&amp;b|&lt;i&gt;x&lt;/i&gt;/psnr" in failure
    page = markdown_table_to_html(summary)
    assert "&lt;b&gt;no&lt;/b&gt; face &amp; more" in page and "&amp;amp;" not in page and "<b>no" not in page
