"""`results`: a folder of a method's already generated videos ("bring your own results")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stsa_bench.config import typed
from stsa_bench.errors import ClipError
from stsa_bench.registry import METHODS

from .base import Generated, Sample
from .normalize import normalize_output


@dataclass(frozen=True)
class ResultsOptions:
    dir: str | None = None
    pattern: str = "{clip}.mp4"
    label: str = ""


@METHODS.register("results")
class FolderResults:
    """Already generated videos in `results.dir` (file = `results.pattern` with {clip} or {clip_flat}), normalised."""

    name = "results"
    version = "1"

    def __init__(self, **options):
        self.opts = typed(ResultsOptions, options, "results")

    def path_for(self, clip_id: str) -> Path:
        if not self.opts.dir:
            raise ClipError("method results needs results.dir=DIR (a folder of generated videos)")
        name = self.opts.pattern.format(clip=clip_id, clip_flat=clip_id.replace("/", "__"))
        return Path(self.opts.dir).expanduser() / name

    def generate(self, sample: Sample) -> Generated:
        from stsa_bench.media import decode_video

        path = self.path_for(sample.clip_id)
        if not path.is_file():
            raise ClipError(f"{path}: no generated video for clip {sample.clip_id} (results.dir / results.pattern)")
        frames, _ = decode_video(path, sample.fps)
        return normalize_output(frames, sample, str(path))
