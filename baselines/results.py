"""Already generated results ("bring your own results"): a folder of videos, or of frame folders.

`results`  any method's videos (or frame folders) in `results.dir`, one per clip named by `results.pattern`.
`difftalk` DiffTalk's generated frames. Its released inference script runs only on its preprocessed
           HDTF data with a hard-coded checkpoint path and writes JPEG frames, and no trained
           checkpoint is published, so the harness reads the frames it wrote: `difftalk.dir`, one
           folder of frames per clip (`difftalk.pattern`, default `{clip}`).
A frame folder holds the frames as .png/.jpg files in name order, at the harness fps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.registry import METHODS
from stsa_bench.core.suites import VIDEO_EXTS

from .base import Generated, Method, Sample
from .normalize import MAX_FRAME_SLACK, normalize_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ResultsOptions:
    dir: str | None = None
    pattern: str = "{clip}.mp4"
    frame_slack: int = MAX_FRAME_SLACK
    fps_mode: str = "auto"
    """How a video at another frame rate is read at the suite's, onto the ground truth's frames: auto (the ground
    truth's own conversion, preprocess.fps_mode, when the video has the ground truth's source frame rate; else nearest),
    nearest (each frame at its timestamp: content within about half a frame of true time) or ffmpeg_cfr (what
    `ffmpeg -r 25` writes: 1.3 to 1.5 frames late on average above 25 fps; scripts/measure_fps_lag.py)."""

    def __post_init__(self) -> None:
        from stsa_bench.core.media import FPS_MODES

        if self.fps_mode not in ("auto", *FPS_MODES):
            raise ConfigError(f"fps_mode {self.fps_mode!r} is not one of auto, {', '.join(FPS_MODES)}")


def read_frame_folder(path: Path) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) from the images in `path`, in name order; all must share one size."""
    import cv2

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ClipError(f"{path}: no frames ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise ClipError(f"{f}: not a readable image")
        if frames and img.shape != frames[0].shape:
            raise ClipError(f"{f}: {img.shape[1]}x{img.shape[0]}, the first frame is {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(img)
    return np.stack(frames)[..., ::-1].copy()


@METHODS.register("results")
class FolderResults(Method):
    """Already generated videos (or frame folders) in `results.dir`: file = `results.pattern` with {clip} or {clip_flat}, normalised."""

    Options = ResultsOptions

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.opts.dir:
            raise ConfigError(f"method {self.name} needs {self.name}.dir=DIR (a folder of generated videos)")
        if not Path(self.opts.dir).expanduser().is_dir():
            raise ConfigError(
                f"{self.name}.dir={self.opts.dir}: not a folder (a method whose rows are all in the run folder can be left "
                f"out of --methods: reports read every row of the folder)"
            )

    def unmatched(self, clip_ids: list[str]) -> list[Path]:
        """Entries of the results folder that no clip of the suite reads (a clip outside the suite, a misnamed file):
        a folder counts as read when a clip's results lie in it (nested ids), or when it is one clip's frame folder."""
        folder = Path(self.opts.dir).expanduser().resolve()
        wanted = {self.path_for(c).resolve() for c in clip_ids}
        holders = {parent for w in wanted for parent in w.parents if folder in parent.parents}
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.resolve() not in wanted | holders
                      and (p.is_dir() or p.suffix.lower() in VIDEO_EXTS))  # fmt: skip

    def path_for(self, clip_id: str) -> Path:
        """The clip's results file; a name stored decomposed (NFD) is found too (clip ids are NFC)."""
        import unicodedata

        name = self.opts.pattern.format(clip=clip_id, clip_flat=clip_id.replace("/", "__"))
        path = Path(self.opts.dir).expanduser() / name
        decomposed = path.with_name(unicodedata.normalize("NFD", path.name))
        return decomposed if not path.exists() and decomposed.exists() else path

    def generate(self, sample: Sample) -> Generated:
        from stsa_bench.core.media import decode_video

        path = self.path_for(sample.clip_id)
        notes = []
        if path.is_dir():
            frames = read_frame_folder(path)
        elif path.is_file():
            mode = self.opts.fps_mode
            if mode == "auto":
                from stsa_bench.core.media import probe_rate

                same = sample.source_fps is not None and abs(probe_rate(path) - sample.source_fps) < 0.01 * sample.source_fps
                mode = sample.fps_mode if same else "nearest"
            frames, info = decode_video(path, sample.fps, mode)
            if info.variable_rate or abs(info.src_fps - sample.fps) > 1e-3:
                notes.append(f"read at {sample.fps} fps from {'variable-rate ' if info.variable_rate else ''}{info.src_fps:.4g} fps ({mode})")
        else:
            raise ClipError(f"{path}: no generated video for clip {sample.clip_id} ({self.name}.dir / {self.name}.pattern)")
        return normalize_output(frames, sample, str(path), self.opts.frame_slack, notes)


@dataclass(frozen=True)
class DiffTalkOptions(ResultsOptions):
    pattern: str = "{clip}"


@METHODS.register("difftalk")
class DiffTalkResults(FolderResults):
    """DiffTalk's generated frames, one folder per clip in `difftalk.dir` (see the module docstring)."""

    Options = DiffTalkOptions
