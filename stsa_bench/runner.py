"""The run loop: clips x methods x metrics -> typed rows in `<out>/results.jsonl`.

Resumable: rows are appended (one write + fsync per clip and method); a new invocation
with the same config skips every (clip, method, metric) that already has a row. Bad input
never stops the run: it becomes `failed` rows with a one-line reason naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.config import RunConfig
from .core.errors import ClipError, ConfigError, disk_full, one_line
from .core.paths import atomic_write_text, file_lock, owner_lock, sweep_stale_temps
from .core.provenance import git_sha, harness_version
from .core.ranks import Rank, current_rank, shard, together
from .core.registry import METHODS, METRICS
from .core.results import POOLED_CLIP, ResultRow, append_rows, metric_directions, read_rows, rewrite_rows, scan_rows
from .core.suites import Clip, SuiteContext, load_suite
from .core.timing import StageTimer
from .run_files import (
    Partials,
    check_out,
    digest,
    init_run_dir,
    merge_timing,
    write_manifest,
    write_timing,
)
from .scoring import evaluate_clip

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RunOutcome:
    out: Path
    rows: list[ResultRow]
    summary: str
    n_new: int
    timing: dict | None = None

    @property
    def n_failed(self) -> int:
        return sum(r.status == "failed" for r in self.rows)


def suite_context(cfg: RunConfig) -> SuiteContext:
    """The suite's inputs; the cache folder must be one this process can write (a ConfigError says so otherwise)."""
    import os

    probe = Path(cfg.cache_dir) / f".write-test-{os.getpid()}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cache_dir {cfg.cache_dir}: not a folder this process can write ({exc.strerror or exc}); "
                          f"give another with cache_dir=DIR or $STSA_BENCH_CACHE") from None  # fmt: skip
    return SuiteContext(cfg.suite, cfg.suite_options, cfg.data, cfg.cache_dir, cfg.runtime.refreeze)


def report_unavailable(suite: str, clips: list[Clip], log: Log) -> None:
    bad = [c for c in clips if c.error]
    if bad:
        log(f"{suite}: {len(bad)} of {len(clips)} clips unavailable (they get failed rows):")
        for c in bad:
            log(f"  {c.id}: {c.error}")


@dataclass
class RunParts:
    """What every stage of one run shares: its config, plugins, preprocessing, outputs and row factory."""

    cfg: RunConfig
    methods: dict[str, Any]
    metrics: list[Any]
    prep: Any
    partials: Partials
    rows: RowFactory
    results: Path
    timer: StageTimer
    rank: Rank = Rank()

    @property
    def out(self) -> Path:
        return self.cfg.out


class RowFactory:
    """Result rows carrying the run's provenance and each metric's direction and display group."""

    def __init__(self, cfg: RunConfig, methods: dict[str, Any]):
        self.methods = methods
        self.method_hashes = {name: cfg.method_config_hash(name) for name in methods}
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
            time=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            note=note,
            higher_is_better=metric.higher_is_better,
            group=metric.group,
            method_config_hash=self.method_hashes.get(method),
            **self.base,
        )

    def failed(self, clip: Clip, work: dict[str, list], why: str) -> list[ResultRow]:
        return [self.make(clip, m, x, error=why) for m, xs in work.items() for x in xs]

    def reason(self, exc: BaseException, clip: Clip) -> str:
        """One line naming the file; unexpected errors also leave their traceback in errors.log. A full disk
        (or quota) is no fault of the clip: it is re-raised, so the run stops with one line instead of turning
        every remaining row into a failure (every file written so far is whole: writes are atomic)."""
        if disk_full(exc):
            raise exc
        if isinstance(exc, ClipError):
            return one_line(exc)
        self.keep_traceback(f"{clip.id} ({clip.video})")
        return f"{clip.video}: {one_line(exc)}"

    def keep_traceback(self, what: str) -> None:
        """The traceback of the exception being handled, appended to errors.log under `what`."""
        with file_lock(self.errors_log), open(self.errors_log, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"--- {what}\n{traceback.format_exc()}\n")


def preprocessor(cfg: RunConfig, timer: StageTimer | None = None):
    """The run's Preprocessor: its protocol, cache, and the runtime's chunk, memory and prefetch settings."""
    from .core.preprocess import Preprocessor

    rt = cfg.runtime
    return Preprocessor(cfg.preprocess, cfg.cache_dir, timer, rt.chunk_frames, rt.frames_in_memory_mb, rt.prefetch_chunks)


