"""Report figures (reports.plots) and the self-contained HTML page (reports.html)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.text import Text

from reports import plots
from reports.html import markdown_table_to_html, write_html
from stsa_bench.core.results import ResultRow, read_rows

PSNR = "psnr[face128@25fps/pp=0,rgb,eps=1e-8]"
FID = "fid[face128@25fps/pp=0,inception]"
LSE_C = "lse_c[face128@25fps/pp=0,syncnet]"
LSE_D = "lse_d[face128@25fps/pp=0,syncnet]"
CLIPS = ("c0", "c1", "c2", "c3")
METHODS = ("gt", "static", "broken")
OFFSETS = {"gt": [0, 0, 0, 0], "static": [2, -15, 2, 0], "broken": [3, 3]}


def row(clip: str, method: str, metric: str, value: float | None, note: str | None = None) -> ResultRow:
    failed = value is None
    return ResultRow(
        suite="synthetic", clip=clip, method=method, metric=metric, value=value, n_frames=None if failed else 50,
        status="failed" if failed else "ok", error="boom" if failed else None, config_hash="cfg", git_sha="sha",
        note=note, higher_is_better=DIRECTIONS[metric.split("[", 1)[0]],
    )


DIRECTIONS = {"psnr": True, "fid": False, "lse_c": True, "lse_d": False}
"""As the metrics record them in their rows."""


def synthetic_rows() -> list[ResultRow]:
    """psnr per clip (one failed clip), pooled fid (failed for one method), lse_c/lse_d with offset notes."""
    rows = []
    for m, method in enumerate(METHODS):
        for c, clip in enumerate(CLIPS):
            value = None if (method == "broken" and clip == "c2") else 20.0 + 5 * m + c
            rows.append(row(clip, method, PSNR, value))
        for c, clip in enumerate(CLIPS):
            offsets = OFFSETS[method]
            if c < len(offsets):
                rows.append(row(clip, method, LSE_C, 5.0 + m + 0.1 * c, f"offset {offsets[c]:+d}"))
                rows.append(row(clip, method, LSE_D, 8.0 - m, f"offset {offsets[c] + 100:+d}"))
            else:
                rows.append(row(clip, method, LSE_C, None))
        rows.append(row("*", method, FID, None if method == "broken" else 10.0 + m))
    rows.append(row("c1", "broken", FID, None))
    return rows


def check_png(path: Path) -> np.ndarray:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    flat = img[..., :3].reshape(-1, 3)
    assert (flat.max(axis=0) - flat.min(axis=0)).max() > 0.2, f"{path} is (nearly) a single colour"
    return img


def check_pairs(paths: list[Path]) -> None:
    stems = {p.stem for p in paths}
    assert sorted(paths) == sorted({p.with_suffix(s) for p in paths for s in (".png", ".svg")})
    for stem in stems:
        png = next(p for p in paths if p.stem == stem and p.suffix == ".png")
        svg = png.with_suffix(".svg")
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
        check_png(png)
        text = svg.read_text(encoding="utf-8")
        assert "<svg" in text and "<dc:date>" not in text


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text)]


@pytest.fixture(scope="module")
def real_run(cache_dir, tmp_path_factory) -> Path:
    from stsa_bench.cli import main

    out = tmp_path_factory.mktemp("plots_run")
    argv = ["run", "--suite", "demo", "--out", str(out), "--metrics", "psnr,ssim,lipmd,dme_dis",
            f"cache_dir={cache_dir}", "runtime.progress=false"]
    assert main(argv) == 0
    return out


@pytest.mark.slow
def test_synthetic_plots(tmp_path):
    rows = synthetic_rows()
    paths = plots.make_plots(rows, tmp_path / "no_run", tmp_path / "fig")
    assert {p.name for p in paths} == {f"{s}.{e}" for s in ("metric_bars", "heatmap_psnr", "lse_offsets") for e in ("png", "svg")}
    assert all(p.is_file() for p in paths)
    check_pairs(paths)


@pytest.mark.slow
def test_figures_are_deterministic(tmp_path):
    rows = synthetic_rows()
    a = plots.make_plots(rows, tmp_path, tmp_path / "a")
    b = plots.make_plots(rows, tmp_path, tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_failed_cells_are_marked():
    rows = synthetic_rows()
    bars = plots.bars_figure(rows)
    labels = texts(bars)
    assert labels.count("failed") == 1
    assert "1 failed" in labels and "2 failed" in labels
    assert any(t.startswith("psnr ↑") for t in labels) and any(t.startswith("fid ↓") for t in labels)
    assert "psnr (dB)" in labels
    heat = plots.heatmap_figure(rows, "psnr")
    assert texts(heat).count("×") == 1
    assert plots.heatmap_figure(rows, "lipmd") is None


def test_offset_histogram_counts(tmp_path):
    rows = synthetic_rows()
    expected = {m: Counter(v) for m, v in OFFSETS.items()}
    assert plots.offset_counts(rows) == expected
    fig = plots.offset_figure(rows)
    drawn = {}
    for ax in fig.axes:
        method = ax.get_title(loc="left").split(":")[0]
        drawn[method] = Counter({round(p.get_x() + p.get_width() / 2): round(p.get_height()) for p in ax.patches})
    assert drawn == expected

    only_d = [r for r in rows if not r.metric.startswith("lse_c")]
    assert plots.offset_counts(only_d) == {m: Counter(v + 100 for v in o) for m, o in OFFSETS.items()}
    none = [r for r in rows if not r.metric.startswith("lse")]
    assert plots.offset_histogram(none, tmp_path / "empty") == []
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").iterdir())


@pytest.mark.slow
def test_real_run_plots(real_run, tmp_path):
    rows = read_rows(real_run / "results.jsonl")
    paths = plots.make_plots(rows, real_run, tmp_path / "fig")
    assert {p.stem for p in paths} == {"metric_bars", "heatmap_psnr", "frame_strips"}
    check_pairs(paths)
    again = plots.make_plots(rows, real_run, tmp_path / "fig2")
    assert [p.read_bytes() for p in paths if p.suffix == ".svg"] == [p.read_bytes() for p in again if p.suffix == ".svg"]


@pytest.mark.slow
def test_frame_strip_skips_missing(real_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(real_run / "strips", run / "strips")
    (run / "strips" / "static" / "demo_01.png").unlink()
    (run / "strips" / "shift" / "demo_00.png").write_bytes(b"not a png")
    full = plots.strip_figure(real_run, max_clips=2)
    partial = plots.strip_figure(run, methods=["static", "shift", "absent"], max_clips=3)
    assert len(full.axes) == 2 * 4
    assert len(partial.axes) == 3 * 3 - 2
    labels = texts(partial)
    assert "ground truth" in labels and "absent" not in labels and "clip demo_02" in labels
    out = plots.frame_strip(run, tmp_path / "fig", methods=["static"], max_clips=1)
    check_pairs(out)
    assert plots.frame_strip(tmp_path / "nothing", tmp_path / "fig2") == []


def test_markdown_table_to_html():
    md = "| method | psnr ↑ | fid ↓ | note |\n|---|---:|:---:|:--|\n| **a** | <u>30.1</u> | 2 <b> | x \\| y |\n| b | 1 |"
    out = markdown_table_to_html(md)
    assert out.startswith("<table>") and out.count("<tr>") == 3
    assert '<th style="text-align:right">psnr ↑</th>' in out
    assert '<td style="text-align:center">2 &lt;b&gt;</td>' in out
    assert "<strong>a</strong>" in out and "<u>30.1</u>" in out and "x | y" in out
    assert out.count("<td") == 8
    with pytest.raises(ValueError):
        markdown_table_to_html("just text")
    with pytest.raises(ValueError):
        markdown_table_to_html("| a | b |\n| x | y |")


def report_page(rows: list[ResultRow], run_dir: Path, out: Path) -> tuple[Path, list[Path], list[str]]:
    from reports.summary import summary_markdown

    images = plots.make_plots(rows, run_dir, out / "fig")
    headings = ["Summary <all methods> & metrics", "Notes"]
    sections = [(headings[0], markdown_table_to_html(summary_markdown(rows))), (headings[1], "<p>ok</p>")]
    page = write_html(out / "report.html", "stsa-bench: demo", sections, images, footer_html="<code>cfg</code>")
    return page, images, headings


@pytest.mark.slow
def test_write_html(real_run, tmp_path):
    rows = read_rows(real_run / "results.jsonl") + [r for r in synthetic_rows() if r.metric == LSE_C]
    page, images, headings = report_page(rows, real_run, tmp_path)
    text = page.read_text(encoding="utf-8")
    pngs = [p for p in images if p.suffix == ".png"]
    assert len(pngs) == 4
    assert text.count("<img ") == len(pngs)
    for h in headings:
        assert f"<h2>{h.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</h2>" in text
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert [base64.b64decode(u) for u in uris] == [p.read_bytes() for p in pngs]
    assert "<table>" in text and "<footer><code>cfg</code></footer>" in text
    assert "file://" not in text and 'src="/' not in text
    assert write_html(tmp_path / "again.html", "stsa-bench: demo", [], images).read_text().count("<img ") == 4


@pytest.mark.slow
def test_html_renders_in_chromium(real_run, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    page, _, _ = report_page(read_rows(real_run / "results.jsonl"), real_run, tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (rc {proc.returncode}): {proc.stderr[-2000:]}"
    img = check_png(shot)[..., :3]
    assert img.shape[:2] == (2000, 1200)
    not_white = (img < 0.9).any(axis=2)
    assert not_white.mean() > 0.05, "screenshot is almost blank"
    colourful = (img.max(axis=2) - img.min(axis=2)) > 0.25
    assert colourful.mean() > 0.01, "no figure colours in the screenshot"
