"""Sanity method mouth_blur, bring-your-own `results`, and the output normalisation rule."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.base import Sample
from baselines.normalize import MAX_FRAME_SLACK, normalize_output
from stsa_bench.cli import main
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.media import write_video
from stsa_bench.core.results import read_rows


def sample(n=10, h=32, w=40) -> Sample:
    frames = np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return Sample("c", frames, np.zeros(n * 640, np.float32), 25, 16000, np.full((n, 478, 3), np.nan, np.float32), np.zeros((n, 3)))


def test_normalize_frame_count_and_size():
    s = sample()
    gen = normalize_output(s.frames, s, "x")
    assert gen.note is None and gen.frames.shape == s.frames.shape and gen.audio is s.audio
    short = normalize_output(s.frames[:-MAX_FRAME_SLACK], s, "x")
    assert len(short.frames) == 10 and np.array_equal(short.frames[-1], s.frames[-MAX_FRAME_SLACK - 1]) and "8 frames -> 10" in short.note
    long = normalize_output(np.concatenate([s.frames, s.frames[:1]]), s, "x")
    assert np.array_equal(long.frames, s.frames) and "11 frames -> 10" in long.note
    big = np.repeat(np.repeat(s.frames, 2, axis=1), 2, axis=2)
    resized = normalize_output(big, s, "x")
    assert resized.frames.shape == s.frames.shape and "resized 80x64 -> 40x32" in resized.note
    with pytest.raises(ClipError, match="x: 7 frames, the driving audio needs 10"):
        normalize_output(s.frames[:7], s, "x")


@pytest.mark.slow
def test_results_folder_and_mouth_blur_end_to_end(tmp_path, cache_dir):
    """Demo clips' static versions as a 'results' folder (30 fps, 1 frame short, half size) plus mouth_blur."""
    from stsa_bench.core.config import DataConfig
    from stsa_bench.core.media import decode_video
    from stsa_bench.core.suites import SuiteContext, load_suite

    from .helpers import make_config

    clips = load_suite(SuiteContext("demo", make_config("suite=demo").suite_options, DataConfig(), cache_dir))
    gen_dir = tmp_path / "generated"
    for clip in clips[:2]:
        frames, _ = decode_video(clip.video)
        still = np.repeat(frames[:1, ::2, ::2], int(round((len(frames) - 1) * 30 / 25)), axis=0)
        write_video(gen_dir / f"{clip.id}.mp4", still, 30, None, lossless=True)
    out = tmp_path / "out"
    rc = main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false",
               "--methods", "gt,static,mouth_blur,results", "--metrics", "psnr,ssim", f"results.dir={gen_dir}"])
    assert rc == 0
    rows = {(r.clip, r.method, r.metric.split("[")[0]): r for r in read_rows(out / "results.jsonl")}
    for clip in ("demo_00", "demo_01"):
        r = rows[(clip, "results", "psnr")]
        assert r.status == "ok" and "resized 112x112 -> 224x224" in r.note
        assert r.value < rows[(clip, "gt", "psnr")].value
        assert rows[(clip, "mouth_blur", "ssim")].value < rows[(clip, "gt", "ssim")].value
    missing = rows[("demo_02", "results", "psnr")]
    assert missing.status == "failed" and "demo_02.mp4: no generated video" in missing.error


@pytest.mark.slow
def test_mouth_blur_changes_only_the_mouth(cache_dir):
    from baselines import build_method
    from stsa_bench.core.config import DataConfig, PreprocessConfig
    from stsa_bench.core.preprocess import Preprocessor
    from stsa_bench.core.suites import SuiteContext, load_suite

    from .helpers import make_config

    clip = load_suite(SuiteContext("demo", make_config("suite=demo").suite_options, DataConfig(), cache_dir))[0]
    prep = Preprocessor(PreprocessConfig(), cache_dir)
    p, frames = prep.prepare(clip), prep.frames(clip)
    s = Sample(clip.id, frames, p.audio, 25, 16000, p.landmarks, p.boxes)
    out = build_method("mouth_blur").generate(s).frames
    changed = np.any(out != frames, axis=(0, 3))
    ys, xs = np.nonzero(changed)
    lips = p.landmarks[:, [0, 17, 61, 291], :2] * [p.width, p.height]
    assert ys.size and xs.min() >= np.nanmin(lips[..., 0]) - 20 and xs.max() <= np.nanmax(lips[..., 0]) + 20
    assert ys.min() >= np.nanmin(lips[..., 1]) - 20 and ys.max() <= np.nanmax(lips[..., 1]) + 20


