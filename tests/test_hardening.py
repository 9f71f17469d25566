"""Hostile inputs, names, signals, disks and concurrent runs (issue 16): each case is built here, and none
may crash a run, hide a clip or change a table silently."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stsa_bench.cli import main
from stsa_bench.core.errors import ClipError
from stsa_bench.core.results import read_rows, scan_rows

from .helpers import bad_inputs, demo_media, make_config, write_sideways, write_vfr_video

RUN = ["runtime.progress=false", "--methods", "gt", "--metrics", "psnr"]
BAD_NAME = os.fsdecode(b"bad\xff\xfename.mkv")
LONG_NAME = "x" * 246 + ".mkv"


def demo_clips(folder: Path, n: int = 2) -> list[Path]:
    from stsa_bench.core.demo import ensure_demo_clips

    ensure_demo_clips(folder, n_clips=n, seconds=0.6, size=96, seed=0)
    return sorted(folder.glob("demo_*.mkv"))


def truncated_faststart(src: Path, out: Path, keep: float = 0.3) -> Path:
    """The first `keep` of a faststart copy of `src` (index at the front, so the container still declares every frame)."""
    import av

    full = out.with_suffix(".full.mp4")
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for pkt in i.demux():
            if pkt.dts is not None:
                pkt.stream = streams[pkt.stream.index]
                o.mux(pkt)
    data = full.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return out


def test_decoding_cross_checks_the_declared_frame_count(shared, tmp_path):
    from stsa_bench.core.media import decode_video

    clip = truncated_faststart(shared / "clips" / "smeetrs__deep_avsr__00004.mp4", tmp_path / "cut.mp4")
    with pytest.raises(ClipError, match=r"cut.mp4: truncated: decoded \d+ of the 138 frames the container declares"):
        decode_video(clip)
    frames, info = decode_video(shared / "clips" / "smeetrs__deep_avsr__00004.mp4")
    assert len(frames) == info.declared_frames == 138


def test_decoding_cross_checks_the_declared_audio_length(shared, tmp_path):
    from stsa_bench.core.media import decode_audio

    clip = truncated_faststart(shared / "clips" / "smeetrs__deep_avsr__00004.mp4", tmp_path / "cut.mp4", keep=0.5)
    with pytest.raises(ClipError, match=r"cut.mp4: truncated: decoded 2.56 s of the 5.52 s of audio the container declares"):
        decode_audio(clip)


@pytest.mark.slow
def test_a_folder_of_hostile_files_is_scored_clip_by_clip(shared, tmp_path, cache_dir, capsys):
    """Every bad input of the README's table in one folder with good clips (a name that is not UTF-8, a
    250-byte name, two files with one stem, a truncated mp4, and tests/helpers.bad_inputs: corrupt, no
    audio, no face, one frame, mismatched audio, 30 fps, VFR, two audio streams, broken link, a folder):
    exit 0, every file has rows, each bad one a reason naming it; a resume and a report work."""
    data = tmp_path / "data"
    cases = bad_inputs(data)
    good = demo_clips(tmp_path / "demo")
    for p in good:
        shutil.copy(p, data / p.name)
    shutil.copy(good[0], data / BAD_NAME)
    shutil.copy(good[1], data / LONG_NAME)
    shutil.copy(good[0], data / "dup.mkv")
    shutil.copy(good[1], data / "dup.mov")
    truncated_faststart(shared / "clips" / "smeetrs__deep_avsr__00004.mp4", data / "cut.mp4")
    out = tmp_path / "out"
    args = ["run", "--suite", "folder", "--out", str(out), f"data.root={data}", f"cache_dir={cache_dir}", *RUN]
    assert main(args) == 0
    rows = {r.clip: r for r in read_rows(out / "results.jsonl")}
    hostile = {"demo_00": ("ok", ""), "demo_01": ("ok", ""), os.fsdecode(b"bad\xff\xfename"): ("ok", ""), "x" * 246: ("ok", ""),
               "dup.mkv": ("ok", ""), "dup.mov": ("ok", ""), "cut": ("failed", "cut.mp4: truncated")}  # fmt: skip
    expected = {**cases, **hostile}
    assert set(rows) == set(expected)
    for clip, (status, fragment) in expected.items():
        r = rows[clip]
        assert r.status == status, (clip, r.error)
        assert fragment in (r.error if status == "failed" else r.note or ""), (clip, r.error, r.note)
        if status == "failed":
            assert "\n" not in r.error and (os.fsdecode(os.fsencode(clip)) in r.error or str(data) in r.error)
    assert os.fsencode(next(c for c in rows if c.startswith("bad"))) == b"bad\xff\xfename"
    assert set(json.loads((out / "manifest.json").read_text())["clips"]) == set(expected)
    n_failed = sum(s == "failed" for s, _ in expected.values())
    capsys.readouterr()
    assert main(args) == 0 and f"(0 new, {n_failed} failed)" in capsys.readouterr().out
    assert main(["run", *args[1:], "--strict"]) == 1
    assert main(["report", str(out), "--format", "md,html"]) == 0
    md = (out / "report" / "table.md").read_text(encoding="utf-8")
    assert "bad\\udcff\\udcfename" in md and f"Methods compared on the {len(expected) - n_failed} clips of {len(expected)}" in md


def test_a_phone_video_stored_sideways_is_scored_upright(tmp_path, cache_dir):
    """The same clip stored upright and stored sideways with a display matrix (as phones record portrait video):
    the same crops and rows, and the sideways one's rows say that its frames were turned."""
    frames, audio = demo_media(2, seconds=1.2)
    frames = np.pad(frames, ((0, 0), (0, 0), (32, 32), (0, 0)))
    data = tmp_path / "data"
    data.mkdir()
    write_vfr_video(data / "upright.mkv", frames, [i / 25 for i in range(len(frames))], audio)
    write_sideways(data / "sideways.mkv", frames, audio, degrees=-90)
    out = tmp_path / "out"
    args = ["run", "--suite", "folder", "--out", str(out), f"data.root={data}", f"cache_dir={cache_dir}", "runtime.progress=false",
            "--methods", "static", "--metrics", "psnr,ssim"]  # fmt: skip
    assert main(args) == 0
    rows = {(r.clip, r.metric.split("[")[0]): r for r in read_rows(out / "results.jsonl")}
    for metric in ("psnr", "ssim"):
        up, side = rows[("upright", metric)], rows[("sideways", metric)]
        assert up.status == side.status == "ok" and up.value == side.value
        assert "rotated 90° clockwise" in side.note and "rotated" not in (up.note or "")


