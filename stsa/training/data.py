"""Training data: per-clip arrays (crops, heatmaps, landmarks, audio windows) and random T-frame windows.

A `ClipArrays` holds one clip's frames in the network's space (128x128 BGR crops, crop-normalised
landmarks, wav2vec2 features; heatmaps are drawn from the landmarks per sample); `WindowDataset` draws, for a sample
index, a clip, T consecutive frames and N reference frames of the same clip. Every draw comes from a
generator seeded by (seed, index), so a sample depends only on its index: resuming, data-parallel
ranks and gradient accumulation all see the same samples. No augmentation (the paper names none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import pipeline as P

LIP_ROWS = P.local_connections(P.LIPS, P.CONTENT57_IDS)
JAW_ROWS = P.local_connections(P.FACE_OVAL, P.CONTENT57_IDS)


def content_heatmaps(content57: np.ndarray) -> np.ndarray:
    """Target of the guidance network: lip sketch heatmap + jaw sketch heatmap, (N, 128, 128) in [0, 2].

    The network predicts the two branches separately and returns their sum (lip_map + jaw_map).
    """
    return P.draw_heatmaps(content57, LIP_ROWS) + P.draw_heatmaps(content57, JAW_ROWS)


@dataclass
class ClipArrays:
    """One clip's per-frame training inputs (N frames at 25 fps, aligned); heatmaps are drawn per sample.

    Arrays may be memory-mapped .npy files (the harness caches them on disk), so a dataset of many
    clips stays small in memory.
    """

    clip_id: str
    crops: np.ndarray  # (N, 128, 128, 3) uint8 BGR face crops
    full_points: np.ndarray  # (N, 131, 2) float32 crop coords, FULL_IDS_76_55 order (pose = first 76)
    content_points: np.ndarray  # (N, 2, 57) float32 crop coords, jaw (0-16) + lips (17-56)
    features: np.ndarray  # (L, 768) wav2vec2 last_hidden_state at 50 Hz
    mel: np.ndarray | None = None  # (N, 80, 16) float32 Wav2Lip mel windows (lip-sync expert)

    def __len__(self) -> int:
        return len(self.crops)

    def pose_heatmaps(self, idx) -> np.ndarray:
        return P.pose_heatmaps(np.asarray(self.full_points[idx, : len(P.POSE76_IDS)]))

    def full_heatmaps(self, idx) -> np.ndarray:
        return P.full_heatmaps(np.asarray(self.full_points[idx]))

    def content_heatmaps(self, idx) -> np.ndarray:
        return content_heatmaps(np.asarray(self.content_points[idx]).transpose(0, 2, 1))

    def audio(self, idx) -> np.ndarray:
        return P.audio_windows(self.features, frames=np.arange(len(self))[idx])


def clip_arrays(clip_id: str, frames_bgr: np.ndarray, landmarks: np.ndarray, w2v_features: np.ndarray,
                mel_windows: np.ndarray | None = None) -> ClipArrays:
    """Build a clip's arrays the way inference prepares a template (`STSAGenerator.prepare`).

    frames_bgr (N, H, W, 3) uint8; landmarks (N, 478, 2+) FaceMesh, normalised frame coords, no gaps;
    w2v_features (L, 768) wav2vec2 `last_hidden_state` at 50 Hz; mel_windows (N, 80, 16) or None.
    """
    n, h, w = frames_bgr.shape[:3]
    used = P.select_landmarks(landmarks, P.CROP_IDS)
    bounds = [P.crop_bounds(u, w, h) for u in used]
    boxes = [P.crop_box(u, w, h) for u in used]
    full = np.stack([P.to_crop_coords(P.select_landmarks(lm, P.FULL_IDS_76_55), b) for lm, b in zip(landmarks, bounds)])
    content = np.stack([P.to_crop_coords(P.select_landmarks(lm, P.CONTENT57_IDS), b) for lm, b in zip(landmarks, bounds)])
    return ClipArrays(
        clip_id=clip_id,
        crops=P.crop_resize(frames_bgr, boxes),
        full_points=full.astype(np.float32),
        content_points=content.transpose(0, 2, 1).astype(np.float32),
        features=np.asarray(w2v_features, np.float32),
        mel=None if mel_windows is None else np.asarray(mel_windows, np.float32),
    )


ClipSource = ClipArrays | Callable[[], ClipArrays]


class WindowDataset(Dataset):
    """Sample i -> one random T-frame window and N random references of one random clip.

    Keys (float32 tensors): faces (T,3,128,128) BGR [0,1]; pose (T,1,128,128); content_heatmap
    (T,1,128,128); points (T,2,57); audio (T,768,10); ref_guidance (N,1,128,128) full-face heatmaps;
    ref_imgs (N,3,128,128); ref_heatmaps (N,3,128,128); and with mel windows: mel (1,80,16) at the
    window start, sync_mel (1,80,16) and sync_label (1,): the same window (1) or one at least T frames
    away (0), with probability 1/2 each (lip-sync expert training).

    `pool` N: sample i is sample i mod N, i.e. training cycles over N fixed windows (overfitting checks).
    """

    def __init__(self, clips: Sequence[ClipSource], T: int = 5, n_refs: int = 5, length: int = 10**9, seed: int = 0,
                 pool: int | None = None):
        if not clips:
            raise ValueError("no training clips")
        self.clips, self.T, self.n_refs, self.length, self.seed = list(clips), T, n_refs, length, seed
        self.pool = pool

    def __len__(self) -> int:
        return self.length

    def clip(self, k: int) -> ClipArrays:
        c = self.clips[k]
        return c if isinstance(c, ClipArrays) else c()

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index) % self.pool if self.pool else int(index)
        rng = np.random.default_rng((self.seed, index))
        c = self.clip(int(rng.integers(len(self.clips))))
        n, T = len(c), self.T
        if n < T:
            raise ValueError(f"{c.clip_id}: {n} frames, a training window needs {T}")
        s = int(rng.integers(n - T + 1))
        win = slice(s, s + T)
        refs = np.sort(rng.choice(n, self.n_refs, replace=n < self.n_refs))
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731  (a copy: arrays may be read-only memmaps)
        ref_full = c.full_heatmaps(refs)
        item = {
            "faces": t(np.asarray(c.crops[win]).transpose(0, 3, 1, 2) / 255.0),
            "pose": t(c.pose_heatmaps(win)[:, None]),
            "content_heatmap": t(c.content_heatmaps(win)[:, None]),
            "points": t(c.content_points[win]),
            "audio": t(c.audio(win)),
            "ref_guidance": t(ref_full[:, None]),
            "ref_imgs": t(np.asarray(c.crops[refs]).transpose(0, 3, 1, 2) / 255.0),
            "ref_heatmaps": t(np.repeat(ref_full[:, None], 3, axis=1)),
        }
        if c.mel is not None:
            item["mel"] = t(c.mel[s, None])
            far = [i for i in range(n - T + 1) if abs(i - s) >= T]
            positive = not far or rng.random() < 0.5
            item["sync_mel"] = t(c.mel[(s if positive else int(rng.choice(far))), None])
            item["sync_label"] = torch.tensor([1.0 if positive else 0.0])
        return item


def step_indices(step: int, slot: int, batch: int, slots: int) -> list[int]:
    """Sample indices of micro-batch `slot` (0..slots-1) of optimiser step `step`.

    A step's global batch is `slots * batch` consecutive indices; slot q = micro * world + rank, so
    one process accumulating `slots` micro-batches and `slots` processes with one each see the same
    samples.
    """
    first = (step * slots + slot) * batch
    return list(range(first, first + batch))


class StepBatchSampler:
    """Batches of indices for this rank, steps `start`..`stop-1`, `accumulate` micro-batches per step."""

    def __init__(self, start: int, stop: int, batch: int, accumulate: int = 1, world: int = 1, rank: int = 0):
        self.start, self.stop, self.batch, self.acc, self.world, self.rank = start, stop, batch, accumulate, world, rank

    def __iter__(self):
        for step in range(self.start, self.stop):
            for micro in range(self.acc):
                yield step_indices(step, micro * self.world + self.rank, self.batch, self.acc * self.world)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.acc
