"""CSIM: identity similarity, the cosine between ArcFace embeddings of generated and ground-truth frame t.

vico's `compute_csim.py` (the official route): frames decoded with the BT.601 matrix (OpenCV's VideoCapture),
RGB, 112x112, `(x / 255 - 0.5) / 0.5`, ArcFace iresnet100 (metrics/arcface.py), `F.cosine_similarity` per
frame pair (float32, eps 1e-8), mean over frames. Per clip here (the table averages clips); vico pools the
frames of all videos into one mean.
- `csim` (default): the 112x112 crop aligned to ArcFace's five-point template (insightface `norm_crop`: least-
  squares similarity, cv2.warpAffine, black border) from FaceMesh points (eye-corner means, nose tip, mouth
  corners): for in-the-wild video. Frames without a face on either side are left out and counted in the note.
- `csim_fullframe`: vico's whole frame resized to 112x112 (cv2 INTER_LINEAR): only meaningful on face-centred,
  pre-cropped clips.
The ground truth is decoded again from its file with BT.601 (named in the id); generated frames are the
method's RGB output. Ground-truth embeddings are cached like FID's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.errors import ClipError
from stsa_bench.core.faces import ARCFACE_TEMPLATE_112, five_points
from stsa_bench.core.frames import Frames, VideoFrames, as_frames, map_chunks
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import load_state_dict

from .base import EvalPair, Metric, distinct_frames

SIZE = 112
COS_EPS = 1e-8
MATRIX = "bt601"


@dataclass(frozen=True)
class CSIMOptions:
    batch_size: int = 16
    """Faces per ArcFace forward pass."""


def similarity_matrix(points: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (Umeyama) taking five points to ARCFACE_TEMPLATE_112: insightface's
    `estimate_norm` through skimage's SimilarityTransform."""
    from skimage.transform import SimilarityTransform

    src, dst = np.asarray(points, np.float32), np.asarray(ARCFACE_TEMPLATE_112, np.float32)
    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
    else:  # scikit-image < 0.26
        tform = SimilarityTransform()
        tform.estimate(src, dst)
    return tform.params[0:2, :]


