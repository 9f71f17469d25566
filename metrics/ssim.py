"""SSIM on face crops: the piq (IP-LAP / vico) and scikit-image (TalkLip) definitions.

Computed in float64: the variance terms E[x^2] - E[x]^2 lose about 1e-5 in float32 on smooth
faces. On CPU the Gaussian filtering runs through OpenCV's separable float64 filter (about
50x faster than torch's float64 conv2d); on CUDA through torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from stsa_bench.core.registry import METRICS

from .base import Metric, num

K1, K2 = 0.01, 0.03
SIZE, SIGMA = 11, 1.5


def gaussian_1d(size: int = SIZE, sigma: float = SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(mx, my, exx, eyy, exy, c1: float = K1**2, c2: float = K2**2):
    """SSIM map from local means mu and second moments E[.] (Wang et al. 2004):
    (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_xx + s_yy + C2)), s = E[ab] - mu_a mu_b."""
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    return (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def _factor(h: int, w: int, downsample: bool) -> int:
    return max(1, round(min(h, w) / 256)) if downsample else 1


def ssim(pred: torch.Tensor, target: torch.Tensor, downsample: bool = True) -> torch.Tensor:
    """Per image SSIM of (N, C, H, W) tensors in [0, 1]: data_range 1, K1 0.01, K2 0.03, Gaussian 11x11
    sigma 1.5, valid filtering per channel, mean over map and channels, float64.

    downsample=True is piq.ssim: inputs over 256 px are first average-pooled by round(min(H, W) / 256).
    downsample=False is skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False): its reflect-padded filter with the border cropped is the valid filter.
    """
    import torch
    import torch.nn.functional as F

    x, y = pred.double(), target.double()
    f = _factor(x.shape[-2], x.shape[-1], downsample)
    if f > 1:
        x, y = F.avg_pool2d(x, f), F.avg_pool2d(y, f)
    c = x.shape[1]
    g = torch.from_numpy(gaussian_1d()).to(x.device)
    kh, kv = g.view(1, 1, 1, SIZE).expand(c, 1, 1, SIZE), g.view(1, 1, SIZE, 1).expand(c, 1, SIZE, 1)

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, kh, groups=c), kv, groups=c)

    return ssim_map(filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)).mean(dim=(-1, -2)).mean(dim=1)


def ssim_numpy(pred: np.ndarray, target: np.ndarray, downsample: bool = True) -> np.ndarray:
    """The same as `ssim` for uint8 (N, H, W, C) arrays, filtered with cv2.sepFilter2D in float64."""
    import cv2

    g = gaussian_1d()
    r = SIZE // 2
    out = np.empty(len(pred), dtype=np.float64)
    for i, (a, b) in enumerate(zip(pred, target)):
        x, y = a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0
        f = _factor(x.shape[0], x.shape[1], downsample)
        if f > 1:
            h, w = x.shape[0] // f * f, x.shape[1] // f * f
            x = x[:h, :w].reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3))
            y = y[:h, :w].reshape(h // f, f, w // f, f, -1).mean(axis=(1, 3))

        def filt(z: np.ndarray) -> np.ndarray:
            return cv2.sepFilter2D(z, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r]

        out[i] = ssim_map(filt(x), filt(y), filt(x * x), filt(y * y), filt(x * y)).mean()
    return out


class _SSIM(Metric):
    higher_is_better = True
    group = "Visual Quality"
    downsample = True
    definition: str

    def protocol_fields(self) -> tuple[str, ...]:
        return (f"gauss{SIZE}", f"sigma{num(SIGMA)}", "rgb", self.definition)

    def add_frames(self, pred, target) -> None:
        if self.device == "cpu" and isinstance(pred, np.ndarray):
            values = ssim_numpy(pred, target, self.downsample)
            self.total += float(values.sum())
            self.count += len(values)
        else:
            super().add_frames(pred, target)

    def per_frame(self, pred, target):
        return ssim(pred, target, self.downsample)


@METRICS.register("ssim")
class SSIM(_SSIM):
    """Structural similarity, piq definition (Gaussian 11, sigma 1.5, RGB channel mean), per frame, mean over frames."""

    definition = "piq"


@METRICS.register("ssim_skimage")
class SSIMSkimage(_SSIM):
    """Structural similarity, scikit-image definition (TalkLip): population covariance, no downsampling, float64."""

    downsample = False
    definition = "skimage"
