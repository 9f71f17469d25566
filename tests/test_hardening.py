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


@pytest.mark.parametrize("where", ["root", "home", "cache", "inside the cache", "data", "other files"])
def test_out_is_refused_where_a_run_folder_does_not_belong(where, tmp_path, cache_dir, capsys, monkeypatch):
    """Issue 30, item 8: `--out /` was accepted (as root it wrote results.jsonl, config.yaml and strips/ into /)."""
    from stsa_bench.core.media import write_video

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    frames, audio = demo_media(0)
    write_video(data / "clip.mkv", frames, 25, audio)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    out, expected = {
        "root": ("/", "is a filesystem root"),
        "home": (tmp_path / "home", "is your home folder"),
        "cache": (cache_dir, "is inside the cache"),
        "inside the cache": (cache_dir / "runs" / "x", "is inside the cache"),
        "data": (data / "run", "is inside the data"),
        "other files": (tmp_path / "other", "holds other files and is not a run folder"),
    }[where]
    before = sorted(os.listdir("/"))
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt",
                 "--metrics", "psnr", "runtime.progress=false"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert f"--out {out}: {expected}" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir("/")) == before and not (data / "run").exists() and not (tmp_path / "other" / "run.json").exists()


def test_out_inside_the_shared_folder_is_refused(tmp_path, monkeypatch):
    from stsa_bench.core import paths
    from stsa_bench.core.errors import ConfigError
    from stsa_bench.run_files import check_out

    monkeypatch.setattr(paths, "shared_root", lambda: tmp_path / "shared")
    with pytest.raises(ConfigError, match="is inside the shared folder"):
        check_out(tmp_path / "shared" / "run")
    assert not (tmp_path / "shared").exists()
    check_out(tmp_path / "fresh")
    assert (tmp_path / "fresh").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "", "--metrics", "psnr"], "--methods is empty; name at least one"),
        (["--methods", "gt", "--metrics", ""], "--metrics is empty; name at least one"),
        (["--methods", "=X:gt", "--metrics", "psnr"], "--methods '=X': a row label starts with a letter, digit or _"),
        (["--methods", "x^y:gt", "--metrics", "psnr"], "--methods 'x^y': a row label starts with"),
        (["--methods", "a/../b:gt", "--metrics", "psnr"], "--methods 'a/../b': a row label starts with"),
        (["--methods", "+x:gt", "--metrics", "psnr"], "--methods '+x': a row label starts with"),
        (["--methods", "gt", "--metrics", "psnr", "preprocess.fps=100000"], "preprocess.fps must be from 1 to 240, got 100000"),
        (["--methods", "gt", "--metrics", "psnr", "cache_dir=/proc/stsa-bench-test"], "cache_dir /proc/stsa-bench-test: not a folder this process can write"),
    ],
)
def test_settings_that_cannot_make_a_table_are_named_in_one_line(args, message, tmp_path, cache_dir, capsys):
    """Issue 30, low items: an empty --methods fell back to the defaults; an unreadable label showed Hydra's grammar;
    fps had no upper bound; a cache that cannot be written said 'No such file or directory'."""
    extra = [] if any(a.startswith("cache_dir=") for a in args) else [f"cache_dir={cache_dir}"]
    assert main(["run", "--suite", "demo", "--out", str(tmp_path / "out"), *args, *extra, "runtime.progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "hydra.cc" not in err
    assert not (tmp_path / "out").exists()


def test_summary_lists_every_method_of_the_folder(tmp_path, cache_dir, capsys):
    """Issue 30: summary.md listed only the last invocation's methods."""
    base = ["run", "--suite", "demo", "--out", str(tmp_path / "run"), f"cache_dir={cache_dir}", "runtime.progress=false", "suite.n_clips=1"]
    assert main([*base, "--methods", "gt,static", "--metrics", "psnr"]) == 0
    assert main([*base, "--methods", "shift", "--metrics", "ssim"]) == 0
    summary = (tmp_path / "run" / "summary.md").read_text()
    for method in ("| gt |", "| static |", "| shift |"):
        assert method in summary
    assert "psnr" in summary and "ssim" in summary


@pytest.mark.slow
def test_nested_and_flat_clips_of_one_name_keep_their_own_files(tmp_path, cache_dir):
    """Issue 30, item 3: with suite.recursive=true, clips `x/y` and `x__y` wrote the same strips/*/x__y.png and
    videos/*/x__y.mp4; the HTML report showed one video for both."""
    from stsa_bench.core.layout import strip_path, video_path
    from stsa_bench.core.media import write_video

    data = tmp_path / "data"
    (data / "x").mkdir(parents=True)
    for path, seed in ((data / "x" / "y.mkv", 0), (data / "x__y.mkv", 1)):
        frames, audio = demo_media(seed)
        write_video(path, frames, 25, audio)
    out = tmp_path / "run"
    assert main(["run", "--suite", "folder", f"data.root={data}", "suite.recursive=true", "--out", str(out), f"cache_dir={cache_dir}",
                 "--methods", "static", "--metrics", "psnr", "runtime.save_videos=true", "runtime.progress=false"]) == 0  # fmt: skip
    clips = sorted(json.loads((out / "manifest.json").read_text())["clips"])
    assert len(clips) == 2 and clips[0].startswith("x/y~") and clips[1].startswith("x__y~")
    files = {clip: (strip_path(out, "static", clip), video_path(out, "static", clip)) for clip in clips}
    assert files[clips[0]][0] != files[clips[1]][0] and files[clips[0]][1] != files[clips[1]][1]
    assert all(p.is_file() for pair in files.values() for p in pair)
    assert files[clips[0]][1].read_bytes() != files[clips[1]][1].read_bytes()


@pytest.mark.slow
def test_results_at_another_frame_rate_are_read_on_the_ground_truths_timeline(tmp_path, cache_dir):
    """Issue 30, item 4: a 30 fps copy of the ground truth was read two frames late by the ffmpeg_cfr emulation
    (PSNR 34.9 instead of 40.1); results are read by timestamp by default, and the row's note says so."""
    from stsa_bench.core.media import write_video

    frames, audio = demo_media(0)
    data, generated = tmp_path / "data", tmp_path / "generated"
    data.mkdir()
    generated.mkdir()
    write_video(data / "clip.mkv", frames, 25, audio)
    at30 = frames[np.minimum(len(frames) - 1, (np.arange(len(frames) * 6 // 5) * 25) // 30)]
    write_video(generated / "clip.mkv", at30, 30, audio)
    out = tmp_path / "run"
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--metrics", "psnr",
                 "--methods", "byts:results,cfr:results", f"byts.dir={generated}", f"cfr.dir={generated}", "byts.pattern={clip}.mkv",
                 "cfr.pattern={clip}.mkv", "cfr.fps_mode=ffmpeg_cfr", "runtime.progress=false"]) == 0  # fmt: skip
    rows = {r.method: r for r in read_rows(out / "results.jsonl")}
    assert rows["byts"].value > rows["cfr"].value + 3
    assert "read at 25 fps from 30 fps (nearest)" in rows["byts"].note and "(ffmpeg_cfr)" in rows["cfr"].note
    # a 30 fps ground truth: a 30 fps result of the same content is read the way the ground truth was (ffmpeg_cfr),
    # so that both land on the same frames
    write_video(data / "clip.mkv", at30, 30, audio)
    out = tmp_path / "run30"
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--metrics", "psnr",
                 "--methods", "results", f"results.dir={generated}", "results.pattern={clip}.mkv", "runtime.progress=false",
                 "runtime.refreeze=true"]) == 0  # fmt: skip
    (row,) = read_rows(out / "results.jsonl")
    assert row.value == 80.0 and "read at 25 fps from 30 fps (ffmpeg_cfr)" in row.note


def _with_audio(path: Path, frames: np.ndarray, rate: int, layout: str) -> None:
    """Lossless video at 25 fps with a sine of 2.4 s at `rate` Hz in `layout` (mono, 5.1, ...)."""
    import av

    with av.open(str(path), mode="w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.pix_fmt, v.width, v.height = "bgr0", frames.shape[2], frames.shape[1]
        a = c.add_stream("pcm_s16le", rate=rate, layout=layout)
        for img in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        n_ch = av.AudioLayout(layout).nb_channels
        t = np.arange(int(len(frames) / 25 * rate)) / rate
        pcm = np.tile((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16), (n_ch, 1)).T.reshape(1, -1)
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="s16", layout=layout)
        af.sample_rate, af.pts = rate, 0
        for p in a.encode(af):
            c.mux(p)
        for p in a.encode():
            c.mux(p)


@pytest.mark.slow
def test_audio_upsampled_or_downmixed_is_noted(tmp_path, cache_dir):
    """Issue 30: 8 kHz or multichannel audio was resampled / downmixed without a word."""
    frames, _ = demo_media(0)
    data = tmp_path / "data"
    data.mkdir()
    _with_audio(data / "low.mkv", frames, 8000, "mono")
    _with_audio(data / "surround.mkv", frames, 48000, "5.1")
    _with_audio(data / "plain.mkv", frames, 16000, "mono")
    out = tmp_path / "run"
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt",
                 "--metrics", "psnr", "runtime.progress=false"]) == 0  # fmt: skip
    notes = {r.clip: r.note or "" for r in read_rows(out / "results.jsonl")}
    assert "audio upsampled from 8000 Hz to 16000 Hz" in notes["low"]
    assert "audio downmixed from 6 channels to mono" in notes["surround"]
    assert "audio" not in notes["plain"]


