"""Typed result rows, stored one JSON object per line in `<out>/results.jsonl`."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from .paths import atomic_write_text, file_lock

STATUSES = ("ok", "failed")
POOLED_CLIP = "*"
"""The `clip` of a pooled metric's one row per method (e.g. FID over all frames of all clips)."""


def metric_name(metric_id: str) -> str:
    """`psnr[face128@25fps/...]` -> `psnr`."""
    return metric_id.split("[", 1)[0]


@dataclass(frozen=True)
class ResultRow:
    """One value of one metric for one clip and method, or the reason there is none.

    weights_sha is the metric's weights file; method_weights_sha the checkpoint the method ran.
    higher_is_better and group are the metric's direction and display group, so that reports
    read them from rows instead of importing the metric.
    """

    suite: str
    clip: str
    method: str
    metric: str
    value: float | None
    n_frames: int | None
    status: str
    error: str | None
    config_hash: str
    git_sha: str
    weights_sha: str | None = None
    method_version: str | None = None
    method_weights_sha: str | None = None
    clip_sha256: str = ""
    seed: int = 0
    harness_version: str = ""
    time: str = ""
    note: str | None = None
    higher_is_better: bool | None = None
    group: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.clip, self.method, self.metric)

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> "ResultRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def metric_directions(rows: Iterable[ResultRow]) -> dict[str, bool]:
    """{metric name: higher_is_better} as recorded in the rows (rows without it are skipped)."""
    return {metric_name(r.metric): r.higher_is_better for r in rows if r.higher_is_better is not None}


def metric_groups(rows: Iterable[ResultRow]) -> dict[str, str]:
    """{metric name: display group} as recorded in the rows."""
    return {metric_name(r.metric): r.group for r in rows if r.group}


def check_row(row: ResultRow) -> ResultRow:
    if row.status not in STATUSES:
        raise ValueError(f"bad status {row.status!r}")
    if row.status == "ok" and (row.value is None or not math.isfinite(row.value)):
        raise ValueError(f"ok row with non-finite value: {row}")
    if row.status == "failed" and not row.error:
        raise ValueError(f"failed row without a reason: {row}")
    return row


def read_rows(path: Path) -> list[ResultRow]:
    """All complete rows; a torn last line (a run killed mid-write) is ignored. Last row per key wins."""
    path = Path(path)
    if not path.is_file():
        return []
    by_key: dict[tuple, ResultRow] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                row = ResultRow.from_dict(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            by_key[row.key] = row
    return list(by_key.values())


def rewrite_rows(path: Path, rows: Iterable[ResultRow]) -> None:
    """Replace the file atomically with exactly these rows."""
    atomic_write_text(Path(path), "".join(r.to_json() + "\n" for r in rows))


def append_rows(path: Path, rows: list[ResultRow]) -> None:
    """Append rows in one write and fsync under an inter-process lock (ranks of a sharded run share the
    file). A torn last line left by a killed writer is closed with a newline first, so it stays one
    unreadable line and never swallows the rows written after it."""
    if not rows:
        return
    data = "".join(check_row(r).to_json() + "\n" for r in rows).encode("utf-8")
    with file_lock(Path(path)):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
