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

from collections.abc import Callable
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


def digest_index(digests: np.ndarray) -> dict[bytes, int]:
    """Window digest -> the index of its last occurrence in `digests` (rows of 5 frame digests)."""
    return {row.tobytes(): i for i, row in enumerate(digests)}


class LipWindows:
    """`fn(chunk, start)` over a clip's frames in order: the SyncNet lip embeddings of its 5-frame windows
    v = 0..n-1, computed while the frames stream past, so that memory holds a batch of windows, not the clip.

    `prepare(chunk, start)` turns a chunk into BGR uint8 224x224 frames. A window byte-identical to one of `known` = (window
    digests, embeddings) (the ground truth's, at any position: a shifted or copied output) takes that embedding;
    with `dedup`, one identical to an earlier window (a frozen output) takes that one's. The rest go through the
    network in runs of consecutive windows, `batch_size` from each run's first: the batches of the whole-clip
    computation, so the values do not depend on the chunk size. Each call returns the part of the clip's result
    that its chunk completes, `(digests, source, copy, embedded, embeddings)`; `assemble` joins the parts.
    """

    def __init__(
        self,
        net: Callable[[], FastSyncNet],
        n: int,
        batch_size: int,
        device: str = "cpu",
        prepare: Callable[[np.ndarray, int], np.ndarray] | None = None,
        known: tuple | None = None,
        dedup: bool = True,
    ):
        self.net, self.n, self.batch_size, self.device = net, max(0, n), max(1, batch_size), device
        self.prepare, self.known, self.dedup = prepare, known, dedup
        self.index = {} if known is None else digest_index(known[0])
        self.seen = 0

    def _reset(self) -> None:
        self.seen, self.v, self.base = 0, 0, 0
        self.frames: list[np.ndarray] = []
        self.frame_digests: list[bytes] = []
        self.first: dict[bytes, int] = {}
        self.pending: list[int] = []

    def __call__(self, chunk: np.ndarray, start: int) -> tuple:
        if start == 0:
            self._reset()
        if start != self.seen:
            raise RuntimeError(f"chunks out of order: frame {start}, expected {self.seen}")
        self.seen += len(chunk)
        frames = chunk if self.prepare is None else self.prepare(chunk, start)
        digests, source, copy, done, embedded = [], [], [], [], []
        if self.v >= self.n:
            return self._part(digests, source, copy, done, embedded)
        self.frames.extend(frames)
        self.frame_digests.extend(frame_digest(f) for f in frames)
        while self.v < self.n and self.v + WINDOW_FRAMES <= self.seen:
            v = self.v
            key = b"".join(self.frame_digests[v : v + WINDOW_FRAMES])
            src, cp = self.index.get(key, -1), -1
            if src < 0 and self.dedup and key in self.first:
                cp = self.first[key]
            if src >= 0 or cp >= 0:
                self._flush(done, embedded)
            else:
                if self.dedup:
                    self.first[key] = v
                self.pending.append(v)
                if len(self.pending) == self.batch_size:
                    self._flush(done, embedded)
            digests.append(np.frombuffer(key, np.uint8))
            source.append(src)
            copy.append(cp)
            self.v += 1
        if self.v >= self.n:
            self._flush(done, embedded)
        keep = self.pending[0] if self.pending else self.v
        del self.frames[: keep - self.base]
        self.base = keep
        return self._part(digests, source, copy, done, embedded)

    def _flush(self, done: list, embedded: list) -> None:
        """The pending run of windows through the network in one batch."""
        import torch

        if not self.pending:
            return
        a, b = self.pending[0], self.pending[-1]
        x = np.stack(self.frames[a - self.base : b + WINDOW_FRAMES - self.base])
        with torch.inference_mode():
            embedded.append(self.net().lip_windows(torch.from_numpy(x).to(self.device)).float().cpu().numpy())
        done.extend(self.pending)
        self.pending = []

    def _part(self, digests: list, source: list, copy: list, done: list, embedded: list) -> tuple:
        return (
            np.stack(digests) if digests else np.empty((0, WINDOW_FRAMES * 16), np.uint8),
            np.asarray(source, np.int64),
            np.asarray(copy, np.int64),
            np.asarray(done, np.int64),
            np.concatenate([e.ravel() for e in embedded]) if embedded else np.empty(0, np.float32),
        )

    def assemble(self, result: tuple) -> torch.Tensor:
        """(n, dim) embeddings of windows 0..n-1 from the joined parts."""
        import torch

        digests, source, copy, done, flat = result
        dim = len(flat) // len(done) if len(done) else np.asarray(self.known[1]).shape[1]
        if len(digests) != self.n or len(flat) != len(done) * dim:
            raise RuntimeError(f"{len(digests)} windows of {self.n} classified, {len(flat) / dim:g} of {len(done)} embedded")
        out = np.empty((self.n, dim), np.float32)
        if len(done):
            out[done] = flat.reshape(len(done), dim)
        hit = source >= 0
        if hit.any():
            out[hit] = np.asarray(self.known[1])[source[hit]]
        cp = copy >= 0
        if cp.any():
            out[cp] = out[copy[cp]]
        return torch.from_numpy(out)


