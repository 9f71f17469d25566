"""DINet from its official checkout (https://github.com/MRzzm/DINet), fed an OpenFace-layout landmark CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stsa_bench.core.errors import ClipError
from stsa_bench.core.faces import landmarks68
from stsa_bench.core.registry import METHODS

from .base import AUDIO, TEMPLATE, ExternalMethod, ExternalOptions


def write_openface_csv(path: Path, points: np.ndarray, found: np.ndarray, fps: int) -> None:
    """OpenFace FeatureExtraction layout: frame, face_id, timestamp, confidence, success, x_0..x_67, y_0..y_67."""
    header = ["frame", "face_id", "timestamp", "confidence", "success"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    lines = [", ".join(header)]
    for i, (p, ok) in enumerate(zip(points, found)):
        head = [str(i + 1), "0", f"{i / fps:.3f}", "0.98" if ok else "0", "1" if ok else "0"]
        lines.append(", ".join(head + [f"{v:.1f}" for v in p[:, 0]] + [f"{v:.1f}" for v in p[:, 1]]))
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class DINetOptions(ExternalOptions):
    checkpoint: str = "asserts/clip_training_DINet_256mouth.pth"
    deepspeech: str = "asserts/output_graph.pb"
    mouth_region_size: int = 256


@METHODS.register("dinet")
class DINet(ExternalMethod):
    """MRzzm/DINet `inference.py`; its OpenFace 68-point CSV is written from our FaceMesh landmarks
    (stsa_bench.core.faces.DLIB68_FROM_FACEMESH). Its 5 reference frames are drawn with unseeded random.sample; it
    extracts the template's frames next to it and muxes with a shell-string ffmpeg call."""

    label = "DINet"
    url = "https://github.com/MRzzm/DINet"
    Options = DINetOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoint", "deepspeech")
    scratch = ("template",)
    """It extracts the template's frames into `template/` beside it."""
    programs = ("ffmpeg",)
    deterministic = False

    def prepare(self, job, sample):
        h, w = sample.frames.shape[1:3]
        found = np.isfinite(sample.landmarks[:, :, :2]).all(axis=(1, 2))
        try:
            points = landmarks68(sample.landmarks, w, h)
        except ValueError as exc:
            raise ClipError(f"{sample.clip_id}: dinet: {exc}") from exc
        write_openface_csv(job / "template.csv", points, found, sample.fps)

    def command(self, job, sample):
        return ["--mouth_region_size", str(self.opts.mouth_region_size), "--source_video_path", TEMPLATE,
                "--source_openface_landmark_path", "template.csv", "--driving_audio_path", AUDIO,
                "--pretrained_clip_DINet_path", str(self.files["checkpoint"]), "--deepspeech_model_path", str(self.files["deepspeech"]),
                "--res_video_dir", "out"]  # fmt: skip

    def output(self, job, sample):
        return job / "out" / "template_facial_dubbing_add_audio.mp4"
