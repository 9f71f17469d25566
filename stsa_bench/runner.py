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
from typing import Callable, Iterator

from .core.config import UNHASHED_KEYS, RunConfig, flatten
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
            a = {k: v for k, v in flatten(prev["config"]).items() if k.split(".")[0] not in UNHASHED_KEYS}
            b = {k: v for k, v in flatten(cfg.resolved).items() if k.split(".")[0] not in UNHASHED_KEYS}
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


def run(cfg: RunConfig, log: Log = _stderr) -> RunOutcome:
    METHODS.check([cfg.method_of(m) for m in cfg.methods])
    METRICS.check(cfg.metrics)
    clips = load_suite(suite_context(cfg))
    report_unavailable(cfg.suite, clips, log)

    from baselines import build_method
    from baselines.base import MethodEnv
    from metrics import build_metric
    from metrics.base import options_key

    from .core.preprocess import Preprocessor

    env = MethodEnv(cfg.runtime.device, cfg.weights, cfg.out, cfg.seed)
    methods = {name: build_method(cfg.method_of(name), cfg.options_for(name), env, label=name) for name in cfg.methods}
    crop_tag = cfg.preprocess.crop_tag()
    metrics = [
        build_metric(n, crop_tag, cfg.runtime.device, cfg.options_for(options_key(n)), cfg.weights, cfg.cache_dir)
        for n in cfg.metrics
    ]

    out = cfg.out
    init_run_dir(out, cfg)
    manifest = out / "manifest.json"
    if not manifest.is_file():
        listing = {c.id: {"video": str(c.video), "audio": str(c.audio) if c.audio else None, "sha256": c.sha256, "error": c.error} for c in clips}
        atomic_write_text(manifest, json.dumps({"suite": cfg.suite, "manifest_hash": manifest_hash(clips), "clips": listing}, indent=1))

    results = out / "results.jsonl"
    kept = [r for r in read_rows(results) if r.status == "ok" or not cfg.runtime.retry_failed]
    rewrite_rows(results, kept)
    done = {r.key for r in kept}

    base = dict(
        suite=cfg.suite, config_hash=cfg.config_hash, git_sha=git_sha(), seed=cfg.seed, harness_version=harness_version()
    )
    prep = Preprocessor(cfg.preprocess, cfg.cache_dir)
    errors_log = out / "errors.log"
    partials = Partials(out)

    def is_done(clip: Clip, method: str, metric) -> bool:
        if (cfg.suite, clip.id, method, metric.id) in done:
            return True
        return metric.pooled and partials.has(method, metric, clip)

    n_new = n_failed = 0

    def row(clip: Clip, method: str, metric, value=None, n_frames=None, error=None, note=None) -> ResultRow:
        m = methods.get(method)
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
            **base,
        )

    def reason(exc: BaseException, clip: Clip) -> str:
        if not isinstance(exc, ClipError):
            with open(errors_log, "a", encoding="utf-8") as f:
                f.write(f"--- {clip.id} ({clip.video})\n{traceback.format_exc()}\n")
            return f"{clip.video}: {one_line(exc)}"
        return one_line(exc)

    from tqdm import tqdm

    bar = tqdm(clips, desc=f"run {cfg.suite}", unit="clip", disable=None if cfg.runtime.progress else True, file=sys.stderr)
    try:
        for clip in bar:
            todo = {m: [x for x in metrics if not is_done(clip, m, x)] for m in methods}
            todo = {m: xs for m, xs in todo.items() if xs}
            if not todo:
                continue
            try:
                prepared = prep.prepare(clip)
                frames = prep.frames(clip)
            except Exception as exc:  # noqa: BLE001 - any bad input becomes rows
                why = reason(exc, clip)
                rows = [row(clip, m, x, error=why) for m, xs in todo.items() for x in xs]
                append_rows(results, rows)
                n_new, n_failed = n_new + len(rows), n_failed + len(rows)
                bar.set_postfix(failed=n_failed, refresh=False)
                continue
            for rows in evaluate_clip(clip, prepared, frames, methods, todo, cfg, row, reason, prep, partials):
                append_rows(results, rows)
                n_new += len(rows)
                n_failed += sum(r.status == "failed" for r in rows)
            bar.set_postfix(failed=n_failed, refresh=False)
    finally:
        bar.close()
        prep.close()

    pooled_rows = finish_pooled(cfg, clips, methods, [x for x in metrics if x.pooled], partials, results, row, log)
    n_new += pooled_rows
    ids = {x.id for x in metrics}
    rows = [r for r in read_rows(results) if r.method in methods and r.metric in ids]
    from reports.summary import summary_markdown

    directions = {x.name: x.higher_is_better for x in metrics}
    summary = summary_markdown(rows, directions)
    header = f"# stsa-bench: {cfg.suite}\n\nconfig {cfg.config_hash} · git {git_sha()} · {len({r.clip for r in rows} - {POOLED_CLIP})} clips\n\n"
    atomic_write_text(out / "summary.md", header + summary)
    return RunOutcome(out=out, rows=rows, summary=header + summary, n_new=n_new)


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


