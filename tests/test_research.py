"""The research workflow (issue 14): a run folder that grows, merged reports, common-clip comparisons,
intervals and paired tests in every format, and the per-clip HTML view."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reports import tables
from reports.build import ReportSpec, write_report
from stsa_bench.cli import main
from stsa_bench.core.results import ResultRow, read_rows, rewrite_rows

PSNR = "psnr[synthetic]"
DEMO = ["--suite", "demo", "runtime.progress=false"]


def synthetic_run(n: int = 40, failed: tuple[int, ...] = ()) -> tables.Run:
    """40 clips: `base` ~ N(31, 1.5) dB, `better` +0.5 dB (clip noise 0.5), `noisy` +0 dB; `better` fails on `failed`."""
    rng = np.random.default_rng(0)
    base = rng.normal(31.0, 1.5, n)
    values = {"base": base, "better": base + 0.5 + rng.normal(0, 0.5, n), "noisy": base + rng.normal(0, 0.5, n), "gt": np.full(n, 80.0)}
    rows = []
    for method, xs in values.items():
        for i, v in enumerate(xs):
            bad = method == "better" and i in failed
            rows.append(ResultRow("syn", f"c{i:02d}", method, PSNR, None if bad else float(v), 25, "failed" if bad else "ok",
                                  f"c{i:02d}.mp4: no face found" if bad else None, "cfg", "git", higher_is_better=True))  # fmt: skip
    return tables.Run(Path("."), rows, manifest={"clips": {f"c{i:02d}": {} for i in range(n)}})


def test_a_real_difference_is_marked_in_every_format_and_noise_is_not(tmp_path):
    table = tables.aggregate(synthetic_run(), tables.TableOptions(baseline="base", resamples=2000))
    better, noisy = table[("better", PSNR)], table[("noisy", PSNR)]
    assert better.significant and better.p_holm < 0.01 and 0.3 < better.diff < 0.7 and better.diff_low > 0
    assert not noisy.significant and noisy.diff_low < 0 < noisy.diff_high
    assert better.ci_low < better.mean < better.ci_high and better.std == pytest.approx(np.std([r.value for r in table.run.rows if r.method == "better"], ddof=1))
    md, written = write_report(table, tmp_path, ("md", "tex", "csv", "json", "html"), ReportSpec("t", "c", "tab:t", per_clip=False))
    row = next(line for line in md.splitlines() if line.startswith("| better |"))
    assert "†" in row and "±" in row and "†" not in next(line for line in md.splitlines() if line.startswith("| noisy |"))
    assert "Holm" in md and "95% confidence intervals" in md and "Paired comparison with base" in md
    tex = (tmp_path / "table.tex").read_text()
    assert r"$^\dagger$" in tex and r"\pm" in tex and "Holm" in tex
    cells = {(c["method"], c["name"]): c for c in json.loads((tmp_path / "table.json").read_text())["cells"]}
    assert cells[("better", "psnr")]["significant"] is True and cells[("noisy", "psnr")]["significant"] is False
    assert cells[("better", "psnr")]["ci_low"] < cells[("better", "psnr")]["mean"]
    csv_head = (tmp_path / "table.csv").read_text().splitlines()[0]
    assert {"ci_low", "ci_high", "diff", "p", "p_holm", "significant"} <= set(csv_head.split(","))
    html = (tmp_path / "report.html").read_text()
    assert "Paired comparison with base" in html and "†" in html
    _compile_latex(tex, tmp_path)


def _compile_latex(tex: str, where: Path) -> None:
    if shutil.which("pdflatex") is None or subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout == "":
        pytest.skip("pdflatex with booktabs not installed (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    doc = where / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=where, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]


def test_failed_clips_are_left_out_of_the_common_comparison():
    run = synthetic_run(failed=(3, 17))
    common = tables.aggregate(run)
    assert common.compared == [c for c in run.clips if c not in ("c03", "c17")]
    assert set(common.left_out) == {"c03", "c17"} and "better failed (psnr: no face found)" in common.left_out["c03"]
    base = common[("base", PSNR)]
    kept = [r.value for r in run.rows if r.method == "base" and r.clip not in ("c03", "c17")]
    assert base.n == 38 and base.mean == pytest.approx(np.mean(kept))
    md = tables.markdown(common)
    assert "compared on the 38 clips of 40" in md and "`c03`: better failed" in md
    own = tables.aggregate(run, tables.TableOptions(clips="own"))
    assert own[("base", PSNR)].n == 40 and own[("better", PSNR)].n == 38
    assert "(n=38)" in tables.markdown(own) and "(2 failed)" in tables.markdown(own)


def test_table_options_are_validated():
    from stsa_bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'own'"):
        tables.TableOptions(clips="onw")
    with pytest.raises(ConfigError, match="no rows; did you mean 'base'"):
        tables.aggregate(synthetic_run(), tables.TableOptions(baseline="bse"))


def test_too_few_clips_are_not_tested():
    table = tables.aggregate(synthetic_run(n=6), tables.TableOptions(baseline="base"))
    cell = table[("better", PSNR)]
    assert cell.p is None and cell.test_reason == cell.ci_reason == "6 clips < 10" and "— (6 clips < 10)" in tables.markdown(table)


@pytest.fixture(scope="module")
def grown(cache_dir, tmp_path_factory):
    """A demo run folder grown by a second invocation (one more method, one more metric, videos saved):
    (folder, its CLI arguments, the rows after the first invocation, the second's stdout and stderr)."""
    out = tmp_path_factory.mktemp("grown")
    base = DEMO + ["--out", str(out), f"cache_dir={cache_dir}"]
    assert main(["run", *base, "--methods", "gt,static", "--metrics", "psnr,ssim"]) == 0
    first = {r.key: r for r in read_rows(out / "results.jsonl")}
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["run", *base, "--methods", "gt,static,shift", "--metrics", "psnr,ssim,ssim_skimage", "runtime.save_videos=true"])
    assert rc == 0, stderr.getvalue()
    return out, base, first, stdout.getvalue(), stderr.getvalue()


