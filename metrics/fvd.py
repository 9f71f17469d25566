"""FVD: Frechet Video Distance between the generated and the ground-truth clips' I3D embeddings, pooled over a set.

`fvd` is VideoGPT's protocol (`videogpt/fvd/fvd.py`): windows of 16 frames at stride 16 from frame 0 (the
incomplete tail dropped); each frame resized bilinearly without antialiasing so that its short side is 224
(long side ceil(L * (224 / S))), centre-cropped to 224, scaled to [-1, 1]; embedding = the Kinetics-400
I3D's logits averaged over time (metrics/i3d.py). Two Frechet modes: `exact`, ||mu1 - mu2||^2 +
Tr(S1 + S2 - 2 (S1 S2)^1/2) in float64 (StyleGAN-V's and LatentSync's formula, 0 for a set against itself),
and `videogpt`, the official float32 TF-GAN routine whose square root keeps singular values below 1e-10
un-rooted.

`fvd_styleganv` is LatentSync's `eval/fvd.py`: one window per clip, frames 20-35, each face crop resized to
224x224 with INTER_AREA, values in [0, 1] given with rescale=False (LatentSync's range), StyleGAN-V's
TorchScript I3D, exact Frechet. The detector is TorchScript: it loads only with weights.allow_torchscript=true.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.frames import as_frames, map_chunks
from stsa_bench.core.registry import METRICS, did_you_mean
from stsa_bench.core.weights import load_state_dict, load_torchscript_model

from .base import EvalPair, PooledFeatures, distinct_frames
from .fid import exchange_engine, frechet_distance

WINDOW = 16
SIZE = 224
SVD_EPS = 1e-10
"""VideoGPT's `_symmetric_matrix_square_root` threshold: singular values below it are not square-rooted."""
REGIONS = ("face", "frame")
FRECHET_MODES = ("exact", "videogpt")
STYLEGANV_FRAMES = (20, 36)
"""LatentSync's `VideoReader(path)[20:36]`."""