def finish_pooled(cfg: RunConfig, clips: list[Clip], methods, pooled, partials: Partials, results: Path, row, log: Log) -> int:
    """One row per (method, pooled metric) from the saved partials; recomputed when the clip set changed."""
    existing = {r.key: r for r in read_rows(results)}
    new = []
    for metric in pooled:
        for method in methods:
            have = [c for c in clips if partials.has(method, metric, c)]
            signature = f"{len(have)} clips: " + ",".join(sorted(c.sha256[:8] for c in have))
            key = (cfg.suite, POOLED_CLIP, method, metric.id)
            prev = existing.get(key)
            if prev is not None and prev.clip_sha256 == _digest(signature):
                continue
            pseudo = Clip(POOLED_CLIP, Path(cfg.suite), sha256=_digest(signature))
            if not have:
                new.append(row(pseudo, method, metric, error=f"no clip could be scored for {metric.name} ({method})"))
                continue
            try:
                metric.reset()
                for c in have:
                    metric.merge(partials.load(method, metric, c))
                value = metric.compute()
                new.append(row(pseudo, method, metric, value=value, n_frames=metric.count, note=metric.note))
            except Exception as exc:  # noqa: BLE001
                new.append(row(pseudo, method, metric, error=f"{metric.name} over {len(have)} clips: {one_line(exc)}"))
    append_rows(results, new)
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


def evaluate_clip(clip, prepared, frames, methods, todo, cfg: RunConfig, row, reason, prep, partials) -> Iterator[list[ResultRow]]:
    """Per method, generate and feed its pending metrics one EvalPair; yield its rows.

    Pooled metrics save a partial state per clip instead of a row (failures still get a row).
    """
    from baselines import Sample
    from metrics.base import EvalPair

    from .core.preprocess import crop_faces

    pp = cfg.preprocess
    sample = Sample(clip.id, frames, prepared.audio, pp.fps, pp.sample_rate, prepared.landmarks, prepared.boxes, clip.sha256)
    batch = max(1, cfg.runtime.batch_size)
    for name, pending in todo.items():
        method = methods[name]
        try:
            gen = method.generate(sample)
            if gen.frames.shape != frames.shape:
                raise ClipError(
                    f"{clip.video}: method {name} returned frames of shape {tuple(gen.frames.shape)}, expected {tuple(frames.shape)}"
                )
            gen_crops = prepared.crops if gen.frames is frames else crop_faces(gen.frames, prepared.boxes, pp.crop_size)
            pair = EvalPair(
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
                detect=prep.detect,
                clip_sha256=clip.sha256,
            )
            save_strip(cfg.out, name, clip, gen_crops)
            if not (strip_path(cfg.out, GT_STRIP, clip)).is_file():
                save_strip(cfg.out, GT_STRIP, clip, prepared.crops)
            if cfg.runtime.save_videos:
                from .core.media import write_video

                write_video(cfg.out / "videos" / name / f"{clip.id}.mp4", gen.frames, pp.fps, gen.audio, pp.sample_rate, lossless=False)
        except Exception as exc:  # noqa: BLE001
            why = reason(exc, clip)
            yield [row(clip, name, x, error=why) for x in pending]
            continue
        rows = []
        for metric in pending:
            try:
                metric.reset()
                metric.update_pair(pair, batch)
                if metric.pooled:
                    partials.save(name, metric, clip, metric.state())
                    continue
                value = metric.compute()
                if not math.isfinite(value):
                    raise ClipError(f"{clip.video}: {metric.name} is not finite ({value})")
                note = "; ".join(x for x in (gen.note, metric.note) if x) or None
                rows.append(row(clip, name, metric, value=value, n_frames=pair.n_frames, note=note))
            except Exception as exc:  # noqa: BLE001
                rows.append(row(clip, name, metric, n_frames=pair.n_frames, error=reason(exc, clip)))
        yield rows
