"""The run loop: clips x methods x metrics -> typed rows in `<out>/results.jsonl`.

Resumable: rows are appended (one write + fsync per clip and method); a new invocation
with the same config skips every (clip, method, metric) that already has a row. Bad input
never stops the run: it becomes `failed` rows with a one-line reason naming the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .core.config import RESUME_FREE_KEYS, RunConfig, flatten
from .core.errors import ClipError, ConfigError, one_line
from .core.paths import atomic_write_bytes, atomic_write_text
from .core.provenance import git_sha, harness_version
from .core.registry import METHODS, METRICS
from .core.results import POOLED_CLIP, ResultRow, append_rows, read_rows, rewrite_rows
from .core.suites import Clip, SuiteContext, load_suite, manifest_hash

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RunOutcome:
    out: Path
    rows: list[ResultRow]
    summary: str
    n_new: int

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.rows)


def suite_context(cfg: RunConfig) -> SuiteContext:
    return SuiteContext(cfg.suite, cfg.suite_options, cfg.data, cfg.cache_dir, cfg.runtime.refreeze)


def report_unavailable(suite: str, clips: list[Clip], log: Log) -> None:
    bad = [c for c in clips if c.error]
    if bad:
        log(f"{suite}: {len(bad)} of {len(clips)} clips unavailable (they get failed rows):")
        for c in bad:
            log(f"  {c.id}: {c.error}")


def init_run_dir(out: Path, cfg: RunConfig) -> None:
    """Save the resolved config once (read-only); refuse to resume a run made with another config."""
    run_json = out / "run.json"
    if run_json.is_file():
        prev = json.loads(run_json.read_text())
        if prev["config_hash"] != cfg.config_hash:
            a = {k: v for k, v in flatten(prev["config"]).items() if k.split(".")[0] not in RESUME_FREE_KEYS}
            b = {k: v for k, v in flatten(cfg.resolved).items() if k.split(".")[0] not in RESUME_FREE_KEYS}
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError(
                f"{out} holds a run made with another config (hash {prev['config_hash']}, now {cfg.config_hash}; "
                f"differs in {', '.join(diff[:8])}); use another --out"
            )
        return
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.yaml"
    atomic_write_text(cfg_path, OmegaConf.to_yaml(OmegaConf.create(dict(cfg.resolved))))
    os.chmod(cfg_path, 0o444)
    info = {
        "config_hash": cfg.config_hash,
        "git_sha": git_sha(),
        "harness_version": harness_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": dict(cfg.resolved),
    }
    atomic_write_text(run_json, json.dumps(info, indent=1))


@dataclass
class RunParts:
    """What every stage of one run shares: its config, plugins, preprocessing, outputs and row factory."""

    cfg: RunConfig
    methods: dict[str, Any]
    metrics: list[Any]
    prep: Any
    partials: "Partials"
    rows: "RowFactory"
    results: Path

    @property
    def out(self) -> Path:
        return self.cfg.out


class RowFactory:
    """Result rows carrying the run's provenance and each metric's direction and display group."""

    def __init__(self, cfg: RunConfig, methods: dict[str, Any]):
        self.methods = methods
        self.errors_log = cfg.out / "errors.log"
        self.base = dict(
            suite=cfg.suite, config_hash=cfg.config_hash, git_sha=git_sha(), seed=cfg.seed, harness_version=harness_version()
        )

    def make(self, clip: Clip, method: str, metric, value=None, n_frames=None, error=None, note=None) -> ResultRow:
        m = self.methods.get(method)
        return ResultRow(
            method_version=getattr(m, "version", None),
            method_weights_sha=getattr(m, "weights_sha", None),
            clip=clip.id,
            method=method,
            metric=metric.id,
            value=value,
            n_frames=n_frames,
            status="failed" if error else "ok",
            error=error,
            weights_sha=metric.weights_sha256,
            clip_sha256=clip.sha256,
            time=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            note=note,
            higher_is_better=metric.higher_is_better,
            group=metric.group,
            **self.base,
        )

    def failed(self, clip: Clip, work: dict[str, list], why: str) -> list[ResultRow]:
        return [self.make(clip, m, x, error=why) for m, xs in work.items() for x in xs]

    def reason(self, exc: BaseException, clip: Clip) -> str:
        """One line naming the file; unexpected errors also leave their traceback in errors.log."""
        if isinstance(exc, ClipError):
            return one_line(exc)
        with open(self.errors_log, "a", encoding="utf-8") as f:
            f.write(f"--- {clip.id} ({clip.video})\n{traceback.format_exc()}\n")
        return f"{clip.video}: {one_line(exc)}"


def build_parts(cfg: RunConfig) -> RunParts:
    """Methods and metrics built from the config; the run folder initialised; finished rows kept."""
    from baselines import build_method
    from baselines.base import MethodEnv
    from metrics import build_metric
    from metrics.base import options_key

    from .core.preprocess import Preprocessor

    env = MethodEnv(cfg.runtime.device, cfg.weights, cfg.out, cfg.seed)
    methods = {name: build_method(cfg.method_of(name), cfg.options_for(name), env, label=name) for name in cfg.methods}
    crop_tag, decode_tag = cfg.preprocess.crop_tag(), cfg.preprocess.decode_tag()
    metrics = [
        build_metric(n, crop_tag, cfg.runtime.device, cfg.options_for(options_key(n)), cfg.weights, cfg.cache_dir, decode_tag)
        for n in cfg.metrics
    ]
    return RunParts(cfg, methods, metrics, Preprocessor(cfg.preprocess, cfg.cache_dir), Partials(cfg.out), RowFactory(cfg, methods), cfg.out / "results.jsonl")


def write_manifest(out: Path, suite: str, clips: list[Clip]) -> None:
    manifest = out / "manifest.json"
    if not manifest.is_file():
        listing = {c.id: {"video": str(c.video), "audio": str(c.audio) if c.audio else None, "sha256": c.sha256, "error": c.error} for c in clips}
        atomic_write_text(manifest, json.dumps({"suite": suite, "manifest_hash": manifest_hash(clips), "clips": listing}, indent=1))


def finished_keys(parts: RunParts) -> set[tuple]:
    """Keys of the rows already written (failed ones dropped first under runtime.retry_failed)."""
    kept = [r for r in read_rows(parts.results) if r.status == "ok" or not parts.cfg.runtime.retry_failed]
    rewrite_rows(parts.results, kept)
    return {r.key for r in kept}


def pending_work(parts: RunParts, clip: Clip, done: set[tuple]) -> dict[str, list]:
    """{method: metrics without a row (or, for pooled metrics, without a saved partial) for this clip}."""
    work = {}
    for method in parts.methods:
        todo = [
            x
            for x in parts.metrics
            if (parts.cfg.suite, clip.id, method, x.id) not in done and not (x.pooled and parts.partials.has(method, x, clip))
        ]
        if todo:
            work[method] = todo
    return work


def run(cfg: RunConfig, log: Log = _stderr) -> RunOutcome:
    """Every clip through the stages: prepare -> generate per method -> score -> rows; then pooled rows and the summary."""
    METHODS.check([cfg.method_of(m) for m in cfg.methods])
    METRICS.check(cfg.metrics)
    clips = load_suite(suite_context(cfg))
    report_unavailable(cfg.suite, clips, log)
    parts = build_parts(cfg)
    init_run_dir(cfg.out, cfg)
    write_manifest(cfg.out, cfg.suite, clips)
    done = finished_keys(parts)

    from tqdm import tqdm

    n_new = n_failed = 0
    bar = tqdm(clips, desc=f"run {cfg.suite}", unit="clip", disable=None if cfg.runtime.progress else True, file=sys.stderr)
    try:
        for clip in bar:
            work = pending_work(parts, clip, done)
            if not work:
                continue
            for rows in evaluate_clip(parts, clip, work):
                append_rows(parts.results, rows)
                n_new += len(rows)
                n_failed += sum(r.status == "failed" for r in rows)
            bar.set_postfix(failed=n_failed, refresh=False)
    finally:
        bar.close()
        parts.prep.close()

    n_new += finish_pooled(parts, clips)
    return write_summary(parts, n_new)


def write_summary(parts: RunParts, n_new: int) -> RunOutcome:
    from reports.summary import summary_markdown

    cfg = parts.cfg
    ids = {x.id for x in parts.metrics}
    rows = [r for r in read_rows(parts.results) if r.method in parts.methods and r.metric in ids]
    summary = summary_markdown(rows, {x.name: x.higher_is_better for x in parts.metrics})
    n_clips = len({r.clip for r in rows} - {POOLED_CLIP})
    header = f"# stsa-bench: {cfg.suite}\n\nconfig {cfg.config_hash} · git {git_sha()} · {n_clips} clips\n\n"
    atomic_write_text(cfg.out / "summary.md", header + summary)
    return RunOutcome(out=cfg.out, rows=rows, summary=header + summary, n_new=n_new)


class Partials:
    """Per-clip partial states of pooled metrics: `<out>/partials/<method>/<metric-key>/<clip-sha>.npz`."""

    def __init__(self, out: Path):
        self.root = out / "partials"

    def path(self, method: str, metric, clip: Clip) -> Path:
        from .core.paths import cache_key

        return self.root / method / cache_key("metric-id", params=metric.id)[:16] / f"{clip.sha256}.npz"

    def has(self, method: str, metric, clip: Clip) -> bool:
        return bool(clip.sha256) and self.path(method, metric, clip).is_file()

    def save(self, method: str, metric, clip: Clip, state: dict) -> None:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **state)
        atomic_write_bytes(self.path(method, metric, clip), buf.getvalue())

    def load(self, method: str, metric, clip: Clip) -> dict:
        import numpy as np

        with np.load(self.path(method, metric, clip)) as z:
            return {k: z[k] for k in z.files}


def finish_pooled(parts: RunParts, clips: list[Clip]) -> int:
    """One row per (method, pooled metric) from the saved partials; recomputed when the clip set changed."""
    existing = {r.key: r for r in read_rows(parts.results)}
    suite, new = parts.cfg.suite, []
    for metric in (x for x in parts.metrics if x.pooled):
        for method in parts.methods:
            have = [c for c in clips if parts.partials.has(method, metric, c)]
            signature = f"{len(have)} clips: " + ",".join(sorted(c.sha256[:8] for c in have))
            prev = existing.get((suite, POOLED_CLIP, method, metric.id))
            if prev is not None and prev.clip_sha256 == _digest(signature):
                continue
            pseudo = Clip(POOLED_CLIP, Path(suite), sha256=_digest(signature))
            if not have:
                new.append(parts.rows.make(pseudo, method, metric, error=f"no clip could be scored for {metric.name} ({method})"))
                continue
            try:
                metric.reset()
                for c in have:
                    metric.merge(parts.partials.load(method, metric, c))
                value = metric.compute()
                new.append(parts.rows.make(pseudo, method, metric, value=value, n_frames=metric.count, note=metric.note))
            except Exception as exc:  # noqa: BLE001
                new.append(parts.rows.make(pseudo, method, metric, error=f"{metric.name} over {len(have)} clips: {one_line(exc)}"))
    append_rows(parts.results, new)
    return len(new)


def _digest(text: str) -> str:
    from .core.paths import sha256_bytes

    return sha256_bytes(text.encode())


GT_STRIP = "_ground_truth"
STRIP_FRAMES = 4


def strip_path(out: Path, method: str, clip: Clip) -> Path:
    return out / "strips" / method / (clip.id.replace("/", "__") + ".png")


def save_strip(out: Path, method: str, clip: Clip, crops) -> None:
    """A PNG of the mouth region (rows 60%-95%, columns 20%-80% of the face crop, zoomed 2x) of
    STRIP_FRAMES evenly spaced frames, for the report's frame strips."""
    import cv2
    import numpy as np

    n, s = len(crops), crops.shape[1]
    idx = np.linspace(0, n - 1, min(STRIP_FRAMES, n)).round().astype(int)
    y0, y1, x0, x1 = int(0.6 * s), int(0.95 * s), int(0.2 * s), int(0.8 * s)
    tiles = [cv2.resize(crops[i, y0:y1, x0:x1], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for i in idx]
    ok, png = cv2.imencode(".png", cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(strip_path(out, method, clip), png.tobytes())


def evaluate_clip(parts: RunParts, clip: Clip, work: dict[str, list]) -> Iterator[list[ResultRow]]:
    """One clip: prepare it once, then per method generate, build the EvalPair and score; yields rows per method."""
    try:
        prepared, frames = parts.prep.prepare(clip), parts.prep.frames(clip)
    except Exception as exc:  # noqa: BLE001 - any bad input becomes rows
        yield parts.rows.failed(clip, work, parts.rows.reason(exc, clip))
        return
    sample = make_sample(parts.cfg, clip, prepared, frames)
    for name, pending in work.items():
        try:
            pair = generate_pair(parts, clip, prepared, sample, name)
        except Exception as exc:  # noqa: BLE001
            yield parts.rows.failed(clip, {name: pending}, parts.rows.reason(exc, clip))
            continue
        yield score(parts, clip, pair, pending)


def make_sample(cfg: RunConfig, clip: Clip, prepared, frames):
    from baselines import Sample

    pp = cfg.preprocess
    return Sample(clip.id, frames, prepared.audio, pp.fps, pp.sample_rate, prepared.landmarks, prepared.boxes, clip.sha256)


def generate_pair(parts: RunParts, clip: Clip, prepared, sample, name: str):
    """The method's output for this clip as an EvalPair against the ground truth (strips and videos saved)."""
    from metrics.base import EvalPair

    from .core.preprocess import crop_faces

    cfg, frames = parts.cfg, sample.frames
    gen = parts.methods[name].generate(sample)
    if gen.frames.shape != frames.shape:
        raise ClipError(f"{clip.video}: method {name} returned frames of shape {tuple(gen.frames.shape)}, expected {tuple(frames.shape)}")
    pp = cfg.preprocess
    gen_crops = prepared.crops if gen.frames is frames else crop_faces(gen.frames, prepared.boxes, pp.crop_size)
    save_strip(cfg.out, name, clip, gen_crops)
    if not strip_path(cfg.out, GT_STRIP, clip).is_file():
        save_strip(cfg.out, GT_STRIP, clip, prepared.crops)
    if cfg.runtime.save_videos:
        from .core.media import write_video

        write_video(cfg.out / "videos" / name / f"{clip.id}.mp4", gen.frames, pp.fps, gen.audio, pp.sample_rate, lossless=False)
    return EvalPair(
        clip_id=clip.id,
        video=clip.video,
        method=name,
        fps=pp.fps,
        sample_rate=pp.sample_rate,
        pred_frames=gen.frames,
        gt_frames=frames,
        pred_audio=gen.audio,
        gt_audio=prepared.audio,
        audio_valid=min(len(prepared.audio), int(round(prepared.meta["audio_s"] * pp.sample_rate))),
        pred_crops=gen_crops,
        gt_crops=prepared.crops,
        boxes=prepared.boxes,
        gt_landmarks=prepared.landmarks,
        gt_has_face=prepared.has_face,
        detect=parts.prep.detect,
        clip_sha256=clip.sha256,
        batch_size=max(1, cfg.runtime.batch_size),
        memo={"method_note": gen.note},
    )


def score(parts: RunParts, clip: Clip, pair, pending: list) -> list[ResultRow]:
    """Each pending metric fed the pair: a row per per-clip metric, a saved partial per pooled one."""
    rows = []
    for metric in pending:
        try:
            metric.reset()
            metric.update_pair(pair)
            if metric.pooled:
                parts.partials.save(pair.method, metric, clip, metric.state())
                continue
            value = metric.compute()
            if not math.isfinite(value):
                raise ClipError(f"{clip.video}: {metric.name} is not finite ({value})")
            note = "; ".join(x for x in (pair.memo.get("method_note"), metric.note) if x) or None
            rows.append(parts.rows.make(clip, pair.method, metric, value=value, n_frames=pair.n_frames, note=note))
        except Exception as exc:  # noqa: BLE001
            rows.append(parts.rows.make(clip, pair.method, metric, n_frames=pair.n_frames, error=parts.rows.reason(exc, clip)))
    return rows
