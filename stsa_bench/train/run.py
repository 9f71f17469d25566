"""`stsa-bench train`'s run: the output folder's config.json (resume check), the training itself
(`stsa.training.engine.Engine` on the cached clip arrays), summary.json and the one-line description."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.config import config_hash
from ..core.errors import ConfigError
from ..core.paths import atomic_write_text, canonical_json
from .config import TrainRunConfig
from .data import load_clip_arrays
from .init import initialise, input_hashes, sync_expert, vgg19_file

Log = Callable[[str], None]

RESUME_FREE_KEYS = ("steps", "progress", "tensorboard", "workers", "log_every")
"""train.* keys that may change between a run and its resumption."""


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

    from ..core.provenance import git_sha

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