def _choice(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: one of {', '.join(allowed)}{did_you_mean(value, list(allowed))}")


@dataclass(frozen=True)
class FVDOptions:
    region: str = "face"
    """face: the harness's face crops (the dubbed region; background identical in every method) | frame: whole frames."""
    frechet: str = "exact"
    """exact: float64, the true distance | videogpt: the official float32 routine (reproduces VideoGPT's numbers)."""
    batch_windows: int = 4
    """16-frame windows per I3D forward pass."""

    def __post_init__(self) -> None:
        _choice(self.region, REGIONS, "fvd.region")
        _choice(self.frechet, FRECHET_MODES, "fvd.frechet")


def resize_crop(frames: Any, device: str = "cpu"):
    """(N, H, W, 3) uint8 -> (3, N, 224, 224) float32 in [-1, 1]: VideoGPT's `preprocess_single`
    (bilinear, align_corners=False, no antialias, short side 224, centre crop) and `(x - 0.5) * 2`."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[2:]
    scale = SIZE / min(h, w)
    size = (SIZE, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), SIZE)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = (x.shape[2] - SIZE) // 2, (x.shape[3] - SIZE) // 2
    x = x[:, :, top : top + SIZE, left : left + SIZE]
    return ((x - 0.5) * 2).permute(1, 0, 2, 3).contiguous()


class WindowEmbedder:
    """`fn(chunk, start)` for chunks given in order: the I3D logits (k, 400) of the windows the chunk completes.

    Frames are prepared as they come and at most WINDOW - 1 of them wait for the next chunk, so memory holds a
    chunk whatever the clip length. Identical windows (a frozen output) go through the network once."""

    def __init__(self, embed: Callable[[Any], np.ndarray], prepare: Callable[[np.ndarray], Any], batch: int):
        self.embed, self.prepare, self.batch = embed, prepare, max(1, batch)
        self.pending = None
        self.seen = 0

    def __call__(self, chunk: np.ndarray, start: int) -> np.ndarray:
        import torch

        if start != self.seen:
            raise RuntimeError(f"chunks out of order: frame {start}, expected {self.seen}")
        self.seen += len(chunk)
        x = self.prepare(chunk)
        x = x if self.pending is None else torch.cat([self.pending, x], dim=1)
        n = x.shape[1] // WINDOW
        self.pending = x[:, n * WINDOW :].clone()
        if n == 0:
            return np.empty((0, 400), np.float32)
        windows = x[:, : n * WINDOW].reshape(3, n, WINDOW, SIZE, SIZE).transpose(0, 1)
        return self._distinct(windows)

    def _distinct(self, windows) -> np.ndarray:
        first, inverse = distinct_frames(windows.cpu().numpy())
        out = np.concatenate([self.embed(windows[first[i : i + self.batch]]) for i in range(0, len(first), self.batch)])
        return out[inverse]


def window_logits(frames: Any, embed: Callable[[Any], np.ndarray], chunk: int = 64, batch: int = 4, device: str = "cpu") -> np.ndarray:
    """(n_windows, 400) logits of a clip's 16-frame windows at stride 16 (array or `Frames`)."""
    return map_chunks(as_frames(frames), chunk, WindowEmbedder(embed, lambda c: resize_crop(c, device), batch))


def frechet_videogpt(x1: np.ndarray, x2: np.ndarray) -> float:
    """VideoGPT's `frechet_distance` (TF-GAN's): float32 torch; mean; covariance with 1/(n - 1);
    Tr sqrt = Tr S(S(C1) C2 S(C1)) where S(M) = U diag(s if s < 1e-10 else sqrt s) V^T from the SVD;
    Tr C1 + Tr C2 - 2 Tr sqrt + ||mu1 - mu2||^2."""
    import torch

    def sqrtm(m):
        u, s, v = torch.svd(m)
        return u @ torch.diag(torch.where(s < SVD_EPS, s, torch.sqrt(s))) @ v.t()

    def cov(x):
        c = x - x.mean(dim=0, keepdim=True)
        return (1.0 / (x.shape[0] - 1)) * (c.t() @ c)

    a, b = torch.from_numpy(np.asarray(x1, np.float32)), torch.from_numpy(np.asarray(x2, np.float32))
    s1, s2 = cov(a), cov(b)
    root = sqrtm(s1)
    trace_sqrt = torch.trace(sqrtm(root @ s2 @ root))
    return float(torch.trace(s1 + s2) - 2.0 * trace_sqrt + ((a.mean(0) - b.mean(0)) ** 2).sum())


class _FVD(PooledFeatures):
    """Pooled window logits of both sides; per-clip partials hold them, so shards and resumed runs merge."""

    higher_is_better = False
    group = "Stability"

    def embed(self, windows) -> np.ndarray:
        raise NotImplementedError

    def update_pair(self, pair: EvalPair) -> None:
        gt = self.ground_truth_logits(pair)
        self.add(gt if pair.pred_is_gt else self.generated_logits(pair), gt)

    def ground_truth_logits(self, pair: EvalPair) -> np.ndarray:
        raise NotImplementedError

    def generated_logits(self, pair: EvalPair) -> np.ndarray:
        raise NotImplementedError

    def distance(self, pred: np.ndarray, target: np.ndarray) -> float:
        return frechet_distance(pred, target, self.device)

    def exchange(self, a, b):
        return exchange_engine(a, b) if type(self).distance is _FVD.distance else None

    def compute(self) -> float:
        pred = np.concatenate(self.pred) if self.pred else np.empty((0, 400))
        target = np.concatenate(self.target) if self.target else np.empty((0, 400))
        if min(len(pred), len(target)) < 2:
            raise ValueError(f"{self.name} needs at least 2 windows on each side, got {len(pred)} and {len(target)}")
        return self.distance(pred, target)


def build_i3d(path, device: str = "cpu"):
    """The in-tree I3D with a VideoGPT `i3d_pretrained_400.pt` state dict (strict), in eval mode, channels-last
    (35 % faster on CPU here, logits within 5e-7 of the default layout)."""
    import torch

    from .i3d import InceptionI3d

    model = InceptionI3d(400, in_channels=3)
    model.load_state_dict(load_state_dict(path))
    return model.eval().to(device, memory_format=torch.channels_last_3d)


def run_i3d(model, windows) -> np.ndarray:
    """(B, 400) float32 logits of (B, 3, 16, 224, 224) windows, channels-last."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        x = windows.to(device).contiguous(memory_format=torch.channels_last_3d)
        return model(x).float().cpu().numpy()


@METRICS.register("fvd")
class FVD(_FVD):
    """FVD (VideoGPT protocol): I3D logits of 16-frame windows at stride 16, Frechet distance pooled over clips."""

    Options = FVDOptions
    WEIGHTS = (catalogue.I3D,)

    def frames_tag(self) -> str:
        return self.crop_tag if self.opts.region == "face" else f"frame@{self.decode_tag}"

    def protocol_fields(self) -> tuple[str, ...]:
        return (f"i3d400-w{WINDOW}s{WINDOW}", f"bilinear-short{SIZE}-crop{SIZE}", f"frechet={self.opts.frechet}", "pooled")

    def model(self):
        return self.lazy_weights(catalogue.I3D, lambda path: build_i3d(path, self.device))

    def embed(self, windows) -> np.ndarray:
        return run_i3d(self.model(), windows)

    def _embedder(self) -> WindowEmbedder:
        return WindowEmbedder(self.embed, lambda c: resize_crop(c, self.device), self.opts.batch_windows)

    def _logits(self, frames: Any, chunk: int) -> np.ndarray:
        return map_chunks(as_frames(frames), chunk, self._embedder())

    def _check_length(self, pair: EvalPair) -> None:
        if pair.n_frames < WINDOW:
            raise ClipError(f"{pair.video}: {self.name} needs at least {WINDOW} frames, the clip has {pair.n_frames}")

    def ground_truth_logits(self, pair: EvalPair) -> np.ndarray:
        self._check_length(pair)
        self.model()
        frames = pair.gt_crops if self.opts.region == "face" else pair.gt_frames
        return self.cached_ground_truth(pair, "fvd-gt", lambda: self._logits(frames, pair.chunk_frames))

    def frame_features(self, pair: EvalPair) -> dict:
        if self.opts.region != "frame" or pair.pred_frames is pair.gt_frames or pair.n_frames < WINDOW:
            return {}
        return {("fvd", self.id): self._embedder()}

    def generated_logits(self, pair: EvalPair) -> np.ndarray:
        if self.opts.region == "face":
            return self._logits(pair.pred_crops, pair.chunk_frames)
        return pair.pred_feature(("fvd", self.id), self._embedder())

    def distance(self, pred: np.ndarray, target: np.ndarray) -> float:
        return frechet_videogpt(pred, target) if self.opts.frechet == "videogpt" else super().distance(pred, target)


@dataclass(frozen=True)
class StyleGANVOptions:
    batch_windows: int = 8


def area_resize(crops: np.ndarray) -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, 224, 224, 3) uint8 with cv2.INTER_AREA, aspect ratio not kept (LatentSync)."""
    import cv2

    return np.stack([cv2.resize(np.ascontiguousarray(c), (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in crops])


@METRICS.register("fvd_styleganv")
class FVDStyleGANV(_FVD):
    """FVD as LatentSync computes it: frames 20-35 of each clip's face crops, StyleGAN-V's TorchScript I3D."""

    Options = StyleGANVOptions
    WEIGHTS = (catalogue.I3D_STYLEGANV,)

    def protocol_fields(self) -> tuple[str, ...]:
        first, stop = STYLEGANV_FRAMES
        return (f"frames{first}-{stop - 1}", f"area{SIZE}", "range01", "styleganv-i3d", "frechet=exact", "pooled")

    def model(self):
        return self.lazy_weights(
            catalogue.I3D_STYLEGANV, lambda path: load_torchscript_model(path, catalogue.I3D_STYLEGANV, self.weights, self.device)
        )

    def embed(self, windows) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model()(windows.to(self.device), rescale=False, resize=False, return_features=True)
        return out.float().cpu().numpy()

    def _window(self, crops: np.ndarray, pair: EvalPair) -> np.ndarray:
        import torch

        first, stop = STYLEGANV_FRAMES
        if len(crops) < stop:
            raise ClipError(f"{pair.video}: {self.name} reads frames {first}-{stop - 1}, the clip has {len(crops)}")
        x = torch.from_numpy(area_resize(crops[first:stop])).float() / 255.0
        return self.embed(x.permute(3, 0, 1, 2).unsqueeze(0))

    def ground_truth_logits(self, pair: EvalPair) -> np.ndarray:
        self.model()
        return self.cached_ground_truth(pair, "fvd_styleganv-gt", lambda: self._window(pair.gt_crops, pair))

    def generated_logits(self, pair: EvalPair) -> np.ndarray:
        return self._window(pair.pred_crops, pair)

