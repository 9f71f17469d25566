"""Hostile settings and results, second round (issue 30): a run folder where one does not belong, settings that
cannot make a table, clips of one name, results at another frame rate or sample rate, results files no clip
reads, and folders made by an older harness."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from stsa_bench.cli import main
from stsa_bench.core.results import read_rows

from .helpers import demo_media


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


def one_clip_and_a_results_folder(tmp_path: Path):
    """(frames, audio, data, generated): a folder suite of one 10-frame demo clip, `clip.mkv`, and an empty results
    folder beside it."""
    from stsa_bench.core.media import write_video

    frames, audio = demo_media(0)
    data, generated = tmp_path / "data", tmp_path / "generated"
    data.mkdir()
    generated.mkdir()
    write_video(data / "clip.mkv", frames[:10], 25, audio[:6400])
    return frames, audio, data, generated


def test_a_results_file_that_no_clip_reads_is_named(tmp_path, cache_dir, capsys):
    """Issue 30: a results folder's extra file (a clip outside the suite, a misnamed file) was ignored without a word."""
    from stsa_bench.core.media import write_video

    frames, audio, data, generated = one_clip_and_a_results_folder(tmp_path)
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

    frames, audio, data, generated = one_clip_and_a_results_folder(tmp_path)
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

    frames, audio, data, generated = one_clip_and_a_results_folder(tmp_path)
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
