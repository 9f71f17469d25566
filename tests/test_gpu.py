"""Metrics on a CUDA device: the crops moved once per side, the LPIPS ground-truth activations kept on the device,
values equal to the CPU's. `scripts/gpu_check.sh` runs these (`pytest -m gpu`) on a lent GPU; elsewhere they skip.
Imports stay light (no Hydra, no PyAV): the GPU machine may be bare."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import build_metric
from metrics.base import EvalPair

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh runs these on a lent GPU)"),
]
TAG = "face128@25fps/pp=test"


def crops(seed: int = 3, n: int = 7, side: int = 64):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    preds = [np.clip(gt.astype(int) + rng.integers(-s, s + 1, gt.shape), 0, 255).astype(np.uint8) for s in (20, 60)]
    return gt, preds


def test_crop_metrics_on_the_device_equal_the_cpu_and_move_each_side_once():
    gt, preds = crops()
    clip_memo: dict = {}
    pairs = [EvalPair.of_crops(p, gt, gt_memo=clip_memo, batch_size=3) for p in preds]
    for name, rel in (("psnr", 1e-6), ("ssim", 1e-5)):
        for pair in pairs:
            on_gpu, on_cpu = build_metric(name, TAG, device="cuda"), build_metric(name, TAG)
            on_gpu.update_pair(pair)
            on_cpu.update_pair(pair)
            assert on_gpu.compute() == pytest.approx(on_cpu.compute(), rel=rel), name
    assert list(clip_memo) == ["crops@cuda"] and all(list(p.memo) == ["crops@cuda"] for p in pairs)
    (pred0, gt0), (pred1, gt1) = (p.crops_on("cuda") for p in pairs)
    assert gt0 is gt1 and pred0.is_cuda and pred0.dtype == torch.uint8 and np.array_equal(pred0.cpu().numpy(), preds[0])


def test_lpips_keeps_the_ground_truth_activations_on_the_device(tmp_path):
    pytest.importorskip("lpips", reason="the lpips package holds LPIPS's linear heads")
    torchvision = pytest.importorskip("torchvision", reason="LPIPS's AlexNet backbone layout")
    torch.manual_seed(0)
    path = tmp_path / "alex.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}, path)
    gt, preds = crops()
    memo: dict = {}
    values = {}
    for device in ("cuda", "cpu"):
        values[device] = []
        for pred in preds:
            m = build_metric("lpips", TAG, device=device, weights={"lpips_alex": str(path)})
            m.update_pair(EvalPair.of_crops(pred, gt, batch_size=3, gt_memo=memo if device == "cuda" else {}, memory_bytes=2**30))
            values[device].append(m.compute())
    kept = next(v for k, v in memo.items() if "gt-features" in k)
    assert all(f.is_cuda for batch in kept for f in batch)
    assert values["cuda"] == pytest.approx(values["cpu"], rel=1e-4)