def test_a_results_file_that_no_clip_reads_is_named(tmp_path, cache_dir, capsys):
    """Issue 30: a results folder's extra file (a clip outside the suite, a misnamed file) was ignored without a word."""
    from stsa_bench.core.media import write_video

    frames, audio = demo_media(0)
    data, generated = tmp_path / "data", tmp_path / "generated"
    data.mkdir()
    generated.mkdir()
    write_video(data / "clip.mkv", frames[:10], 25, audio[:6400])
    for name in ("clip.mkv", "Clip_typo.mkv", "other.mkv"):
        write_video(generated / name, frames[:10], 25, audio[:6400])
    (generated / "notes.txt").write_text("not a video")
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(tmp_path / "run"), f"cache_dir={cache_dir}", "--methods",
                 "results", "--metrics", "psnr", f"results.dir={generated}", "results.pattern={clip}.mkv", "runtime.progress=false"]) == 0  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if "match no clip" in line]
    assert lines == ["results: 2 entries of results.dir match no clip of the suite and are not scored: Clip_typo.mkv, other.mkv"]


def test_a_failing_results_video_is_named_not_the_ground_truth(tmp_path, cache_dir):
    """Issue 30: a results video whose frames hold no face failed LipLMD with the ground-truth file named; the rows of a
    results video name it, whether it cannot be read or its output fails a metric."""
    from stsa_bench.core.media import write_video

    frames, audio = demo_media(0)
    data, generated = tmp_path / "data", tmp_path / "generated"
    data.mkdir()
    generated.mkdir()
    write_video(data / "clip.mkv", frames[:10], 25, audio[:6400])
    (generated / "clip.mkv").write_bytes(b"\x00" * 5000)
    out = tmp_path / "run"
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "results",
                 "--metrics", "psnr", f"results.dir={generated}", "results.pattern={clip}.mkv", "runtime.progress=false"]) == 0  # fmt: skip
    (row,) = read_rows(out / "results.jsonl")
    assert row.status == "failed" and row.error.startswith(f"{generated / 'clip.mkv'}: ") and str(data) not in row.error
    write_video(generated / "clip.mkv", np.full_like(frames[:10], 128), 25, audio[:6400])
    out = tmp_path / "faceless"
    assert main(["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "results",
                 "--metrics", "lipmd", f"results.dir={generated}", "results.pattern={clip}.mkv", "runtime.progress=false"]) == 0  # fmt: skip
    (row,) = read_rows(out / "results.jsonl")
    assert row.status == "failed" and row.error.startswith(f"{generated / 'clip.mkv'}: lipmd: no frame has a face in both")