@pytest.mark.slow
def test_sanity_orderings_on_real_clips(shared, tmp_path, cache_dir):
    """Real clips: gt best on psnr/ssim; static and mouth_blur worse."""
    out = tmp_path / "real"
    rc = main(["run", "--suite", "folder", "--out", str(out), f"data.root={shared / 'clips'}", f"cache_dir={cache_dir}",
               "suite.include=[rizkiarm__LipNet__lbax4n,smeetrs__deep_avsr__00004,Hangz-nju-cuhk__Talking-Face_PC-AVS__00373]",
               "--methods", "gt,static,shift,mouth_blur", "--metrics", "psnr,ssim", "runtime.progress=false"])  # fmt: skip
    assert rc == 0
    rows = read_rows(out / "results.jsonl")
    assert rows and all(r.status == "ok" for r in rows)
    for clip in {r.clip for r in rows}:
        v = {(r.method, r.metric.split("[")[0]): r.value for r in rows if r.clip == clip}
        for metric in ("psnr", "ssim"):
            assert v[("gt", metric)] == v[("shift", metric)]
            assert v[("gt", metric)] > v[("mouth_blur", metric)] and v[("gt", metric)] > v[("static", metric)]


def test_difftalk_reads_frame_folders(tmp_path):
    """DiffTalk's output is a folder of JPEG frames per clip; unreadable or missing folders fail with the path."""
    import cv2

    from baselines import build_method

    s = sample(n=6, h=32, w=40)
    folder = tmp_path / "difftalk" / "c"
    folder.mkdir(parents=True)
    for i, frame in enumerate(s.frames[:5]):
        cv2.imwrite(str(folder / f"0000_{i:04d}.png"), frame[..., ::-1])
    gen = build_method("difftalk", {"dir": str(tmp_path / "difftalk")}).generate(s)
    assert np.array_equal(gen.frames[:5], s.frames[:5]) and np.array_equal(gen.frames[5], s.frames[4]) and gen.note == "5 frames -> 6"
    (folder / "0000_0005.png").write_bytes(b"not an image")
    with pytest.raises(ClipError, match="0000_0005.png: not a readable image"):
        build_method("difftalk", {"dir": str(tmp_path / "difftalk")}).generate(s)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="no generated video for clip c"):
        build_method("difftalk", {"dir": str(tmp_path / "empty")}).generate(s)
    with pytest.raises(ConfigError, match="difftalk.dir=.*elsewhere: not a folder"):
        build_method("difftalk", {"dir": str(tmp_path / "elsewhere")})
    with pytest.raises(ConfigError, match="method difftalk needs difftalk.dir=DIR"):
        build_method("difftalk", {})


@pytest.mark.slow
def test_labelled_methods_give_their_own_rows(tmp_path, cache_dir):
    """`label:method` runs a registered method under a new row name with its own settings (e.g. two
    bring-your-own-results folders, StableDub and another paper's videos, in one table)."""
    from stsa_bench.core.config import DataConfig
    from stsa_bench.core.media import decode_video
    from stsa_bench.core.suites import SuiteContext, load_suite

    from .helpers import make_config

    clips = load_suite(SuiteContext("demo", make_config("suite=demo").suite_options, DataConfig(), cache_dir))
    for name, fn in (("a", lambda f: f), ("b", lambda f: np.repeat(f[:1], len(f), axis=0))):
        for clip in clips:
            frames, _ = decode_video(clip.video)
            write_video(tmp_path / name / f"{clip.id}.mkv", fn(frames), 25, None, lossless=True)
    out = tmp_path / "out"
    rc = main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false",
               "--methods", "gt,stabledub:results,frozen:results", "--metrics", "psnr",
               f"stabledub.dir={tmp_path / 'a'}", "stabledub.pattern={clip}.mkv", f"frozen.dir={tmp_path / 'b'}", "frozen.pattern={clip}.mkv"])  # fmt: skip
    assert rc == 0
    rows = {(r.clip, r.method): r for r in read_rows(out / "results.jsonl")}
    assert {m for _, m in rows} == {"gt", "stabledub", "frozen"}
    for clip in clips:
        assert rows[(clip.id, "stabledub")].value == rows[(clip.id, "gt")].value
        assert rows[(clip.id, "frozen")].value < rows[(clip.id, "gt")].value

    from stsa_bench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="method label 'psnr' in 'psnr:results' is already a setting name"):
        make_config("methods=[psnr:results]")
    with pytest.raises(ConfigError, match="unknown method 'resluts'; did you mean 'results'"):
        make_config("methods=[x:resluts]")
