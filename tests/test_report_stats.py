"""What a report claims from its statistics (issue 29): clips counted for pooled-only runs, tests that run without
draws, explicit merges, one minimum-clips rule, footnotes that say which clips each test used, direction-aware
marks, and grouped resampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reports import tables
from stsa_bench.cli import main
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.results import ResultRow

DEMO = ["--suite", "demo", "runtime.progress=false"]


def run_of(values: dict[str, np.ndarray], metric: str = "psnr[synthetic]", hib: bool | None = True, groups: dict[str, str] | None = None) -> tables.Run:
    """A run of one per-clip metric: {method: per-clip values}."""
    n = len(next(iter(values.values())))
    rows = [ResultRow("syn", f"c{i:02d}", m, metric, float(v), 25, "ok", None, "cfg", "git", higher_is_better=hib)
            for m, xs in values.items() for i, v in enumerate(xs)]  # fmt: skip
    clips = {f"c{i:02d}": {"group": (groups or {}).get(f"c{i:02d}")} for i in range(n)}
    return tables.Run(Path("."), rows, manifest={"clips": clips})


def test_marks_say_better_or_worse_by_the_metrics_direction():
    """Item 8: † better, ‡ worse against the baseline, read through higher_is_better (a lower FID-like value is better)."""
    rng = np.random.default_rng(0)
    base = rng.normal(30, 1.5, 30)
    values = {"base": base, "up": base + 0.8 + rng.normal(0, 0.3, 30), "down": base - 0.8 + rng.normal(0, 0.3, 30)}
    for hib, up, down in ((True, "better", "worse"), (False, "worse", "better")):
        table = tables.aggregate(run_of(values, hib=hib), tables.TableOptions(baseline="base"))
        assert table[("up", "psnr[synthetic]")].direction == up and table[("down", "psnr[synthetic]")].direction == down
        md = tables.markdown(table)
        mark = {"better": "†", "worse": "‡"}
        assert mark[up] in next(line for line in md.splitlines() if line.startswith("| up |"))
        assert mark[down] in next(line for line in md.splitlines() if line.startswith("| down |"))
        assert "† better, ‡ worse than base" in md
        assert r"$^\ddagger$" in tables.latex(table)


def test_one_minimum_of_clips_for_intervals_and_tests_and_the_cell_says_why(tmp_path):
    """Item 6: at n = 1 and n = 2 no interval and no test, each cell saying why (a '95 %' interval of 2 clips was
    [min, max]); with --min-clips 2 the interval at n = 2 is Student's t (wider than [min, max])."""
    for n in (1, 2):
        table = tables.aggregate(run_of({"base": np.arange(n) + 30.0, "other": np.arange(n) + 31.0}), tables.TableOptions(baseline="base"))
        cell = table[("other", "psnr[synthetic]")]
        assert cell.ci_low is None and cell.ci_reason == f"{n} clips < 10" and cell.p is None and cell.test_reason == f"{n} clips < 10"
        md = tables.markdown(table)
        assert f"— ({n} clips < 10)" in md
        compile_if_possible(tables.latex(table), tmp_path)
    table = tables.aggregate(run_of({"base": np.array([30.0, 31.0]), "other": np.array([31.0, 33.0])}), tables.TableOptions(min_clips=2))
    cell = table[("base", "psnr[synthetic]")]
    assert cell.ci_low < 30.0 and cell.ci_high > 31.0 and cell.ci_method == "t"


def test_resamples_zero_runs_the_tests_that_draw_nothing_and_refuses_the_one_that_does(tmp_path, capsys):
    """Item 4: --test wilcoxon (or ttest) --resamples 0 tests; --test permutation --resamples 0 exits 2 with a reason."""
    rng = np.random.default_rng(1)
    base = rng.normal(30, 1, 12)
    run = run_of({"base": base, "other": base + 1 + rng.normal(0, 0.2, 12)})
    for test in ("wilcoxon", "ttest"):
        cell = tables.aggregate(run, tables.TableOptions(baseline="base", test=test, resamples=0))[("other", "psnr[synthetic]")]
        assert cell.p is not None and cell.test == test and cell.draws == 0
    with pytest.raises(ConfigError, match="--test permutation draws --resamples sign flips"):
        tables.TableOptions(baseline="base", resamples=0)
    assert tables.aggregate(run, tables.TableOptions(baseline="base", resamples=0, test="ttest"))[("other", "psnr[synthetic]")].significant


def test_footnote_states_the_clips_each_test_used():
    """Item 7: in common mode the tests use the table's common clips and the footnote says so (it used to say 'the clips
    both methods scored'); in own mode each comparison's n is shown."""
    rng = np.random.default_rng(2)
    base = rng.normal(30, 1, 30)
    values = {"base": base, "a": base + 0.5, "b": base + rng.normal(0, 1, 30)}
    run = run_of(values)
    run.rows = [r for r in run.rows if not (r.method == "b" and r.clip in {f"c{i:02d}" for i in range(6)})]
    common = tables.aggregate(run, tables.TableOptions(baseline="base"))
    assert common[("a", "psnr[synthetic]")].test_n == 24 and len(common[("a", "psnr[synthetic]")].tested_on) == 24
    assert "Every test is over the table's 24 common clips" in tables.markdown(common)
    own = tables.aggregate(run, tables.TableOptions(baseline="base", clips="own"))
    assert own[("a", "psnr[synthetic]")].test_n == 30 and own[("b", "psnr[synthetic]")].test_n == 24
    md = tables.markdown(own)
    assert "Each test is over the clips both methods scored" in md and "(n=30)" in md and "(n=24)" in md


