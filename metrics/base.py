"""The accumulating metric interface (torchmetrics-style: update / compute / reset).

The runner hands every metric one `EvalPair` per (clip, method); `update_pair` picks what the
metric needs from it and calls the metric's own `update`. Per-clip metrics give one value per
clip (`compute` after each clip). Pooled metrics (`pooled = True`, e.g. FID) keep per-clip
partial state (`state` / `merge`) and give one value for the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from stsa_bench.core.devices import resolve_device
from stsa_bench.core.registry import METRICS


def to_nchw(x: Any, device: str):
    """uint8/float (N, H, W, 3) array or tensor in [0, 255] -> float32 (N, 3, H, W) tensor in [0, 1]."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    return t.to(device=device).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


@dataclass
class EvalPair:
    """One clip x method, at the harness protocol (25 fps, 16 kHz mono float32, RGB uint8).

    pred_* is the method's output, gt_* the ground truth. Crops of both are cut with the
    ground-truth boxes. `audio_valid` is the number of decoded driving-audio samples before
    padding to n_frames * 640. Landmarks are FaceMesh (N, 478, 3), image-normalised, NaN where
    no face; `pred_landmarks` is computed on first use. `memo` lets metrics share work
    (e.g. lse_c and lse_d share one SyncNet pass).
    """

    clip_id: str
    video: Path
    method: str
    fps: int
    sample_rate: int
    pred_frames: np.ndarray
    gt_frames: np.ndarray
    pred_audio: np.ndarray
    gt_audio: np.ndarray
    audio_valid: int
    pred_crops: np.ndarray
    gt_crops: np.ndarray
    boxes: np.ndarray
    gt_landmarks: np.ndarray
    gt_has_face: np.ndarray
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    clip_sha256: str = ""
    memo: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.pred_frames)

    def pred_landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """FaceMesh landmarks of the generated frames: (N, 478, 3), found mask."""
        if "pred_landmarks" not in self.memo:
            if self.pred_frames is self.gt_frames:
                self.memo["pred_landmarks"] = (self.gt_landmarks, self.gt_has_face)
            else:
                if self.detect is None:
                    raise RuntimeError("no landmark detector given")
                self.memo["pred_landmarks"] = self.detect(self.pred_frames)
        return self.memo["pred_landmarks"]


class Metric:
    """One metric: feed a clip with `update_pair` (or `update`), read its value with `compute`."""

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    pooled: ClassVar[bool] = False
    options_key: ClassVar[str | None] = None
    weights_sha256: str | None = None

    def __init__(
        self,
        crop_tag: str,
        device: str = "cpu",
        weights: Mapping[str, Any] | None = None,
        cache_dir: Path | None = None,
        **options: Any,
    ):
        self.crop_tag = crop_tag
        self.device = resolve_device(device)
        self.weights = dict(weights or {})
        self.cache_dir = cache_dir
        self.options = options
        self.reset()

    @classmethod
    def weights_specs(cls) -> list:
        """The weights files this metric needs (stsa_bench.core.weights.WeightsSpec)."""
        return []

    def protocol(self) -> str:
        return self.crop_tag

    @property
    def id(self) -> str:
        return f"{self.name}[{self.protocol()}]"

    def reset(self) -> None:
        """Clear accumulated state (subclasses with more state extend this and call super)."""
        self.total = 0.0
        self.count = 0
        self.note: str | None = None

    def update_pair(self, pair: EvalPair, batch_size: int = 64) -> None:
        """Default: generated vs ground-truth face crops, in batches."""
        for i in range(0, pair.n_frames, batch_size):
            self.update(pair.pred_crops[i : i + batch_size], pair.gt_crops[i : i + batch_size])

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

    def state(self) -> dict[str, np.ndarray]:
        """Pooled metrics: the partial state of the clips fed since `reset` (saved per clip)."""
        raise NotImplementedError

    def merge(self, state: Mapping[str, np.ndarray]) -> None:
        """Pooled metrics: add a saved partial state."""
        raise NotImplementedError


def build_metric(
    name: str,
    crop_tag: str,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
    weights: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
) -> Metric:
    cls = METRICS.get(name)
    return cls(crop_tag=crop_tag, device=device, weights=weights, cache_dir=cache_dir, **dict(options or {}))


def options_key(name: str) -> str:
    """The config key holding a metric's options (lse_c and lse_d share `lse`)."""
    return METRICS.get(name).options_key or name
