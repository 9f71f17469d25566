"""pytest-benchmark figures (frames/s) of lipmd (landmarks given; FaceMesh excluded), dme_dis and
RAFT DME (random weights, CPU) on 128x128 crops. Not timed assertions."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import build_metric
from stsa_bench.core.config import PreprocessConfig

TAG = PreprocessConfig().crop_tag()


def moving_crops(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth: a smooth texture drifting 1-3 px per frame; generated: the same with noise and a lag."""
    rng = np.random.default_rng(seed)
    big = np.kron(rng.integers(30, 230, (size // 4 + 16, size // 4 + 16, 3)), np.ones((4, 4, 1)))
    steps = np.cumsum(rng.integers(1, 4, n))
    gt = np.stack([big[s % 32 : s % 32 + size, s % 32 : s % 32 + size] for s in steps]).astype(np.uint8)
    pred = np.clip(np.roll(gt, 1, axis=0) + rng.normal(0, 4, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def mean_s(benchmark) -> float | None:
    """Mean seconds per round; None under --benchmark-disable."""
    return benchmark.stats.stats.mean if benchmark.stats else None


def record(benchmark, frames: int, flows: int | None = None) -> None:
    mean = mean_s(benchmark)
    benchmark.extra_info["frames"] = frames
    if mean:
        benchmark.extra_info["frames_per_s"] = round(frames / mean, 1)
        if flows:
            benchmark.extra_info["flows_per_s"] = round(flows / mean, 2)


@pytest.mark.parametrize("name", ["lipmd", "lipmd_l2", "lipmd_iod"])
def test_bench_lipmd(benchmark, name):
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.2, 0.8, (2000, 478, 3)).astype(np.float32)
    pred = gt + rng.normal(0, 0.005, gt.shape).astype(np.float32)
    metric = build_metric(name, TAG)

    def run():
        metric.reset()
        for i in range(0, len(gt), 64):
            metric.add_landmarks(pred[i : i + 64], gt[i : i + 64], image_size=(160, 160))
        return metric.compute()

    value = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    record(benchmark, len(gt))
    assert np.isfinite(value) and value > 0


def test_bench_dme_dis(benchmark):
    pred, gt = moving_crops(65)
    metric = build_metric("dme_dis", TAG)

    def run():
        metric.reset()
        metric.update(pred, gt)
        return metric.compute()

    value = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    record(benchmark, len(gt), 2 * (len(gt) - 1))
    assert np.isfinite(value) and value > 0


@pytest.mark.slow
def test_bench_dme_raft_random_weights_cpu(benchmark, tmp_path):
    import torch
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = tmp_path / "raft_random.pth"
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    pred, gt = moving_crops(9)
    metric = build_metric("dme", TAG, device="cpu", weights={"raft": str(path)})
    metric.update(pred[:2], gt[:2])

    def run():
        metric.reset()
        metric.update(pred, gt)
        return metric.compute()

    value = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    record(benchmark, len(gt), 2 * (len(gt) - 1))
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    assert np.isfinite(value)
