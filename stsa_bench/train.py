"""`stsa-bench train`: STSA training on the clips of a suite, from the harness's preprocessing cache.

The composed Hydra config (configs/train.yaml) becomes a `TrainRunConfig`; clips are decoded and
landmarked by the harness's `Preprocessor` (cached), turned into `stsa.training.data.ClipArrays` and
trained on by `stsa.training.engine.Engine`. The lip-sync expert for L_sync is the Wav2Lip
`SyncNet_color` architecture (`baselines.wav2lip_model.SyncNetColor`): the official
lipsync_expert.pth, or one trained here with stage=syncnet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .core.config import DataConfig, PreprocessConfig, config_hash, typed
from .core.errors import ClipError, ConfigError
from .core.paths import atomic_write_text, cache_root, canonical_json
from .core.weights import WeightsSpec

Log = Callable[[str], None]

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_WEIGHTS = WeightsSpec("vgg19", VGG19_FILE, f"https://download.pytorch.org/models/{VGG19_FILE}", "dcbb9e9d")
"""ImageNet VGG-19 for the perceptual loss (torchvision; the file name carries its sha256 prefix)."""
RESUME_FREE_KEYS = ("steps", "progress", "tensorboard", "workers", "log_every")
"""train.* keys that may change between a run and its resumption."""


@dataclass(frozen=True)
class ModelConfig:
    slim: int = 1
    T: int = 5
    n_refs: int = 5
    disc_width: int = 64


@dataclass(frozen=True)
class InitConfig:
    heatmap: str | None = None
    renderer: str | None = None


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything `stsa-bench train` needs, typed."""

    stage: str
    suite: str
    suite_options: Mapping[str, Any]
    data: DataConfig
    preprocess: PreprocessConfig
    cache_dir: Path
    out: Path
    model: ModelConfig
    options: Any  # stsa.training.engine.TrainOptions
    weights: Any  # stsa.training.tasks.LossWeights
    ablation: Any  # stsa.training.tasks.Ablation
    init: InitConfig = InitConfig()
    wav2vec2: str | None = None
    vgg19: str | None = None
    random_vgg: bool = False
    sync_expert: str | None = None
    stop_at: int | None = None
    samples: int | None = None
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False)


def train_config_from_dict(resolved: Mapping[str, Any]) -> TrainRunConfig:
    from stsa.training.engine import TrainOptions
    from stsa.training.tasks import STAGES, Ablation, LossWeights

    r = dict(resolved)
    stage = str(r.get("stage"))
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r}: one of {', '.join(STAGES)}")
    suite = dict(r.get("suite") or {})
    try:
        options = typed(TrainOptions, r.get("train"), "train")
    except ValueError as exc:
        raise ConfigError(f"train: {exc}") from exc
    return TrainRunConfig(
        stage=stage,
        suite=str(suite.pop("name")),
        suite_options=suite,
        data=typed(DataConfig, r.get("data"), "data"),
        preprocess=typed(PreprocessConfig, r.get("preprocess"), "preprocess"),
        cache_dir=cache_root(r.get("cache_dir")),
        out=Path(str(r.get("out"))).expanduser(),
        model=typed(ModelConfig, r.get("model"), "model"),
        options=options,
        weights=typed(LossWeights, r.get("loss"), "loss"),
        ablation=typed(Ablation, r.get("ablation"), "ablation"),
        init=typed(InitConfig, r.get("init"), "init"),
        wav2vec2=r.get("wav2vec2"),
        vgg19=r.get("vgg19"),
        random_vgg=bool(r.get("random_vgg", False)),
        sync_expert=r.get("sync_expert"),
        stop_at=r.get("stop_at"),
        samples=r.get("samples"),
        resolved=r,
    )


# ------------------------------------------------------------------------------------------------ data


def wav2vec2_model(source: str | None):
    """wav2vec2 from a folder / the Hugging Face cache, or the random tiny config ("tiny", tests only)."""
    from stsa.audio import load_wav2vec2, tiny_wav2vec2

    if source == "tiny":
        return tiny_wav2vec2()
    try:
        return load_wav2vec2(source)
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc} (setting wav2vec2)") from exc