def test_the_footer_names_the_test_draws_seed_and_family():
    rng = np.random.default_rng(3)
    base = rng.normal(30, 1, 25)
    run = run_of({"base": base, "a": base + rng.normal(0.3, 1, 25), "b": base + rng.normal(0, 1, 25)})
    md = tables.markdown(tables.aggregate(run, tables.TableOptions(baseline="base", seed=7, resamples=500)))
    assert "sign-flip permutation test" in md and "500 Monte Carlo sign flips, seed 7" in md
    assert "Holm's family: per metric (1 family), the 2 methods tested against base." in md
    assert "Student's t over clips" in md
    md = tables.markdown(tables.aggregate(run, tables.TableOptions(baseline="base", family="table")))
    assert "Holm's family: the table's 2 tested comparisons with base." in md


def test_grouped_clips_are_resampled_by_group():
    """Clips cut from one speaker share their error: 40 clips from 8 speakers whose differences move together. By clip
    the test claims a difference; by group (the honest unit) it does not, and the report says groups were used."""
    rng = np.random.default_rng(4)
    groups = {f"c{i:02d}": f"s{i // 5}" for i in range(40)}
    speaker = rng.normal(0, 1.0, 8)
    base = rng.normal(30, 1, 40)
    other = base + np.array([speaker[i // 5] for i in range(40)]) + rng.normal(0, 0.05, 40) + 0.45
    run = run_of({"base": base, "other": other}, groups=groups)
    by_clip = tables.aggregate(run, tables.TableOptions(baseline="base"))[("other", "psnr[synthetic]")]
    assert by_clip.significant
    table = tables.aggregate(run, tables.TableOptions(baseline="base", group=True, min_clips=5))
    by_group = table[("other", "psnr[synthetic]")]
    assert by_group.test_n == 8 and not by_group.significant and by_group.p > 0.05
    assert by_group.diff_high - by_group.diff_low > 2 * (by_clip.diff_high - by_clip.diff_low)
    assert "clip groups" in tables.markdown(table)
    with pytest.raises(ConfigError, match="records no clip groups"):
        tables.aggregate(run_of({"base": base, "other": other}), tables.TableOptions(group=True))


def _demo(tmp_path: Path, cache_dir: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    assert main(["run", *DEMO, "--out", str(out), f"cache_dir={cache_dir}", *args]) == 0
    return out


@pytest.mark.slow
def test_a_pooled_only_run_counts_its_clips_from_the_partials(tmp_path, cache_dir, capsys):
    """Item 3: --metrics dme_dis alone showed '— (no clip in common)' in every cell, in both clip modes."""
    out = _demo(tmp_path, cache_dir, "pooled", "--methods", "gt,static", "--metrics", "dme_dis")
    for mode in ("common", "own"):
        assert main(["report", str(out), "--format", "json", "--clips", mode, "--out", str(tmp_path / mode)]) == 0
        cells = {c["method"]: c for c in json.loads((tmp_path / mode / "table.json").read_text())["cells"]}
        assert cells["static"]["mean"] is not None and cells["static"]["n"] == 3 and cells["static"]["reason"] is None


@pytest.mark.slow
def test_merging_folders_of_other_settings_is_explicit(tmp_path, cache_dir, capsys):
    """Item 5: folders whose method options differ are refused with the keys named, or kept apart with --allow-mixed;
    folders holding different partials of one clip are an error naming both."""
    a = _demo(tmp_path, cache_dir, "a", "--methods", "gt,mouth_blur", "--metrics", "psnr,dme_dis")
    b = _demo(tmp_path, cache_dir, "b", "--methods", "gt,mouth_blur", "--metrics", "psnr,dme_dis", "mouth_blur.sigma_frac=0.3")
    capsys.readouterr()
    assert main(["report", str(a), str(b), "--format", "json", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "ran with other settings (mouth_blur: sigma_frac)" in err and "--allow-mixed" in err
    assert main(["report", str(a), str(b), "--format", "json", "--out", str(tmp_path / "r"), "--allow-mixed", "--min-clips", "2"]) == 0
    cells = json.loads((tmp_path / "r" / "table.json").read_text())["cells"]
    assert {c["method"] for c in cells} == {"gt", "mouth_blur@a", "mouth_blur@b"}
    dme = {c["method"]: c for c in cells if c["name"] == "dme_dis"}
    assert dme["mouth_blur@a"]["mean"] != dme["mouth_blur@b"]["mean"] and dme["mouth_blur@a"]["n"] == 3

    c = _demo(tmp_path, cache_dir, "c", "--methods", "gt,mouth_blur", "--metrics", "psnr,dme_dis")
    partial = next((c / "partials" / "mouth_blur").rglob("*.npz"))
    with np.load(partial) as z:
        state = {k: z[k] for k in z.files}
    np.savez(partial, **{**state, "sum": state["sum"] + 1.0})
    capsys.readouterr()
    assert main(["report", str(a), str(c), "--format", "json", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "hold different dme_dis partials of mouth_blur" in err and str(a) in err and str(c) in err and len(err.splitlines()) == 1


def test_the_frechet_exchange_engine_is_the_recomputed_difference():
    """The FID/FVD engine of the exchange test equals the two Frechet distances recomputed on the exchanged sets
    (float32 statistic: within 1e-5 relative)."""
    from metrics.fid import FrechetExchange, frechet_distance

    rng = np.random.default_rng(0)
    gt = [rng.normal(size=(20, 48)) for _ in range(10)]
    a = [g + rng.normal(0.3, 1, g.shape) for g in gt]
    b = [g + rng.normal(0.1, 1, g.shape) for g in gt]
    engine, ref = FrechetExchange(a, b, np.concatenate(gt)), np.concatenate(gt)
    for mask in (np.zeros(10, bool), rng.integers(0, 2, 10).astype(bool), np.ones(10, bool)):
        mixed_a = np.concatenate([y if m else x for x, y, m in zip(a, b, mask)])
        mixed_b = np.concatenate([x if m else y for x, y, m in zip(a, b, mask)])
        expected = frechet_distance(mixed_a, ref) - frechet_distance(mixed_b, ref)
        assert engine(mask) == pytest.approx(expected, rel=1e-5, abs=1e-5)


class MeanPool:
    """A pooled metric for tests: the mean of all frames' values of the chosen clips (partials: per-clip frame values)."""

    def __init__(self, frames: dict[tuple[str, str], np.ndarray]):
        self.frames = frames

    def clips(self, method, metric):
        return {c for m, c in self.frames if m == method} or None

    def value(self, method, metric, clips):
        return float(np.concatenate([self.frames[(method, c)] for c in clips]).mean())

    def exchange(self, method, baseline, metric, clips):
        def swapped(mask):
            a = np.concatenate([self.frames[(baseline if f else method, c)] for c, f in zip(clips, mask)])
            b = np.concatenate([self.frames[(method if f else baseline, c)] for c, f in zip(clips, mask)])
            return float(a.mean() - b.mean())

        return swapped


def pooled_run(n: int, shift: float, seed: int = 0) -> tables.Run:
    rng = np.random.default_rng(seed)
    frames = {}
    for i in range(n):
        level = rng.normal(10, 2)
        frames[("base", f"c{i:02d}")] = level + rng.normal(0, 1, 20)
        frames[("other", f"c{i:02d}")] = level + shift + rng.normal(0, 1, 20)
    rows = [ResultRow("syn", "*", m, "pool[synthetic]", float(np.concatenate([v for (mm, _), v in frames.items() if mm == m]).mean()), 20 * n,
                      "ok", None, "cfg", "git", higher_is_better=False) for m in ("base", "other")]  # fmt: skip
    run = tables.Run(Path("."), rows, manifest={"clips": {f"c{i:02d}": {} for i in range(n)}})
    run.pooled = MeanPool(frames)
    return run


def compile_if_possible(tex: str, where: Path) -> None:
    """pdflatex compiles the table when it is installed (tests/test_research.py skips its own check otherwise)."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None or not subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout:
        return
    (where / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n")
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=where, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]


def test_pooled_cells_get_a_jackknife_interval_and_an_exchange_test(tmp_path):
    """A pooled-only run (item 3: its clips come from the partials): each value's interval holds it, a real shift is
    found by the exchange test with the draws chosen from the family, and too few draws for Holm are warned about."""
    table = tables.aggregate(pooled_run(20, 1.5), tables.TableOptions(baseline="base"))
    cell = table[("other", "pool[synthetic]")]
    assert cell.n == 20 and cell.ci_method == "jackknife" and cell.ci_low < cell.mean < cell.ci_high
    assert cell.test == "exchange" and cell.draws == table.pooled_draws == 39 and cell.p == pytest.approx(1 / 40)
    assert cell.direction == "worse" and cell.diff_low is None and "(n=20)" in tables.markdown(table)
    assert "exchange permutation" in tables.markdown(table) and "no interval of the difference" in tables.markdown(table)
    assert "pool" in tables.to_csv(tables.tidy(table))
    tex = tables.latex(table)
    compile_if_possible(tex, tmp_path)
    few = tables.aggregate(pooled_run(20, 1.5), tables.TableOptions(baseline="base", pooled_resamples=10))
    assert any("none can reach α = 0.05" in n for n in few.notes) and not few[("other", "pool[synthetic]")].significant
    null = tables.aggregate(pooled_run(20, 0.0, seed=3), tables.TableOptions(baseline="base"))
    assert not null[("other", "pool[synthetic]")].significant
