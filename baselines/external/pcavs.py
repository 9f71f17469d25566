"""PC-AVS from its official checkout (https://github.com/Hangz-nju-cuhk/Talking-Face_PC-AVS), on the harness's face crops."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stsa_bench.core.errors import ConfigError
from stsa_bench.core.registry import METHODS

from ..base import Sample
from .base import AUDIO, ExternalMethod, ExternalOptions
from .jobs import job_name

PCAVS_FLAGS = (
    "--dataset_mode", "voxtest", "--netG", "modulate", "--netA", "resseaudio", "--netA_sync", "ressesync",
    "--netD", "multiscale", "--netV", "resnext", "--netE", "fan", "--model", "av",
    "--clip_len", "1", "--batchSize", "16", "--style_dim", "2560", "--nThreads", "4", "--input_id_feature",
    "--generate_interval", "1", "--style_feature_loss", "--use_audio", "1", "--noise_pose", "--driving_pose",
    "--gen_video", "--generate_from_audio_only",
)  # fmt: skip
"""The flags of PC-AVS's `experiments/demo_vox.sh` but --gpu_ids (`pcavs.gpu_ids`)."""


@dataclass(frozen=True)
class PCAVSOptions(ExternalOptions):
    checkpoints_dir: str = "checkpoints"
    experiment: str = "demo"
    """checkpoints_dir/experiment holds the released .pth files."""
    crop_scale: float = 1.0
    """Multiplies the harness face box side."""
    crop_size: int = 224
    gpu_ids: str = "0"
    """Its --gpu_ids (demo_vox.sh: 0). -1 selects no GPU, but its inference.py still calls .cuda(): it needs CUDA."""


@METHODS.register("pcavs")
class PCAVS(ExternalMethod):
    """Hangz-nju-cuhk/Talking-Face_PC-AVS `inference.py` with demo_vox.sh's flags. Pose from the template's frames,
    identity from its first frame alone (of a folder it picks the identity image by an unseeded shuffle). In batch
    mode one meta file with a line per clip (its loop catches each line's error, and it exits 0). Input: the harness's
    square crops (stsa_bench.core.preprocess.crop_faces) of our face boxes (x crop_scale) at 224 px, an approximation
    of its align_68 crops; its 224x224 output is pasted back into those boxes (paste_faces)."""

    label = "PC-AVS"
    batched = True
    url = "https://github.com/Hangz-nju-cuhk/Talking-Face_PC-AVS"
    Options = PCAVSOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoints_dir",)
    writes = ("results",)
    hub_files = (("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),)
    """Its loss module builds torchvision's VGG19 (pretrained) as a default argument, at import."""
    programs = ("ffmpeg",)
    """It writes its videos from JPEG frames with os.system("ffmpeg ...")."""
    networks = ("G", "A_sync", "E", "V")
    """The networks its inference loads from `<checkpoints_dir>/<experiment>/latest_net_<X>.pth` (a missing one other
    than G is only printed, and the run goes on with random weights)."""

    def __init__(self, env=None, /, **options):
        super().__init__(env, **options)
        missing = [p.name for p in self.network_files() if not p.is_file()]
        if missing:
            raise ConfigError(f"{self.name}.experiment={self.opts.experiment}: no {', '.join(missing)} in {self.network_files()[0].parent}")

    def network_files(self) -> list[Path]:
        folder = self.files["checkpoints_dir"] / self.opts.experiment
        return [folder / f"latest_net_{n}.pth" for n in self.networks]

    def loaded_files(self):
        return [*self.network_files(), *self.hub]

    def tag(self, sample: Sample) -> str:
        """The frames folder's name (plain ASCII: its meta file is split on spaces), which names its results folder."""
        return f"stsa_{job_name(sample.clip_id, sample.sha256)}"

    def result_dir(self, cwd: Path, sample: Sample) -> Path:
        tag = self.tag(sample)
        return cwd / "results" / f"id_{tag}_id_pose_{tag}_audio_{AUDIO[:-4]}"

    def meta_line(self, job: Path, sample: Sample, prefix: str = "") -> str:
        """Its 8-field line (identity frames, pose frames and their counts, audio) for the crops staged in `job`, with
        paths relative to the working directory (`prefix` leads from there to `job`)."""
        frames, n = prefix + self.tag(sample), len(list((job / self.tag(sample)).glob("*.jpg")))
        return f"{frames}_id 1 {frames} {n} {prefix}{AUDIO} {frames} {n} dummy\n"

    def boxes(self, sample: Sample) -> np.ndarray:
        """The harness face boxes (cx, cy, side) with the side scaled by `crop_scale`."""
        return np.asarray(sample.boxes, dtype=np.float64) * [1.0, 1.0, self.opts.crop_scale]

    def prepare(self, job, sample):
        import cv2

        from stsa_bench.core.preprocess import crop_faces

        frames_dir = job / self.tag(sample)
        frames_dir.mkdir()
        (job / f"{self.tag(sample)}_id").mkdir()
        for i, crop in enumerate(crop_faces(sample.frames, self.boxes(sample), self.opts.crop_size)):
            cv2.imwrite(str(frames_dir / f"{i:06d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            if i == 0:
                shutil.copyfile(frames_dir / f"{i:06d}.jpg", job / f"{self.tag(sample)}_id" / f"{i:06d}.jpg")
        (job / "meta.csv").write_text(self.meta_line(job, sample))

    def command(self, job, sample):
        return ["--name", self.opts.experiment, "--checkpoints_dir", str(self.files["checkpoints_dir"]),
                "--meta_path_vox", "meta.csv", *PCAVS_FLAGS, "--gpu_ids", self.opts.gpu_ids]  # fmt: skip

    def output(self, job, sample):
        return self.result_dir(job, sample) / "G_Pose_Driven_.mp4"

    def batch_argv(self, folder, jobs):
        """One meta file in the batch folder; each line names its job's files as `../<job>/...`."""
        (folder / "meta.csv").write_text("".join(self.meta_line(job, sample, f"../{job.name}/") for job, sample in jobs))
        return ["--name", self.opts.experiment, "--checkpoints_dir", str(self.files["checkpoints_dir"]),
                "--meta_path_vox", "meta.csv", *PCAVS_FLAGS, "--gpu_ids", self.opts.gpu_ids]  # fmt: skip

    def batch_output(self, folder, index, job, sample):
        return self.result_dir(folder, sample) / "G_Pose_Driven_.mp4"

    def postprocess(self, frames, sample):
        from stsa_bench.core.preprocess import paste_faces

        out = sample.frames[: len(frames)].copy()
        if len(frames) > len(out):
            out = np.concatenate([out, np.repeat(sample.frames[-1:], len(frames) - len(out), axis=0)])
        paste_faces(out, frames, self.boxes(sample))
        return out, [f"{frames.shape[2]}x{frames.shape[1]} PC-AVS crop pasted back into the template"]
