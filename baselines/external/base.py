"""Adapters that run a method's official code from the user's checkout, in that method's own environment.

Per clip, a job folder (`baselines.external.jobs`: plain ASCII, the run's `work/<method>/<slug>-<sha8>/`)
gets the inputs:
  template.mp4  the template at the harness protocol (25 fps, H.264 yuv420p crf 0, no audio)
  audio.wav     the driving audio (16 kHz mono 16-bit PCM)
plus what the method needs (DINet: an OpenFace-style landmark CSV from our landmarks; MuseTalk: its
task YAML; PC-AVS: aligned 224x224 frames and its meta line), symlinks to the checkout's top-level entries
and empty folders for the names its code writes to (`writes`). The method's documented CLI runs there as an
argument list (never a shell string) with relative input and output names, `<name>.python` as the
interpreter, the programs its code shells out to on PATH (`programs`: ffmpeg) and a timeout (the whole
process group is killed). stdout and stderr go to files in the job folder; on failure the last stderr lines
become the row's reason. The raw output is kept in `<run>/generated/<method>/` (a resumed run reuses it) and
normalised by `baselines.normalize`. A missing checkout, interpreter, checkpoint, file or program is a
ConfigError naming the setting and the fix, before any clip runs (`stsa-bench doctor` shows the same).
Rows carry the checkout's commit (`method_version`) and the sha256 of the checkpoints (`method_weights_sha`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stsa_bench.core.errors import ClipError, ConfigError, disk_full
from stsa_bench.core.layout import file_stem
from stsa_bench.core.weights import torch_hub_dir

from ..base import Generated, Method, MethodEnv, Sample
from ..normalize import normalize_output
from .jobs import WEIGHT_SUFFIXES, find_ffmpeg, job_name, link_checkout, program_dir, weights_sha, work_root

S3FD_HUB = ("s3fd-619a316812.pth", "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth")
"""The S3FD file face_alignment-derived detectors download into the torch hub cache when theirs is absent."""

TEMPLATE, AUDIO = "template.mp4", "audio.wav"


@dataclass(frozen=True)
class ExternalOptions:
    """Settings every checkout adapter takes; subclasses add the method's checkpoints (relative paths
    are taken inside the checkout; defaults are where each method's README puts them)."""

    repo: str | None = None
    """The checkout of the method's official code."""
    python: str | None = None
    """The interpreter of the method's own environment."""
    timeout_s: float = 1800.0
    """Per clip; on expiry the whole process group is killed."""
    extra_args: tuple[str, ...] = ()
    """Appended to the command."""
    env: Mapping[str, Any] = field(default_factory=dict)
    """Extra environment variables: `+<name>.env.KEY=VAL` or `<name>.env={KEY: VAL}`, e.g. CUDA_VISIBLE_DEVICES."""
    ffmpeg: str = "auto"
    """For codes that shell out to ffmpeg: `auto` takes it from PATH, else imageio-ffmpeg's binary
    (`pip install "stsa-bench[ffmpeg]"`), put on the job's PATH; or the path of an ffmpeg executable."""
    commit: str | None = None
    """The checkout's commit where it has no `.git` (e.g. made by `git archive`); rows record it."""
    frame_slack: int = 5
    """Missing end frames filled by repeating the last (baselines.normalize)."""
    keep_work: bool = False
    """Keep the job folder after a clip."""
    batch: bool = True
    """Where the method's CLI takes many jobs (MuseTalk's task YAML), run every pending clip in one process."""


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
    detector: ClassVar[str | None] = None
    """Where its face_detection package (Wav2Lip's S3FD) looks for `s3fd.pth` in the checkout; without that file the
    code downloads S3FD_HUB into the torch hub cache, so one of the two must be in place."""
    writes: ClassVar[tuple[str, ...]] = ()
    """Folders the code writes to relative to its working directory: each job gets empty ones of its own."""
    scratch: ClassVar[tuple[str, ...]] = ()
    """Other names the code creates in its working directory: never linked from the checkout."""
    hub_files: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(file name, URL) of weights the code loads from the torch hub cache, `$TORCH_HOME/hub/checkpoints/` (torchvision's
    VGG19, face_alignment's S3FD and FAN), which it would otherwise download at run time."""
    programs: ClassVar[tuple[str, ...]] = ()
    """Programs the code runs (only "ffmpeg" is known): found or offered on the job's PATH (`<name>.ffmpeg`)."""
    bundled_ffmpeg: ClassVar[str | None] = None
    """An ffmpeg the checkout carries and the code puts on PATH itself (MuseTalk's static build)."""
    deterministic: ClassVar[bool] = True

    def __init__(self, env: MethodEnv | None = None, /, **options: Any):
        super().__init__(env, **options)
        self.repo = self._repo()
        self.python = self._python()
        self.files = {key: self._checkpoint(key) for key in self.checkpoints}
        self.hub = self._hub_files()
        self.path_dirs = self._programs()
        self.version = f"{self.name}@{self._commit()}"
        self.batched = type(self).batched and self.opts.batch

    @cached_property
    def weights_sha(self) -> str | None:
        """`method_weights_sha`: the sha256 of the checkpoints a job loads (jobs.weights_sha), computed at the first row."""
        return weights_sha(self.loaded_files())

    def uses_detector(self) -> bool:
        """Whether this configuration runs the code's S3FD (`detector`)."""
        return self.detector is not None

    def loaded_files(self) -> list[Path]:
        """The checkpoints a job loads (configuration files aside), in the order `method_weights_sha` hashes them."""
        files = [p for p in self.files.values() if p.is_dir() or p.suffix in WEIGHT_SUFFIXES]
        detector = [self.repo / self.detector] if self.uses_detector() and (self.repo / self.detector).is_file() else []
        return [*files, *(self.repo / rel for rel in self.required_files), *detector, *self.hub]

    def _repo(self) -> Path:
        if not self.opts.repo:
            raise ConfigError(f"{self.name}.repo is not set: the path of a {self.label} checkout ({self.url})")
        repo = Path(self.opts.repo).expanduser().resolve()
        if not repo.is_dir():
            raise ConfigError(f"{self.name}.repo={self.opts.repo}: no such folder")
        for rel in (self.entry_file, *self.required_files):
            if not (repo / rel).exists():
                raise ConfigError(
                    f"{self.name}.repo={self.opts.repo}: no {rel} (a {self.label} checkout with its files in place is needed)"
                )
        return repo

    def _python(self) -> str:
        if not self.opts.python:
            raise ConfigError(f"{self.name}.python is not set: the Python executable of {self.label}'s own environment")
        found = shutil.which(os.path.expanduser(self.opts.python))
        if found is None:
            raise ConfigError(f"{self.name}.python={self.opts.python}: not an executable")
        return str(Path(found).absolute())

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **{str(k): str(v) for k, v in self.opts.env.items()}}
        if getattr(self, "path_dirs", None):
            env["PATH"] = os.pathsep.join([*map(str, self.path_dirs), env.get("PATH", "")])
        return env

    def _hub_files(self) -> list[Path]:
        """The torch hub files in the job's hub cache; ConfigError naming the download for one missing."""
        folder = torch_hub_dir(self._env())
        wanted = list(self.hub_files)
        if self.uses_detector() and not (self.repo / self.detector).is_file():
            if not (folder / S3FD_HUB[0]).is_file():
                raise ConfigError(f"{self.name}.repo={self.opts.repo}: no {self.detector} (nor {folder / S3FD_HUB[0]}): {self.label}'s "
                                  f"face detector loads the first, else downloads the second at run time; put either in "
                                  f"place ({S3FD_HUB[1]})")  # fmt: skip
            wanted.append(S3FD_HUB)
        for name, url in wanted:
            if not (folder / name).is_file():
                raise ConfigError(f"{self.name}: no {folder / name}: {self.label}'s code loads it from the torch hub cache (and would "
                                  f"download it at run time); download {url} there, or set {self.name}.env.TORCH_HOME to a folder "
                                  f"whose hub/checkpoints holds it")  # fmt: skip
        return [folder / name for name, _ in wanted]

    def _programs(self) -> list[Path]:
        """Folders to put before PATH so the code finds its programs (`self.programs_found`: program -> where it is
        and where it came from); ConfigError naming the fix for one missing."""
        dirs, self.programs_found = [], {}
        for program in self.programs:
            if program != "ffmpeg":
                raise ValueError(f"{self.name}: unknown program {program!r}")
            exe, source = find_ffmpeg(self.opts.ffmpeg, self._env().get("PATH"))
            bundled = self.repo / self.bundled_ffmpeg if self.bundled_ffmpeg else None
            if self.opts.ffmpeg == "auto" and source != "PATH" and bundled and bundled.is_file():
                self.programs_found[program] = f"{bundled} (its checkout's; its code puts it on PATH)"
                continue
            if exe is None:
                raise ConfigError(f"{self.name} needs ffmpeg ({self.label}'s code runs it to write its video, and exits 0 without "
                                  f"one): {source}; install ffmpeg (e.g. apt install ffmpeg), or pip install 'stsa-bench[ffmpeg]', "
                                  f"or set {self.name}.ffmpeg=PATH")  # fmt: skip
            self.programs_found[program] = f"{exe} ({source})"
            if source != "PATH":
                dirs.append(program_dir("ffmpeg", exe))
        return dirs

    def _commit(self) -> str:
        """The checkout's commit from `.git`; without one, the `commit` setting; a setting `.git` contradicts is an error."""
        found, stated = checkout_commit(self.repo), (self.opts.commit or "").strip().lower()
        if found == "unknown":
            return stated[:12] if stated else found
        if stated and not (found.startswith(stated[:12]) or stated.startswith(found)):
            raise ConfigError(f"{self.name}.commit={stated}: the checkout {self.repo} is at {found}")
        return found

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
        """The clip's job folder and working directory (plain ASCII: see jobs.work_root)."""
        return work_root(self._run_dir(), self.name) / job_name(sample.clip_id, sample.sha256)

    def kept_path(self, sample: Sample) -> Path:
        return self._run_dir() / "generated" / self.name / f"{file_stem(sample.clip_id)}-{sample.sha256[:8]}.mp4"

    def _run_dir(self) -> Path:
        if self.env.run_dir is None:
            raise ClipError(f"{self.name}: no run folder given (MethodEnv.run_dir)")
        return Path(self.env.run_dir)

    def command(self, job: Path, sample: Sample) -> list[str]:
        """The method's arguments after `python <entry>`; they run in `job`, so inputs and outputs are named relative
        to it (TEMPLATE, AUDIO, "result.mp4"), never by an absolute path the run folder's name could break."""
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

    def _stage(self, sample: Sample) -> Path:
        """A fresh job folder with the clip's inputs."""
        from stsa_bench.core.media import write_video, write_wav

        job = self.job_dir(sample)
        if job.exists():
            shutil.rmtree(job)
        job.mkdir(parents=True)
        write_video(job / TEMPLATE, sample.frames, sample.fps, None, lossless=False, crf=0)
        write_wav(job / AUDIO, sample.audio, sample.sample_rate)
        self.prepare(job, sample)
        link_checkout(self.repo, job, self.writes, self._reserved(self.output(job, sample).relative_to(job)))
        return job

    def _reserved(self, output: Path) -> set[str]:
        """Names of the working directory never linked from the checkout: the logs, the output's and `scratch`."""
        return {"stdout.log", "stderr.log", output.parts[0], *self.scratch}

    @staticmethod
    def _keep(out: Path, kept: Path) -> None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        part = kept.with_name(f".{kept.name}.{os.getpid()}.part")
        shutil.copyfile(out, part)
        os.replace(part, kept)

    def _run(self, sample: Sample, kept: Path) -> None:
        job = self._stage(sample)
        try:
            try:
                argv = self.argv(job, sample)
            except ClipError:
                shutil.rmtree(job, ignore_errors=True)
                raise
            self.execute(argv, job, sample.clip_id)
            out = self.output(job, sample)
            if not out.is_file():
                raise ClipError(
                    f"{sample.clip_id}: {self.name} wrote no {out} ({stderr_tail(job / 'stderr.log')}; log {job / 'stderr.log'})"
                )
            self._keep(out, kept)
        finally:
            self.cleanup(job, sample)
        if not self.opts.keep_work:
            shutil.rmtree(job, ignore_errors=True)

    def batch_argv(self, folder: Path, jobs: list[tuple[Path, Sample]]) -> list[str]:
        """Batched methods: the arguments that run every (job folder, sample) in one process. The samples carry
        the clip's id and hash only (their frames are not kept)."""
        raise NotImplementedError

    def batch_output(self, folder: Path, index: int, job: Path, sample: Sample) -> Path:
        """Batched methods: where the batch writes job `index`'s video."""
        raise NotImplementedError

    def generate_batch(self, samples: Iterable[Sample]) -> None:
        """One process for every clip not generated yet (the model loads once); timeout `timeout_s` per clip.
        Outputs are kept as `generate` keeps its own, those of a batch that fails too (its ClipError is raised
        after); a clip left without output (a failed batch, or inputs that could not be written: a frame that
        does not decode) falls back to `generate`, one process per clip, with its own reason."""
        if not self.batched:
            return
        staged: list[tuple[Path, Path, Sample]] = []
        for sample in samples:
            kept = self.kept_path(sample)
            if kept.is_file():
                continue
            try:
                job = self._stage(sample)
            except Exception as exc:  # noqa: BLE001 - `generate` stages it again alone and reports why it fails
                shutil.rmtree(self.job_dir(sample), ignore_errors=True)
                if disk_full(exc):
                    raise
                continue
            light = replace(sample, frames=np.zeros((0, 1, 1, 3), np.uint8), audio=np.zeros(0, np.float32))
            staged.append((job, kept, light))
        if len(staged) < 2:
            for job, _, _ in staged:
                shutil.rmtree(job, ignore_errors=True)
            return
        folder = work_root(self._run_dir(), self.name) / f"batch-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        jobs = [(job, sample) for job, _, sample in staged]
        try:
            argv = [self.python, *self.entry, *self.batch_argv(folder, jobs), *self.opts.extra_args]
            output = self.batch_output(folder, 0, *jobs[0]).relative_to(folder)
            link_checkout(self.repo, folder, self.writes, self._reserved(output))
            self.execute(argv, folder, f"{len(jobs)} clips in one {self.name} process", self.opts.timeout_s * len(jobs))
        finally:
            for index, (job, kept, sample) in enumerate(staged):
                out = self.batch_output(folder, index, job, sample)
                if out.is_file():
                    self._keep(out, kept)
                self.cleanup(job, sample)
                if not self.opts.keep_work:
                    shutil.rmtree(job, ignore_errors=True)
            if not self.opts.keep_work:
                shutil.rmtree(folder, ignore_errors=True)

    def execute(self, argv: list[str], job: Path, what: str, timeout_s: float | None = None) -> None:
        """Run argv in the job folder with the timeout; ClipError with the stderr tail on failure."""
        log = job / "stderr.log"
        timeout_s = self.opts.timeout_s if timeout_s is None else timeout_s
        with open(job / "stdout.log", "wb") as out, open(log, "wb") as err:
            proc = subprocess.Popen(
                argv, cwd=job, env=self._env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise ClipError(f"{what}: {self.name} timed out after {timeout_s:g} s (log {log})") from None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if rc != 0:
            raise ClipError(f"{what}: {self.name} exited with {rc}: {stderr_tail(log)} (log {log})")
