"""pytest-benchmark: STSA frames/s on this machine's device (CPU here), golden-formula weights, float32.

`networks`: guidance net + renderer forward for a batch of 8 frames (inputs already on the device).
`pipeline`: method `stsa` on the first N = 6 frames of the LRS2-format shared clip (wav2vec2 tiny config, heatmaps,
crops, both networks at batch N, soft-mask paste-back)."""

from __future__ import annotations

import pytest
import torch

from baselines import build_method
from baselines.base import MethodEnv

from .helpers import bench_frames_per_s, smoke
from .test_stsa_method import N, short_sample, stsa_weights  # noqa: F401 - fixtures


def with_peak_memory(benchmark, device: str, run):
    """run() and record peak memory in extra_info: CUDA peak allocated during the run, or on CPU the
    process's peak resident set size so far (a high-water mark over the whole pytest process)."""
    from stsa.training.engine import peak_memory_mb

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    result = run()
    benchmark.extra_info["peak_memory_mb"] = round(peak_memory_mb(dev))
    benchmark.extra_info["peak_memory_kind"] = "cuda max allocated" if dev.type == "cuda" else "process max RSS"
    return result


def network_inputs(b: int, device: str):
    """Seeded random inputs for b frames: audio windows, pose and reference heatmaps, face, references."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, 5, 768, 10, generator=g).to(device)
    pose, refs = torch.rand(b, 5, 1, 128, 128, generator=g).to(device), torch.rand(b, 5, 1, 128, 128, generator=g).to(device)
    face, ref_imgs, ref_h = (torch.rand(b, n, 3, 128, 128, generator=g).to(device) for n in (1, 5, 5))
    return audio, pose, refs, face, ref_imgs, ref_h


@pytest.mark.slow
def test_bench_stsa_networks(benchmark, stsa_weights):  # noqa: F811
    from stsa.guidance import load_guidance
    from stsa.renderer import load_renderer
    from stsa_bench.core.devices import resolve_device

    device, b = resolve_device("auto"), 2 if smoke(benchmark) else 8
    guidance, renderer = load_guidance(stsa_weights["heatmap_ckpt"], device), load_renderer(stsa_weights["renderer_ckpt"], device)
    audio, pose, refs, face, ref_imgs, ref_h = network_inputs(b, device)

    @torch.inference_mode()
    def step():
        heat, _ = guidance(audio, pose, refs)
        target = heat.reshape(b, 5, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
        return renderer(face, target, ref_imgs, ref_h, audio[:, 2:3])

    benchmark.extra_info.update(device=device, batch_size=b, precision="fp32")
    out = with_peak_memory(benchmark, device, lambda: bench_frames_per_s(benchmark, step, b, rounds=2, warmup_rounds=1))
    assert out.shape == (b, 3, 1, 128, 128)


@pytest.mark.slow
def test_bench_stsa_pipeline(benchmark, stsa_weights, short_sample):  # noqa: F811
    method = build_method("stsa", {**stsa_weights, "batch_size": N}, MethodEnv("auto"))
    method.generator()
    benchmark.extra_info.update(device=str(method.generator().device), batch_size=N, precision="fp32")
    run = lambda: bench_frames_per_s(benchmark, method.generate, N, rounds=1, args=(short_sample,))  # noqa: E731
    gen = with_peak_memory(benchmark, str(method.generator().device), run)
    assert gen.frames.shape == short_sample.frames.shape


@pytest.mark.slow
def test_bench_stsa_official_one_frame_loop(benchmark, stsa_weights):  # noqa: F811
    """The official script's way, for the speed-up figure: per frame one guidance forward (batch 1) and
    one `Face_renderer` forward that also computes its training losses (VGG-19 perceptual + MINE), as
    the official inference does. Same device, weights and inputs as `test_bench_stsa_networks`."""
    from stsa.guidance import load_guidance
    from stsa.training.renderer_losses import FaceRendererTrainer
    from stsa_bench.core.devices import resolve_device

    device, n = resolve_device("auto"), 2 if smoke(benchmark) else 8
    guidance = load_guidance(stsa_weights["heatmap_ckpt"], device)
    official = FaceRendererTrainer()
    official.load_state_dict(torch.load(stsa_weights["renderer_ckpt"], weights_only=True)["state_dict"])
    official = official.to(device).eval()
    audio, pose, refs, face, ref_imgs, ref_h = network_inputs(n, device)

    @torch.no_grad()
    def loop():
        out = []
        for i in range(n):
            heat, _ = guidance(audio[i : i + 1], pose[i : i + 1], refs[i : i + 1])
            target = heat.reshape(1, 5, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
            out.append(official(face[i : i + 1], target, ref_imgs[i : i + 1], ref_h[i : i + 1], audio[i : i + 1, 2:3])[0])
        return torch.cat(out)

    benchmark.extra_info.update(device=device, batch_size=1, precision="fp32", losses_computed=True)
    out = with_peak_memory(benchmark, device, lambda: bench_frames_per_s(benchmark, loop, n, rounds=2, warmup_rounds=1))
    assert out.shape == (n, 3, 1, 128, 128)