def test_report_refuses_a_corrupted_line_or_skips_it_on_request(tmp_path, capsys):
    from .test_plots_html import synthetic_rows

    out = tmp_path / "run"
    out.mkdir()
    lines = [r.to_json() for r in synthetic_rows()[:6]]
    for i, (bad, why) in enumerate(((lines[2][:-9], "not JSON"), ("[1, 2]", "not a JSON object"),
                                     (lines[4].replace('"value": ', '"value": "high", "x": '), "value is not a number"))):  # fmt: skip
        text = lines[:2] + [bad] + lines[3:]
        (out / "results.jsonl").write_text("\n".join(text) + "\n")
        assert main(["report", str(out), "--format", "md"]) == 2
        err = capsys.readouterr().err
        assert f"{out / 'results.jsonl'}: line 3 is " in err and why in err and "--skip-bad-rows" in err and "Traceback" not in err
    assert main(["report", str(out), "--format", "md", "--skip-bad-rows"]) == 0
    assert "**1 lines of results.jsonl are not rows and were skipped**" in capsys.readouterr().out
    rows, bad = scan_rows(out / "results.jsonl")
    assert len(rows) == 5 and [b.number for b in bad] == [3]
    (out / "results.jsonl").write_bytes(b"\n".join(x.encode() for x in lines) + b"\n" + lines[0].encode()[:40])
    assert [b.reason.split(" ")[0] for b in scan_rows(out / "results.jsonl")[1]] == ["cut"]


@pytest.mark.parametrize(
    "content, fragment",
    [("{not json", "not JSON"), ("[1, 2]", "expected an object with a list of rows"),
     ('{"rows": [{"suite": "demo"}]}', "golden row 0 lacks clip"), (b"\xff\xfe", "not UTF-8")],
)  # fmt: skip
def test_check_with_a_broken_golden_file_is_a_usage_error(tmp_path, capsys, content, fragment):
    from .test_plots_html import synthetic_rows

    out = tmp_path / "run"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(r.to_json() + "\n" for r in synthetic_rows()[:3]))
    golden = tmp_path / "golden.json"
    golden.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["check", str(out), "--golden", str(golden)]) == 2
    err = capsys.readouterr().err
    assert f"{golden}: " in err and fragment in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize("spec", ["psnr=abc", "psnr=nan", "psnr=-1", "=0.1", "psnr"])
