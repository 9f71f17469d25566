"""Adapters that run a method's official code from the user's checkout, in that method's own environment.

Per clip, a job folder `<run>/work/<method>/<clip>-<sha8>/` gets the inputs:
  template.mp4  the template at the harness protocol (25 fps, H.264 yuv420p crf 0, no audio)
  audio.wav     the driving audio (16 kHz mono 16-bit PCM)
plus what the method needs (DINet: an OpenFace-style landmark CSV from our landmarks; MuseTalk: its
task YAML; PC-AVS: aligned 224x224 frames and its meta line). The method's documented CLI runs as an
argument list (never a shell string) with the checkout as working directory, `<name>.python` as the
interpreter and a timeout (the whole process group is killed). stdout and stderr go to files in
the job folder; on failure the last stderr lines become the row's reason. The raw output is kept in
`<run>/generated/<method>/` (a resumed run reuses it) and normalised by `baselines.normalize`.
A missing checkout, interpreter or checkpoint is a ConfigError naming the setting, before any clip runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.faces import landmarks68
from stsa_bench.core.registry import METHODS

from .base import Generated, Method, MethodEnv, Sample
from .normalize import normalize_output

TEMPLATE, AUDIO = "template.mp4", "audio.wav"


@dataclass(frozen=True)
class ExternalOptions:
    repo: str | None = None
    python: str | None = None
    timeout_s: float = 1800.0
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)
    frame_slack: int = 5
    keep_work: bool = False


def checkout_commit(repo: Path) -> str:
    """The checkout's HEAD commit read from `.git` (no subprocess), or "unknown"."""
    git = repo / ".git"
    try:
        if git.is_file():
            git = (repo / git.read_text().split("gitdir:", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:12]
        ref = head[4:].strip()
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except (OSError, IndexError):
        pass
    return "unknown"


_ERROR_LINE = re.compile(r"^\w+(\.\w+)*(Error|Exception|Exit|Interrupt)\b.*|^(error|fatal)\b.*", re.IGNORECASE)


def stderr_tail(path: Path, limit: int = 300) -> str:
    """The most telling stderr line: the last exception line if any, else the last non-empty line (progress bars dropped)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no stderr"
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    if not lines:
        return "no stderr"
    errors = [ln for ln in lines if _ERROR_LINE.match(ln)]
    line = errors[-1] if errors else lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ExternalMethod(Method):
    """Base of the checkout adapters: subclasses give `label`, `url`, `entry`, `checkpoints`, `command` and `output`."""

    Options = ExternalOptions
    label: ClassVar[str]
    url: ClassVar[str]
    entry: ClassVar[tuple[str, ...]]
    """What follows the interpreter: ("inference.py",) or ("-m", "scripts.inference")."""
    entry_file: ClassVar[str]
    checkpoints: ClassVar[tuple[str, ...]] = ()
    """Option names holding checkpoint paths (relative paths are taken from the checkout)."""
    required_files: ClassVar[tuple[str, ...]] = ()
    """Files the method's code loads from fixed places in its checkout."""
    deterministic: ClassVar[bool] = True

    def __init__(self, env: MethodEnv | None = None, /, **options: Any):
        super().__init__(env, **options)
        self.repo = self._repo()
        self.python = self._python()
        self.files = {key: self._checkpoint(key) for key in self.checkpoints}
        self.version = f"{self.name}@{checkout_commit(self.repo)}"

    def _repo(self) -> Path:
        if not self.opts.repo:
            raise ConfigError(f"{self.name}.repo is not set: the path of a {self.label} checkout ({self.url})")
        repo = Path(self.opts.repo).expanduser().resolve()
        if not repo.is_dir():
            raise ConfigError(f"{self.name}.repo={self.opts.repo}: no such folder")
        for rel in (self.entry_file, *self.required_files):
            if not (repo / rel).exists():
                raise ConfigError(f"{self.name}.repo={self.opts.repo}: no {rel} (a {self.label} checkout with its files in place is needed)")
        return repo

    def _python(self) -> str:
        if not self.opts.python:
            raise ConfigError(f"{self.name}.python is not set: the Python executable of {self.label}'s own environment")
        found = shutil.which(os.path.expanduser(self.opts.python))
        if found is None:
            raise ConfigError(f"{self.name}.python={self.opts.python}: not an executable")
        return str(Path(found).absolute())

    def _checkpoint(self, key: str) -> Path:
        value = getattr(self.opts, key)
        if not value:
            raise ConfigError(f"{self.name}.{key} is not set ({self.label} checkpoint, {self.url})")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.repo / path
        if not path.exists():
            raise ConfigError(f"{self.name}.{key}={value}: no such file or folder ({path})")
        return path.resolve()

    def job_dir(self, sample: Sample) -> Path:
        return self._run_dir() / "work" / self.name / f"{sample.clip_id.replace('/', '__')}-{sample.sha256[:8]}"

    def kept_path(self, sample: Sample) -> Path:
        return self._run_dir() / "generated" / self.name / f"{sample.clip_id.replace('/', '__')}-{sample.sha256[:8]}.mp4"

    def _run_dir(self) -> Path:
        if self.env.run_dir is None:
            raise ClipError(f"{self.name}: no run folder given (MethodEnv.run_dir)")
        return Path(self.env.run_dir)

    def command(self, job: Path, sample: Sample) -> list[str]:
        """The method's arguments after `python <entry>`."""
        raise NotImplementedError

    def output(self, job: Path, sample: Sample) -> Path:
        """Where the method writes its video."""
        raise NotImplementedError

    def prepare(self, job: Path, sample: Sample) -> None:
        """Extra inputs beyond template.mp4 and audio.wav."""

    def postprocess(self, frames: np.ndarray, sample: Sample) -> tuple[np.ndarray, list[str]]:
        """The output frames as a template-sized video, and notes on what was done."""
        return frames, []

    def cleanup(self, job: Path, sample: Sample) -> None:
        """Remove what the method wrote outside the job folder."""

    def argv(self, job: Path, sample: Sample) -> list[str]:
        return [self.python, *self.entry, *self.command(job, sample), *self.opts.extra_args]

    def generate(self, sample: Sample) -> Generated:
        from stsa_bench.core.media import decode_video

        kept = self.kept_path(sample)
        if not kept.is_file():
            self._run(sample, kept)
        frames, _ = decode_video(kept, sample.fps)
        frames, notes = self.postprocess(frames, sample)
        if not self.deterministic:
            notes.append(f"{self.label} is not deterministic (its own unseeded sampling)")
        return normalize_output(frames, sample, str(kept), self.opts.frame_slack, notes)

    def _run(self, sample: Sample, kept: Path) -> None:
        from stsa_bench.core.media import write_video, write_wav

        job = self.job_dir(sample)
        if job.exists():
            shutil.rmtree(job)
        job.mkdir(parents=True)
        write_video(job / TEMPLATE, sample.frames, sample.fps, None, lossless=False, crf=0)
        write_wav(job / AUDIO, sample.audio, sample.sample_rate)
        self.prepare(job, sample)
        try:
            self.execute(self.argv(job, sample), job, sample)
            out = self.output(job, sample)
            if not out.is_file():
                raise ClipError(f"{sample.clip_id}: {self.name} wrote no {out} ({stderr_tail(job / 'stderr.log')}; log {job / 'stderr.log'})")
            kept.parent.mkdir(parents=True, exist_ok=True)
            part = kept.with_name(f".{kept.name}.{os.getpid()}.part")
            shutil.copyfile(out, part)
            os.replace(part, kept)
        finally:
            self.cleanup(job, sample)
        if not self.opts.keep_work:
            shutil.rmtree(job, ignore_errors=True)

    def execute(self, argv: list[str], job: Path, sample: Sample) -> None:
        """Run argv in the checkout with the timeout; ClipError with the stderr tail on failure."""
        env = {**os.environ, **{str(k): str(v) for k, v in self.opts.env.items()}}
        log = job / "stderr.log"
        with open(job / "stdout.log", "wb") as out, open(log, "wb") as err:
            proc = subprocess.Popen(argv, cwd=self.repo, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            try:
                rc = proc.wait(timeout=self.opts.timeout_s)
            except subprocess.TimeoutExpired:
                raise ClipError(f"{sample.clip_id}: {self.name} timed out after {self.opts.timeout_s:g} s (log {log})") from None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if rc != 0:
            raise ClipError(f"{sample.clip_id}: {self.name} exited with {rc}: {stderr_tail(log)} (log {log})")


# --- Wav2Lip (official code) -------------------------------------------------------------------


@dataclass(frozen=True)
class Wav2LipOfficialOptions(ExternalOptions):
    checkpoint: str = "checkpoints/wav2lip.pth"
    pads: tuple[int, ...] = (0, 10, 0, 0)
    batch_size: int = 128
    nosmooth: bool = False
    frame_slack: int = 4


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


# --- DINet ---------------------------------------------------------------------------------------


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
    (stsa_bench.core.faces.DLIB68_FROM_FACEMESH). Its 5 reference frames are drawn with unseeded random.sample."""

    label = "DINet"
    url = "https://github.com/MRzzm/DINet"
    Options = DINetOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoint", "deepspeech")
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
        return ["--mouth_region_size", str(self.opts.mouth_region_size), "--source_video_path", str(job / TEMPLATE),
                "--source_openface_landmark_path", str(job / "template.csv"), "--driving_audio_path", str(job / AUDIO),
                "--pretrained_clip_DINet_path", str(self.files["checkpoint"]), "--deepspeech_model_path", str(self.files["deepspeech"]),
                "--res_video_dir", str(job / "out")]  # fmt: skip

    def output(self, job, sample):
        return job / "out" / "template_facial_dubbing_add_audio.mp4"


# --- IP-LAP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IPLAPOptions(ExternalOptions):
    landmark_generator: str = "test/checkpoints/landmarkgenerator_checkpoint.pth"
    renderer: str = "test/checkpoints/renderer_checkpoint.pth"


@METHODS.register("iplap")
class IPLAP(ExternalMethod):
    """Weizhi-Zhong/IP_LAP `inference_single.py`; its video is side by side (landmark sketch | result): the right half is kept."""

    label = "IP-LAP"
    url = "https://github.com/Weizhi-Zhong/IP_LAP"
    Options = IPLAPOptions
    entry = ("inference_single.py",)
    entry_file = "inference_single.py"
    checkpoints = ("landmark_generator", "renderer")

    def command(self, job, sample):
        return ["--input", str(job / TEMPLATE), "--audio", str(job / AUDIO), "--output_dir", str(job / "out"),
                "--landmark_gen_checkpoint_path", str(self.files["landmark_generator"]),
                "--renderer_checkpoint_path", str(self.files["renderer"])]  # fmt: skip

    def output(self, job, sample):
        return job / "out" / "templateresult_N_25_Nl_15.mp4"

    def postprocess(self, frames, sample):
        w = sample.frames.shape[2]
        if frames.shape[2] == 2 * w:
            return frames[:, :, w:], ["right half of IP-LAP's side-by-side output"]
        return frames, []


# --- TalkLip -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TalkLipOptions(ExternalOptions):
    checkpoint: str | None = None
    avhubert_root: str | None = None


@METHODS.register("talklip")
class TalkLip(ExternalMethod):
    """Sxjdwang/TalkLip `inf_demo.py` (AV-HuBERT from `talklip.avhubert_root`)."""

    label = "TalkLip"
    url = "https://github.com/Sxjdwang/TalkLip"
    Options = TalkLipOptions
    entry = ("inf_demo.py",)
    entry_file = "inf_demo.py"
    checkpoints = ("checkpoint", "avhubert_root")

    def command(self, job, sample):
        return ["--video_path", str(job / TEMPLATE), "--wav_path", str(job / AUDIO), "--ckpt_path", str(self.files["checkpoint"]),
                "--avhubert_root", str(self.files["avhubert_root"]), "--save_path", str(job / "result")]  # fmt: skip

    def output(self, job, sample):
        return job / "result.mp4"


# --- MuseTalk ------------------------------------------------------------------------------------


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


# --- PC-AVS --------------------------------------------------------------------------------------

PCAVS_FLAGS = (
    "--dataset_mode", "voxtest", "--netG", "modulate", "--netA", "resseaudio", "--netA_sync", "ressesync",
    "--netD", "multiscale", "--netV", "resnext", "--netE", "fan", "--model", "av", "--gpu_ids", "0",
    "--clip_len", "1", "--batchSize", "16", "--style_dim", "2560", "--nThreads", "4", "--input_id_feature",
    "--generate_interval", "1", "--style_feature_loss", "--use_audio", "1", "--noise_pose", "--driving_pose",
    "--gen_video", "--generate_from_audio_only",
)  # fmt: skip
"""The flags of PC-AVS's `experiments/demo_vox.sh`."""


@dataclass(frozen=True)
class PCAVSOptions(ExternalOptions):
    checkpoints_dir: str = "checkpoints"
    experiment: str = "demo"
    crop_scale: float = 1.0
    crop_size: int = 224


@METHODS.register("pcavs")
class PCAVS(ExternalMethod):
    """Hangz-nju-cuhk/Talking-Face_PC-AVS `inference.py` with demo_vox.sh's flags, identity and pose from
    the template. Input: the harness's square crops (stsa_bench.core.preprocess.crop_faces) of our face boxes
    (x crop_scale) at 224 px, an approximation of its align_68 crops; its 224x224 output is pasted back
    into those boxes (paste_faces)."""

    label = "PC-AVS"
    url = "https://github.com/Hangz-nju-cuhk/Talking-Face_PC-AVS"
    Options = PCAVSOptions
    entry = ("inference.py",)
    entry_file = "inference.py"
    checkpoints = ("checkpoints_dir",)

    def tag(self, sample: Sample) -> str:
        return f"stsa_{sample.clip_id.replace('/', '__')}_{sample.sha256[:8]}"

    def result_dir(self, sample: Sample) -> Path:
        tag = self.tag(sample)
        return self.repo / "results" / f"id_{tag}_pose_{tag}_audio_{AUDIO[:-4]}"

    def boxes(self, sample: Sample) -> np.ndarray:
        """The harness face boxes (cx, cy, side) with the side scaled by `crop_scale`."""
        return np.asarray(sample.boxes, dtype=np.float64) * [1.0, 1.0, self.opts.crop_scale]

    def prepare(self, job, sample):
        import cv2

        from stsa_bench.core.preprocess import crop_faces

        frames_dir = job / self.tag(sample)
        frames_dir.mkdir()
        for i, crop in enumerate(crop_faces(sample.frames, self.boxes(sample), self.opts.crop_size)):
            cv2.imwrite(str(frames_dir / f"{i:06d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        n = len(sample.frames)
        line = f"{frames_dir} 1 {frames_dir} {n} {job / AUDIO} {frames_dir} {n} dummy"
        (job / "meta.csv").write_text(line + "\n")

    def command(self, job, sample):
        return ["--name", self.opts.experiment, "--checkpoints_dir", str(self.files["checkpoints_dir"]),
                "--meta_path_vox", str(job / "meta.csv"), *PCAVS_FLAGS]  # fmt: skip

    def output(self, job, sample):
        return self.result_dir(sample) / "G_Pose_Driven_.mp4"

    def cleanup(self, job, sample):
        shutil.rmtree(self.result_dir(sample), ignore_errors=True)

    def postprocess(self, frames, sample):
        from stsa_bench.core.preprocess import paste_faces

        out = sample.frames[: len(frames)].copy()
        if len(frames) > len(out):
            out = np.concatenate([out, np.repeat(sample.frames[-1:], len(frames) - len(out), axis=0)])
        paste_faces(out, frames, self.boxes(sample))
        return out, [f"{frames.shape[2]}x{frames.shape[1]} PC-AVS crop pasted back into the template"]


# --- LatentSync ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentSyncOptions(ExternalOptions):
    unet_config: str = "configs/unet/stage2_512.yaml"
    checkpoint: str = "checkpoints/latentsync_unet.pt"
    inference_steps: int = 20
    guidance_scale: float = 1.5
    seed: int = 1247


@METHODS.register("latentsync")
class LatentSync(ExternalMethod):
    """bytedance/LatentSync `python -m scripts.inference` (DDIM, seeded). It also uses `temp/` inside
    its checkout, so run one LatentSync job per checkout at a time."""

    label = "LatentSync"
    url = "https://github.com/bytedance/LatentSync"
    Options = LatentSyncOptions
    entry = ("-m", "scripts.inference")
    entry_file = "scripts/inference.py"
    checkpoints = ("unet_config", "checkpoint")
    required_files = ("checkpoints/whisper/tiny.pt",)

    def command(self, job, sample):
        o = self.opts
        return ["--unet_config_path", str(self.files["unet_config"]), "--inference_ckpt_path", str(self.files["checkpoint"]),
                "--inference_steps", str(o.inference_steps), "--guidance_scale", f"{o.guidance_scale:g}",
                "--video_path", str(job / TEMPLATE), "--audio_path", str(job / AUDIO), "--video_out_path", str(job / "result.mp4"),
                "--seed", str(o.seed), "--temp_dir", str(job / "tmp")]  # fmt: skip

    def output(self, job, sample):
        return job / "result.mp4"


ADAPTERS = {cls.name: cls for cls in (Wav2LipOfficial, DINet, IPLAP, TalkLip, MuseTalk, PCAVS, LatentSync)}
"""The checkout adapters by method name (DiffTalk reads generated frames: see baselines.results)."""
