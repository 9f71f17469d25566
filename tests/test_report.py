"""`stsa-bench report`: every format from result rows alone; LaTeX compiles; HTML renders."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from stsa_bench.cli import main


@pytest.fixture(scope="module")
def report(cache_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("report_run")
    rc = main(["run", "--suite", "demo", "--out", str(run), f"cache_dir={cache_dir}", "runtime.progress=false",
               "--methods", "static,shift,gt", "--metrics", "psnr,ssim,lpips,lipmd,dme_dis"])
    assert rc == 0
    out = run / "report"
    assert main(["report", str(run), "--format", "md,tex,csv,json,html", "--reference", "stsa_lrs2"]) == 0
    return run, out


@pytest.mark.slow
def test_all_formats_written(report):
    _, out = report
    for name in ("table.md", "table.tex", "table.csv", "table.json", "report.html"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "plots").glob("*.png"))
    assert sorted(p.name for p in (out / "plots").glob("*.svg"))


@pytest.mark.slow
def test_markdown_layout(report):
    _, out = report
    md = (out / "table.md").read_text()
    main_table = md.split("#### ", 1)[0]
    lines = [line for line in main_table.splitlines() if line.startswith("| ")]
    head = lines[0]
    assert head.index("PSNR↑") < head.index("SSIM↑") < head.index("LPIPS↓") < head.index("LipLMD↓") < head.index("DME (DIS)↓")
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[1:]}
    assert list(rows)[:3] == ["static", "shift", "gt"]  # GT last
    assert "**80.00**" in rows["shift"] and "<ins>" in rows["static"]  # best bold, second underlined; GT not ranked
    assert "**" not in rows["gt"]
    assert "— (weights missing)" in rows["static"]  # lpips: why, not a number
    assert "Provenance" in md and "suite_manifest_hash" in md and "git_sha" in md
    assert "STSA paper, Table I" in md and "| gt | SSIM | 1.0000 | 1.0000 | 0.0000 |" in md
    assert "per clip" in md
    assert "compared on the 3 clips of 3" in md and "95% confidence intervals" in md  # lpips failed everywhere: no clip left out


@pytest.mark.slow
def test_csv_and_json_are_tidy(report):
    _, out = report
    records = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert {r["method"] for r in records} == {"static", "shift", "gt"}
    assert len(records) == 3 * 5
    assert set(records[0]) >= {"method", "metric", "mean", "std", "n", "n_failed", "reason"}
    doc = json.loads((out / "table.json").read_text())
    assert len(doc["cells"]) == 15
    assert set(doc["provenance"]) >= {"harness_version", "git_sha", "config_hash", "suite_manifest_hash", "weights_sha256", "report_date"}


@pytest.mark.slow
def test_latex_compiles(report, tmp_path):
    _, out = report
    tex = (out / "table.tex").read_text()
    assert r"\toprule" in tex and r"\cmidrule" in tex and r"\textbf{80.00}" in tex and r"\underline{" in tex
    if shutil.which("pdflatex") is None or subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout == "":
        pytest.skip("pdflatex with booktabs not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n"
                   "\\begin{document}\n" + tex + "\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


@pytest.mark.slow
def test_html_renders(report, tmp_path):
    _, out = report
    html = (out / "report.html").read_text()
    assert html.count("<figure><img") == len(list((out / "plots").glob("*.png")))
    assert html.count('<div class="clip"') == 3 and html.count('data-method="static"><img') == 3  # no videos saved: strips
    assert html.count('data-method="ground truth"><img') == 3 and "<video" not in html  # the demo's FFV1 source is not linked
    assert "<table" in html and "weights missing" in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    f"--screenshot={shot}", "--window-size=1200,1600", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)  # fmt: skip
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == 1600 and img.std() > 0.01


def test_report_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no result rows" in capsys.readouterr().err


def test_fvd_and_csim_take_their_places_in_the_table(tmp_path):
    """FVD sits beside DME under Stability (its StyleGAN-V variant after it), CSIM under Identity, after the paper's columns."""
    from reports.runs import Run
    from stsa_bench.core.results import ResultRow

    ids = ["csim[f,a]", "fvd_styleganv[f,s]", "psnr[f]", "fvd[f,v]", "dme_dis[f]", "lse_c[w]", "csim_fullframe[f,b]"]
    rows = [ResultRow("s", "c", "m", i, 1.0, 10, "ok", None, "h", "g") for i in ids]
    run = Run(tmp_path, rows)
    assert run.metrics == ["psnr[f]", "lse_c[w]", "dme_dis[f]", "fvd[f,v]", "fvd_styleganv[f,s]", "csim[f,a]", "csim_fullframe[f,b]"]
    assert [run.group(i) for i in run.metrics[3:]] == ["Stability", "Stability", "Identity", "Identity"]
