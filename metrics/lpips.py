"""LPIPS through the `lpips` package (v0.1 linear heads ship in its wheel).

The backbone's ImageNet weights are torchvision's files, resolved locally (never downloaded
unless weights.download=true) and copied into lpips' backbone slices by their feature index.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from stsa_bench.core import catalogue
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import WeightsMissing, load_state_dict

from .base import Metric

BACKBONES = {
    "alex": catalogue.LPIPS_ALEX,
    "vgg": catalogue.LPIPS_VGG,
}
_SLICE_KEY = re.compile(r"^net\.slice\d+\.(\d+)\.(weight|bias)$")


def build_lpips(net: str, backbone_path: Path, device: str = "cpu"):
    """lpips.LPIPS(net) with its own linear heads and the torchvision backbone file at `backbone_path`.

    lpips keeps torchvision's feature indices as module names (`net.slice2.3.weight` is
    `features.3.weight`), which gives the key map.
    """
    import warnings

    import lpips
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    tv = load_state_dict(backbone_path)
    own = model.state_dict()
    mapped = {}
    for key in own:
        m = _SLICE_KEY.match(key)
        if m:
            src = f"features.{m.group(1)}.{m.group(2)}"
            if src not in tv or tv[src].shape != own[key].shape:
                raise WeightsMissing(f"{backbone_path}: no {src} of shape {tuple(own[key].shape)} for LPIPS-{net}")
            mapped[key] = tv[src]
    with torch.no_grad():
        model.load_state_dict({**own, **mapped})
    return model.eval().to(device)


class _LPIPS(Metric):
    higher_is_better = False
    group = "Visual Quality"
    net: ClassVar[str]

    def protocol_fields(self) -> tuple[str, ...]:
        return (self.net, "lin-v0.1", "rgb[-1,1]")

    def model(self):
        return self.lazy_weights(BACKBONES[self.net], lambda path: build_lpips(self.net, path, self.device))

    def per_frame(self, pred, target):
        """LPIPS(x, y) per image, inputs scaled from [0, 1] to [-1, 1] (lpips' normalize=True)."""
        import torch

        with torch.inference_mode():
            return self.model()(pred, target, normalize=True).flatten()


@METRICS.register("lpips")
class LPIPSAlex(_LPIPS):
    """LPIPS with the AlexNet backbone (the lpips package default), per frame on face crops, mean over frames."""

    net = "alex"
    WEIGHTS = (BACKBONES["alex"],)


@METRICS.register("lpips_vgg")
class LPIPSVGG(_LPIPS):
    """LPIPS with the VGG16 backbone (closest to piq's VGG LPIPS, which STSA's code pins)."""

    net = "vgg"
    WEIGHTS = (BACKBONES["vgg"],)
