"""Wav2Lip from its official checkout (https://github.com/Rudrabha/Wav2Lip)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions

DETECTOR = "face_detection/detection/sfd/s3fd.pth"


@dataclass(frozen=True)
class Wav2LipOfficialOptions(ExternalOptions):
    checkpoint: str = "checkpoints/wav2lip.pth"
    pads: tuple[int, ...] = (0, 10, 0, 0)
    """Top, bottom, left, right margins added to the face box (its --pads)."""
    batch_size: int = 128
    nosmooth: bool = False
    boxes: str = "official"
    """`official`: its S3FD detector finds the face in every frame (needs s3fd.pth); `harness`: one box (its --box)
    from the harness's landmarks, their union over the clip plus `pads`, so no detector weights are needed and
    every method sees the same face."""
    frame_slack: int = 4
    """Its output ends at the last full 16-step mel window (3 frames short at 25 fps)."""

    def __post_init__(self) -> None:
        if self.boxes not in ("official", "harness"):
            raise ConfigError(f"wav2lip_official.boxes={self.boxes}: official or harness")


def harness_box(landmarks: np.ndarray, width: int, height: int, pads: tuple[int, ...]) -> tuple[tuple[int, int, int, int], float]:
    """((top, bottom, left, right), spread): the union over frames of the FaceMesh landmarks' extent in pixels, grown
    by pads (top, bottom, left, right) as Wav2Lip grows its S3FD boxes, clipped to the frame; spread is the union's
    area over the median frame's (1 for a still face)."""
    pts = landmarks[..., :2] * np.array([width, height], np.float64)
    seen = np.isfinite(pts).all(axis=(1, 2))
    if not seen.any():
        raise ClipError("no frame has a face for a harness box")
    pts = pts[seen]
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    (x1, y1), (x2, y2) = lo.min(axis=0), hi.max(axis=0)
    spread = (x2 - x1) * (y2 - y1) / max(float(np.median(np.prod(hi - lo, axis=1))), 1.0)
    top, bottom, left, right = (int(p) for p in (*pads, 0, 0, 0, 0)[:4])
    box = (max(0, int(y1) - top), min(height, int(np.ceil(y2)) + bottom), max(0, int(x1) - left), min(width, int(np.ceil(x2)) + right))
    if box[0] >= box[1] or box[2] >= box[3]:
        raise ClipError(f"the landmarks' box {box} (top, bottom, left, right) is empty inside the {width}x{height} frame")
    return box, float(spread)


@METHODS.register("wav2lip_official")
class Wav2LipOfficial(ExternalMethod):
    """Rudrabha/Wav2Lip `inference.py`: S3FD faces or the harness's box (`boxes`). Its output stops at the last full
    16-step mel window, 3 frames short at 25 fps, hence frame_slack 4 (mel window = 5 frames). It writes
    `temp/result.avi` in its working directory and muxes it with a shell-string ffmpeg call whose failure still
    exits 0 (the missing output is the failure signal)."""

    label = "Wav2Lip"
    url = "https://github.com/Rudrabha/Wav2Lip"
    Options = Wav2LipOfficialOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoint",)
    detector = DETECTOR
    writes = ("temp",)
    programs = ("ffmpeg",)

    def uses_detector(self):
        return self.opts.boxes == "official"

    def box(self, sample):
        h, w = sample.frames.shape[1:3]
        try:
            return harness_box(sample.landmarks, w, h, self.opts.pads)
        except ClipError as exc:
            raise ClipError(f"{sample.clip_id}: wav2lip_official.boxes=harness: {exc}") from None

    def command(self, job, sample):
        o = self.opts
        args = ["--checkpoint_path", str(self.files["checkpoint"]), "--face", TEMPLATE, "--audio", AUDIO, "--outfile", "result.mp4",
                "--pads", *map(str, o.pads), "--wav2lip_batch_size", str(o.batch_size)]  # fmt: skip
        if o.boxes == "harness":
            args += ["--box", *map(str, self.box(sample)[0])]
        return args + (["--nosmooth"] if o.nosmooth else [])

    def output(self, job, sample):
        return job / "result.mp4"

    def postprocess(self, frames, sample):
        if self.opts.boxes != "harness":
            return frames, ["faces: Wav2Lip's S3FD"]
        (top, bottom, left, right), spread = self.box(sample)
        note = f"faces: harness box top {top} bottom {bottom} left {left} right {right} (landmarks' union over the clip + pads)"
        return frames, [note + (f"; the face moves: the box is {spread:.1f}x a frame's face" if spread > 1.5 else "")]
