from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stsa_bench.cli import main
from stsa_bench.core.results import read_rows

from .helpers import bad_inputs


def rows_by(out):
    return {(r.clip, r.method, r.metric.split("[")[0]): r for r in read_rows(out / "results.jsonl")}


@pytest.mark.slow
def test_demo_run_acceptance(demo_run):
    rc, out = demo_run
    assert rc == 0
    rows = rows_by(out)
    assert len(rows) == 3 * 3 * 2
    assert all(r.status == "ok" for r in rows.values())
    for clip in ("demo_00", "demo_01", "demo_02"):
        assert rows[(clip, "gt", "ssim")].value == pytest.approx(1.0, abs=1e-6)
        assert rows[(clip, "gt", "psnr")].value == pytest.approx(80.0)  # documented cap: identical frames
        assert rows[(clip, "static", "psnr")].value < 40
        assert rows[(clip, "static", "ssim")].value < rows[(clip, "gt", "ssim")].value
        assert rows[(clip, "shift", "psnr")].value == pytest.approx(80.0)
    r = rows[("demo_00", "gt", "psnr")]
    assert r.n_frames == 60 and r.config_hash and r.git_sha and r.clip_sha256 and r.error is None
    summary = (out / "summary.md").read_text()
    assert "| gt | 80.0000 | 1.0000 | 3 | 0 |" in summary
    # read-only by its mode bits (os.access(W_OK) is always true for root, and CI runs as root)
    assert (out / "config.yaml").is_file() and (out / "config.yaml").stat().st_mode & 0o222 == 0
    assert json.loads((out / "run.json").read_text())["config_hash"] == r.config_hash


@pytest.mark.slow
def test_rerun_is_a_noop_and_other_config_is_refused(demo_run, cache_dir, capsys):
    rc, out = demo_run
    before = (out / "results.jsonl").read_text()
    assert main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false"]) == 0
    assert (out / "results.jsonl").read_text() == before
    assert "(0 new, 0 failed)" in capsys.readouterr().out
    assert main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "shift.frames=2"]) == 2
    assert "method 'shift' ran here with other options (differs in frames)" in capsys.readouterr().err


@pytest.mark.slow
def test_bad_inputs_never_stop_a_run(tmp_path, cache_dir, capsys):
    cases = bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    rc = main(["run", "--suite", "folder", "--out", str(out), f"data.root={tmp_path / 'bad'}", f"cache_dir={cache_dir}",
               "runtime.progress=false"])
    assert rc == 0
    rows = rows_by(out)
    for clip, (status, fragment) in cases.items():
        got = [r for (c, _, _), r in rows.items() if c == clip]
        assert len(got) == 6, clip
        assert {r.status for r in got} == {status}, (clip, got[0].error)
        if status == "failed":
            assert all(fragment in r.error and "\n" not in r.error for r in got), (clip, got[0].error)
            assert clip in got[0].error or str(tmp_path) in got[0].error
        else:
            assert all(fragment in (r.note or "") for r in got), (clip, got[0].note)
    summary = (out / "summary.md").read_text()
    n_bad = sum(s == "failed" for s, _ in cases.values())
    assert f"| gt | 80.0000 ({len(cases) - n_bad} ok, {n_bad} failed)" in summary
    assert f"{6 * n_bad} failed rows" in summary


