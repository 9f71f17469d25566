"""psnr / ssim: reference parity (scikit-image), known answers, batch-size invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics import build_metric
from metrics.psnr import psnr
from metrics.ssim import ssim
from stsa_bench.core.config import PreprocessConfig

TAG = PreprocessConfig().crop_tag()


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255.0


def degraded_pairs(rng: np.random.Generator, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    noise = rng.normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8), base


def real_crops(shared, n: int = 6) -> np.ndarray:
    from stsa_bench.core.media import decode_video

    frames, _ = decode_video(shared / "clips" / "smeetrs__deep_avsr__00001.mp4")
    return frames[:n, 16:144, 16:144]


@pytest.fixture
def pairs(shared):
    rng = np.random.default_rng(0)
    gt = real_crops(shared)
    return degraded_pairs(rng, gt.astype(np.float64))


def test_psnr_matches_skimage_on_real_frames(pairs):
    pred, gt = pairs
    ours = psnr(nchw(pred), nchw(gt)).numpy()
    ref = np.array([peak_signal_noise_ratio(g, p, data_range=255) for p, g in zip(pred, gt)])
    mse01 = 10 ** (-ref / 10)  # skimage's MSE on [0, 1] images
    np.testing.assert_allclose(ours, -10 * np.log10(mse01 + 1e-8), atol=1e-9)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_ssim_matches_skimage_gaussian_variant_on_real_frames(pairs):
    """piq's definition equals skimage's gaussian_weights=True, sigma 1.5, population covariance, data_range 1."""
    pred, gt = pairs
    ours = ssim(nchw(pred), nchw(gt)).numpy()
    ref = [
        structural_similarity(
            g / 255.0, p / 255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
        )
        for p, g in zip(pred, gt)
    ]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_psnr_is_float_not_uint8_wraparound():
    a = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    b = np.full((1, 16, 16, 3), 10, dtype=np.uint8)
    # on uint8, 0 - 10 wraps to 246; the correct MSE is 100
    assert psnr(nchw(a), nchw(b)).item() == pytest.approx(-10 * np.log10(100 / 255**2 + 1e-8), abs=1e-9)


@pytest.mark.parametrize("name,expected", [("psnr", 80.0), ("ssim", 1.0)])
def test_identical_inputs_known_answer(name, expected):
    x = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    m = build_metric(name, TAG)
    m.update(x, x)
    assert m.compute() == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_ssim_cpu_and_torch_paths_agree(pairs):
    """The cv2 float64 path (CPU) and the torch path (CUDA) compute the same numbers."""
    from metrics.ssim import ssim_numpy

    pred, gt = pairs
    for downsample in (True, False):
        np.testing.assert_allclose(ssim_numpy(pred, gt, downsample), ssim(nchw(pred), nchw(gt), downsample).numpy(), atol=1e-12)
    big = np.random.default_rng(4).integers(0, 256, (2, 530, 520, 3), dtype=np.uint8)
    noisy = np.clip(big.astype(int) + 9, 0, 255).astype(np.uint8)
    np.testing.assert_allclose(ssim_numpy(noisy, big), ssim(nchw(noisy), nchw(big)).numpy(), atol=1e-12)


@pytest.mark.parametrize("name", ["psnr", "ssim", "ssim_skimage"])
def test_batch_size_invariance(name):
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (11, 48, 48, 3), dtype=np.uint8)
    pred, _ = degraded_pairs(rng, gt.astype(np.float64))
    values = []
    for batch in (1, 4, 11):
        m = build_metric(name, TAG)
        for i in range(0, 11, batch):
            m.update(pred[i : i + batch], gt[i : i + batch])
        values.append(m.compute())
    assert values == pytest.approx([values[0]] * 3, rel=1e-6)


def test_reset_and_empty():
    m = build_metric("psnr", TAG)
    with pytest.raises(ValueError, match="no frames"):
        m.compute()
    x = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    m.update(x, x + 1)
    m.reset()
    m.update(x, x)
    assert m.compute() == pytest.approx(80.0)


def test_metric_ids_carry_protocol():
    assert build_metric("psnr", TAG).id == f"psnr[{TAG},rgb,eps=1e-8]"
    assert build_metric("ssim", TAG).id == f"ssim[{TAG},gauss11,sigma1.5,rgb,piq]"
    assert build_metric("psnr", TAG).higher_is_better and build_metric("ssim", TAG).higher_is_better
