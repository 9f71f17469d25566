"""Sanity methods: rows every table can have, with known expected behaviour.

gt      the ground truth itself (the paper's GT row): PSNR 80 dB cap, SSIM 1.
static  the first template frame held for the whole clip: worse than gt on every visual metric.
shift   ground-truth frames with the audio delayed by `frames` video frames (negative: advanced):
        visual metrics equal gt; sync metrics must get worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stsa_bench.config import typed
from stsa_bench.registry import METHODS

from .base import Generated, Sample


@METHODS.register("gt")
class GroundTruth:
    """Ground-truth copy (the paper's GT row)."""

    name = "gt"
    version = "1"

    def generate(self, sample: Sample) -> Generated:
        return Generated(sample.frames, sample.audio)


@METHODS.register("static")
class Static:
    """First template frame repeated for every frame; audio unchanged."""

    name = "static"
    version = "1"

    def generate(self, sample: Sample) -> Generated:
        return Generated(np.repeat(sample.frames[:1], len(sample.frames), axis=0), sample.audio)


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
class ShiftedAudio:
    """Ground-truth frames, audio shifted by `shift.frames` video frames (positive = audio late)."""

    name = "shift"
    version = "1"

    def __init__(self, **options):
        self.opts = typed(ShiftOptions, options, "shift")

    def generate(self, sample: Sample) -> Generated:
        per_frame = sample.sample_rate // sample.fps
        return Generated(sample.frames, shift_audio(sample.audio, self.opts.frames * per_frame))
