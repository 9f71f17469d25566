"""One clip through the run's stages: prepare -> generate per method -> one pass over the generated
frames (crops, saved video, what metrics read from full frames) -> metric updates -> rows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .core.config import RunConfig
from .core.errors import ClipError
from .core.layout import GT_STRIP, strip_path
from .core.results import ResultRow
from .core.suites import Clip
from .run_files import save_strip

if TYPE_CHECKING:
    from .runner import RunParts


def evaluate_clip(parts: RunParts, clip: Clip, work: dict[str, list]) -> Iterator[list[ResultRow]]:
    """One clip: prepare it once, then per method generate, build the EvalPair and score; yields rows per method."""
    try:
        prepared, frames = parts.prep.prepare_with_frames(clip)
    except Exception as exc:  # noqa: BLE001 - any bad input becomes rows
        yield parts.rows.failed(clip, work, parts.rows.reason(exc, clip))
        return
    sample = make_sample(parts.cfg, clip, prepared, frames)
    gt_memo: dict = {}
    for name, pending in work.items():
        try:
            pair = generate_pair(parts, clip, prepared, sample, name, gt_memo, pending)
        except Exception as exc:  # noqa: BLE001
            yield parts.rows.failed(clip, {name: pending}, parts.rows.reason(exc, clip))
            continue
        rows = score(parts, clip, pair, pending)
        del pair
        yield rows


def make_sample(cfg: RunConfig, clip: Clip, prepared, frames):
    from baselines import Sample

    pp = cfg.preprocess
    return Sample(clip.id, frames, prepared.audio, pp.fps, pp.sample_rate, prepared.landmarks, prepared.boxes, clip.sha256,
                  prepared.meta.get("src_fps"), pp.fps_mode)  # fmt: skip


def generate_pair(parts: RunParts, clip: Clip, prepared, sample, name: str, gt_memo: dict | None = None, pending: list = ()):
    """The method's output for this clip as an EvalPair against the ground truth (strips and videos saved);
    `gt_memo` carries the metrics' ground-truth-only work from one method's pair to the next."""
    from metrics.base import EvalPair

    from .core.frames import as_frames

    cfg, frames, timer = parts.cfg, sample.frames, parts.timer
    with timer.stage(f"generate/{name}"):
        gen = parts.methods[name].generate(sample)
    pred = as_frames(gen.frames)
    if pred.shape != frames.shape:
        raise ClipError(f"{clip.video}: method {name} returned frames of shape {tuple(pred.shape)}, expected {tuple(frames.shape)}")
    pp = cfg.preprocess
    pair = EvalPair(
        clip_id=clip.id,
        video=clip.video,
        method=name,
        fps=pp.fps,
        sample_rate=pp.sample_rate,
        pred_frames=pred,
        gt_frames=frames,
        pred_audio=gen.audio,
        gt_audio=prepared.audio,
        audio_valid=min(len(prepared.audio), int(round(prepared.meta["audio_s"] * pp.sample_rate))),
        pred_crops=prepared.crops,
        gt_crops=prepared.crops,
        boxes=prepared.boxes,
        gt_landmarks=prepared.landmarks,
        gt_has_face=prepared.has_face,
        detect=parts.prep.detect,
        clip_sha256=clip.sha256,
        fps_mode=pp.fps_mode,
        batch_size=cfg.runtime.batch_size,
        pred_video=Path(gen.source) if gen.source else None,
        chunk_frames=cfg.runtime.chunk_frames,
        memo={"method_note": gen.note, "clip_note": prepared.note},
        gt_memo={} if gt_memo is None else gt_memo,
        spill=parts.prep.spill,
        memory_bytes=parts.prep.memory_bytes,
    )
    frame_pass(parts, clip, pair, gen.audio, pending)
    with timer.stage("io"):
        save_strip(cfg.out, name, clip, pair.pred_crops)
        if not strip_path(cfg.out, GT_STRIP, clip.id).is_file():
            save_strip(cfg.out, GT_STRIP, clip, prepared.crops)
    return pair


def frame_pass(parts: RunParts, clip: Clip, pair, audio, pending: list) -> None:
    """One pass over the generated frames, `runtime.chunk_frames` at a time: the face crops, the saved video and
    what the pending metrics read from full frames (`frame_features`). Memory holds a chunk, not the clip.
    A feature that fails here is left to its metric, which then fails alone."""
    import numpy as np

    from .core.frames import concatenate, prefetch
    from .core.layout import video_path
    from .core.media import VideoWriter
    from .core.preprocess import crop_faces

    cfg, timer, pp = parts.cfg, parts.timer, parts.cfg.preprocess
    features: dict = {}
    for metric in pending:
        for key, fn in metric.frame_features(pair).items():
            features.setdefault(key, (f"metric/{metric.name}", fn))
    is_gt = pair.pred_frames is pair.gt_frames
    if is_gt and not features and not cfg.runtime.save_videos:
        return
    crops = None if is_gt else pair.empty((pair.n_frames, pp.crop_size, pp.crop_size, 3), np.uint8)
    outs = {key: [] for key in features}
    writer = None
    if cfg.runtime.save_videos:
        writer = VideoWriter(video_path(cfg.out, pair.method, clip.id), pair.pred_frames.width, pair.pred_frames.height,
                             pp.fps, lossless=False, sample_rate=pp.sample_rate)  # fmt: skip
    try:
        chunks = prefetch(pair.pred_frames.chunks(cfg.runtime.chunk_frames), cfg.runtime.prefetch_chunks)
        while True:
            with timer.stage(f"generate/{pair.method}"):
                item = next(chunks, None)
            if item is None:
                break
            start, chunk = item
            if not is_gt:
                with timer.stage("crop"):
                    crops[start : start + len(chunk)] = crop_faces(chunk, pair.boxes[start : start + len(chunk)], pp.crop_size)
            if writer is not None:
                with timer.stage("io"):
                    writer.write(chunk)
            for key in [k for k in outs if k in features]:
                stage, fn = features[key]
                try:
                    with timer.stage(stage):
                        outs[key].append(fn(chunk, start))
                except Exception:  # noqa: BLE001 - the metric computes it again in update_pair and fails with its reason
                    del features[key]
        if writer is not None:
            with timer.stage("io"):
                writer.finish(audio)
    finally:
        if writer is not None:
            writer.close()
    if not is_gt:
        pair.pred_crops = crops
    for key in features:
        pair.features[key] = concatenate(outs[key])


def score(parts: RunParts, clip: Clip, pair, pending: list) -> list[ResultRow]:
    """Each pending metric fed the pair: a row per per-clip metric, a saved partial per pooled one."""
    rows = []
    for metric in pending:
        try:
            with parts.timer.stage(f"metric/{metric.name}"):
                metric.reset()
                metric.update_pair(pair)
            if metric.pooled:
                with parts.timer.stage("io"):
                    parts.partials.save(pair.method, metric, clip, metric.state())
                continue
            value = metric.compute()
            if not math.isfinite(value):
                raise ClipError(f"{clip.video}: {metric.name} is not finite ({value})")
            note = "; ".join(x for x in (pair.memo.get("clip_note"), pair.memo.get("method_note"), metric.note) if x) or None
            rows.append(parts.rows.make(clip, pair.method, metric, value=value, n_frames=pair.n_frames, note=note))
        except Exception as exc:  # noqa: BLE001
            rows.append(parts.rows.make(clip, pair.method, metric, n_frames=pair.n_frames, error=parts.rows.reason(exc, clip)))
    return rows
