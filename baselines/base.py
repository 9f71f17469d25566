"""The method interface: a template clip and driving audio in, frames and audio out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol

import numpy as np

from stsa_bench.core.config import typed
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.frames import Frames, as_frames
from stsa_bench.core.registry import METHODS


@dataclass(frozen=True)
class Sample:
    """What a method sees for one clip (all at the harness protocol: 25 fps, 16 kHz mono).

    frames: RGB uint8 (N, H, W, 3), the template, as `Frames` (stream it with `frames.chunks(k)`, or
    `np.asarray(frames)` for the whole clip); audio: float32 driving audio, N x sample_rate/fps
    samples; landmarks: FaceMesh (N, 478, 3) image-normalised, NaN where no face; boxes: the
    harness's smoothed square face boxes (cx, cy, side) in pixels.
    """

    clip_id: str
    frames: Frames
    audio: np.ndarray
    fps: int
    sample_rate: int
    landmarks: np.ndarray
    boxes: np.ndarray
    sha256: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", as_frames(self.frames))


@dataclass(frozen=True)
class Generated:
    """A method's output: RGB uint8 frames (N, H, W, 3) at the sample's fps (an array, or `Frames` computed
    chunk by chunk) and mono float32 audio; `note` says how it was normalised (copied into every row)."""

    frames: np.ndarray | Frames
    audio: np.ndarray
    note: str | None = None


@dataclass(frozen=True)
class MethodEnv:
    """What the run gives every method: device, the `weights` config node, the run folder (for scratch and kept outputs)."""

    device: str = "auto"
    weights: Mapping[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    seed: int = 0


class DubbingMethod(Protocol):
    name: ClassVar[str]
    version: ClassVar[str]
    weights_sha: str | None

    def generate(self, sample: Sample) -> Generated: ...


class Method:
    """Base for registered methods: `Options` (a frozen dataclass) is built from the method's config node."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type | None] = None
    WEIGHTS: ClassVar[tuple] = ()
    """Catalogue entries (stsa_bench.core.catalogue) this method loads: `stsa-bench weights list --methods`."""
    weights_sha: str | None = None

    @classmethod
    def weights_specs(cls) -> list:
        return list(cls.WEIGHTS)

    @classmethod
    def weights_settings(cls, options: Mapping[str, Any]) -> dict:
        """{catalogue name: path} for weights the method takes as options instead of `weights.<name>`."""
        return {}

    def __init__(self, env: MethodEnv | None = None, /, **options: Any):
        self.env = env or MethodEnv()
        if self.Options is None:
            if options:
                raise ConfigError(f"method {self.name} takes no options (got {', '.join(sorted(options))})")
            self.opts = None
        else:
            self.opts = typed(self.Options, options, self.name)

    def generate(self, sample: Sample) -> Generated:
        raise NotImplementedError


def build_method(name: str, options: Mapping[str, Any] | None = None, env: MethodEnv | None = None, label: str | None = None) -> DubbingMethod:
    """Registered method `name` built with its options; `label` (e.g. "stabledub" for `results`) names its rows and settings."""
    cls = METHODS.get(name)
    if label and label != name:
        cls = type(cls.__name__, (cls,), {"name": label})
    return cls(env, **dict(options or {}))