def test_ablate_says_which_suite_wants_its_data_root(tmp_path, monkeypatch, capsys):
    """Issue 30: `ablate --suite demo` trained on lrs2_train and stopped asking for its data root, while its help said
    only 'suite to use; default demo'. The error and the help now say that --suite is the evaluation suite."""
    monkeypatch.delenv("STSA_BENCH_LRS2_ROOT", raising=False)
    assert main(["ablate", "--suite", "demo", f"out={tmp_path / 'ablate'}", f"cache_dir={tmp_path / 'cache'}"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stsa-bench: error:")]
    assert len(errors) == 1 and "training clips: suite 'lrs2_train' needs its data root" in errors[0]
    assert "--suite sets the evaluation suite (demo)" in errors[0] and "--suite demo suite=demo" in errors[0]


def test_a_folder_made_before_an_option_was_added_is_extended(tmp_path, cache_dir, capsys):
    """A method option added by a newer harness (results.fps_mode) at its default does not refuse an older folder."""
    from stsa_bench.core.media import write_video

    frames, audio = demo_media(0)
    data, generated = tmp_path / "data", tmp_path / "generated"
    data.mkdir()
    generated.mkdir()
    write_video(data / "clip.mkv", frames[:10], 25, audio[:6400])
    write_video(generated / "clip.mkv", frames[:10], 25, audio[:6400])
    out = tmp_path / "run"
    base = ["run", "--suite", "folder", f"data.root={data}", "--out", str(out), f"cache_dir={cache_dir}", f"results.dir={generated}",
            "results.pattern={clip}.mkv", "runtime.progress=false"]  # fmt: skip
    assert main([*base, "--methods", "results", "--metrics", "psnr"]) == 0
    info = json.loads((out / "run.json").read_text())
    del info["methods"]["results"]["options"]["fps_mode"]
    info["methods"]["results"]["hash"] = "older"
    (out / "run.json").write_text(json.dumps(info))
    assert main([*base, "--methods", "results", "--metrics", "psnr,ssim"]) == 0
    assert main([*base, "--methods", "results", "--metrics", "psnr,ssim", "results.fps_mode=ffmpeg_cfr"]) == 2
    assert "method 'results' ran here with other options (differs in fps_mode)" in capsys.readouterr().err


def test_a_cache_inside_the_new_run_folder_is_allowed(tmp_path):
    """Review of issue 30: `--out R cache_dir=R/cache` was refused on its first run (the cache had just been made)."""
    out = tmp_path / "run"
    assert main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={out / 'cache'}", "--methods", "gt", "--metrics", "psnr",
                 "suite.n_clips=1", "runtime.progress=false"]) == 0  # fmt: skip
    assert (out / "results.jsonl").is_file()
