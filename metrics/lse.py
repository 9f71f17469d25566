"""LSE-C / LSE-D: lip-sync error confidence and distance from SyncNet embeddings.

Reference: joonson/syncnet_python `SyncNetInstance.evaluate` in the variant of Wav2Lip
`evaluation/scores_LSE` (`calculate_scores_LRS.py`), the protocol every lip-sync paper since 2020
quotes (Prajwal et al., "A Lip Sync Expert Is All You Need", ACM MM 2020). Spec:
shared/spec/metrics.md, section LSE-C / LSE-D.

Per clip: n = min(frames, floor(samples / 640)); one window per v in [0, n - 5): frames v..v+4 and
MFCC columns [4v, 4v + 20); raw 1024-d SyncNet embeddings; the audio embedding sequence is
zero-padded by vshift on both sides; mdist[k] = mean over windows of ||video_v - audio_(v+k-vshift)||;
LSE-D = min mdist, LSE-C = median mdist - min mdist, AV offset = vshift - argmin mdist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stsa_bench.core.catalogue import SYNCNET as SYNCNET_WEIGHTS
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.media import to_pcm16
from stsa_bench.core.registry import METRICS

from .base import EvalPair, Metric, frame_digest

if TYPE_CHECKING:
    import torch

    from .syncnet import FastSyncNet

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
MFCC_PER_FRAME = 4
WINDOW_FRAMES = 5
WINDOW_MFCC = MFCC_PER_FRAME * WINDOW_FRAMES
INPUT_SIZE = 224
PAIRWISE_EPS = 1e-6
MODES = ("whole_frame", "face_crop")
AUDIO_BATCH = 128


def pcm16(audio: np.ndarray) -> np.ndarray:
    """The int16 PCM that FFmpeg writes for the harness's float audio (exact inverse of decode_audio)."""
    return to_pcm16(audio)


