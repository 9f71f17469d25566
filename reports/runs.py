"""The rows a report reads: one run folder, or several of the same suite manifest merged into one table."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Protocol

from stsa_bench.core.environment import recorded
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import (
    ResultRow,
    metric_directions,
    metric_groups,
    metric_name,
    scan_rows,
)

GT_METHODS = ("gt",)
GROUPS = (
    ("Visual Quality", ("psnr", "ssim", "fid", "lpips")),
    ("Lip-Sync", ("lipmd", "lse_d", "lse_c")),
    ("Stability", ("dme", "fvd")),
    ("Identity", ("csim",)),
)
AGREE_ABS, AGREE_REL = 1e-9, 1e-6
"""Two runs agree on a row when |a - b| <= AGREE_ABS + AGREE_REL |a| and the statuses match."""


class PooledSource(Protocol):
    """Recomputes a pooled metric (FID, DME) over any list of clips from the per-clip partials a run saved.
    Built by the orchestration layer (it knows the metrics); reports only call it."""

    def clips(self, method: str, metric: str) -> set[str] | None:
        """Clips with a saved partial, or None when the partials cannot be read."""

    def value(self, method: str, metric: str, clips: Sequence[str]) -> float:
        """The pooled value of one method over these clips."""

    def exchange(self, method: str, baseline: str, metric: str, clips: Sequence[str]):
        """`swapped(mask) -> value(A') - value(B')`: the two methods' pooled values over `clips` after exchanging their
        partials of the clips where mask is True (the paired exchange test's statistic)."""


def base_name(name: str) -> str:
    """The paper column a variant belongs to (ssim_skimage -> ssim, dme_dis -> dme, ...)."""
    return name if name in ("lse_c", "lse_d") else name.split("_", 1)[0]


@dataclass
class Run:
    """Result rows as the report sees them, with the run folders' provenance files."""

    path: Path
    rows: list[ResultRow]
    info: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    paths: list[Path] = field(default_factory=list)
    pooled: PooledSource | None = None
    skipped: list[str] = field(default_factory=list)
    """Lines of results.jsonl that are not rows, skipped on request (`file: line N: why`)."""
    infos: list[dict] = field(default_factory=list)
    """Each merged folder's run.json (`info` is the first's)."""

    @classmethod
    def load(cls, path: Path | Sequence[Path], pooled: PooledSource | None = None, skip_bad_rows: bool = False, allow_mixed: bool = False) -> Run:
        """One run folder, or several merged: they must share the suite manifest, the run-level config and the
        options of every method they share (else a ConfigError names the folders and the keys that differ; with
        `allow_mixed` the differing methods become separate rows `method@folder`), and a row present in two of
        them must agree (value and status). A line that is not a row stops the report with its number, unless
        `skip_bad_rows`."""
        paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
        if not paths:
            raise ConfigError("no run folder given")
        loaded = [_load_one(p, skip_bad_rows) for p in paths]
        first = loaded[0]
        for other in loaded[1:]:
            _same_manifest(first, other)
        if len(loaded) > 1:
            _separate_mixed(loaded, allow_mixed)
        rows: dict[tuple, tuple[Path, ResultRow]] = {}
        for run in loaded:
            for r in run.rows:
                if r.key in rows:
                    _agree(rows[r.key], (run.path, r))
                else:
                    rows[r.key] = (run.path, r)
        skipped = [line for run in loaded for line in run.skipped]
        return cls(first.path, [r for _, r in rows.values()], first.info, first.manifest, paths, pooled, skipped,
                   [run.info for run in loaded])  # fmt: skip

    @property
    def methods(self) -> list[str]:
        ms = list(dict.fromkeys(r.method for r in self.rows))
        return [m for m in ms if m not in GT_METHODS] + [m for m in ms if m in GT_METHODS]

    @property
    def metrics(self) -> list[str]:
        """Metric ids in the paper's column order, variants after their base column."""
        ids = list(dict.fromkeys(r.metric for r in self.rows))
        order = [n for _, names in GROUPS for n in names]

        def key(metric_id: str):
            name = metric_name(metric_id)
            base = base_name(name)
            return (order.index(base) if base in order else len(order), name != base, name)

        return sorted(ids, key=key)

    @cached_property
    def directions(self) -> dict[str, bool]:
        return metric_directions(self.rows)

    def higher_is_better(self, name: str) -> bool | None:
        """The metric's direction as recorded in the rows; None for rows that do not record it."""
        return self.directions.get(name)

    def group(self, metric_id: str) -> str:
        """The display group: the paper's column group, else the group recorded in the rows."""
        name = metric_name(metric_id)
        paper = next((g for g, names in GROUPS if base_name(name) in names), None)
        return paper or metric_groups(self.rows).get(name) or "Other"

    @property
    def clips(self) -> list[str]:
        """Clips in manifest order (then any clip with rows that the manifest does not list)."""
        listed = list((self.manifest.get("clips") or {}).keys())
        seen = set(listed)
        extra = [r.clip for r in self.rows if r.clip != POOLED and r.clip not in seen]
        with_rows = {r.clip for r in self.rows if r.clip != POOLED}
        return [c for c in listed if c in with_rows] + list(dict.fromkeys(extra))

    @property
    def environments(self) -> list[dict]:
        """The distinct environments the merged folders record (stsa_bench.core.environment); [] when none does."""
        envs: list[dict] = []
        for info in self.infos:
            envs += [e for e in recorded(info) if e not in envs]
        return envs

    def is_pooled(self, metric: str) -> bool:
        return any(r.clip == POOLED and r.metric == metric for r in self.rows)


def _load_one(path: Path, skip_bad_rows: bool) -> Run:
    results = path / "results.jsonl"
    rows, bad = scan_rows(results)
    if bad and not skip_bad_rows:
        more = f" (and {len(bad) - 1} more such lines)" if len(bad) > 1 else ""
        raise ConfigError(f"{results}: line {bad[0].number} is {bad[0].reason}{more}; repair or delete it, or pass --skip-bad-rows")
    if not rows:
        raise ConfigError(f"{results}: no result rows")
    info = json.loads((path / "run.json").read_text()) if (path / "run.json").is_file() else {}
    manifest = json.loads((path / "manifest.json").read_text()) if (path / "manifest.json").is_file() else {}
    return Run(path, rows, info, manifest, [path], skipped=[f"{results}: line {b.number}: {b.reason}" for b in bad], infos=[info])


def _same_manifest(a: Run, b: Run) -> None:
    sa, sb = a.rows[0].suite, b.rows[0].suite
    ha, hb = a.manifest.get("manifest_hash"), b.manifest.get("manifest_hash")
    if sa != sb or ha != hb:
        raise ConfigError(
            f"{a.path} and {b.path} are not runs of the same suite manifest "
            f"({sa} {str(ha)[:12]} vs {sb} {str(hb)[:12]}); merge only runs of the same clips"
        )


MIXED_SEP = "@"
"""`method@folder`: a method kept apart because its folders ran it with other settings (`--allow-mixed`)."""


def folder_labels(paths: Sequence[Path]) -> list[str]:
    """A label per merged folder: its name, made unique by its position when two share one."""
    names = [Path(p).name for p in paths]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


def _separate_mixed(loaded: list[Run], allow: bool) -> None:
    """Refuse folders whose run-level config or a shared method's options differ, naming the keys (an option only one
    folder records, added by a newer harness, is not a difference); with `allow`,
    rename the rows of each differing method (every method but GT when the run-level config differs) to `method@folder`."""
    from stsa_bench.core.config import differing_keys, hashed_part

    infos = [run.info for run in loaded]
    labels = folder_labels([run.path for run in loaded])
    differ: dict[str, list[str]] = {}
    if any(i.get("config_hash") != infos[0].get("config_hash") for i in infos):
        keys = sorted({k for i in infos[1:] for k in differing_keys(hashed_part(infos[0].get("config", {})), hashed_part(i.get("config", {})))})
        differ.update({r.method: keys or ["config_hash"] for run in loaded for r in run.rows if r.method not in GT_METHODS})
    options: dict[str, dict] = {}
    for info in infos:
        for name, entry in info.get("methods", {}).items():
            if name in options and options[name].get("hash") != entry.get("hash"):
                mine = {"method": entry.get("method"), **entry.get("options", {})}
                theirs = {"method": options[name].get("method"), **options[name].get("options", {})}
                keys = [k for k in differing_keys(theirs, mine) if k in theirs and k in mine]
                if keys:
                    differ.setdefault(name, keys)
            options.setdefault(name, entry)
    if not differ:
        return
    if not allow:
        what = "; ".join(f"{m}: {', '.join(k[:6])}" for m, k in sorted(differ.items()))
        raise ConfigError(f"{', '.join(str(r.path) for r in loaded)} ran with other settings ({what}); merge only runs of the same "
                          f"settings, or pass --allow-mixed to keep each folder's rows of these methods apart as method{MIXED_SEP}folder")  # fmt: skip
    for run, label in zip(loaded, labels):
        run.rows = [replace(r, method=f"{r.method}{MIXED_SEP}{label}") if r.method in differ else r for r in run.rows]


def _agree(a: tuple[Path, ResultRow], b: tuple[Path, ResultRow]) -> None:
    (pa, ra), (pb, rb) = a, b
    same = ra.status == rb.status and (
        ra.value == rb.value
        or (ra.value is not None and rb.value is not None and math.isclose(ra.value, rb.value, rel_tol=AGREE_REL, abs_tol=AGREE_ABS))
    )
    if not same:
        def what(r):
            return f"{r.value!r}" if r.status == "ok" else f"failed ({r.error})"
        raise ConfigError(
            f"{pa} and {pb} disagree on clip {ra.clip!r}, method {ra.method!r}, {ra.metric}: "
            f"{what(ra)} vs {what(rb)}"
        )
