"""CI guard on metric values: fixed runs compared with committed golden rows by `stsa-bench check`.

Regenerate deliberately (after an intended change) with the commands in tests/golden/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stsa_bench.cli import main

GOLDEN = Path(__file__).parent / "golden"
DEMO = ["--methods", "gt,static,shift", "--metrics", "psnr,ssim,ssim_skimage,lipmd,dme_dis"]
SHARED_CLIPS = "[rizkiarm__LipNet__bbaf2n,smeetrs__deep_avsr__00001,Hangz-nju-cuhk__Talking-Face_PC-AVS__00010]"
SHARED = ["--methods", "gt,static,shift", "--metrics", "psnr,ssim,fid,lipmd,lse_d,lse_c,dme_dis"]


def run_demo(out: Path, cache_dir: Path, metrics: list[str] | None = None) -> int:
    return main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false", *(metrics or DEMO)])


@pytest.mark.slow
def test_demo_matches_golden(tmp_path, cache_dir, capsys):
    assert run_demo(tmp_path / "run", cache_dir) == 0
    rc = main(["check", str(tmp_path / "run"), "--golden", str(GOLDEN / "demo.json")])
    assert rc == 0, capsys.readouterr().out


@pytest.mark.slow
def test_changed_ssim_window_fails_check(tmp_path, cache_dir, capsys, monkeypatch):
    """A change of a metric's implementation that its declared protocol does not show (the SSIM filter
    taps 11 -> 7 while the id still says gauss11) must fail as drift, naming the metric."""
    import metrics.ssim as ssim_module

    original = ssim_module.gaussian_1d
    monkeypatch.setattr(ssim_module, "gaussian_1d", lambda size=11, sigma=1.5: np.pad(original(7, sigma), 2))
    assert run_demo(tmp_path / "changed", cache_dir) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "changed"), "--golden", str(GOLDEN / "demo.json")]) == 1
    out = capsys.readouterr().out
    assert "check FAILED" in out and "| ssim[" in out and "| drift |" in out
    assert "| psnr[" not in out  # only the changed metric drifts
    monkeypatch.undo()
    assert run_demo(tmp_path / "reverted", cache_dir) == 0
    assert main(["check", str(tmp_path / "reverted"), "--golden", str(GOLDEN / "demo.json")]) == 0


@pytest.mark.slow
def test_check_reports_missing_rows_and_counts(tmp_path, cache_dir, capsys):
    assert run_demo(tmp_path / "run", cache_dir, ["--methods", "gt", "--metrics", "psnr"]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "run"), "--golden", str(GOLDEN / "demo.json")]) == 1
    out = capsys.readouterr().out
    assert "missing row" in out and "n changed" in out


@pytest.mark.slow
def test_tolerance_option(tmp_path, cache_dir, capsys):
    import json

    assert run_demo(tmp_path / "run", cache_dir) == 0
    golden = json.loads((GOLDEN / "demo.json").read_text())
    for row in golden["rows"]:
        if row["metric"].startswith("psnr[") and row["method"] == "static":
            row["value"] += 0.005
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(golden))
    assert main(["check", str(tmp_path / "run"), "--golden", str(moved)]) == 1
    assert main(["check", str(tmp_path / "run"), "--golden", str(moved), "--tolerance", "psnr=0.01"]) == 0
    assert main(["check", str(tmp_path / "run"), "--golden", str(moved), "--tolerance", "psnr=0.1%"]) == 0


@pytest.mark.slow
def test_shared_clips_match_golden(shared, golden_path, tmp_path, cache_dir, capsys):
    """Three real clips, golden SyncNet weights and the shared FID weights: every paper metric that can run here."""
    out = tmp_path / "shared"
    rc = main([
        "run", "--suite", "folder", "--out", str(out), f"data.root={shared / 'clips'}", f"suite.include={SHARED_CLIPS}",
        f"weights.syncnet={golden_path}", f"weights.fid={shared / 'weights' / 'pt_inception-2015-12-05_convonly.pth'}",
        f"cache_dir={cache_dir}", "runtime.progress=false", *SHARED,
    ])  # fmt: skip
    assert rc == 0
    capsys.readouterr()
    # LSE-C is the difference of two float32 distances of about 660 under the golden SyncNet weights,
    # so its resolution is one float32 step there (6.1e-5): the same code gives values one step apart
    # under another torch build. shared/golden/REFERENCE_VALUES.md bounds |dLSE-C| by 2e-5 x LSE-D.
    rc = main(["check", str(out), "--golden", str(GOLDEN / "shared_clips.json"), "--tolerance", "fid=0.01%",
               "--tolerance", "lse_c=0.00025", "--tolerance", "lse_d=0.00025"])  # fmt: skip
    assert rc == 0, capsys.readouterr().out
