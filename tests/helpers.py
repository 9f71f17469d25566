"""Test helpers: generate media files (good and deliberately bad) and compose configs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from metrics.base import EvalPair
from stsa_bench.cli import compose
from stsa_bench.core.config import RunConfig, run_config_from_dict
from stsa_bench.core.demo import make_clip
from stsa_bench.core.media import write_video


def make_config(*overrides: str) -> RunConfig:
    return run_config_from_dict(compose(list(overrides)))


def demo_media(seed: int = 0, seconds: float = 2.4) -> tuple[np.ndarray, np.ndarray]:
    return make_clip(seed, seconds, 160)


LOSSLESS = {"ffv1": ("bgr0", {}), "libx264rgb": ("rgb24", {"qp": "0"})}
"""Lossless encoders: (pixel format, options). libx264 also writes an SEI entry into each frame's side data."""


def write_vfr_video(
    path: Path,
    frames: np.ndarray,
    times_s: list[float],
    audio: np.ndarray | None = None,
    display: tuple[int, bool] | None = None,
    codec: str = "ffv1",
) -> None:
    """Lossless video (`codec` one of LOSSLESS) whose frames carry the given (irregular) presentation times; `display`:
    (degrees counter-clockwise, mirrored left-right afterwards) written as the stream's display matrix."""
    import av

    pix_fmt, options = LOSSLESS[codec]
    with av.open(str(path), mode="w") as c:
        v = c.add_stream(codec, rate=25, options=options)
        v.pix_fmt = pix_fmt
        v.width, v.height = frames.shape[2], frames.shape[1]
        v.time_base = Fraction(1, 1000)
        if display is not None:
            v.set_display_rotation(display[0], hflip=display[1])
        a = c.add_stream("pcm_s16le", rate=16000, layout="mono") if audio is not None else None
        for img, t in zip(frames, times_s):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = int(round(t * 1000))
            f.time_base = Fraction(1, 1000)
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            af.sample_rate = 16000
            af.pts = 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode():
                c.mux(p)