def mfcc(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(13, T) float32 MFCC = `python_speech_features.mfcc(pcm, sample_rate)` transposed (package defaults:
    25 ms window, 10 ms step, 13 cepstra, 26 filters, nfft 512, preemph 0.97, ceplifter 22, c0 = log energy)."""
    import python_speech_features

    return python_speech_features.mfcc(pcm, sample_rate).T.astype(np.float32)


def num_windows(n_frames: int, n_samples: int) -> int:
    """min(n_frames, floor(n_samples / 640)) - 5 (the official count: its last possible window is never used)."""
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def bgr224(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) -> BGR uint8 (N, 224, 224, 3), cv2.resize INTER_LINEAR (official `cv2.resize(img, (224, 224))`)."""
    import cv2

    out = np.empty((len(frames), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (INPUT_SIZE, INPUT_SIZE))[..., ::-1]
    return out


def lip_embeddings(net: FastSyncNet, frames_bgr: np.ndarray, n: int, batch_size: int, device: str) -> torch.Tensor:
    """(n, 1024) embeddings of the windows v = 0..n-1 (frames v..v+4), `batch_size` windows per forward pass."""
    import torch

    chunks = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        x = torch.from_numpy(np.ascontiguousarray(frames_bgr[i : i + m + WINDOW_FRAMES - 1])).to(device)
        chunks.append(net.lip_windows(x).float().cpu())
    return torch.cat(chunks)


def window_digests(frames_bgr: np.ndarray) -> np.ndarray:
    """(T - 4, 80) uint8: the digests of frames v..v+4 side by side, one row per window v."""
    d = np.stack([np.frombuffer(frame_digest(f), np.uint8) for f in frames_bgr])
    n = len(d) - WINDOW_FRAMES + 1
    return np.concatenate([d[t : t + n] for t in range(WINDOW_FRAMES)], axis=1)


def reusing_lip_embeddings(
    net: FastSyncNet, frames_bgr: np.ndarray, n: int, batch_size: int, device: str, known: tuple | None = None
) -> torch.Tensor:
    """`lip_embeddings` of windows 0..n-1, where a window byte-identical to one of `known` = (window digests,
    embeddings) (the ground truth's, at any position: a shifted or copied output) or to an earlier window (a
    frozen output) takes that embedding. The rest go through the network in runs of consecutive windows, so a clip
    with nothing to reuse is computed exactly as by `lip_embeddings`."""
    import torch

    digests = window_digests(frames_bgr[: n + WINDOW_FRAMES - 1])
    index = {} if known is None else {row.tobytes(): i for i, row in enumerate(known[0])}
    source, copy, first = np.full(n, -1), np.full(n, -1), {}
    for v in range(n):
        key = digests[v].tobytes()
        if key in index:
            source[v] = index[key]
        elif key in first:
            copy[v] = first[key]
        else:
            first[key] = v
    todo = np.fromiter(first.values(), np.int64, len(first))
    runs = np.split(todo, np.flatnonzero(np.diff(todo) != 1) + 1) if len(todo) else []
    parts = [lip_embeddings(net, frames_bgr[r[0] : r[-1] + WINDOW_FRAMES], len(r), batch_size, device) for r in runs]
    dim = parts[0].shape[1] if parts else known[1].shape[1]
    out = torch.empty(n, dim)
    if parts:
        out[torch.from_numpy(todo)] = torch.cat(parts)
    hit = source >= 0
    if hit.any():
        out[torch.from_numpy(np.flatnonzero(hit))] = torch.from_numpy(np.asarray(known[1])[source[hit]])
    if (copy >= 0).any():
        out[torch.from_numpy(np.flatnonzero(copy >= 0))] = out[torch.from_numpy(copy[copy >= 0])]
    return out


def audio_embeddings(net: FastSyncNet, coeffs: np.ndarray, n: int, batch_size: int, device: str) -> torch.Tensor:
    """(n, 1024) embeddings of MFCC columns [4v, 4v + 20) for v = 0..n-1."""
    import torch

    windows = torch.from_numpy(coeffs).unfold(1, WINDOW_MFCC, MFCC_PER_FRAME)[:, :n].permute(1, 0, 2).unsqueeze(1)
    chunks = [net.audio(windows[i : i + batch_size].to(device)).float().cpu() for i in range(0, n, batch_size)]
    return torch.cat(chunks)


def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int, chunk: int = 512) -> torch.Tensor:
    """(2 vshift + 1, n) distances d[k, v] = ||video_v - audio_(v + k - vshift) + 1e-6||_2, audio zero outside [0, n).

    The official `calc_pdist` (torch pairwise_distance, eps 1e-6, zero padding), all offsets at once.
    """
    import torch
    import torch.nn.functional as F

    n, k = len(video), 2 * vshift + 1
    padded = F.pad(audio, (0, 0, vshift, vshift))
    offsets = torch.arange(k)[:, None]
    out = []
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        shifted = padded[offsets + torch.arange(i, i + m)[None, :]]
        out.append(F.pairwise_distance(video[i : i + m].unsqueeze(0), shifted, eps=PAIRWISE_EPS))
    return torch.cat(out, dim=1)


@dataclass(frozen=True)
class SyncScores:
    """One clip's result: LSE-D, LSE-C, AV offset in frames (vshift - argmin: negative when the audio lags) and mdist."""

    lse_d: float
    lse_c: float
    offset: int
    mdist: np.ndarray
    n_windows: int


def sync_scores(dists: torch.Tensor, vshift: int) -> SyncScores:
    """mdist = mean over windows (float32); LSE-D = min, LSE-C = median - min (of 31 values: the 16th);
    offset = vshift - argmin (the first minimum, as torch.min)."""
    import torch

    mdist = dists.mean(dim=1)
    lo, idx = torch.min(mdist, 0)
    conf = torch.median(mdist) - lo
    return SyncScores(float(lo), float(conf), vshift - int(idx), mdist.numpy().copy(), dists.shape[1])


def evaluate(
    net: FastSyncNet,
    frames_bgr: np.ndarray,
    audio: np.ndarray,
    vshift: int = 15,
    batch_size: int = 8,
    device: str = "cpu",
    known: tuple | None = None,
) -> SyncScores:
    """LSE of BGR 224x224 frames (25 fps) against float 16 kHz mono audio (only real samples, no padding).

    `batch_size` lip windows per forward pass; audio windows (small activations) go at least AUDIO_BATCH at a time.
    `known`: (window digests, embeddings) that identical windows take (`reusing_lip_embeddings`).
    """
    import torch

    n = num_windows(len(frames_bgr), len(audio))
    if n < 1:
        raise ValueError(f"{len(frames_bgr)} frames and {len(audio)} audio samples: need 6 frames (0.24 s) of both")
    coeffs = mfcc(pcm16(audio[: (n + WINDOW_FRAMES) * SAMPLES_PER_FRAME]))
    with torch.inference_mode():
        v = reusing_lip_embeddings(net, frames_bgr, n, batch_size, device, known)
        a = audio_embeddings(net, coeffs, n, max(batch_size, AUDIO_BATCH), device)
        return sync_scores(offset_distances(v, a, vshift), vshift)


CPU_BATCH = 8
"""Lip windows per forward pass on CPU: small batches keep activations in cache (about 20% faster than 64)."""


@dataclass(frozen=True)
class LSEOptions:
    """`lse.*` options. batch_size: windows per forward pass (None: runtime.batch_size on CUDA, CPU_BATCH on CPU)."""

    mode: str = "whole_frame"
    """whole_frame: every frame resized to 224x224 (the papers' LRS2 scoring) | face_crop: the harness's face boxes."""
    vshift: int = 15
    """Offsets searched: -vshift..+vshift video frames."""
    batch_size: int | None = None


class _LSE(Metric):
    """Shared SyncNet pass for lse_c / lse_d: one evaluation per (clip, method) through `pair.memo`."""

    group = "Lip-Sync"
    options_key = "lse"
    Options = LSEOptions
    WEIGHTS = (SYNCNET_WEIGHTS,)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.opts.mode not in MODES:
            raise ConfigError(f"lse.mode={self.opts.mode!r} is not one of {', '.join(MODES)}")
        if self.opts.vshift < 1 or (self.opts.batch_size is not None and self.opts.batch_size < 1):
            raise ConfigError(f"lse.vshift and lse.batch_size must be positive, got {self.opts}")

    def frames_tag(self) -> str:
        """Whole frames at the decode settings, or the face crops' boxes at 224."""
        return f"whole{INPUT_SIZE}@{self.decode_tag}" if self.opts.mode == "whole_frame" else self.crop_tag

    def protocol_fields(self) -> tuple[str, ...]:
        face = (f"face{INPUT_SIZE}",) if self.opts.mode == "face_crop" else ()
        return (*face, "bgr", "syncnet_v2", f"vshift{self.opts.vshift}", "png")

    def reset(self) -> None:
        super().reset()
        self.scores: SyncScores | None = None

    def _model(self) -> FastSyncNet:
        from .syncnet import FastSyncNet, load_syncnet

        return self.lazy_weights(SYNCNET_WEIGHTS, lambda path: FastSyncNet(load_syncnet(path, self.device)))

    def frame_features(self, pair: EvalPair) -> dict:
        """BGR 224x224 frames: whole frames resized, or face crops cut at 224 with the ground-truth boxes."""
        if self.opts.mode == "whole_frame":
            return {("lse", "whole224"): lambda chunk, start: bgr224(chunk)}
        from stsa_bench.core.preprocess import crop_faces

        boxes = pair.boxes
        return {("lse", "face224"): lambda chunk, start: crop_faces(chunk, boxes[start : start + len(chunk)], INPUT_SIZE)[..., ::-1]}

    def frames(self, pair: EvalPair) -> np.ndarray:
        (key, fn), = self.frame_features(pair).items()
        return pair.pred_feature(key, fn)

    def update_pair(self, pair: EvalPair) -> None:
        _, sha = self.resolve_weights(SYNCNET_WEIGHTS)
        key = ("lse", self.opts.mode, self.opts.vshift, sha)
        if key not in pair.memo:
            if (pair.fps, pair.sample_rate) != (FPS, SAMPLE_RATE):
                got = f"{pair.fps} fps and {pair.sample_rate} Hz"
                raise ClipError(f"{pair.video}: LSE needs {FPS} fps and {SAMPLE_RATE} Hz, got {got}")
            audio = pair.pred_audio[: pair.audio_valid]
            if num_windows(pair.n_frames, len(audio)) < 1:
                raise ClipError(
                    f"{pair.video}: {pair.n_frames} frames and {len(audio) / pair.sample_rate:.2f} s of audio at "
                    f"{pair.fps} fps: LSE needs at least {WINDOW_FRAMES + 1} frames (0.24 s) of both"
                )
            size = self.opts.batch_size or (pair.batch_size if self.device.startswith("cuda") else CPU_BATCH)
            frames = self.frames(pair)
            known = self.ground_truth_windows(pair, frames, size)
            pair.memo[key] = evaluate(self._model(), frames, audio, self.opts.vshift, size, self.device, known)
        self.scores = pair.memo[key]
        self.note = f"offset {self.scores.offset:+d}"

    def ground_truth_windows(self, pair: EvalPair, frames: np.ndarray, size: int) -> tuple | None:
        """(digests, embeddings) of every 5-frame window of the ground truth: computed on its own pair (the `gt`
        row), then kept for the clip's other methods and cached on disk; a method scored before it (or without
        it) finds none and reuses nothing."""
        if not pair.pred_is_gt:
            digests = self.cached_ground_truth(pair, "lse-gt-digests", None)
            embeddings = None if digests is None else self.cached_ground_truth(pair, "lse-gt-windows", None)
            return None if embeddings is None else (digests, embeddings)

        def embed() -> np.ndarray:
            import torch

            with torch.inference_mode():
                return lip_embeddings(self._model(), frames, len(frames) - WINDOW_FRAMES + 1, size, self.device).numpy()

        return self.cached_ground_truth(pair, "lse-gt-digests", lambda: window_digests(frames)), self.cached_ground_truth(
            pair, "lse-gt-windows", embed
        )

    def value(self, scores: SyncScores) -> float:
        raise NotImplementedError

    def compute(self) -> float:
        if self.scores is None:
            raise ValueError(f"{self.name}: no clip was given")
        return self.value(self.scores)


@METRICS.register("lse_c")
class LSEC(_LSE):
    """LSE-C: SyncNet confidence, median minus min of the mean-distance curve over 31 AV offsets (higher = in sync)."""

    higher_is_better = True

    def value(self, scores: SyncScores) -> float:
        return scores.lse_c


@METRICS.register("lse_d")
class LSED(_LSE):
    """LSE-D: SyncNet distance, min of the mean-distance curve over 31 AV offsets (lower = in sync)."""

    higher_is_better = False

    def value(self, scores: SyncScores) -> float:
        return scores.lse_d
