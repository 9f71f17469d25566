"""DME (Dynamic Motion Error; Dyco, ECCV 2024, `DME_util.py`), pooled over all clips.

For each consecutive frame pair t -> t+1: optical flow F_gt of the ground-truth pair and F_gen of
the generated pair; each flow is set to 0 where its first frame's pixel is black (RGB sum 0);
M_t = {p : |u_gt(p)| + |v_gt(p)| > 1 px}; pairs with empty M_t are skipped (counted);
DME_t = mean over M_t of ||F_gt(p) - F_gen(p)||_2; DME = mean of DME_t over all retained pairs of
all clips. Computed on the 128x128 face crops (generated and ground truth cut with the same
ground-truth boxes), not on whole frames. Flow backends: `dme` RAFT (torchvision `raft_large`,
20 updates; official weights required), `dme_dis` OpenCV DIS (weight-free).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import load_state_dict

from .base import EvalPair, Metric

MOTION_THRESHOLD = 1.0
"""Pixels of ground-truth motion (|u| + |v|) for a pixel to enter the mask."""

RAFT_ITERS = 20
RAFT_MIN_SIZE = 128
RAFT_WEIGHTS = catalogue.RAFT


def dme_terms(
    flow_gt: np.ndarray,
    flow_gen: np.ndarray,
    src_gt: np.ndarray | None = None,
    src_gen: np.ndarray | None = None,
    threshold: float = MOTION_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair DME_t and whether the pair is retained (non-empty motion mask).

    flow_*: (P, H, W, 2) flows (u, v) in pixels; src_*: (P, H, W, 3) first frames of the pairs,
    whose black pixels (RGB sum 0) zero their own flow. Skipped pairs get DME_t = NaN.
    """
    gt = np.asarray(flow_gt, dtype=np.float64)
    gen = np.asarray(flow_gen, dtype=np.float64)
    if src_gt is not None:
        gt = np.where((np.asarray(src_gt).sum(axis=-1, dtype=np.int64) == 0)[..., None], 0.0, gt)
    if src_gen is not None:
        gen = np.where((np.asarray(src_gen).sum(axis=-1, dtype=np.int64) == 0)[..., None], 0.0, gen)
    mask = np.abs(gt).sum(axis=-1) > threshold
    epe = np.sqrt(((gt - gen) ** 2).sum(axis=-1))
    n = mask.sum(axis=(1, 2))
    kept = n > 0
    values = np.full(len(gt), np.nan)
    values[kept] = (epe * mask).sum(axis=(1, 2))[kept] / n[kept]
    return values, kept


def gray_frames(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) -> grayscale uint8 (N, H, W) with OpenCV's weights, in one call."""
    import cv2

    n, h, w = frames.shape[:3]
    tall = np.ascontiguousarray(frames, dtype=np.uint8).reshape(n * h, w, 3)
    return cv2.cvtColor(tall, cv2.COLOR_RGB2GRAY).reshape(n, h, w)


DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
"""cv2.DISOPTICAL_FLOW_PRESET_{ULTRAFAST, FAST, MEDIUM}."""


def dis_flow(frames: np.ndarray, preset: str = "medium", dis: Any = None) -> np.ndarray:
    """(N-1, H, W, 2) float32 DIS flow from frame t to t+1 of an RGB uint8 clip (N, H, W, 3)."""
    import cv2

    dis = dis if dis is not None else cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    g = gray_frames(frames)
    out = np.empty((max(len(g) - 1, 0), *g.shape[1:], 2), dtype=np.float32)
    for t in range(len(g) - 1):
        out[t] = dis.calc(g[t], g[t + 1], None)
    return out


