"""The bench engine (stsa_bench/bench.py) in quick mode on the CPU: one run, structure of its report.

No timed assertions: only that every component has a positive frames/s or a reason it has none.
"""

from __future__ import annotations

import json

import pytest

from stsa_bench.bench import bench_table, run_bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    report = run_bench("cpu", quick=True, out=out, log=lines.append)
    return report, out, lines


def test_bench_json_is_written_and_matches_the_returned_report(quick):
    report, out, _ = quick
    saved = json.loads((out / "bench.json").read_text())
    assert saved["components"].keys() == report["components"].keys()
    assert saved["plan"]["device"] == "cpu" and saved["plan"]["quick"] is True
    assert saved["complete"] is True and saved["wall_s"] > 0
    machine = saved["machine"]
    assert machine["torch"] and machine["cpu_count"] >= 1 and machine["device_name"]


def test_every_component_has_a_speed_or_a_reason(quick):
    report, _, _ = quick
    comps = report["components"]
    expected = {"decode", "facemesh", "wav2lip", "paper_metrics", "stsa.one_frame_loop", "stsa.method.fp32"}
    expected |= {f"metric.{m}" for m in ("psnr", "ssim", "lpips", "fid", "lse", "dme_dis", "dme", "fvd", "csim")}
    expected |= {f"stsa.networks.{p}" for p in ("fp32", "bf16", "fp16")}
    expected |= {f"train.{s}" for s in ("guidance", "synthesis", "finetune", "syncnet")}
    assert expected <= comps.keys()
    for name, rec in comps.items():
        fps = rec.get("frames_per_s")
        reason = rec.get("skipped") or rec.get("error")
        assert (fps is not None and fps > 0) or (isinstance(reason, str) and reason), f"{name}: {rec}"
        if fps is not None and name != "paper_metrics":
            assert rec["device"] == "cpu" and rec["batch_size"] >= 1 and rec["peak_memory_mb"] > 0, name


def test_stsa_networks_fp32_is_measured_and_fp16_skipped_on_cpu(quick):
    comps = quick[0]["components"]
    assert comps["stsa.networks.fp32"]["frames_per_s"] > 0
    assert comps["stsa.networks.fp32"]["precision"] == "fp32"
    assert "CUDA" in comps["stsa.networks.fp16"]["skipped"]


def test_method_reports_the_paste_back_share(quick):
    rec = quick[0]["components"]["stsa.method.fp32"]
    if "error" in rec:
        pytest.fail(rec["error"])
    shares = [rec[f"{k}_share"] for k in ("prepare", "networks", "paste_back")]
    assert all(0 <= s <= 1 for s in shares) and sum(shares) == pytest.approx(1, abs=0.01)


def test_table_mentions_every_component(quick):
    report, _, lines = quick
    table = bench_table(report)
    assert table.startswith("| component | frames/s |")
    for name in report["components"]:
        assert f"| {name} |" in table
    assert table in lines, "the table is logged"
