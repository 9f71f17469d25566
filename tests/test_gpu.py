"""Metrics off the CPU: the crops moved once per side, the LPIPS ground-truth activations kept on the device, values
equal to the CPU's. The `cpu:0` cases run everywhere; the `gpu` ones need CUDA and skip elsewhere, and
`scripts/gpu_check.sh` runs them (`pytest -m gpu`) on a lent GPU. Imports stay light (no Hydra, no PyAV): the GPU
machine may be bare."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import build_metric
from metrics.base import EvalPair

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh runs these on a lent GPU)")
TAG = "face128@25fps/pp=test"


def crops(seed: int = 3, n: int = 7, side: int = 64):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    preds = [np.clip(gt.astype(int) + rng.integers(-s, s + 1, gt.shape), 0, 255).astype(np.uint8) for s in (20, 60)]
    return gt, preds


@pytest.mark.parametrize(
    "device, rel",
    [("cpu:0", {"psnr": 1e-12, "ssim": 1e-8}), pytest.param("cuda", {"psnr": 1e-6, "ssim": 1e-5}, marks=[pytest.mark.gpu, NEEDS_CUDA])],
)
def test_crops_cross_to_the_device_once(device, rel):
    """Off the CPU ("cpu:0" takes the same path as "cuda" and runs everywhere) the ground-truth crops are moved once
    per clip for every method and metric, the generated ones once per pair; the values equal the CPU route's."""
    gt, preds = crops()
    clip_memo: dict = {}
    pairs = [EvalPair.of_crops(p, gt, gt_memo=clip_memo, batch_size=3) for p in preds]
    for name in ("psnr", "ssim"):
        for pair in pairs:
            on_device, on_cpu = build_metric(name, TAG, device=device), build_metric(name, TAG)
            on_device.update_pair(pair)
            on_cpu.update_pair(pair)
            assert on_device.compute() == pytest.approx(on_cpu.compute(), rel=rel[name]), name
    assert list(clip_memo) == [f"crops@{device}"] and all(list(p.memo) == [f"crops@{device}"] for p in pairs)
    moved = [p.crops_on(device) for p in pairs]
    assert moved[0][1] is moved[1][1] and moved[0][0] is not moved[1][0]
    assert isinstance(moved[0][0], torch.Tensor) and moved[0][0].device.type == torch.device(device).type
    assert moved[0][0].dtype == torch.uint8 and np.array_equal(moved[0][0].cpu().numpy(), preds[0])
    assert pairs[0].crops_on("cpu") == (pairs[0].pred_crops, pairs[0].gt_crops)
    same = EvalPair.of_crops(gt, gt, gt_memo=clip_memo)
    assert same.crops_on(device)[0] is same.crops_on(device)[1] is moved[0][1] and not same.memo


@pytest.mark.gpu
@NEEDS_CUDA
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
