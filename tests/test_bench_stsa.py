"""pytest-benchmark: STSA frames/s on this machine's device (CPU here), golden-formula weights, float32.

`networks`: guidance net + renderer forward for a batch of 8 frames (inputs already on the device).
`pipeline`: method `stsa` on 12 frames of the LRS2-format shared clip (wav2vec2 tiny config, heatmaps,
crops, both networks at batch 12, soft-mask paste-back)."""

from __future__ import annotations

import pytest
import torch

from baselines import build_method
from baselines.base import MethodEnv, Sample

from .helpers import bench_frames_per_s
from .test_stsa_method import N, short_sample, stsa_weights  # noqa: F401 - fixtures


@pytest.mark.slow
def test_bench_stsa_networks(benchmark, stsa_weights):  # noqa: F811
    from metrics.base import resolve_device
    from stsa.guidance import load_guidance
    from stsa.renderer import load_renderer

    device, b = resolve_device("auto"), 8
    guidance, renderer = load_guidance(stsa_weights["heatmap_ckpt"], device), load_renderer(stsa_weights["renderer_ckpt"], device)
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, 5, 768, 10, generator=g).to(device)
    pose, refs = torch.rand(b, 5, 1, 128, 128, generator=g).to(device), torch.rand(b, 5, 1, 128, 128, generator=g).to(device)
    face, ref_imgs, ref_h = (torch.rand(b, n, 3, 128, 128, generator=g).to(device) for n in (1, 5, 5))

    @torch.inference_mode()
    def step():
        heat, _ = guidance(audio, pose, refs)
        target = heat.reshape(b, 5, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
        return renderer(face, target, ref_imgs, ref_h, audio[:, 2:3])

    benchmark.extra_info.update(device=device, batch_size=b, precision="fp32")
    out = bench_frames_per_s(benchmark, step, b, rounds=2, warmup_rounds=1)
    assert out.shape == (b, 3, 1, 128, 128)


@pytest.mark.slow
def test_bench_stsa_pipeline(benchmark, stsa_weights, short_sample):  # noqa: F811
    method = build_method("stsa", {**stsa_weights, "batch_size": N}, MethodEnv("auto"))
    method.generator()
    benchmark.extra_info.update(device=str(method.generator().device), batch_size=N, precision="fp32")
    gen = bench_frames_per_s(benchmark, method.generate, N, rounds=1, args=(short_sample,))
    assert gen.frames.shape == short_sample.frames.shape