def build_parts(cfg: RunConfig, rank: Rank = Rank(), timer: StageTimer | None = None) -> RunParts:
    """Methods and metrics built from the config, on this rank's device; `timer` (new if None) times the run."""
    from baselines import build_method
    from baselines.base import MethodEnv
    from metrics import build_metric
    from metrics.base import options_key


    device = rank.device(cfg.runtime.device)
    env = MethodEnv(device, cfg.weights, cfg.out, cfg.seed)
    methods = {name: build_method(cfg.method_of(name), cfg.options_for(name), env, label=name) for name in cfg.methods}
    crop_tag, decode_tag = cfg.preprocess.crop_tag(), cfg.preprocess.decode_tag()
    metrics = [
        build_metric(n, crop_tag, device, cfg.options_for(options_key(n)), cfg.weights, cfg.cache_dir, decode_tag)
        for n in cfg.metrics
    ]
    timer = timer or StageTimer()
    prep = preprocessor(cfg, timer)
    return RunParts(cfg, methods, metrics, prep, Partials(cfg.out), RowFactory(cfg, methods), cfg.out / "results.jsonl", timer, rank)


def finished_keys(parts: RunParts, log: Log = _stderr) -> set[tuple]:
    """Keys of the rows already written (failed ones dropped first under runtime.retry_failed). Lines that
    are not rows (a write cut off by a kill, a hand edit) are dropped from the file, and the log says which."""
    rows, bad = scan_rows(parts.results)
    kept = [r for r in rows if r.status == "ok" or not parts.cfg.runtime.retry_failed]
    if bad:
        lines = ", ".join(f"{b.number} ({b.reason})" for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        log(f"{parts.results}: dropped {len(bad)} lines that are not rows: line {lines}; their rows are computed again")
    if bad or len(kept) != len(rows):
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


def log_reuse(parts: RunParts, clips: list[Clip], done: set[tuple], log: Log) -> None:
    """One line when the folder already holds rows of this run: how many are reused, how many remain."""
    ids = {x.id for x in parts.metrics}
    reused = sum(1 for k in done if k[2] in parts.methods and k[3] in ids)
    if not reused:
        return
    todo = sum(len(xs) for c in clips for xs in pending_work(parts, c, done).values())
    log(f"{parts.out}: {reused} rows reused; {todo} (clip, method, metric) to compute")


def generate_ahead(parts: RunParts, clips: list[Clip], done: set[tuple], log: Log = _stderr) -> None:
    """Methods that generate many clips in one call (`batched`: one model load per run) get every clip they
    still have to score first; a clip that cannot be prepared is left to the per-clip loop, which reports it,
    and so is every clip of a batch that fails. The samples' frames are decoded only when read: not at all
    for a clip whose output the method already has."""
    from .scoring import make_sample

    for name, method in parts.methods.items():
        todo = [c for c in clips if not c.error and name in pending_work(parts, c, done)]
        if not getattr(method, "batched", False) or len(todo) < 2:
            continue

        def samples():
            for clip in todo:
                try:
                    prepared, frames = parts.prep.prepare_with_frames(clip, lazy=True)
                except Exception:  # noqa: BLE001 - the per-clip loop turns it into rows
                    continue
                yield make_sample(parts.cfg, clip, prepared, frames)

        try:
            with parts.timer.stage(f"generate/{name}"):
                method.generate_batch(samples())
        except Exception as exc:  # noqa: BLE001
            if disk_full(exc):
                raise
            if not isinstance(exc, ClipError):
                parts.rows.keep_traceback(f"batch of {name}")
            log(f"{name}: its batch failed ({one_line(exc)}); each clip without an output is generated alone")


def my_clips(clips: list[Clip], rank: Rank, fps: int) -> list[Clip]:
    """This rank's clips: all of them, or its share balanced by frame count (see ranks.shard)."""
    if not rank.sharded:
        return clips
    from .core.media import probe_frames

    cost = {c.id: 0 if c.error else probe_frames(c.video, fps) for c in clips}
    return shard(clips, rank.world_size, lambda c: cost[c.id], lambda c: c.id)[rank.rank]


def run(cfg: RunConfig, log: Log = _stderr) -> RunOutcome:
    """Every clip through the stages: prepare -> generate per method -> score -> rows; then pooled rows and the summary.

    Under torchrun each rank scores its share of the clips into the same results file; rank 0 prepares
    the run folder before and writes the pooled rows, summary and timing after the others are done.
    One job at a time writes a run folder: a second `stsa-bench run` into it is refused at once."""
    rank = current_rank()
    timer = StageTimer()
    with contextlib.ExitStack() as held:
        with together(rank), timer.stage("setup"):
            METHODS.check([cfg.method_of(m) for m in cfg.methods])
            METRICS.check(cfg.metrics)
            parts = build_parts(cfg, rank, timer)
            clips = load_suite(suite_context(cfg))
            if rank.is_main:
                check_out(cfg.out, cfg, sorted({c.video.parent for c in clips} | ({Path(cfg.data.root)} if cfg.data.root else set())))
                held.enter_context(owner_lock(cfg.out / ".run.lock", f"run folder {cfg.out}"))
        if rank.is_main:
            swept = sweep_stale_temps(cfg.cache_dir)
            if swept:
                log(f"{cfg.cache_dir}: removed {swept} temporary files left by killed runs")
        return _run(parts, log, clips)


def _run(parts: RunParts, log: Log, clips: list[Clip]) -> RunOutcome:
    cfg, rank, timer = parts.cfg, parts.rank, parts.timer
    if rank.is_main:
        report_unavailable(cfg.suite, clips, log)
        for name, method in parts.methods.items():
            extra = method.unmatched([c.id for c in clips]) if hasattr(method, "unmatched") else []
            if extra:
                log(f"{name}: {len(extra)} entries of {name}.dir match no clip of the suite and are not scored: {', '.join(p.name for p in extra[:3])}"
                    + (" ..." if len(extra) > 3 else ""))  # fmt: skip
    with together(rank), timer.stage("setup"):
        init_run_dir(cfg.out, cfg, write=rank.is_main, log=log)
        if rank.is_main:
            write_manifest(cfg.out, cfg.suite, clips)
            done = finished_keys(parts, log)
    if not rank.is_main:
        done = {r.key for r in read_rows(parts.results)}
    n_before = len(done)
    if rank.is_main:
        log_reuse(parts, clips, done, log)

    from tqdm import tqdm

    mine = my_clips(clips, rank, cfg.preprocess.fps)
    generate_ahead(parts, mine, done, log)
    n_failed = 0
    show = cfg.runtime.progress and rank.is_main
    bar = tqdm(mine, desc=f"run {cfg.suite}", unit="clip", disable=None if show else True, file=sys.stderr)
    try:
        for clip in bar:
            work = pending_work(parts, clip, done)
            if not work:
                continue
            for rows in evaluate_clip(parts, clip, work):
                with parts.timer.stage("io"):
                    append_rows(parts.results, rows)
                n_failed += sum(r.status == "failed" for r in rows)
            bar.set_postfix(failed=n_failed, refresh=False)
    finally:
        bar.close()
        parts.prep.close()

    if rank.sharded:
        timing = write_timing(cfg.out, parts.timer, cfg.suite, rank)
        rank.barrier()
        if not rank.is_main:
            return RunOutcome(out=cfg.out, rows=[], summary="", n_new=0, timing=timing)
    finish_pooled(parts, clips)
    outcome = write_summary(parts, len(read_rows(parts.results)) - n_before)
    outcome.timing = write_timing(cfg.out, parts.timer, cfg.suite, rank)
    if rank.sharded:
        outcome.timing = merge_timing(cfg.out, cfg.suite, rank.world_size)
    return outcome


def write_summary(parts: RunParts, n_new: int) -> RunOutcome:
    from reports.summary import summary_markdown

    cfg = parts.cfg
    ids = {x.id for x in parts.metrics}
    everything = read_rows(parts.results)
    rows = [r for r in everything if r.method in parts.methods and r.metric in ids]
    summary = summary_markdown(everything, {**metric_directions(everything), **{x.name: x.higher_is_better for x in parts.metrics}})
    n_clips = len({r.clip for r in everything} - {POOLED_CLIP})
    header = f"# stsa-bench: {cfg.suite}\n\nconfig {cfg.config_hash} · git {git_sha()} · {n_clips} clips\n\n"
    atomic_write_text(cfg.out / "summary.md", header + summary)
    return RunOutcome(out=cfg.out, rows=rows, summary=header + summary, n_new=n_new)


def finish_pooled(parts: RunParts, clips: list[Clip]) -> int:
    """One row per (method, pooled metric) from the saved partials; recomputed when the clip set changed."""
    existing = {r.key: r for r in read_rows(parts.results)}
    suite, new = parts.cfg.suite, []
    for metric in (x for x in parts.metrics if x.pooled):
        for method in parts.methods:
            have = [c for c in clips if parts.partials.has(method, metric, c)]
            signature = f"{len(have)} clips: " + ",".join(sorted(c.sha256[:8] for c in have))
            prev = existing.get((suite, POOLED_CLIP, method, metric.id))
            if prev is not None and prev.clip_sha256 == digest(signature):
                continue
            pseudo = Clip(POOLED_CLIP, Path(suite), sha256=digest(signature))
            if not have:
                new.append(parts.rows.make(pseudo, method, metric, error=f"no clip could be scored for {metric.name} ({method})"))
                continue
            try:
                with parts.timer.stage(f"pooled/{metric.name}"):
                    metric.reset()
                    for c in have:
                        metric.merge(parts.partials.load(method, metric, c))
                    value = metric.compute()
                new.append(parts.rows.make(pseudo, method, metric, value=value, n_frames=metric.count, note=metric.note))
            except Exception as exc:  # noqa: BLE001
                new.append(parts.rows.make(pseudo, method, metric, error=f"{metric.name} over {len(have)} clips: {one_line(exc)}"))
    append_rows(parts.results, new)
    return len(new)
