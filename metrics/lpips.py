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

from .base import EvalPair, Metric, to_nchw

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
    """LPIPS(x, y) = sum_l mean_hw(w_l . (f_l(x) - f_l(y))^2), f_l the unit-normalised backbone activations
    (Zhang et al., CVPR 2018; the lpips package's forward, v0.1, computed in two halves so that the ground
    truth's f_l(y) of a clip serve every method's pair: kept in `pair.gt_memo` while they fit
    `pair.memory_bytes`, computed again per method beyond it; the values are the same either way)."""

    higher_is_better = False
    group = "Visual Quality"
    net: ClassVar[str]

    def protocol_fields(self) -> tuple[str, ...]:
        return (self.net, "lin-v0.1", "rgb[-1,1]")

    def model(self):
        return self.lazy_weights(BACKBONES[self.net], lambda path: build_lpips(self.net, path, self.device))

    def features(self, x) -> list:
        """Unit-normalised activations of each backbone layer for (N, 3, H, W) images in [0, 1] (lpips' normalize=True)."""
        import lpips

        model = self.model()
        return [lpips.normalize_tensor(f) for f in model.net.forward(model.scaling_layer(2 * x - 1))]

    def distance(self, feats0: list, feats1: list):
        """Per-image LPIPS from both sides' `features`: the lpips package's linear heads and spatial mean."""
        lins = self.model().lins
        return sum(lins[k]((a - b) ** 2).mean([2, 3], keepdim=True) for k, (a, b) in enumerate(zip(feats0, feats1))).flatten()

    def per_frame(self, pred, target):
        import torch

        with torch.inference_mode():
            return self.distance(self.features(pred), self.features(target))

    def update_pair(self, pair: EvalPair) -> None:
        """Per frame, `pair.batch_size` at a time; the ground truth's own pair is 0 (the linear heads have no bias),
        with the weights loaded all the same (a missing file fails it like the others; its sha256 goes into the row)."""
        import torch

        if pair.pred_is_gt:
            self.model()
            self.count += pair.n_frames
            return
        key = f"{self.id}/gt-features@{pair.batch_size}"
        shared, kept, step = pair.gt_memo.get(key), [], max(1, pair.batch_size)
        pred, gt = pair.crops_on(self.device)
        with torch.inference_mode():
            for b, i in enumerate(range(0, pair.n_frames, step)):
                if shared is not None:
                    theirs = shared[b]
                else:
                    theirs = self.features(to_nchw(gt[i : i + step], self.device))
                    per_frame = sum(f.numel() * f.element_size() for f in theirs) / len(theirs[0])
                    if kept is not None and per_frame * pair.n_frames <= pair.memory_bytes:
                        kept.append(theirs)
                    else:
                        kept = None
                values = self.distance(self.features(to_nchw(pred[i : i + step], self.device)), theirs)
                self.total += float(values.double().sum())
                self.count += int(values.numel())
        if shared is None and kept is not None:
            pair.gt_memo[key] = kept


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
