"""Sanity methods: rows every table can have, with known expected behaviour.

gt      the ground truth itself (the paper's GT row): PSNR 80 dB cap, SSIM 1.
static  the first template frame held for the whole clip: worse than gt on every visual metric.
shift   ground-truth frames with the audio delayed by `frames` video frames (negative: advanced):
        visual metrics equal gt; sync metrics must get worse.
mouth_blur  ground truth with the mouth region Gaussian-blurred: visual metrics near the mouth drop,
        pixels elsewhere are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stsa_bench.core.errors import ConfigError
from stsa_bench.core.faces import LIP_POINTS
from stsa_bench.core.frames import RepeatFrames
from stsa_bench.core.registry import METHODS

from .base import Generated, Method, Sample


@METHODS.register("gt")
class GroundTruth(Method):
    """Ground-truth copy (the paper's GT row)."""


    def generate(self, sample: Sample) -> Generated:
        return Generated(sample.frames, sample.audio)


@METHODS.register("static")
class Static(Method):
    """First template frame repeated for every frame; audio unchanged."""


    def generate(self, sample: Sample) -> Generated:
        return Generated(RepeatFrames(sample.frames[0], len(sample.frames)), sample.audio)


def shift_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """Delay (samples > 0) or advance (< 0) by zero-padding; length is kept."""
    if samples == 0:
        return audio.copy()
    out = np.zeros_like(audio)
    if samples > 0:
        out[samples:] = audio[: len(audio) - samples]
    else:
        out[: len(audio) + samples] = audio[-samples:]
    return out


@dataclass(frozen=True)
class ShiftOptions:
    frames: int = 5


@METHODS.register("shift")
class ShiftedAudio(Method):
    """Ground-truth frames, audio shifted by `shift.frames` video frames (positive = audio late)."""

    Options = ShiftOptions

    def generate(self, sample: Sample) -> Generated:
        per_frame = sample.sample_rate // sample.fps
        return Generated(sample.frames, shift_audio(sample.audio, self.opts.frames * per_frame))


@dataclass(frozen=True)
class MouthBlurOptions:
    margin: float = 0.3
    """Grows the lip landmarks' extent by this fraction on each side."""
    sigma_frac: float = 0.15
    """Gaussian sigma as a fraction of the mouth box's width (at least 1 pixel)."""

    def __post_init__(self) -> None:
        if self.margin < 0 or self.sigma_frac <= 0:
            raise ConfigError(f"mouth_blur: margin must be at least 0 and sigma_frac above 0, got margin={self.margin}, sigma_frac={self.sigma_frac}")


def mouth_boxes(landmarks: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """(N, 4) int x0, y0, x1, y1 of the lip landmarks' extent grown by `margin` on each side; -1 rows without a face."""
    xy = landmarks[:, LIP_POINTS, :2] * [width, height]
    lo, hi = np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)
    pad = (hi - lo) * margin
    boxes = np.concatenate([lo - pad, hi + pad], axis=1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    out = np.full((len(landmarks), 4), -1, dtype=int)
    ok = np.isfinite(boxes).all(axis=1)
    out[ok] = np.round(boxes[ok]).astype(int)
    return out


@METHODS.register("mouth_blur")
class MouthBlur(Method):
    """Ground truth with the mouth region Gaussian-blurred (sigma = sigma_frac x mouth width); audio unchanged."""

    Options = MouthBlurOptions

    def generate(self, sample: Sample) -> Generated:
        import cv2

        h, w = sample.frames.shape[1:3]
        boxes = mouth_boxes(sample.landmarks, w, h, self.opts.margin)

        def blur(chunk: np.ndarray, start: int) -> np.ndarray:
            out = chunk.copy()
            for frame, (x0, y0, x1, y1) in zip(out, boxes[start : start + len(chunk)]):
                if x0 < 0 or x1 - x0 < 2 or y1 - y0 < 2:
                    continue
                sigma = max(1.0, self.opts.sigma_frac * (x1 - x0))
                frame[y0:y1, x0:x1] = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), sigma)
            return out

        return Generated(sample.frames.map(blur), sample.audio)
