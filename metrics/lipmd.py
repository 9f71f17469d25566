"""LipLMD: lip landmark distance between generated and ground-truth frames.

vico `compute_lmd.py` defines it on face_alignment's 68 points (lips 48-67): L1 per coordinate
in pixels, mean over frames, points and coordinates. STSA's values (~0.007) are in image-normalised
coordinates, as MediaPipe FaceMesh gives them. Here (default `lipmd`): FaceMesh, the 40 points of
mediapipe's FACEMESH_LIPS connections, (x, y) image-normalised, mean L1 per coordinate. Variants:
`lipmd_l2` (mean Euclidean distance per point) and `lipmd_iod` (L1 over the ground-truth
inter-ocular distance of the same frame). A frame where either side has no face is left out and
counted in the row's note.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stsa_bench.core.errors import ClipError
from stsa_bench.core.faces import LIP_POINTS
from stsa_bench.core.registry import METRICS

from .base import EvalPair, Metric

RIGHT_EYE_POINTS = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
"""The unique indices of mediapipe's `FACEMESH_RIGHT_EYE` (the subject's right eye contour)."""

LEFT_EYE_POINTS = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
"""The unique indices of mediapipe's `FACEMESH_LEFT_EYE` (the subject's left eye contour)."""


def select_xy(landmarks: np.ndarray, points: tuple[int, ...], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """(N, len(points), 2) float64 (x, y) of the given FaceMesh points; in pixels when image_size = (width, height)."""
    xy = np.asarray(landmarks)[:, list(points), :2].astype(np.float64)
    if image_size is not None:
        xy = xy * np.asarray(image_size, dtype=np.float64)
    return xy


def l1_distance(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per frame: mean over points and coordinates of |pred - gt| (vico LMD). Inputs (N, P, 2)."""
    return np.abs(pred - gt).mean(axis=(1, 2))


def l2_distance(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per frame: mean over points of the Euclidean distance ||pred - gt||_2. Inputs (N, P, 2)."""
    return np.sqrt(((pred - gt) ** 2).sum(axis=2)).mean(axis=1)


def inter_ocular_distance(landmarks: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Per frame: distance between the eye centres, each the mean of its 16 FACEMESH eye-contour points."""
    right = select_xy(landmarks, RIGHT_EYE_POINTS, image_size).mean(axis=1)
    left = select_xy(landmarks, LEFT_EYE_POINTS, image_size).mean(axis=1)
    return np.sqrt(((left - right) ** 2).sum(axis=1))


def has_points(landmarks: np.ndarray, points: tuple[int, ...]) -> np.ndarray:
    """(N,) True where all the given points have finite (x, y) (the detector writes NaN where no face)."""
    return np.isfinite(np.asarray(landmarks)[:, list(points), :2]).all(axis=(1, 2))


class _LipLMD(Metric):
    """Shared accumulation: per-frame values summed over frames with a face on both sides."""

    higher_is_better = False
    group = "Lip-Sync"
    distance: str = "l1"
    units: str = "imgnorm"

    def protocol_fields(self) -> tuple[str, ...]:
        return (f"mediapipe{len(LIP_POINTS)}", self.distance, self.units)

    def reset(self) -> None:
        super().reset()
        self.seen = 0
        self.skipped = 0

    def frame_values(self, pred: np.ndarray, gt: np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
        """Per-frame values for frames that have a face on both sides."""
        raise NotImplementedError

    def needed_points(self) -> tuple[int, ...]:
        return LIP_POINTS

    def add_landmarks(
        self,
        pred_landmarks: Any,
        gt_landmarks: Any,
        pred_found: np.ndarray | None = None,
        gt_found: np.ndarray | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        """Add frames: FaceMesh landmarks (N, >=468, 2 or 3), NaN where no face; optional found masks (N,)."""
        pred, gt = np.asarray(pred_landmarks), np.asarray(gt_landmarks)
        if pred.shape[0] != gt.shape[0]:
            raise ValueError(f"{self.name}: {pred.shape[0]} generated vs {gt.shape[0]} ground-truth frames")
        points = self.needed_points()
        valid = has_points(pred, points) & has_points(gt, points)
        if pred_found is not None:
            valid &= np.asarray(pred_found, dtype=bool)
        if gt_found is not None:
            valid &= np.asarray(gt_found, dtype=bool)
        values = self.frame_values(pred[valid], gt[valid], image_size)
        ok = np.isfinite(values)
        self.total += float(values[ok].sum())
        self.count += int(ok.sum())
        self.seen += len(valid)
        self.skipped += len(valid) - int(ok.sum())
        self.note = f"{self.skipped} of {self.seen} frames without a face skipped" if self.skipped else None

    def frame_features(self, pair: EvalPair) -> dict:
        return pair.landmark_feature()

    def update_pair(self, pair: EvalPair) -> None:
        """Landmarks of the generated frames (FaceMesh, run here) against the cached ground-truth ones."""
        pred, pred_found = pair.pred_landmarks()
        gt, gt_found = pair.gt_landmarks, pair.gt_has_face
        size = (pair.gt_frames.shape[2], pair.gt_frames.shape[1])
        step = max(1, pair.batch_size)
        for i in range(0, len(gt), step):
            s = slice(i, i + step)
            self.add_landmarks(pred[s], gt[s], pred_found[s], gt_found[s], image_size=size)
        if self.count == 0:
            raise ClipError(
                f"{pair.pred_video or pair.video}: {self.name}: no frame has a face in both the generated ({pair.method}) "
                f"and the ground-truth video ({self.seen} frames)"
            )


@METRICS.register("lipmd")
class LipLMD(_LipLMD):
    """Mean |pred - gt| over frames x 40 FaceMesh lip points x (x, y), image-normalised coordinates (default)."""

    distance = "l1"

    def frame_values(self, pred, gt, image_size):
        return l1_distance(select_xy(pred, LIP_POINTS), select_xy(gt, LIP_POINTS))


@METRICS.register("lipmd_l2")
class LipLMDL2(_LipLMD):
    """Mean ||pred - gt||_2 over frames x 40 FaceMesh lip points, image-normalised coordinates."""

    distance = "l2"

    def frame_values(self, pred, gt, image_size):
        return l2_distance(select_xy(pred, LIP_POINTS), select_xy(gt, LIP_POINTS))


@METRICS.register("lipmd_iod")
class LipLMDIOD(_LipLMD):
    """Per frame: L1 lip distance / ground-truth inter-ocular distance, both in pixels (unitless); mean over frames.

    Eye centre = mean of the 16 points of FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE (eyelid contours;
    present with and without refine_landmarks, unlike the iris points 468 / 473). Pixels
    (x * width, y * height) keep the ratio independent of the frame's aspect ratio; without a
    frame size the coordinates are used as given. Frames with a zero inter-ocular distance are skipped.
    """

    distance = "l1"
    units = "iod=eyecontour16"

    def needed_points(self) -> tuple[int, ...]:
        return LIP_POINTS + RIGHT_EYE_POINTS + LEFT_EYE_POINTS

    def frame_values(self, pred, gt, image_size):
        dist = l1_distance(select_xy(pred, LIP_POINTS, image_size), select_xy(gt, LIP_POINTS, image_size))
        iod = inter_ocular_distance(gt, image_size)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(iod > 0, dist / iod, np.nan)