def raft_flow(model, first: np.ndarray, second: np.ndarray, device: str = "cpu", iters: int = RAFT_ITERS) -> np.ndarray:
    """(P, H, W, 2) float32 RAFT flow first[i] -> second[i] (RGB uint8 (P, H, W, 3)).

    Inputs scaled to [-1, 1], replicate-padded (split evenly) to a multiple of 8 and to at least
    128 px (torchvision's correlation pyramid needs it), flow of the last of `iters` updates, unpadded.
    """
    import torch
    import torch.nn.functional as F

    def prep(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float()
        return t.div_(127.5).sub_(1.0)

    a, b = prep(first), prep(second)
    h, w = a.shape[-2:]
    ph, pw = max(RAFT_MIN_SIZE - h, (-h) % 8), max(RAFT_MIN_SIZE - w, (-w) % 8)
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
    with torch.inference_mode():
        flow = model(a, b, num_flow_updates=iters)[-1]
    flow = flow[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w]
    return flow.permute(0, 2, 3, 1).float().cpu().numpy()


class _DME(Metric):
    """Pooled DME: state = sum of DME_t, number of retained and of skipped pairs."""

    higher_is_better = False
    group = "Stability"
    pooled = True

    def reset(self) -> None:
        super().reset()
        self.skipped = 0

    def flow_run(self, frames: np.ndarray) -> np.ndarray:
        """(N-1, H, W, 2) flows t -> t+1 of one contiguous run of RGB uint8 frames (N, H, W, 3)."""
        raise NotImplementedError

    def flows(self, frames: np.ndarray, step: int, empty: Callable[[tuple, Any], np.ndarray] = np.empty) -> np.ndarray:
        """Flows of all consecutive pairs of a clip, `step` pairs per call to `flow_run`, into `empty(shape, dtype)`."""
        step = max(1, step)
        out = empty((max(0, len(frames) - 1), *frames.shape[1:3], 2), np.float32)
        for s in range(0, len(frames) - 1, step):
            out[s : s + step] = self.flow_run(frames[s : s + step + 1])
        return out

    def add_flows(self, f_gt: np.ndarray, f_gen: np.ndarray, src_gt: np.ndarray, src_gen: np.ndarray) -> None:
        """Add the DME_t of pairs whose flows are given; src_* are the pairs' first frames."""
        values, kept = dme_terms(f_gt, f_gen, src_gt, src_gen)
        self.total += float(values[kept].sum())
        self.count += int(kept.sum())
        self.skipped += int((~kept).sum())
        self._set_note()

    def add_run(self, pred: Any, target: Any) -> None:
        """Add the consecutive pairs of one contiguous run of frames (RGB uint8 (N, H, W, 3));
        pairs never span two calls."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"{self.name}: generated frames {pred.shape} vs ground truth {target.shape}")
        if len(pred) >= 2:
            self.add_flows(self.flow_run(target), self.flow_run(pred), target[:-1], pred[:-1])

    def _set_note(self) -> None:
        n = self.count + self.skipped
        self.note = f"{self.skipped} of {n} frame pairs without ground-truth motion skipped" if self.skipped else None

    def update_pair(self, pair: EvalPair) -> None:
        """All consecutive pairs of the face crops, `pair.batch_size` pairs per flow batch, scored batch by batch
        (the float64 terms of a batch, not of the clip). The ground-truth flows are computed once per clip and
        shared by every method."""
        if pair.pred_crops.shape != pair.gt_crops.shape:
            raise ValueError(f"{self.name}: generated crops {pair.pred_crops.shape} vs ground truth {pair.gt_crops.shape}")
        if pair.n_frames < 2:
            return
        f_gt = pair.ground_truth(f"{self.id}/flows", lambda: self.flows(pair.gt_crops, pair.batch_size, pair.empty))
        step = max(1, pair.batch_size)
        for s in range(0, pair.n_frames - 1, step):
            e = min(s + step, pair.n_frames - 1)
            pred = pair.pred_crops[s : e + 1]
            f_gen = f_gt[s:e] if pair.pred_is_gt else self.flow_run(pred)
            self.add_flows(f_gt[s:e], f_gen, pair.gt_crops[s:e], pred[:-1])

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError(f"{self.name}: no frame pair with ground-truth motion ({self.skipped} pairs skipped)")
        return self.total / self.count

    def state(self) -> dict[str, np.ndarray]:
        return {
            "sum": np.array(self.total, dtype=np.float64),
            "count": np.array(self.count, dtype=np.int64),
            "skipped": np.array(self.skipped, dtype=np.int64),
        }

    def merge(self, state: Mapping[str, np.ndarray]) -> None:
        self.total += float(state["sum"])
        self.count += int(state["count"])
        self.skipped += int(state["skipped"])
        self._set_note()


@METRICS.register("dme")
class DME(_DME):
    """DME with RAFT flow (torchvision `raft_large`, 20 updates, official C_T_SKHT_V2 weights) on face crops."""

    WEIGHTS = (RAFT_WEIGHTS,)

    def protocol_fields(self) -> tuple[str, ...]:
        return ("raft_large", f"iters{RAFT_ITERS}")

    def model(self):
        """The RAFT network, built and loaded on first use (WeightsMissing when the file is absent)."""
        return self.lazy_weights(RAFT_WEIGHTS, self._build)

    def _build(self, path):
        from torchvision.models.optical_flow import raft_large

        net = raft_large(weights=None, progress=False)
        net.load_state_dict(load_state_dict(path))
        return net.eval().to(self.device)

    def flow_run(self, frames):
        return raft_flow(self.model(), frames[:-1], frames[1:], self.device)


@METRICS.register("dme_dis")
class DMEDIS(_DME):
    """DME with OpenCV DIS flow (preset MEDIUM, grayscale uint8; weight-free) on face crops."""

    preset = "medium"
    _dis = None

    def protocol_fields(self) -> tuple[str, ...]:
        return (f"dis_{self.preset}",)

    def flow_run(self, frames):
        import cv2

        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
        return dis_flow(frames, dis=self._dis)
