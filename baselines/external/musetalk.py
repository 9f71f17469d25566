"""MuseTalk from its official checkout (https://github.com/TMElyralab/MuseTalk)."""

from __future__ import annotations

from dataclasses import dataclass

from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


@dataclass(frozen=True)
class MuseTalkOptions(ExternalOptions):
    unet: str = "models/musetalkV15/unet.pth"
    unet_config: str = "models/musetalkV15/musetalk.json"
    version: str = "v15"
    float16: bool = False


@METHODS.register("musetalk")
class MuseTalk(ExternalMethod):
    """TMElyralab/MuseTalk `python -m scripts.inference` with a one-task YAML. MuseTalk exits 0 even
    when a task fails, so a missing output file is the failure signal."""

    label = "MuseTalk"
    url = "https://github.com/TMElyralab/MuseTalk"
    Options = MuseTalkOptions
    entry = ("-m", "scripts.inference")
    entry_file = "scripts/inference.py"
    checkpoints = ("unet", "unet_config")

    def prepare(self, job, sample):
        from omegaconf import OmegaConf

        task = {"task_0": {"video_path": str(job / TEMPLATE), "audio_path": str(job / AUDIO)}}
        (job / "task.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(task)))

    def command(self, job, sample):
        args = ["--inference_config", str(job / "task.yaml"), "--result_dir", str(job / "out"), "--unet_model_path", str(self.files["unet"]),
                "--unet_config", str(self.files["unet_config"]), "--version", self.opts.version, "--output_vid_name", "result.mp4"]  # fmt: skip
        return args + (["--use_float16"] if self.opts.float16 else [])

    def output(self, job, sample):
        return job / "out" / self.opts.version / "result.mp4"