def reusing_lip_embeddings(
    net: FastSyncNet, frames_bgr: np.ndarray, n: int, batch_size: int, device: str, known: tuple | None = None, dedup: bool = True
) -> torch.Tensor:
    """`LipWindows` over a clip's BGR 224x224 frames held in memory."""
    stream = LipWindows(lambda: net, n, batch_size, device, known=known, dedup=dedup)
    return stream.assemble(stream(np.asarray(frames_bgr[: n + WINDOW_FRAMES - 1]), 0))


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
    `known`: (window digests, embeddings) that identical windows take (`LipWindows`).
    """
    import torch

    n = num_windows(len(frames_bgr), len(audio))
    if n < 1:
        raise ValueError(f"{len(frames_bgr)} frames and {len(audio)} audio samples: need 6 frames (0.24 s) of both")
    with torch.inference_mode():
        video = reusing_lip_embeddings(net, frames_bgr, n, batch_size, device, known)
    return score_windows(net, video, audio, vshift, batch_size, device)


def score_windows(net: FastSyncNet, video: torch.Tensor, audio: np.ndarray, vshift: int, batch_size: int, device: str) -> SyncScores:
    """LSE of the lip embeddings of windows 0..n-1 against the audio's MFCC windows."""
    import torch

    n = len(video)
    coeffs = mfcc(pcm16(audio[: (n + WINDOW_FRAMES) * SAMPLES_PER_FRAME]))
    with torch.inference_mode():
        a = audio_embeddings(net, coeffs, n, max(batch_size, AUDIO_BATCH), device)
        return sync_scores(offset_distances(video, a, vshift), vshift)


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
            raise ConfigError(f"lse.vshift and lse.batch_size must be at least 1, got vshift={self.opts.vshift}, batch_size={self.opts.batch_size}")

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

    def prepare(self, pair: EvalPair) -> Callable[[np.ndarray, int], np.ndarray]:
        """RGB chunk -> BGR 224x224 frames: whole frames resized, or face crops cut at 224 with the ground-truth boxes."""
        if self.opts.mode == "whole_frame":
            return lambda chunk, start: bgr224(chunk)
        from stsa_bench.core.preprocess import crop_faces

        boxes = pair.boxes
        return lambda chunk, start: crop_faces(chunk, boxes[start : start + len(chunk)], INPUT_SIZE)[..., ::-1]

    def windows(self, pair: EvalPair) -> tuple[int, np.ndarray]:
        """(n windows scored, the driving audio); ClipError when the clip cannot be scored."""
        if (pair.fps, pair.sample_rate) != (FPS, SAMPLE_RATE):
            raise ClipError(f"{pair.video}: LSE needs {FPS} fps and {SAMPLE_RATE} Hz, got {pair.fps} fps and {pair.sample_rate} Hz")
        audio = pair.pred_audio[: pair.audio_valid]
        n = num_windows(pair.n_frames, len(audio))
        if n < 1:
            raise ClipError(
                f"{pair.video}: {pair.n_frames} frames and {len(audio) / pair.sample_rate:.2f} s of audio at "
                f"{pair.fps} fps: LSE needs at least {WINDOW_FRAMES + 1} frames (0.24 s) of both"
            )
        return n, audio

    def batch(self, pair: EvalPair) -> int:
        return self.opts.batch_size or (pair.batch_size if self.device.startswith("cuda") else CPU_BATCH)

    def stream(self, pair: EvalPair) -> tuple[tuple, LipWindows]:
        """This pair's `LipWindows` (one for lse_c and lse_d). The ground truth's own pair embeds all its windows
        for the clip's other methods, unless they are cached; the others reuse what the ground truth's has."""
        self.resolve_weights(SYNCNET_WEIGHTS)
        key = ("lse", self.opts.mode, "windows", self.batch(pair))
        if key not in pair.memo:
            n, _ = self.windows(pair)
            known = self.ground_truth_windows(pair)
            own = pair.pred_is_gt and known is None
            windows = pair.n_frames - WINDOW_FRAMES + 1 if own else n
            pair.memo[key] = LipWindows(self._model, windows, self.batch(pair), self.device, self.prepare(pair), known, dedup=not own)
        return key, pair.memo[key]

    def frame_features(self, pair: EvalPair) -> dict:
        """The lip embeddings, computed while the generated frames stream past (any error is raised by update_pair)."""
        try:
            key, stream = self.stream(pair)
        except Exception:  # noqa: BLE001 - update_pair raises it with its reason
            return {}
        return {key: stream}

    def update_pair(self, pair: EvalPair) -> None:
        """The pair's lip embeddings (from the frame pass, else streamed now) against its audio. The ground truth's own
        pair keeps every window for the clip and scores each of its first n windows with the embedding that a later
        method's identical window would take."""
        import torch

        _, sha = self.resolve_weights(SYNCNET_WEIGHTS)
        key = ("lse", self.opts.mode, self.opts.vshift, sha)
        if key not in pair.memo:
            n, audio = self.windows(pair)
            fkey, stream = self.stream(pair)
            parts = pair.pred_feature(fkey, stream)
            video = stream.assemble(parts)
            if not stream.dedup:
                digests = self.cached_ground_truth(pair, "lse-gt-digests", lambda: parts[0])
                embeddings = self.cached_ground_truth(pair, "lse-gt-windows", lambda: video.numpy())
                index = digest_index(digests)
                video = torch.from_numpy(embeddings[[index[row.tobytes()] for row in digests[:n]]])
            pair.memo[key] = score_windows(self._model(), video, audio, self.opts.vshift, self.batch(pair), self.device)
        self.scores = pair.memo[key]
        self.note = f"offset {self.scores.offset:+d}"

    def ground_truth_windows(self, pair: EvalPair) -> tuple | None:
        """(digests, embeddings) of every 5-frame window of the ground truth, when its own pair (the `gt` row) has
        computed them for this clip or they are cached on disk; a method scored before it finds none."""
        digests = self.cached_ground_truth(pair, "lse-gt-digests", None)
        embeddings = None if digests is None else self.cached_ground_truth(pair, "lse-gt-windows", None)
        return None if embeddings is None else (digests, embeddings)

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
