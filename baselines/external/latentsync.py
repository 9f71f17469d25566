"""LatentSync from its official checkout (https://github.com/bytedance/LatentSync)."""

from __future__ import annotations

from dataclasses import dataclass

from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


@dataclass(frozen=True)
class LatentSyncOptions(ExternalOptions):
    unet_config: str = "configs/unet/stage2_512.yaml"
    checkpoint: str = "checkpoints/latentsync_unet.pt"
    inference_steps: int = 20
    guidance_scale: float = 1.5
    seed: int = 1247
    deepcache: bool = True
    """--enable_deepcache, as its inference.sh and eval/inference_videos.py run it (UNet features reused across steps)."""
    timeout_s: float = 3600.0
    """Per clip; diffusion sampling is slow."""


@METHODS.register("latentsync")
class LatentSync(ExternalMethod):
    """bytedance/LatentSync `python -m scripts.inference` (DDIM, seeded). It also writes `temp/` in its working
    directory: each job has its own."""

    label = "LatentSync"
    url = "https://github.com/bytedance/LatentSync"
    Options = LatentSyncOptions
    entry = ("-m", "scripts.inference")
    entry_file = "scripts/inference.py"
    checkpoints = ("unet_config", "checkpoint")
    required_files = ("checkpoints/whisper/tiny.pt",)
    writes = ("temp",)
    scratch = ("tmp",)
    programs = ("ffmpeg",)

    def command(self, job, sample):
        o = self.opts
        return ["--unet_config_path", str(self.files["unet_config"]), "--inference_ckpt_path", str(self.files["checkpoint"]),
                "--inference_steps", str(o.inference_steps), "--guidance_scale", f"{o.guidance_scale:g}",
                "--video_path", TEMPLATE, "--audio_path", AUDIO, "--video_out_path", "result.mp4",
                "--seed", str(o.seed), "--temp_dir", "tmp", *(["--enable_deepcache"] if o.deepcache else [])]  # fmt: skip

    def output(self, job, sample):
        return job / "result.mp4"
