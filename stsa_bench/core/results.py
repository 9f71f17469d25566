"""Typed result rows, stored one JSON object per line in `<out>/results.jsonl`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .paths import atomic_write_text, file_lock

STATUSES = ("ok", "failed")
REQUIRED = ("suite", "clip", "method", "metric", "value", "status")
POOLED_CLIP = "*"
"""The `clip` of a pooled metric's one row per method (e.g. FID over all frames of all clips)."""


def printable(text: str) -> str:
    """`text` for display: a byte of a file name that is not UTF-8 (a lone surrogate) becomes `\\udcXX`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def metric_name(metric_id: str) -> str:
    """`psnr[face128@25fps/...]` -> `psnr`."""
    return metric_id.split("[", 1)[0]


@dataclass(frozen=True)
class ResultRow:
    """One value of one metric for one clip and method, or the reason there is none.

    weights_sha is the metric's weights file; method_weights_sha the checkpoint the method ran;
    config_hash what the whole run folder depends on, method_config_hash the method's own options.
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
    method_config_hash: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.clip, self.method, self.metric)

    def to_json(self) -> str:
        """One JSON line. A clip id from a file name that is not UTF-8 holds lone surrogates: those rows are
        written with ASCII escapes (`\\udcff`), which json.loads turns back into the same id."""
        text = json.dumps(asdict(self), allow_nan=False, ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(asdict(self), allow_nan=False, ensure_ascii=True)
        return text

    @classmethod
    def from_dict(cls, d: dict) -> ResultRow:
        """A row from a parsed line; ValueError naming the field when it is not one (missing or wrong type)."""
        if not isinstance(d, dict):
            raise ValueError(f"not a JSON object but {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        missing = [n for n in REQUIRED if n not in d]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        for name in ("suite", "clip", "method", "metric", "status"):
            if not isinstance(d[name], str):
                raise ValueError(f"{name} is not a string: {d[name]!r}")
        value = d["value"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"value is not a number: {value!r}")
        return check_row(cls(**{k: v for k, v in d.items() if k in names}))


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
        raise ValueError(f"status ok without a finite value ({row.value!r})")
    if row.status == "failed" and not row.error:
        raise ValueError("status failed without an error")
    return row


@dataclass(frozen=True)
class BadLine:
    """A line of results.jsonl that is not a row: its 1-based number and why."""

    number: int
    reason: str


def scan_rows(path: Path) -> tuple[list[ResultRow], list[BadLine]]:
    """(the rows, last row per key; every line that is not a row). A last line without its newline is a
    row cut off by a killed writer."""
    path = Path(path)
    if not path.is_file():
        return [], []
    by_key: dict[tuple, ResultRow] = {}
    bad: list[BadLine] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                bad.append(BadLine(number, "cut off (a run killed while writing it; rerun the run to complete it)"))
                break
            try:
                row = ResultRow.from_dict(json.loads(raw.decode("utf-8")))
            except UnicodeDecodeError as exc:
                bad.append(BadLine(number, f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            except json.JSONDecodeError as exc:
                bad.append(BadLine(number, f"not JSON ({exc.msg}, column {exc.colno})"))
                continue
            except (TypeError, ValueError) as exc:
                bad.append(BadLine(number, f"not a result row ({exc})"))
                continue
            by_key[row.key] = row
    return list(by_key.values()), bad


def read_rows(path: Path) -> list[ResultRow]:
    """All readable rows, last row per key (see scan_rows for the lines that are not)."""
    return scan_rows(path)[0]


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