def tiny_wav2vec2_dir(cache_dir: Path) -> Path:
    """The tiny random wav2vec2 saved once as a folder (so inference can load it by path)."""
    from stsa.audio import tiny_wav2vec2

    from .core.paths import build_dir_atomically, cache_key, entry_dir

    folder = entry_dir(cache_dir, "wav2vec2", cache_key("wav2vec2-tiny", params={"seed": 0}))
    if not (folder / "config.json").is_file():
        build_dir_atomically(folder, lambda tmp: tiny_wav2vec2().save_pretrained(tmp))
    return folder


CLIP_ARRAYS_VERSION = 1
"""Bump when `stsa.training.data.clip_arrays` changes its output for the same inputs."""
ARRAY_FIELDS = ("crops", "full_points", "content_points", "features", "mel")


class CachedClip:
    """A clip's training arrays in the cache (.npy files), opened memory-mapped on each call."""

    def __init__(self, folder: Path, clip_id: str):
        self.folder, self.clip_id = folder, clip_id

    def __len__(self) -> int:
        """Frames of the clip (read from the crops' .npy header only)."""
        import numpy as np

        return len(np.load(self.folder / "crops.npy", mmap_mode="r"))

    def __call__(self):
        import numpy as np

        from stsa.training.data import ClipArrays

        arrays = {k: np.load(self.folder / f"{k}.npy", mmap_mode="r") for k in ARRAY_FIELDS if (self.folder / f"{k}.npy").is_file()}
        return ClipArrays(self.clip_id, mel=arrays.pop("mel", None), **arrays)


def model_fingerprint(model) -> str:
    """sha256 of a model's config and state dict bytes: the identity of its features in cache keys."""
    import hashlib

    h = hashlib.sha256(canonical_json(model.config.to_dict()).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_clip_arrays(cfg: TrainRunConfig, log: Log) -> tuple[list[CachedClip], list[str]]:
    """(the cached training arrays of every usable clip, one-line reasons for the clips left out).

    Arrays are built once per (clip content, preprocessing, wav2vec2 weights) and kept under the
    cache's `stsa_train/` entries; a dataset of many clips then costs little memory.
    """
    import numpy as np

    from .core.mel import mel_windows, wav2lip_mel
    from stsa.audio import wav2vec2_features
    from stsa.training.data import clip_arrays

    from .core.faces import fill_missing_frames
    from .core.paths import build_dir_atomically, cache_key, entry_dir
    from .core.preprocess import Preprocessor, prep_key
    from .core.suites import SuiteContext, load_suite

    clips = load_suite(SuiteContext(cfg.suite, cfg.suite_options, cfg.data, cfg.cache_dir))
    prep = Preprocessor(cfg.preprocess, cfg.cache_dir)
    w2v = wav2vec2_model(cfg.wav2vec2)
    w2v_id = model_fingerprint(w2v)
    cached, failed = [], []

    def build(clip, tmp: Path) -> None:
        p = prep.prepare(clip)
        if p.n_frames < cfg.model.T:
            raise ClipError(f"{clip.video}: {p.n_frames} frames, a training window needs {cfg.model.T}")
        frames = prep.frames(clip)[: p.n_frames]
        mel = mel_windows(wav2lip_mel(p.audio), p.n_frames, cfg.preprocess.fps)
        arrays = clip_arrays(clip.id, frames[..., ::-1], fill_missing_frames(p.landmarks), wav2vec2_features(w2v, p.audio), mel)
        for k in ARRAY_FIELDS:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(getattr(arrays, k)))

    try:
        for clip in clips:
            try:
                if clip.error:
                    raise ClipError(clip.error)
                key = cache_key("stsa_train", content=[clip.sha256, prep_key(clip, cfg.preprocess), w2v_id],
                                params={"T": cfg.model.T}, version=CLIP_ARRAYS_VERSION)
                folder = entry_dir(cfg.cache_dir, "stsa_train", key)
                if not (folder / "crops.npy").is_file():
                    build_dir_atomically(folder, lambda tmp, clip=clip: build(clip, tmp))
                cached.append(CachedClip(folder, clip.id))
            except (ClipError, ValueError) as exc:
                reason = str(exc) if str(clip.video) in str(exc) else f"{clip.video}: {exc}"
                failed.append(reason.splitlines()[0])
                log(f"left out: {failed[-1]}")
    finally:
        prep.close()
    return cached, failed