@pytest.mark.slow
def test_prepare_reports_faceless_frames(tmp_path, cache_dir, capsys):
    bad_inputs(tmp_path / "bad")
    assert main(["prepare", "--suite", "folder", f"data.root={tmp_path / 'bad'}", f"cache_dir={cache_dir}", "runtime.progress=false"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert lines["some_faceless"][1:4] == ["60", "50", "cached"] or lines["some_faceless"][1:4] == ["60", "50", "prepared"]
    assert lines["no_face"][1] == "-" and "no face found" in " ".join(lines["no_face"])


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path):
    """kill -9 mid-run, run again: finished rows are kept as they were, the rest is done, nothing is duplicated."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "stsa_bench.cli", "run", "--suite", "demo", "--out", str(out), f"cache_dir={cache}",
           "suite.n_clips=4", "runtime.progress=false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {r.key: r for r in read_rows(results)}
    assert 0 < len(first) < 4 * 3 * 2
    with open(results, "a") as f:
        f.write('{"suite": "demo", "clip": "torn')  # a write cut off by the kill
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = results.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    final = {r.key: r for r in read_rows(results)}
    assert len(lines) == len(final) == 4 * 3 * 2
    assert all(final[k] == r for k, r in first.items())


@pytest.mark.slow
def test_retry_failed(tmp_path, cache_dir):
    """A failed row is kept as it is on a plain rerun, even once its input is fixed; with
    runtime.retry_failed=true it is dropped and evaluated again (now ok), and nothing is duplicated."""
    from stsa_bench.core.media import write_video

    from .helpers import demo_media

    d = tmp_path / "vids"
    d.mkdir()
    (d / "x.mkv").write_bytes(b"not a video")
    out = tmp_path / "out"
    args = ["run", "--suite", "folder", "--out", str(out), f"data.root={d}", f"cache_dir={cache_dir}", "runtime.progress=false",
            "--methods", "gt", "--metrics", "psnr"]
    assert main(args) == 0
    (first,) = read_rows(out / "results.jsonl")
    assert first.status == "failed" and first.value is None

    # fix the input (refreeze: its content changed on purpose); the failed row must not be redone without retry_failed
    frames, audio = demo_media(0)
    write_video(d / "x.mkv", frames, 25, audio)
    assert main(args + ["runtime.refreeze=true"]) == 0
    (kept,) = read_rows(out / "results.jsonl")
    assert kept == first

    assert main(args + ["runtime.refreeze=true", "runtime.retry_failed=true"]) == 0
    (again,) = read_rows(out / "results.jsonl")
    assert again.status == "ok" and again.error is None, again.error
    assert again.value == pytest.approx(80.0) and again.n_frames == len(frames)  # gt vs itself: the documented PSNR cap


def test_cli_help_and_ls(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--suite" in text and "key=value" in text and "STSA_BENCH_LRS2_ROOT" in text
    assert main(["ls"]) == 0
    text = capsys.readouterr().out
    for name in ("lrs2", "cmlr", "folder", "demo", "gt", "static", "shift", "psnr[face128@25fps", "ssim[face128@25fps"):
        assert name in text


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["run", "--suite", "lrs"], "did you mean 'lrs2'"),
        (["run", "--methods", "gt,statik"], "did you mean 'static'"),
        (["run", "--metrics", "psnrr"], "did you mean 'psnr'"),
        (["run", "preprocess.fsp=3"], "did you mean 'preprocess.fps'"),
        (["run", "suite=lrs3"], "unknown suite 'lrs3'"),
    ],
)
def test_cli_unknown_names(argv, fragment, capsys):
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.slow
def test_metrics_all_without_weights(tmp_path, cache_dir, monkeypatch, capsys):
    """--metrics all: weight-free metrics complete; each weighted metric fails per clip with a reason
    naming its file and URL; the pooled rows (clip '*') say why; the run exits 0."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("STSA_BENCH_WEIGHTS", raising=False)
    out = tmp_path / "out"
    rc = main(["run", "--suite", "demo", "--out", str(out), "--methods", "gt,static", "--metrics", "all",
               f"cache_dir={cache_dir}", "runtime.progress=false"])
    assert rc == 0
    rows = read_rows(out / "results.jsonl")
    by_metric: dict[str, list] = {}
    for r in rows:
        by_metric.setdefault(r.metric.split("[")[0], []).append(r)
    assert set(by_metric) == {"psnr", "ssim", "fid", "lpips", "lipmd", "lse_d", "lse_c", "dme"}
    for name in ("psnr", "ssim", "lipmd"):
        assert all(r.status == "ok" for r in by_metric[name]), name
    assert [r.value for r in by_metric["lipmd"] if r.method == "gt"] == [0.0, 0.0, 0.0]
    files = {"fid": "pt_inception", "lpips": "alexnet-owt", "lse_c": "syncnet_v2.model", "lse_d": "syncnet_v2.model", "dme": "raft_large"}
    for name, fragment in files.items():
        per_clip = [r for r in by_metric[name] if r.clip != "*"]
        assert len(per_clip) == 6 and all(r.status == "failed" and fragment in r.error and "http" in r.error for r in per_clip), name
    pooled = [r for r in rows if r.clip == "*"]
    assert {(r.method, r.metric.split("[")[0]) for r in pooled} == {(m, x) for m in ("gt", "static") for x in ("fid", "dme")}
    assert all(r.status == "failed" and "no clip could be scored" in r.error for r in pooled)
    summary = (out / "summary.md").read_text()
    assert "lse_c ↑" in summary and "dme ↓" in summary


@pytest.mark.slow
def test_timing_json_names_the_stages_and_a_cold_cache_decodes_each_clip_once(tmp_path, capsys, monkeypatch):
    from stsa_bench.core import media

    opened = []
    frames = media.VideoChunks._frames
    monkeypatch.setattr(media.VideoChunks, "_frames", lambda self: (opened.append(self.path), frames(self))[1])
    cache = tmp_path / "cache"
    args = ["run", "--suite", "demo", f"cache_dir={cache}", "suite.n_clips=2", "--methods", "gt,static", "--metrics", "psnr,dme_dis",
            "runtime.progress=false"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "cold")]) == 0
    assert "time " in capsys.readouterr().out
    cold = json.loads((tmp_path / "cold" / "timing.json").read_text())
    stages = cold["stages"]
    assert {"setup", "decode", "landmarks", "crop", "generate/gt", "generate/static", "metric/psnr", "metric/dme_dis", "pooled/dme_dis", "io"} <= stages.keys()
    assert len(opened) == len(set(opened)) == 2, "a cold cache decodes each clip once"
    assert stages["landmarks"]["calls"] == 2 * 2, "60 frames in chunks of 32"
    assert stages["metric/psnr"]["calls"] == 4 and stages["pooled/dme_dis"]["calls"] == 2
    assert stages["setup"]["calls"] == 2, "the suite loaded, then methods, metrics and the run folder"
    assert sum(v["s"] for v in stages.values()) <= cold["total_s"] + 1e-3 and cold["world_size"] == 1
    assert main([*args, "--out", str(tmp_path / "warm")]) == 0
    warm = json.loads((tmp_path / "warm" / "timing.json").read_text())["stages"]
    assert len(opened) == 4 and "decode" in warm and "landmarks" not in warm, "a warm cache decodes the frames only"
