"""The accumulating metric interface (torchmetrics-style: update / compute / reset)."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np

from stsa_bench.registry import METRICS


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def to_nchw(x: Any, device: str):
    """uint8/float (N, H, W, 3) array or tensor in [0, 255] -> float32 (N, 3, H, W) tensor in [0, 1]."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    return t.to(device=device).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


class Metric:
    """One metric for one clip: feed frame batches with `update`, read the clip value with `compute`.

    `inputs` names what the runner feeds: "face_crops" = (N, S, S, 3) uint8 generated and
    ground-truth face crops cut with the same (ground-truth) boxes.
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    inputs: ClassVar[str] = "face_crops"
    weights_sha256: str | None = None

    def __init__(self, crop_tag: str, device: str = "cpu", **options: Any):
        self.crop_tag = crop_tag
        self.device = resolve_device(device)
        self.options = options
        self.reset()

    def protocol(self) -> str:
        return self.crop_tag

    @property
    def id(self) -> str:
        return f"{self.name}[{self.protocol()}]"

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, pred: Any, target: Any) -> None:
        values = self.per_frame(to_nchw(pred, self.device), to_nchw(target, self.device))
        self.total += float(values.double().sum())
        self.count += int(values.numel())

    def per_frame(self, pred, target):
        raise NotImplementedError

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError(f"{self.name}: no frames were given")
        return self.total / self.count


def build_metric(name: str, crop_tag: str, device: str = "cpu", options: Mapping[str, Any] | None = None) -> Metric:
    cls = METRICS.get(name)
    return cls(crop_tag=crop_tag, device=device, **dict(options or {}))
