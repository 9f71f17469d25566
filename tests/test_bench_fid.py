"""FID: this harness vs the reference pipeline (pytorch-fid on PNG dumps), same run, same numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from metrics.fid import build_inception, frechet_distance, inception_features
from stsa_bench.core.media import decode_video

from .helpers import smoke

CLIP = "smeetrs__deep_avsr__00001.mp4"


def reference_fid(model, real: np.ndarray, gen: np.ndarray, tmp) -> float:
    """pytorch-fid as the papers run it: frames dumped to PNG, its ImagePathDataset + get_activations
    (batch 50), np.mean / np.cov, calculate_frechet_distance (scipy sqrtm)."""
    from PIL import Image
    from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

    stats = []
    for name, frames in (("gen", gen), ("real", real)):
        d = tmp / name
        d.mkdir()
        files = []
        for i, f in enumerate(frames):
            Image.fromarray(f).save(d / f"{i:06d}.png")
            files.append(str(d / f"{i:06d}.png"))
        act = get_activations(files, model, batch_size=50, dims=2048, device="cpu", num_workers=0)
        stats.append((np.mean(act, axis=0), np.cov(act, rowvar=False)))
    return float(calculate_frechet_distance(*stats[0], *stats[1]))


@pytest.mark.slow
def test_bench_fid_vs_reference_pipeline(benchmark, shared, tmp_path):
    model = build_inception(shared / "weights" / "pt_inception-2015-12-05_convonly.pth")
    real, _ = decode_video(shared / "clips" / CLIP)
    real = real[:20] if smoke(benchmark) else real
    gen = np.clip(real.astype(np.int16) + np.random.default_rng(0).integers(-12, 13, real.shape), 0, 255).astype(np.uint8)

    t0 = time.perf_counter()
    ref = reference_fid(model, real, gen, tmp_path)
    t_ref = time.perf_counter() - t0

    def ours() -> float:
        return frechet_distance(inception_features(model, gen, "cpu"), inception_features(model, real, "cpu"))

    t0 = time.perf_counter()
    value = benchmark.pedantic(ours, rounds=1, iterations=1)
    t_ours = time.perf_counter() - t0
    benchmark.extra_info.update(
        frames=2 * len(real),
        frames_per_s=round(2 * len(real) / t_ours, 1),
        reference_s=round(t_ref, 2),
        speedup_vs_reference=round(t_ref / t_ours, 2),
        fid=value,
        fid_reference=ref,
    )
    assert value == pytest.approx(ref, abs=1e-4)
