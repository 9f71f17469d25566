"""Wav2Lip from its official checkout (https://github.com/Rudrabha/Wav2Lip)."""

from __future__ import annotations

from dataclasses import dataclass

from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


@dataclass(frozen=True)
class Wav2LipOfficialOptions(ExternalOptions):
    checkpoint: str = "checkpoints/wav2lip.pth"
    pads: tuple[int, ...] = (0, 10, 0, 0)
    batch_size: int = 128
    nosmooth: bool = False
    frame_slack: int = 4
    """Its output ends at the last full 16-step mel window (3 frames short at 25 fps)."""


@METHODS.register("wav2lip_official")
class Wav2LipOfficial(ExternalMethod):
    """Rudrabha/Wav2Lip `inference.py` (S3FD faces). Its output stops at the last full 16-step mel
    window, 3 frames short at 25 fps, hence frame_slack 4 (mel window = 5 frames)."""

    label = "Wav2Lip"
    url = "https://github.com/Rudrabha/Wav2Lip"
    Options = Wav2LipOfficialOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoint",)
    required_files = ("face_detection/detection/sfd/s3fd.pth",)

    def command(self, job, sample):
        o = self.opts
        args = ["--checkpoint_path", str(self.files["checkpoint"]), "--face", str(job / TEMPLATE), "--audio", str(job / AUDIO),
                "--outfile", str(job / "result.mp4"), "--pads", *map(str, o.pads), "--wav2lip_batch_size", str(o.batch_size)]  # fmt: skip
        return args + (["--nosmooth"] if o.nosmooth else [])

    def output(self, job, sample):
        return job / "result.mp4"
