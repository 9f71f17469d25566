"""PSNR on face crops."""

from __future__ import annotations

from stsa_bench.core.registry import METRICS

from .base import Metric, num

EPS = 1e-8


def psnr(pred, target, eps: float = EPS):
    """Per image: -10 log10(MSE + eps), images in [0, 1] (piq.psnr; eps caps identical images at 80 dB).

    MSE over channels and pixels, accumulated in float64 (never on uint8 differences).
    """
    diff = pred.double() - target.double()
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return -10.0 * (mse + eps).log10()


@METRICS.register("psnr")
class PSNR(Metric):
    """Peak signal-to-noise ratio (dB), per frame on RGB face crops, mean over frames; 80 dB = identical."""

    higher_is_better = True
    group = "Visual Quality"

    def protocol_fields(self) -> tuple[str, ...]:
        return ("rgb", f"eps={num(EPS)}")

    def per_frame(self, pred, target):
        return psnr(pred, target)
