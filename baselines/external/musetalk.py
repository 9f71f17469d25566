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
    """TMElyralab/MuseTalk `python -m scripts.inference` with a task YAML: one task per clip, or every pending clip
    in one YAML (`batch`, the default: the models load once; each task names its output with `result_name`).
    MuseTalk exits 0 even when a task fails, so a missing output file is the failure signal."""

    batched = True

    label = "MuseTalk"
    url = "https://github.com/TMElyralab/MuseTalk"
    Options = MuseTalkOptions
    entry = ("-m", "scripts.inference")
    entry_file = "scripts/inference.py"
    checkpoints = ("unet", "unet_config")
    detector = "musetalk/utils/face_detection/detection/sfd/s3fd.pth"
    programs = ("ffmpeg",)
    bundled_ffmpeg = "ffmpeg-4.4-amd64-static/ffmpeg"

    def prepare(self, job, sample):
        from omegaconf import OmegaConf

        task = {"task_0": {"video_path": TEMPLATE, "audio_path": AUDIO}}
        (job / "task.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(task)))

    def _args(self, tasks: str, out: str) -> list[str]:
        args = ["--inference_config", tasks, "--result_dir", out, "--unet_model_path", str(self.files["unet"]),
                "--unet_config", str(self.files["unet_config"]), "--version", self.opts.version]  # fmt: skip
        return args + (["--use_float16"] if self.opts.float16 else [])

    def command(self, job, sample):
        return self._args("task.yaml", "out") + ["--output_vid_name", "result.mp4"]

    def output(self, job, sample):
        return job / "out" / self.opts.version / "result.mp4"

    def batch_argv(self, folder, jobs):
        """One task per job; inputs linked under distinct names (MuseTalk names its frame folders after them)."""
        from omegaconf import OmegaConf

        (folder / "in").mkdir()
        tasks = {}
        for k, (job, _) in enumerate(jobs):
            video, audio = f"in/clip{k}.mp4", f"in/clip{k}.wav"
            (folder / video).symlink_to(job / TEMPLATE)
            (folder / audio).symlink_to(job / AUDIO)
            tasks[f"task_{k}"] = {"video_path": video, "audio_path": audio, "result_name": f"clip{k}.mp4"}
        (folder / "tasks.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(tasks)))
        return self._args("tasks.yaml", "out")

    def batch_output(self, folder, index, job, sample):
        return folder / "out" / self.opts.version / f"clip{index}.mp4"
