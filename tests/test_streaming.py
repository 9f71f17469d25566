"""Frames in chunks: the streamed decode, frame sources, crops cut while decoding, runs whose memory
does not grow with clip length, and values equal to the whole-clip route."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.frames import ArrayFrames, MappedFrames, RepeatFrames, VideoFrames, as_frames, map_chunks
from stsa_bench.core.media import VideoChunks, decode_video, write_video
from stsa_bench.core.preprocess import Preprocessor, StreamingCropper, crop_faces, face_boxes, load_media
from stsa_bench.core.suites import hash_clip
from tests.helpers import demo_media, write_vfr_video


@pytest.mark.parametrize("mode", ["ffmpeg_cfr", "nearest"])
@pytest.mark.parametrize("size", [1, 4, 1000])
def test_video_chunks_equal_whole_decode(tmp_path, mode, size):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 16, 24, 3), dtype=np.uint8)
    times = np.cumsum(rng.uniform(0.02, 0.09, 12)).tolist()
    write_vfr_video(tmp_path / "v.mkv", frames, times)
    whole, info = decode_video(tmp_path / "v.mkv", 25, mode)
    stream = VideoChunks(tmp_path / "v.mkv", 25, mode, size)
    chunks = list(stream)
    assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size
    assert np.array_equal(np.concatenate(chunks), whole)
    assert stream.info == info and len(whole) != len(frames)  # resampled: the test exercises duplication and drops


def test_frame_sources_read_like_arrays(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (9, 8, 10, 3), dtype=np.uint8)
    write_video(tmp_path / "v.mkv", a, 25, None, lossless=True)
    sources = {
        "array": ArrayFrames(a),
        "video": VideoFrames(tmp_path / "v.mkv", 25, "ffmpeg_cfr", 9, 8, 10),
        "mapped": MappedFrames(ArrayFrames(a[:, :, :, ::-1]), lambda c, s: c[..., ::-1]),
    }
    for name, f in sources.items():
        assert f.shape == a.shape and len(f) == 9, name
        assert np.array_equal(np.asarray(f), a), name
        assert np.array_equal(f[3], a[3]) and np.array_equal(f[-1], a[-1]), name
        assert np.array_equal(f[2:7], a[2:7]) and np.array_equal(f[..., 0], a[..., 0]), name
        assert np.array_equal(np.stack(list(f)), a), name
        got = [(i, len(c)) for i, c in f.chunks(4, 1, 8)]
        assert got == [(1, 4), (5, 3)], name
        assert np.array_equal(map_chunks(f, 2, lambda c, s: c[:, 0, 0]), a[:, 0, 0]), name
    longer = VideoFrames(tmp_path / "v.mkv", 25, "ffmpeg_cfr", 12, 8, 10)
    assert np.array_equal(np.asarray(longer)[9:], np.repeat(a[-1:], 3, axis=0))
    rep = RepeatFrames(a[0], 5)
    assert np.array_equal(np.asarray(rep), np.repeat(a[:1], 5, axis=0))
    assert as_frames(a).array is a and as_frames(rep) is rep
    with pytest.raises(IndexError):
        sources["video"][9]


def _landmarks(n: int, faceless: list[range], rng) -> tuple[np.ndarray, np.ndarray]:
    centre = 0.5 + np.cumsum(rng.normal(0, 0.01, (n, 2)), axis=0)
    lms = np.concatenate([centre[:, None] + rng.uniform(-0.15, 0.15, (n, 20, 2)), np.zeros((n, 20, 1))], axis=2).astype(np.float32)
    found = np.ones(n, bool)
    for r in faceless:
        found[list(r)] = False
    lms[~found] = np.nan
    return lms, found


@pytest.mark.parametrize("to_file", [False, True])
@pytest.mark.parametrize("max_pending", [1000, 5])
def test_streaming_cropper_equals_whole_clip(max_pending, to_file, tmp_path):
    """Crops cut chunk by chunk (a frame waits until the box smoothing and gap interpolation around it are final;
    past `max_pending` it is read again at the end) equal crop_faces(face_boxes(...)) over the whole clip, bit for bit.
    With a sink they go to the .npy file as they are cut (none kept in memory), byte-identical to np.save."""
    from stsa_bench.core.arrays import NpyRows

    rng = np.random.default_rng(2)
    n, h, w = 47, 48, 64
    frames = rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    lms, found = _landmarks(n, [range(0, 3), range(12, 30), range(44, 47)], rng)
    cfg = PreprocessConfig(crop_size=16, smooth_sigma=2.0)
    boxes = face_boxes(lms, found, w, h, cfg.box_scale, cfg.smooth_sigma)
    want = crop_faces(frames, boxes, cfg.crop_size)
    sink = NpyRows(tmp_path / "crops.npy", (16, 16, 3), np.uint8) if to_file else None
    cropper = StreamingCropper(cfg, w, h, max_pending, sink)
    for s in range(0, n, 6):
        cropper.push(frames[s : s + 6], lms[s : s + 6], found[s : s + 6])
        assert len(cropper.pending) <= max(max_pending, 6 + 2 * 8 + 18)
        assert not (to_file and cropper.crops)
    assert bool(cropper.dropped) == (max_pending == 5)
    assert np.array_equal(cropper.boxes(), boxes)
    if not to_file:
        assert np.array_equal(cropper.finish(ArrayFrames(frames)), want)
        return
    assert cropper.finish(ArrayFrames(frames)) is None
    np.save(tmp_path / "want.npy", want)
    assert (tmp_path / "crops.npy").read_bytes() == (tmp_path / "want.npy").read_bytes()


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    frames, audio = demo_media(5, seconds=1.6)
    write_video(d / "c.mkv", frames, 25, audio)
    return hash_clip("c", d / "c.mkv")


def test_prepare_streamed_equals_whole_clip(demo_video, tmp_path):
    """The cold cache's streaming pass (7-frame chunks, nothing kept in memory) stores what the whole-clip route
    computes, and hands back a source that decodes the clip again; within the memory budget it hands back the
    frames of its one decode."""
    cfg = PreprocessConfig()
    frames, audio, _ = load_media(demo_video, cfg)
    streamed = Preprocessor(cfg, tmp_path / "a", chunk_frames=7, memory_mb=0)
    p, source = streamed.prepare_with_frames(demo_video)
    lms, found = streamed.detect(frames)
    boxes = face_boxes(lms, found, p.width, p.height, cfg.box_scale, cfg.smooth_sigma)
    assert np.array_equal(p.landmarks, lms, equal_nan=True) and np.array_equal(p.has_face, found)
    assert np.array_equal(p.boxes, boxes) and np.array_equal(p.audio, audio)
    assert np.array_equal(p.crops, crop_faces(frames, boxes, cfg.crop_size))
    assert isinstance(source, VideoFrames) and np.array_equal(np.asarray(source), frames)
    kept = Preprocessor(cfg, tmp_path / "b", chunk_frames=7)
    p2, in_memory = kept.prepare_with_frames(demo_video)
    assert isinstance(in_memory, ArrayFrames) and np.array_equal(in_memory.array, frames)
    assert np.array_equal(p2.crops, p.crops)
    _, warm = Preprocessor(cfg, tmp_path / "a", memory_mb=0).prepare_with_frames(demo_video)
    assert isinstance(warm, VideoFrames)


def _rows(out: Path) -> dict:
    return {(r["clip"], r["method"], r["metric"]): (r["status"], r["value"]) for r in map(json.loads, open(out / "results.jsonl"))}


@pytest.mark.slow
def test_run_streamed_equals_in_memory(cache_dir, tmp_path, monkeypatch):
    """Every row of a run whose clips are streamed in 5-frame chunks (frames_in_memory_mb=0: frames decoded per pass,
    the generated crops and the ground truth's flows mapped from unlinked files, the cached crops mapped; videos
    saved on the way) equals the row of the in-memory run."""
    import stsa_bench.core.arrays as arrays_mod
    from stsa_bench.cli import main

    mapped, real = [], arrays_mod.spill_array
    monkeypatch.setattr(arrays_mod, "spill_array", lambda *a: mapped.append(real(*a)) or mapped[-1])

    common = ["run", "--suite", "demo", "--methods", "gt,static,mouth_blur", "--metrics", "psnr,ssim,lipmd,dme_dis",
              f"cache_dir={cache_dir}", "runtime.progress=false", "suite.n_clips=2"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "mem")]) == 0
    assert main([*common, "--out", str(tmp_path / "stream"), "runtime.frames_in_memory_mb=0", "runtime.chunk_frames=5",
                 "runtime.save_videos=true"]) == 0  # fmt: skip
    mem, stream = _rows(tmp_path / "mem"), _rows(tmp_path / "stream")
    assert mem == stream and all(s == "ok" for s, _ in mem.values())
    shapes = sorted(x.shape for x in mapped if isinstance(x, np.memmap))
    assert shapes == [(59, 128, 128, 2)] * 2 + [(60, 128, 128, 3)] * 4, "per clip: gt flows; static's and mouth_blur's crops"
    assert not any((cache_dir / "tmp").iterdir()), "the mapped files are unlinked"
    assert {(m, x.split("[")[0]) for _, m, x in mem} == {(m, x) for m in ("gt", "static", "mouth_blur") for x in ("psnr", "ssim", "lipmd", "dme_dis")}
    saved, _ = decode_video(next((tmp_path / "stream" / "videos" / "mouth_blur").iterdir()))
    assert saved.shape[0] == 60


def test_spill_array_maps_an_unlinked_file_above_the_budget(tmp_path):
    from stsa_bench.core.arrays import spill_array

    small = spill_array((4, 8, 8, 3), np.uint8, 4 * 8 * 8 * 3, tmp_path)
    big = spill_array((5, 8, 8, 3), np.uint8, 4 * 8 * 8 * 3, tmp_path)
    assert not isinstance(small, np.memmap) and isinstance(big, np.memmap) and not list(tmp_path.iterdir())
    big[:] = 7
    assert big.flags.writeable and int(big.sum()) == 7 * big.size
    assert not isinstance(spill_array((5, 8), np.float32, 0, None), np.memmap)
    assert spill_array((0, 8), np.float32, 0, tmp_path).shape == (0, 8)


RSS_SCRIPT = """
import resource, sys
from stsa_bench.cli import main
rc = main(sys.argv[1:])
print("RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "RC", rc)
"""


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_clip_length(golden_path, tmp_path):
    """Two 720p clips, one four times longer (1.2 s: held in memory; 4.8 s: streamed): a run (`gt,mouth_blur` x
    `psnr,ssim,lse_c`, default settings) peaks within 25% of the same memory for both (the whole-clip route grew
    by about 6 MB a frame: 1.5 GB vs 2.0 GB here). Figures per length: docs/performance.md."""
    frames, audio = demo_media(7, seconds=4.8)
    big = np.zeros((len(frames), 720, 1280, 3), np.uint8)
    for i, f in enumerate(frames):
        big[i, 120:600, 400:880] = np.repeat(np.repeat(f, 3, axis=0), 3, axis=1)
    peaks = {}
    for seconds in (1.2, 4.8):
        folder = tmp_path / f"clips{seconds}"
        folder.mkdir()
        n = int(seconds * 25)
        write_video(folder / "c.mp4", big[:n], 25, audio[: n * 640], lossless=False)
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, "run", "--suite", "folder", "--methods", "gt,mouth_blur", "--metrics",
             "psnr,ssim,lse_c", "--out", str(tmp_path / f"out{seconds}"), f"data.root={folder}",
             f"cache_dir={tmp_path / 'cache'}", f"weights.syncnet={golden_path}", "runtime.progress=false"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert "RC 0" in out.stdout, out.stderr[-2000:]
        peaks[seconds] = int(out.stdout.split("RSS_KB")[1].split()[0])
    print("peak RSS (KiB) by clip seconds:", peaks)
    assert peaks[4.8] < 1.25 * peaks[1.2], peaks


def test_prefetch_keeps_order_raises_in_place_and_stops_early():
    import threading

    from stsa_bench.core.frames import prefetch

    assert list(prefetch(iter(range(50)), 3)) == list(range(50)) == list(prefetch(range(50), 0))

    def failing():
        yield 1
        yield 2
        raise ValueError("bad chunk")

    got = []
    with pytest.raises(ValueError, match="bad chunk"):
        for x in prefetch(failing(), 2):
            got.append(x)
    assert got == [1, 2]
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetch(endless(), 2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert not any(t.name == "stsa-bench-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2