# ------------------------------------------------------------------------------------------- networks


def vgg19_file(cfg: TrainRunConfig) -> tuple[Path, str] | None:
    """(path, sha256) of the ImageNet VGG-19 the perceptual loss loads: `vgg19`, or $STSA_BENCH_WEIGHTS /
    the torch hub cache (sha256-prefix checked there). None when the stage takes none (guidance,
    syncnet; finetune without `vgg19`, whose VGG comes with init.renderer) or none is found. Never downloads."""
    from .core.weights import WeightsMissing, resolve

    if cfg.stage not in ("synthesis", "finetune") or (cfg.stage == "finetune" and not cfg.vgg19):
        return None
    try:
        return resolve(VGG19_WEIGHTS, cfg.vgg19)
    except WeightsMissing as exc:
        if cfg.vgg19:
            raise ConfigError(str(exc)) from exc
        return None


def sync_expert(cfg: TrainRunConfig):
    """The Wav2Lip-architecture lip-sync expert: fresh for stage=syncnet, else loaded from `sync_expert`."""
    from baselines.wav2lip_model import SyncNetColor, load_wav2lip

    if cfg.stage == "syncnet":
        return SyncNetColor()
    if cfg.stage == "guidance" or not cfg.ablation.sync_loss or cfg.weights.sync == 0:
        return None
    if not cfg.sync_expert:
        raise ConfigError(
            "sync_expert is not set: the lip-sync expert for L_sync (Wav2Lip lipsync_expert.pth, or "
            "<out>/export/lipsync_expert.pth of stage=syncnet); or ablation.sync_loss=false"
        )
    if not Path(cfg.sync_expert).expanduser().is_file():
        raise ConfigError(f"sync_expert={cfg.sync_expert}: no such file")
    return load_wav2lip(Path(cfg.sync_expert).expanduser(), model=SyncNetColor())


def input_hashes(cfg: TrainRunConfig, vgg: tuple[Path, str] | None) -> dict[str, str]:
    """sha256 of every weights file the run reads (expert, VGG-19, fine-tuning init)."""
    from .core.paths import sha256_file

    given = {"sync_expert": cfg.sync_expert, "init.heatmap": cfg.init.heatmap, "init.renderer": cfg.init.renderer}
    hashes = {k: sha256_file(Path(v).expanduser()) for k, v in given.items() if v and Path(v).expanduser().is_file()}
    return hashes | ({"vgg19": vgg[1]} if vgg else {})


def initialise(task, cfg: TrainRunConfig, vgg: tuple[Path, str] | None) -> None:
    """Load VGG-19 (`vgg19_file`) for the synthesis stages and, for finetune, the guidance and renderer weights."""
    import torch

    from stsa.guidance import _strip_prefix
    from stsa.renderer import split_official_state_dict

    if cfg.stage not in ("synthesis", "finetune"):
        return
    gen = task.models["generator"]
    if cfg.stage == "finetune":
        for key in ("heatmap", "renderer"):
            if not getattr(cfg.init, key):
                raise ConfigError(f"init.{key} is not set: stage=finetune starts from trained guidance and renderer weights")
        heat = torch.load(Path(cfg.init.heatmap).expanduser(), map_location="cpu", weights_only=True)
        gen.guidance.net.load_state_dict(_strip_prefix(heat.get("state_dict", heat)))
        keypoints = Path(cfg.init.heatmap).expanduser().with_name("keypoint_extractor.pth")
        if keypoints.is_file():
            gen.guidance.keypoints.load_state_dict(torch.load(keypoints, map_location="cpu", weights_only=True)["state_dict"])
        face = torch.load(Path(cfg.init.renderer).expanduser(), map_location="cpu", weights_only=True)
        rend, perceptual = split_official_state_dict(face.get("state_dict", face))
        gen.renderer.load_state_dict({**rend, **perceptual}, strict=True)
        if cfg.vgg19 is None:
            return
    if vgg is None and not cfg.random_vgg:
        raise ConfigError(
            f"no VGG-19 weights for the perceptual loss: set vgg19=PATH (torchvision {VGG19_FILE}), or "
            f"{VGG19_WEIGHTS.where().replace('weights.vgg19', 'vgg19')}; random_vgg=true trains with random VGG weights (tests only)"
        )
    if vgg is not None:
        state = torch.load(vgg[0], map_location="cpu", weights_only=True)
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        gen.renderer.perceptual.model.network.load_state_dict(features)