def aligned_crops(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8: each frame warped by its five points' similarity (black where no face)."""
    import cv2

    out = np.zeros((len(frames), SIZE, SIZE, 3), np.uint8)
    for i, (frame, p) in enumerate(zip(frames, points)):
        if np.isfinite(p).all():
            out[i] = cv2.warpAffine(np.ascontiguousarray(frame), similarity_matrix(p), (SIZE, SIZE), borderValue=0.0)
    return out


def fullframe_crops(frames: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8: the whole frame resized (cv2.resize, INTER_LINEAR), as vico does."""
    import cv2

    return np.stack([cv2.resize(np.ascontiguousarray(f), (SIZE, SIZE)) for f in frames])


def build_arcface(path, device: str = "cpu"):
    """The in-tree iresnet100 with an arcface_torch `backbone.pth` state dict (strict), in eval mode, channels-last
    (5.6 instead of 4.6 faces/s on this CPU; embeddings within 1e-5 of their size of the default layout)."""
    import torch

    from .arcface import IResNet100

    model = IResNet100()
    model.load_state_dict(load_state_dict(path))
    return model.eval().to(device, memory_format=torch.channels_last)


def arcface_embeddings(model, crops: np.ndarray, batch_size: int, device: str = "cpu") -> np.ndarray:
    """(N, 512) float32 ArcFace embeddings of uint8 112x112 crops ((x / 255 - 0.5) / 0.5, channels-last), distinct
    crops once, `batch_size` at a time."""
    import torch

    first, inverse = distinct_frames(crops)
    out = np.empty((len(first), 512), np.float32)
    step = max(1, batch_size)
    with torch.inference_mode():
        for i in range(0, len(first), step):
            x = torch.from_numpy(crops[first[i : i + step]]).to(device).permute(0, 3, 1, 2).float()
            x = x.div_(255).sub_(0.5).div_(0.5).contiguous(memory_format=torch.channels_last)
            out[i : i + len(x)] = model(x).float().cpu().numpy()
    return out[inverse]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise float32 `F.cosine_similarity(a, b, dim=1, eps=1e-8)`."""
    import torch
    import torch.nn.functional as F

    return F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1, eps=COS_EPS).numpy()


class _CSIM(Metric):
    higher_is_better = True
    group = "Identity"
    Options = CSIMOptions
    WEIGHTS = (catalogue.ARCFACE,)
    aligned: bool = True

    def frames_tag(self) -> str:
        """Whole frames at the decode settings with BT.601; the aligned crop also names the landmarks' preprocessing."""
        landmarks = f"/lm={self.crop_tag}" if self.aligned else ""
        return f"frame@{self.decode_tag}/yuv={MATRIX}{landmarks}"

    def protocol_fields(self) -> tuple[str, ...]:
        crop = "facemesh5-arcface112" if self.aligned else f"resize{SIZE}-linear"
        return (crop, "arcface-r100", "cos-per-frame")

    def reset(self) -> None:
        super().reset()
        self.dropped = 0

    def model(self):
        return self.lazy_weights(catalogue.ARCFACE, lambda path: build_arcface(path, self.device))

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """(N, 512) float32 embeddings of uint8 crops (`arcface_embeddings`)."""
        return arcface_embeddings(self.model(), crops, self.opts.batch_size, self.device)

    def embeddings(self, frames: Frames, landmarks: np.ndarray | None, chunk: int) -> np.ndarray:
        """(N, 512) embeddings of a clip's frames, NaN rows where the aligned crop has no face."""
        w, h = frames.width, frames.height

        def fn(part: np.ndarray, start: int) -> np.ndarray:
            if not self.aligned:
                return self.embed(fullframe_crops(part))
            points = five_points(landmarks[start : start + len(part)], w, h)
            found = np.isfinite(points).all(axis=(1, 2))
            emb = np.full((len(part), 512), np.nan, np.float32)
            if found.any():
                emb[found] = self.embed(aligned_crops(part[found], points[found]))
            return emb

        return map_chunks(frames, chunk, fn)

    def ground_truth_frames(self, pair: EvalPair) -> Frames:
        """The ground truth decoded again from its file with BT.601; the given frames when there is no file."""
        if not Path(pair.video).is_file():
            return pair.gt_frames
        g = pair.gt_frames
        return VideoFrames(pair.video, pair.fps, pair.fps_mode, g.n, g.height, g.width, matrix=MATRIX)

    def frame_features(self, pair: EvalPair) -> dict:
        return pair.landmark_feature() if self.aligned else {}

    def update_pair(self, pair: EvalPair) -> None:
        self.model()
        landmarks = pair.gt_landmarks if self.aligned else None
        gt = self.cached_ground_truth(
            pair, f"{self.name}-gt", lambda: self.embeddings(self.ground_truth_frames(pair), landmarks, pair.chunk_frames)
        )
        if pair.pred_is_gt:
            pred = gt
        else:
            pred_landmarks = pair.pred_landmarks()[0] if self.aligned else None
            pred = self.embeddings(as_frames(pair.pred_frames), pred_landmarks, pair.chunk_frames)
        both = np.isfinite(gt).all(axis=1) & np.isfinite(pred).all(axis=1)
        values = cosine(pred[both], gt[both]).astype(np.float64)
        self.total += float(values.sum())
        self.count += len(values)
        self.dropped += int((~both).sum())
        if self.dropped:
            self.note = f"{self.dropped} of {self.count + self.dropped} frames without a face on one side left out"
        if not len(values):
            raise ClipError(f"{pair.pred_video or pair.video}: {self.name}: no frame has a face in both the generated ({pair.method}) and the ground-truth video")


@METRICS.register("csim")
class CSIM(_CSIM):
    """Identity cosine of ArcFace embeddings, generated vs ground-truth frame, five-point aligned crops."""

    aligned = True


@METRICS.register("csim_fullframe")
class CSIMFullFrame(_CSIM):
    """Identity cosine of ArcFace embeddings, whole frames resized to 112x112 (vico's official route)."""

    aligned = False

