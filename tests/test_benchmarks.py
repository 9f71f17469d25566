"""pytest-benchmark figures (frames/s); the README quotes them. Not timed assertions."""

from __future__ import annotations

import numpy as np
import pytest

from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.faces import FaceMeshDetector
from stsa_bench.core.media import decode_video
from stsa_bench.core.preprocess import crop_faces, face_boxes

from .helpers import bench_frames_per_s

CLIP = "smeetrs__deep_avsr__00001.mp4"  # LRS2-format 160x160, 120 frames


@pytest.fixture(scope="module")
def detector():
    cfg = PreprocessConfig()
    with FaceMeshDetector(cfg.static_image_mode, cfg.refine_landmarks, cfg.min_detection_confidence) as det:
        yield det


@pytest.mark.slow
def test_bench_decode_landmarks_crop(benchmark, shared, detector):
    cfg = PreprocessConfig()
    path = shared / "clips" / CLIP

    def pipeline():
        frames, _ = decode_video(path, cfg.fps)
        lm, found = detector(frames)
        boxes = face_boxes(lm, found, frames.shape[2], frames.shape[1], cfg.box_scale, cfg.smooth_sigma)
        return crop_faces(frames, boxes, cfg.crop_size)

    crops = bench_frames_per_s(benchmark, pipeline, 120, rounds=3, warmup_rounds=1)
    assert crops.shape == (120, 128, 128, 3)


def test_bench_decode_only(benchmark, shared):
    frames = bench_frames_per_s(benchmark, decode_video, 120, rounds=5, args=(shared / "clips" / CLIP,))[0]
    assert len(frames) == 120


@pytest.mark.parametrize("name", ["psnr", "ssim", "ssim_skimage"])
@pytest.mark.slow
def test_bench_metric(benchmark, name):
    from metrics import build_metric

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (256, 128, 128, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(np.int16) + rng.integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
    metric = build_metric(name, PreprocessConfig().crop_tag(), device="cpu")

    def run():
        metric.reset()
        for i in range(0, len(gt), 64):
            metric.update(pred[i : i + 64], gt[i : i + 64])
        return metric.compute()

    value = bench_frames_per_s(benchmark, run, len(gt), rounds=3, warmup_rounds=1)
    assert np.isfinite(value)