# ----------------------------------------------------------------------------------------------- run


@dataclass
class TrainOutcome:
    out: Path
    rank: int
    step: int
    history: list[dict]
    exported: dict[str, Path]
    failed: list[str]
    summary: dict
    steps: int = 0


def save_config(cfg: TrainRunConfig) -> None:
    """Write <out>/config.json once; a resumed run must match it except for RESUME_FREE_KEYS."""

    def fixed(r):
        r = json.loads(canonical_json(r))
        r.pop("stop_at", None)
        r.pop("out", None)
        for k in RESUME_FREE_KEYS:
            r.get("train", {}).pop(k, None)
        return r

    path = cfg.out / "config.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if fixed(before) != fixed(cfg.resolved):
            raise ConfigError(f"{cfg.out} holds a run with another config ({path}); use a new out=DIR or the same settings")
        return
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(json.loads(canonical_json(cfg.resolved)), indent=1))


def run_training(cfg: TrainRunConfig, log: Log = print) -> TrainOutcome:
    import torch

    from stsa.training.data import WindowDataset
    from stsa.training.engine import Engine, peak_memory_mb
    from stsa.training.tasks import TaskSpec, build_task

    from .core.provenance import git_sha

    if cfg.stage == "syncnet" and cfg.options.batch_size < 2:
        raise ConfigError("stage=syncnet needs train.batch_size >= 2 (BatchNorm over windows)")
    save_config(cfg)
    torch.manual_seed(cfg.options.seed)
    task = build_task(TaskSpec(cfg.stage, cfg.model.slim, cfg.weights, cfg.ablation, cfg.model.disc_width), sync_expert(cfg))
    vgg = vgg19_file(cfg)
    if not (cfg.out / "last.pt").is_file():
        initialise(task, cfg, vgg)
    arrays, failed = load_clip_arrays(cfg, log)
    if not arrays:
        raise ConfigError(f"no usable training clips in suite {cfg.suite!r} ({len(failed)} left out)")
    log(f"training data: {len(arrays)} clips, {sum(len(a) for a in arrays)} frames ({len(failed)} left out)")
    dataset = WindowDataset(arrays, cfg.model.T, cfg.model.n_refs, seed=cfg.options.seed, pool=cfg.samples)
    engine = Engine(task, dataset, cfg.options, cfg.out, log)
    t0 = time.perf_counter()
    history = engine.fit(cfg.stop_at)
    seconds = time.perf_counter() - t0
    exported = engine.export() if engine.step >= cfg.options.steps else {}
    rates = [h["samples_per_s"] for h in history[1:]] or [h["samples_per_s"] for h in history]
    summary = {
        "stage": cfg.stage,
        "step": engine.step,
        "steps_this_run": len(history),
        "seconds": round(seconds, 2),
        "samples_per_s": round(sum(rates) / len(rates), 3) if rates else None,
        "peak_memory_mb": round(peak_memory_mb(engine.device), 1),
        "device": str(engine.device),
        "batch_size": cfg.options.batch_size,
        "precision": cfg.options.precision,
        "compile": cfg.options.compile,
        "clips": len(arrays),
        "clips_left_out": failed,
        "git_sha": git_sha(),
        "config_hash": config_hash(cfg.resolved),
        "weights_sha256": input_hashes(cfg, vgg),
        "exported": {k: str(v) for k, v in exported.items()},
    }
    if engine.rank == 0:
        atomic_write_text(cfg.out / "summary.json", json.dumps(summary, indent=1))

    return TrainOutcome(cfg.out, engine.rank, engine.step, history, exported, failed, summary, cfg.options.steps)


def describe(outcome: TrainOutcome) -> str:
    s = outcome.summary
    finished = s["step"] >= outcome.steps
    done = f"exported {', '.join(s['exported'])} to {outcome.out / 'export'}" if finished else "not finished: run again to resume"
    return (
        f"{s['stage']}: step {s['step']} ({s['steps_this_run']} this run, {s['samples_per_s']} samples/s, "
        f"peak {s['peak_memory_mb']} MiB on {s['device']}); {done}; {len(s['clips_left_out'])} clips left out"
    )

