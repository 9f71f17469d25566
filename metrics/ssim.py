"""SSIM on face crops (piq / IP-LAP / vico definition)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stsa_bench.registry import METRICS

from .base import Metric

K1, K2 = 0.01, 0.03


def gaussian_kernel(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device="cpu") -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: torch.Tensor, target: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5, downsample: bool = True) -> torch.Tensor:
    """Per image SSIM (Wang et al. 2004): images in [0, 1], data_range 1, K1 0.01, K2 0.03,
    Gaussian 11x11 sigma 1.5, valid convolution per channel, mean over map and channels.

    downsample=True is piq.ssim: inputs larger than 256 px are first average-pooled by
    round(min(H, W) / 256). downsample=False is skimage's structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False): its reflect-padded filter with the border cropped
    equals the valid convolution.
    """
    f = max(1, round(min(pred.shape[-2:]) / 256)) if downsample else 1
    if f > 1:
        pred, target = F.avg_pool2d(pred, f), F.avg_pool2d(target, f)
    c = pred.shape[1]
    w = gaussian_kernel(kernel_size, sigma, pred.dtype, pred.device).expand(c, 1, kernel_size, kernel_size)
    c1, c2 = K1**2, K2**2

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=c)

    mu_x, mu_y = filt(pred), filt(target)
    sxx = filt(pred * pred) - mu_x**2
    syy = filt(target * target) - mu_y**2
    sxy = filt(pred * target) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    s = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return s.mean(dim=(-1, -2)).mean(dim=1)


@METRICS.register("ssim")
class SSIM(Metric):
    """Structural similarity, piq definition (Gaussian 11, sigma 1.5, RGB channel mean), per frame, mean over frames."""

    name = "ssim"
    higher_is_better = True

    def protocol(self) -> str:
        return f"{self.crop_tag},gauss11,rgb,piq"

    def per_frame(self, pred, target):
        """float64: the variance terms E[x^2] - E[x]^2 lose about 1e-5 in float32."""
        return ssim(pred.double(), target.double())


@METRICS.register("ssim_skimage")
class SSIMSkimage(Metric):
    """Structural similarity, scikit-image definition (TalkLip): population covariance, no downsampling, float64."""

    name = "ssim_skimage"
    higher_is_better = True

    def protocol(self) -> str:
        return f"{self.crop_tag},gauss11,rgb,skimage"

    def per_frame(self, pred, target):
        return ssim(pred.double(), target.double(), downsample=False)