def test_check_with_a_tolerance_that_is_not_one_is_a_usage_error(tmp_path, capsys, spec):
    from .test_plots_html import synthetic_rows

    out = tmp_path / "run"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(r.to_json() + "\n" for r in synthetic_rows()[:3]))
    assert main(["check", str(out), "--golden", str(tmp_path / "g.json"), "--update"]) == 0
    assert main(["check", str(out), "--golden", str(tmp_path / "g.json"), "--tolerance", spec]) == 2
    err = capsys.readouterr().err
    assert f"--tolerance {spec!r} is not metric=value or metric=value%" in err and err.count("\n") == 1


def test_out_that_cannot_be_a_folder_is_a_usage_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, fragment in ((afile, "is a file, not a folder"), (afile / "sub", "cannot write there")):
        assert main(["run", "--suite", "demo", "--out", str(out), *RUN]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}: {fragment}" in err and "Traceback" not in err


@pytest.mark.parametrize("size", [0, -4])
def test_batch_size_below_one_is_refused(size):
    from stsa_bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"runtime.batch_size must be at least 1, got {size}"):
        make_config(f"runtime.batch_size={size}")


@pytest.mark.parametrize(
    "override, message",
    [
        ("preprocess.fps=0", "preprocess.fps must be from 1 to 240, got 0"),
        ("preprocess.sample_rate=7", "preprocess.sample_rate must be at least 1000, got 7"),
        ("preprocess.crop_size=-5", "preprocess.crop_size must be at least 16, got -5"),
        ("preprocess.box_scale=0", "preprocess.box_scale must be above 0, got 0.0"),
        ("preprocess.min_face_ratio=1.5", "preprocess.min_face_ratio must be from 0 to 1, got 1.5"),
        ("suite.n_clips=0", "suite.n_clips must be at least 1, got 0"),
        ("runtime.device=gpu", "device 'gpu' is not a torch device (auto, cpu, cuda or cuda:N)"),
        ("--methods=results", "method results needs results.dir=DIR"),
        ("--methods=mine:results mine.dir=/nonexistent", "mine.dir=/nonexistent: not a folder"),
        ("--methods=mouth_blur mouth_blur.sigma_frac=-1", "mouth_blur: margin must be at least 0 and sigma_frac above 0"),
        ("--metrics=lse_c lse.vshift=0", "lse.vshift and lse.batch_size must be at least 1, got vshift=0"),
    ],
)
def test_settings_that_cannot_make_a_table_are_refused_before_the_run(tmp_path, capsys, override, message):
    """Each of these used to run and fail every row (or to give a table of nothing, or the ground truth for mouth_blur),
    and leave a run folder behind."""
    out = tmp_path / "out"
    assert main(["run", "--suite", "demo", "--out", str(out), *RUN, *override.split()]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_cuda_device_on_a_machine_without_one_is_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines without it")
    out = tmp_path / "out"
    assert main(["run", "--suite", "demo", "--out", str(out), *RUN, "runtime.device=cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda': this machine has no CUDA device" in err and "use cpu or auto" in err and not out.exists()
    assert main(["doctor", "--suite", "demo", "--methods", "gt", "--metrics", "psnr", "runtime.device=cuda:1"]) == 1
    assert "runtime.device=cuda:1: device 'cuda:1': this machine has no CUDA device" in capsys.readouterr().out


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path, capsys):
    from stsa_bench.core.paths import owner_lock

    out = tmp_path / "out"
    with owner_lock(out / ".run.lock", f"run folder {out}"):
        assert main(["run", "--suite", "demo", "--out", str(out), *RUN]) == 2
    err = capsys.readouterr().err
    assert f"run folder {out} is in use by another stsa-bench process (pid {os.getpid()}" in err


def test_long_and_odd_clip_ids_in_file_names_and_tables():
    from reports import tables
    from stsa_bench.core.layout import MAX_STEM_BYTES, file_stem

    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    assert len(file_stem(long_a).encode()) <= MAX_STEM_BYTES and file_stem(long_a) != file_stem(long_b)
    assert file_stem("short/id") == "short__id"
    from .test_plots_html import synthetic_rows

    rows = [r.__class__(**{**r.__dict__, "clip": "a|b\nc"}) if r.clip == "c1" else r for r in synthetic_rows()]
    md = tables.per_clip_markdown(tables.Run(Path("."), rows))
    assert "| a\\|b c |" in md


def test_stale_temporary_entries_are_swept(tmp_path):
    from stsa_bench.core.paths import build_dir_atomically, sweep_stale_temps

    final = tmp_path / "entry"
    stale = tmp_path / f".{final.name}.abc123.tmp"
    stale.mkdir()
    (stale / "half").write_text("x")
    build_dir_atomically(final, lambda d: (d / "f").write_text("ok"))
    assert not stale.exists() and (final / "f").read_text() == "ok"
    old = tmp_path / "sub" / ".x.npy.zz.tmp"
    old.parent.mkdir()
    old.write_text("x")
    fresh = tmp_path / "sub" / ".y.npy.zz.tmp"
    fresh.write_text("y")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert sweep_stale_temps(tmp_path, older_than_s=3600) == 1
    assert not old.exists() and fresh.exists()


def test_fuzzed_bytes_raise_only_one_line_errors(tmp_path):
    """Seeded random and mutated bytes through the media probe, the decoder and the row reader."""
    from stsa_bench.core.media import decode_video, probe_frames

    from .test_plots_html import synthetic_rows

    rng = np.random.default_rng(0)
    seed_video = demo_clips(tmp_path / "demo", n=1)[0].read_bytes()
    row_bytes = "".join(r.to_json() + "\n" for r in synthetic_rows()[:4]).encode()
    for i in range(12):
        blob = bytearray(seed_video if i % 2 else rng.bytes(4096))
        for j in rng.integers(0, len(blob), 40):
            blob[j] = int(rng.integers(0, 256))
        path = tmp_path / f"fuzz{i}.mkv"
        path.write_bytes(bytes(blob[: int(rng.integers(64, len(blob)))]))
        assert isinstance(probe_frames(path), int)
        try:
            decode_video(path)
        except ClipError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        rows = bytearray(row_bytes)
        for j in rng.integers(0, len(rows), 8):
            rows[j] = int(rng.integers(0, 256))
        (tmp_path / "r.jsonl").write_bytes(bytes(rows))
        good, bad = scan_rows(tmp_path / "r.jsonl")
        assert len(good) + len(bad) >= 1


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_the_rerun_completes(tmp_path, cache_dir, monkeypatch, capsys):
    import stsa_bench.core.results as results

    real_write, calls = os.write, []

    def full(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    out = tmp_path / "out"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", *RUN]
    monkeypatch.setattr(results.os, "write", full)
    assert main(args) == 2
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(results.os, "write", real_write)
    assert len(read_rows(out / "results.jsonl")) == 1 and scan_rows(out / "results.jsonl")[1] == []
    assert main(args) == 0
    assert len(read_rows(out / "results.jsonl")) == 3


@pytest.mark.slow
def test_a_full_disk_while_saving_partials_stops_the_run_without_failed_rows(tmp_path, cache_dir, monkeypatch, capsys):
    import stsa_bench.run_files as run_files

    real = run_files.atomic_write_bytes

    def full(path, data):
        if str(path).endswith(".npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    out = tmp_path / "out"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false", "--methods", "gt",
            "--metrics", "psnr,dme_dis"]  # fmt: skip
    monkeypatch.setattr(run_files, "atomic_write_bytes", full)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and ".npz" in err
    assert not [r for r in read_rows(out / "results.jsonl") if r.status == "failed"]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(run_files, "atomic_write_bytes", real)
    assert main(args) == 0
    assert {r.clip for r in read_rows(out / "results.jsonl") if r.metric.startswith("dme_dis")} == {"*"}


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, what", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_stops_after_a_row_and_the_rerun_resumes(tmp_path, cache_dir, sig, code, what):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "stsa_bench.cli", "run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}",
           "runtime.progress=false", "--methods", "gt,static,shift", "--metrics", "psnr,ssim"]  # fmt: skip
    # SIGINT may be ignored by a test runner's worker, and an ignored SIGINT is inherited: restore the default
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "results.jsonl").is_file():
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"{what}; every row written so far is kept: run the same command again to resume" in err
    assert "Traceback" not in err
    assert scan_rows(out / "results.jsonl")[1] == []
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 0
    assert len(read_rows(out / "results.jsonl")) == 3 * 3 * 2
