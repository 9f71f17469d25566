"""TalkLip from its official checkout (https://github.com/Sxjdwang/TalkLip)."""

from __future__ import annotations

from dataclasses import dataclass

from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


@dataclass(frozen=True)
class TalkLipOptions(ExternalOptions):
    checkpoint: str | None = None
    """The TalkLip generator checkpoint."""
    avhubert_root: str | None = None
    """An av_hubert checkout."""


@METHODS.register("talklip")
class TalkLip(ExternalMethod):
    """Sxjdwang/TalkLip `inf_demo.py` (AV-HuBERT from `talklip.avhubert_root`); it writes `<save_path>.avi` and muxes it
    with a shell-string ffmpeg call."""

    label = "TalkLip"
    url = "https://github.com/Sxjdwang/TalkLip"
    Options = TalkLipOptions
    entry = ("inf_demo.py",)
    entry_file = "inf_demo.py"
    checkpoints = ("checkpoint", "avhubert_root")
    detector = "face_detection/detection/sfd/s3fd.pth"
    scratch = ("result.avi",)
    programs = ("ffmpeg",)

    def loaded_files(self):
        """Its checkpoint and S3FD (the av_hubert checkout holds code, not the weights it runs)."""
        return [p for p in super().loaded_files() if p != self.files["avhubert_root"]]

    def command(self, job, sample):
        return ["--video_path", TEMPLATE, "--wav_path", AUDIO, "--ckpt_path", str(self.files["checkpoint"]),
                "--avhubert_root", str(self.files["avhubert_root"]), "--save_path", "result"]  # fmt: skip

    def output(self, job, sample):
        return job / "result.mp4"