@pytest.mark.slow
def test_a_second_invocation_computes_only_the_new_rows(grown, capsys):
    out, base, first, stdout, stderr = grown
    assert f"{out}: 12 rows reused; 15 (clip, method, metric) to compute" in stderr
    assert "(15 new, 0 failed)" in stdout
    rows = {r.key: r for r in read_rows(out / "results.jsonl")}
    assert len(rows) == 27 and all(rows[k] == r for k, r in first.items())
    assert len({r.method_config_hash for r in rows.values()}) == 3 and len({r.config_hash for r in rows.values()}) == 1
    info = json.loads((out / "run.json").read_text())
    assert [i["methods"] for i in info["invocations"]] == [["gt", "static"], ["gt", "static", "shift"]]
    assert main(["run", *base, "--methods", "shift", "--metrics", "psnr", "shift.frames=2"]) == 2
    err = capsys.readouterr().err
    assert "method 'shift' ran here with other options (differs in frames)" in err and "shift_2:shift" in err
    assert main(["run", *base, "--methods", "gt", "--metrics", "psnr", "preprocess.crop_size=96"]) == 2
    assert "differs in preprocess.crop_size" in capsys.readouterr().err


@pytest.mark.slow
def test_merged_runs_give_the_table_of_one_run(grown, cache_dir, tmp_path, capsys):
    """Two folders (gt,static and shift) reported together equal the grown folder's table; a row the two
    folders disagree on, or folders of different clips, end with a one-line error."""
    out = grown[0]
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, methods in ((a, "gt,static"), (b, "shift")):
        assert main(["run", *DEMO, "--out", str(folder), f"cache_dir={cache_dir}", "--methods", methods, "--metrics", "psnr,ssim,ssim_skimage"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "one"), "--format", "json"]) == 0
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "two"), "--format", "json"]) == 0
    one, two = (json.loads((tmp_path / d / "table.json").read_text()) for d in ("one", "two"))
    order = lambda cells: sorted(cells, key=lambda c: (c["method"], c["metric"]))  # noqa: E731
    assert order(one["cells"]) == order(two["cells"]) and one["clips"] == two["clips"]
    rows = read_rows(b / "results.jsonl")
    rewrite_rows(b / "results.jsonl", [r if r.clip != "demo_01" or not r.metric.startswith("psnr") else
                                       ResultRow(**{**r.__dict__, "method": "static", "value": 1.0}) for r in rows])  # fmt: skip
    capsys.readouterr()
    assert main(["report", str(a), str(b), "--format", "json", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert f"{a} and {b} disagree on clip 'demo_01', method 'static'" in err
    other = tmp_path / "other"
    shutil.copytree(b, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "manifest_hash": "0" * 64}))
    assert main(["report", str(a), str(other), "--format", "json", "--out", str(tmp_path / "bad")]) == 2
    assert "are not runs of the same suite manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_common_clips_recompute_pooled_metrics_from_partials(cache_dir, tmp_path, capsys):
    """`results` (a folder of generated videos) lacks one clip: the table compares on the other two,
    says so, and DME is re-pooled over them from the saved partials."""
    out = tmp_path / "run"
    assert main(["run", *DEMO, "--out", str(out), f"cache_dir={cache_dir}", "--methods", "static", "--metrics", "psnr,dme_dis"]) == 0
    videos = {c: Path(e["video"]) for c, e in json.loads((out / "manifest.json").read_text())["clips"].items()}
    folder = tmp_path / "generated"
    folder.mkdir()
    for clip in ("demo_00", "demo_01"):
        (folder / f"{clip}.mkv").symlink_to(videos[clip])
    assert main(["run", *DEMO, "--out", str(out), f"cache_dir={cache_dir}", "--methods", "static,results", "--metrics", "psnr,dme_dis",
                 f"results.dir={folder}", "results.pattern={clip}.mkv"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["report", str(out), "--format", "md,json", "--min-clips", "2"]) == 0
    md = capsys.readouterr().out
    assert "compared on the 2 clips of 3" in md and "`demo_02`: results failed" in md
    doc = json.loads((out / "report" / "table.json").read_text())
    cell = next(c for c in doc["cells"] if c["method"] == "static" and c["name"] == "dme_dis")
    partials = {}
    for f in (out / "partials" / "static").rglob("*.npz"):
        with np.load(f) as z:
            partials[f.stem] = (float(z["sum"]), int(z["count"]))
    shas = {c: e["sha256"] for c, e in json.loads((out / "manifest.json").read_text())["clips"].items()}
    two = [partials[shas[c]] for c in ("demo_00", "demo_01")]
    assert cell["n"] == 2 and cell["clips"] == "common"
    assert cell["mean"] == pytest.approx(sum(s for s, _ in two) / sum(n for _, n in two), rel=1e-12)
    pooled_row = next(r for r in read_rows(out / "results.jsonl") if r.method == "static" and r.clip == "*")
    assert cell["mean"] != pooled_row.value and cell["ci_low"] is not None
    own = json.loads((out / "report" / "table.json").read_text()) if main(["report", str(out), "--format", "json", "--clips", "own"]) == 0 else None
    own_cell = next(c for c in own["cells"] if c["method"] == "static" and c["name"] == "dme_dis")
    assert own_cell["mean"] == pooled_row.value and own_cell["n"] == 3


@pytest.mark.slow
def test_per_clip_page_in_chromium(grown, tmp_path):
    out = grown[0]
    page_dir = tmp_path / "page"
    assert main(["report", str(out), "--format", "html", "--out", str(page_dir)]) == 0
    page = page_dir / "report.html"
    text = page.read_text()
    for src in re.findall(r'<video[^>]* src="([^"]+)"', text):
        assert (page_dir / src).resolve().is_file(), src
    assert 'class="sortable"' in text and "Worst clips per metric" in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    clips = re.findall(r'class="clip" id="[^"]+" data-clip="([^"]+)"', dom)
    assert clips == ["demo_00", "demo_01", "demo_02"]
    for block in dom.split('class="clip"')[1:]:
        assert re.findall(r'data-method="([^"]+)"', block) == ["ground truth", "static", "shift"]
    # the second invocation scored ssim_skimage for every method, so each (clip, method) has a saved video
    assert dom.count("<video") == 9 and dom.count('data-method="ground truth"><video') == 3
    shot = tmp_path / "clips.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
