"""pytest-benchmark: in-tree Wav2Lip generation in frames/s (golden weights, LRS2-format 160x160 clip),
at the official batch size (128) and a small one (16). Boxes, mel and paste-back included."""

from __future__ import annotations

import pytest

from baselines import build_method
from baselines.base import MethodEnv

from .helpers import bench_frames_per_s


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [16, 128])
def test_bench_wav2lip_generate(benchmark, golden_wav2lip_path, lrs2_sample, batch_size):
    method = build_method("wav2lip", {"batch_size": batch_size}, MethodEnv("auto", {"wav2lip": str(golden_wav2lip_path)}))
    method.model()
    benchmark.extra_info["device"] = method.device
    benchmark.extra_info["batch_size"] = batch_size
    gen = bench_frames_per_s(benchmark, method.generate, len(lrs2_sample.frames), rounds=1, args=(lrs2_sample,))
    assert gen.frames.shape == lrs2_sample.frames.shape
