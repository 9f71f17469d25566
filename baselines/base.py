"""The method interface: a template clip and driving audio in, frames and audio out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Protocol

import numpy as np

from stsa_bench.registry import METHODS


@dataclass(frozen=True)
class Sample:
    """What a method sees for one clip (all at the harness protocol: 25 fps, 16 kHz mono)."""

    clip_id: str
    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int
    landmarks: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class Generated:
    """A method's output: RGB uint8 frames (N, H, W, 3) at the sample's fps and mono float32 audio;
    `note` says how it was normalised (copied into every row)."""

    frames: np.ndarray
    audio: np.ndarray
    note: str | None = None


class DubbingMethod(Protocol):
    name: ClassVar[str]
    version: ClassVar[str]

    def generate(self, sample: Sample) -> Generated: ...


def build_method(name: str, options: Mapping[str, Any] | None = None) -> DubbingMethod:
    cls = METHODS.get(name)
    return cls(**dict(options or {}))
