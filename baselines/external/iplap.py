"""IP-LAP from its official checkout (https://github.com/Weizhi-Zhong/IP_LAP)."""

from __future__ import annotations

from dataclasses import dataclass

from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


@dataclass(frozen=True)
class IPLAPOptions(ExternalOptions):
    landmark_generator: str = "test/checkpoints/landmarkgenerator_checkpoint.pth"
    renderer: str = "test/checkpoints/renderer_checkpoint.pth"


@METHODS.register("iplap")
class IPLAP(ExternalMethod):
    """Weizhi-Zhong/IP_LAP `inference_single.py`; its video is side by side (landmark sketch | result): the right half is
    kept. It writes `tempfile_of_<output folder>/` in its working directory and muxes with a shell-string ffmpeg."""

    label = "IP-LAP"
    url = "https://github.com/Weizhi-Zhong/IP_LAP"
    Options = IPLAPOptions
    entry = ("inference_single.py",)
    entry_file = "inference_single.py"
    checkpoints = ("landmark_generator", "renderer")
    hub_files = (
        ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
        ("s3fd-619a316812.pth", "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"),
        ("2DFAN4-cd938726ad.zip", "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip"),
    )
    """Its renderer builds torchvision's VGG19 (pretrained) and its paste-back runs face_alignment 1.3.4."""
    writes = ("tempfile_of_out",)
    programs = ("ffmpeg",)

    def command(self, job, sample):
        return ["--input", TEMPLATE, "--audio", AUDIO, "--output_dir", "out",
                "--landmark_gen_checkpoint_path", str(self.files["landmark_generator"]),
                "--renderer_checkpoint_path", str(self.files["renderer"])]  # fmt: skip

    def output(self, job, sample):
        return job / "out" / "templateresult_N_25_Nl_15.mp4"

    def postprocess(self, frames, sample):
        w = sample.frames.shape[2]
        if frames.shape[2] == 2 * w:
            return frames[:, :, w:], ["right half of IP-LAP's side-by-side output"]
        return frames, []