def write_late_audio(path: Path, frames: np.ndarray, audio: np.ndarray, late_s: float) -> None:
    """Lossless video from 0 s and an audio stream whose first sample is at `late_s` (holding audio[late_s:])."""
    import av

    skip = int(round(late_s * 16000))
    with av.open(str(path), mode="w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.pix_fmt, v.width, v.height = "bgr0", frames.shape[2], frames.shape[1]
        a = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        for img in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        pcm = (np.clip(audio[skip:], -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = 16000, skip, Fraction(1, 16000)
        for p in a.encode(af):
            c.mux(p)
        for p in a.encode():
            c.mux(p)


def write_sideways(
    path: Path, upright: np.ndarray, audio: np.ndarray | None, degrees: int, mirrored: bool = False, codec: str = "ffv1"
) -> np.ndarray:
    """A video that stores `upright` turned the other way and a display matrix that turns it back (as phones do);
    returns the frames as stored."""
    stored = np.ascontiguousarray(np.rot90(upright[:, :, ::-1] if mirrored else upright, -degrees // 90, axes=(1, 2)))
    write_vfr_video(path, stored, [i / 25 for i in range(len(stored))], audio, display=(degrees, mirrored), codec=codec)
    return stored


def bad_inputs(folder: Path) -> dict[str, tuple[str, str]]:
    """Write one file per bad-input case into `folder`; returns clip id -> (expected status, reason fragment)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames, audio = demo_media(0)
    n = len(frames)
    cases: dict[str, tuple[str, str]] = {}

    write_video(folder / "good.mkv", frames, 25, audio)
    cases["good"] = ("ok", "")

    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    cases["corrupt"] = ("failed", "cannot be opened as media")

    write_video(folder / "no_audio.mkv", frames, 25, None)
    cases["no_audio"] = ("failed", "no audio stream")

    grey = np.full_like(frames, 128)
    write_video(folder / "no_face.mkv", grey, 25, audio)
    cases["no_face"] = ("failed", "no face found in any of 60 frames")

    some = frames.copy()
    some[10:20] = 128
    write_video(folder / "some_faceless.mkv", some, 25, audio)
    cases["some_faceless"] = ("ok", "no face in 10 of 60 frames (box interpolated)")

    write_video(folder / "one_frame.mkv", frames[:1], 25, audio[:640])
    cases["one_frame"] = ("failed", "1 frame(s) at 25 fps, need at least 5")

    write_video(folder / "short_audio.mkv", frames, 25, audio[:16000])
    cases["short_audio"] = ("failed", "audio lasts 1.00 s but the video 2.40 s")

    write_video(folder / "a_bit_short_audio.mkv", frames, 25, audio[: len(audio) - 3200])
    cases["a_bit_short_audio"] = ("ok", "audio 0.20 s shorter than the video (padded with silence)")

    long_audio = np.concatenate([audio, audio])
    write_video(folder / "long_audio.mkv", frames, 25, long_audio)
    cases["long_audio"] = ("failed", "audio lasts 4.80 s but the video 2.40 s")

    idx30 = np.minimum((np.arange(int(n * 30 / 25)) * 25 / 30).astype(int), n - 1)
    write_video(folder / "fps30.mkv", frames[idx30], 30, audio)
    cases["fps30"] = ("ok", "")

    times = np.cumsum(np.r_[0, np.where(np.arange(n - 1) % 3 == 0, 0.02, 0.05)])
    scale = (n / 25 - 0.04) / times[-1]
    write_vfr_video(folder / "vfr.mkv", frames, list(times * scale), audio)
    cases["vfr"] = ("ok", "")

    write_two_audio_streams(folder / "two_audio.mkv", frames, audio)
    cases["two_audio"] = ("ok", "audio from the first of 2 audio streams")

    (folder / "broken_link.mp4").symlink_to(folder / "does_not_exist.mp4")
    cases["broken_link"] = ("failed", "missing")

    (folder / "a_directory.mp4").mkdir()
    cases["a_directory"] = ("failed", "unreadable")
    return cases


def write_two_audio_streams(path: Path, frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000) -> None:
    """FFV1 video with two PCM audio streams: the speech, then silence."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("ffv1", rate=25)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        tracks = [out.add_stream("pcm_s16le", rate=sample_rate, layout="mono") for _ in range(2)]
        for f in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        out.mux(video.encode(None))
        for track, signal in zip(tracks, (audio, np.zeros_like(audio))):
            frame = av.AudioFrame.from_ndarray((signal * 32767).astype(np.int16)[None], format="s16", layout="mono")
            frame.sample_rate = sample_rate
            out.mux(track.encode(frame))
            out.mux(track.encode(None))


def smoke(benchmark) -> bool:
    """True under --benchmark-disable (set by tests/conftest.py unless --benchmark-enable; so in CI): each benchmark
    body runs once, as a test, on the reduced workload it passes; `--benchmark-enable` measures the full one."""
    return bool(getattr(benchmark, "disabled", False))


def mean_s(benchmark, fallback_s: float) -> float:
    """Mean seconds per round from pytest-benchmark, or `fallback_s` (one direct timing) when disabled."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.mean if stats is not None else fallback_s


def bench_frames_per_s(benchmark, fn, n_frames: int, rounds: int = 3, warmup_rounds: int = 0, args: tuple = ()):
    """Run `fn` under pytest-benchmark and record frames/s in extra_info (also under --benchmark-disable,
    where the one call is timed directly). Returns fn's result."""
    import time

    t0 = time.perf_counter()
    result = benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    benchmark.extra_info["frames"] = n_frames
    benchmark.extra_info["frames_per_s"] = round(n_frames / mean_s(benchmark, time.perf_counter() - t0), 1)
    return result


def eval_pair(n: int, **fields) -> EvalPair:
    """An EvalPair of n frames: tiny black frames and crops, silent audio, no faces; `fields` override any of it."""
    tiny = np.zeros((n, 8, 8, 3), dtype=np.uint8)
    silence = np.zeros(n * 640, dtype=np.float32)
    defaults = dict(
        clip_id="c", video=Path("clip.mp4"), method="m", fps=25, sample_rate=16000,
        pred_frames=tiny, gt_frames=tiny, pred_audio=silence, gt_audio=silence, audio_valid=n * 640,
        pred_crops=tiny, gt_crops=tiny, boxes=np.zeros((n, 3), np.float32),
        gt_landmarks=np.full((n, 478, 3), np.nan, np.float32), gt_has_face=np.zeros(n, bool),
    )  # fmt: skip
    return EvalPair(**{**defaults, **fields})
