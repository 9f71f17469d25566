"""Regression check of a run's rows against a committed golden rows file.

Fails on a value that moved beyond its tolerance, a change of status, of n or n_failed for a
method x metric, or a golden row missing from the run. Tolerances: `metric=0.01` (absolute) or
`metric=1%` (relative); the default is |now - golden| <= 1e-6 + 1e-5 |golden|.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stsa_bench.core.environment import differences, recorded
from stsa_bench.core.results import ResultRow

from .tables import metric_name

DEFAULT_ABS, DEFAULT_REL = 1e-6, 1e-5
GOLDEN_FIELDS = ("suite", "clip", "method", "metric", "value", "status", "n_frames")


@dataclass(frozen=True)
class Tolerance:
    abs: float = DEFAULT_ABS
    rel: float = DEFAULT_REL

    def allows(self, golden: float, now: float) -> bool:
        return abs(now - golden) <= self.abs + self.rel * abs(golden)

    def __str__(self) -> str:
        return f"±{self.abs:g}+{self.rel:g}·|v|"


def parse_tolerances(specs: list[str]) -> dict[str, Tolerance]:
    """['psnr=0.01', 'fid=1%'] -> per metric name: absolute, or relative with a % sign."""
    out = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            number = float(value[:-1] if value.endswith("%") else value)
        except ValueError:
            raise ValueError(f"--tolerance {spec!r} is not metric=value or metric=value% (e.g. psnr=0.01, fid=1%)") from None
        if not name or not number >= 0:
            raise ValueError(f"--tolerance {spec!r} is not metric=value or metric=value% with a value of at least 0")
        out[name] = Tolerance(abs=0.0, rel=number / 100) if value.endswith("%") else Tolerance(abs=number, rel=0.0)
    return out


def write_golden(path: Path, rows: list[ResultRow], git_sha: str, environment: dict | None = None) -> None:
    """The golden file: the rows' identities, values and statuses, the git sha and the environment that produced them."""
    doc = {
        "git_sha": git_sha,
        "environment": environment,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "rows": sorted(({k: getattr(r, k) for k in GOLDEN_FIELDS} for r in rows), key=lambda d: (d["method"], d["metric"], d["clip"])),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def load_golden(path: Path) -> dict:
    """The golden file, checked: a JSON object whose `rows` is a list of objects with GOLDEN_FIELDS, a
    numeric or null value and a known status. ValueError with the file and the first problem otherwise."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a golden file (not UTF-8: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a golden file (not JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ValueError(f"{path}: not a golden file (expected an object with a list of rows, got {type(doc).__name__})")
    for i, g in enumerate(doc["rows"]):
        if not isinstance(g, dict):
            raise ValueError(f"{path}: golden row {i} is not an object")
        missing = [k for k in GOLDEN_FIELDS if k not in g]
        if missing:
            raise ValueError(f"{path}: golden row {i} lacks {', '.join(missing)}")
        v = g["value"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{path}: golden row {i} has a value that is not a number ({v!r})")
        if g["status"] not in ("ok", "failed") or (g["status"] == "ok" and v is None):
            raise ValueError(f"{path}: golden row {i} has status {g['status']!r} with value {v!r}")
    return doc


def _counts(rows) -> Counter:
    c = Counter()
    for r in rows:
        get = r.get if isinstance(r, dict) else lambda k, r=r: getattr(r, k)
        c[(get("method"), get("metric"), get("status"))] += 1
    return c


def compare(rows: list[ResultRow], golden: dict, tolerances: dict[str, Tolerance] | None = None) -> list[dict]:
    """Every difference that matters, as records (metric, method, clip, golden, now, delta, tolerance, problem)."""
    tolerances = tolerances or {}
    now = {(r.suite, r.clip, r.method, r.metric): r for r in rows}
    problems = []
    for g in golden["rows"]:
        key = (g["suite"], g["clip"], g["method"], g["metric"])
        name = metric_name(g["metric"])
        tol = tolerances.get(name, Tolerance())
        base = {"metric": g["metric"], "method": g["method"], "clip": g["clip"], "golden": g["value"], "tolerance": str(tol)}
        r = now.get(key)
        if r is None:
            problems.append({**base, "now": None, "delta": None, "problem": "missing row"})
        elif r.status != g["status"]:
            problems.append({**base, "now": r.value, "delta": None, "problem": f"status {g['status']} -> {r.status}"})
        elif g["status"] == "ok" and not tol.allows(g["value"], r.value):
            problems.append({**base, "now": r.value, "delta": r.value - g["value"], "problem": "drift"})
    golden_counts, now_counts = _counts(golden["rows"]), _counts(rows)
    golden_metrics = {(g["method"], g["metric"]) for g in golden["rows"]}
    for method, metric in sorted(golden_metrics):
        for status in ("ok", "failed"):
            a, b = golden_counts[(method, metric, status)], now_counts[(method, metric, status)]
            if a != b:
                label = "n" if status == "ok" else "n_failed"
                problems.append({"metric": metric, "method": method, "clip": "(all)", "golden": a, "now": b, "delta": b - a,
                                 "tolerance": "exact", "problem": f"{label} changed"})  # fmt: skip
    return problems


def diff_table(problems: list[dict]) -> str:
    def num(v) -> str:
        return "—" if v is None else f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v)

    lines = ["| metric | method | clip | golden | now | Δ | tolerance | problem |", "|---|---|---|---:|---:|---:|---|---|"]
    for p in problems:
        lines.append(
            f"| {p['metric']} | {p['method']} | {p['clip']} | {num(p['golden'])} | {num(p['now'])} | {num(p['delta'])} | {p['tolerance']} | {p['problem']} |"
        )
    return "\n".join(lines) + "\n"


def environment_note(golden: dict, now: dict | None) -> str:
    """What changed in the environment between the golden rows and this run (every recorded entry), for a drift's
    reader to see at once whether a changed value came with a changed FFmpeg, torch or machine."""
    before = golden.get("environment")
    if not before:
        return "environment of the golden rows: unknown (written before environments were recorded)"
    if not now:
        return "environment of this run: unknown (its folder was made before environments were recorded)"
    changes = differences(before, now)
    return f"environment changes since the golden rows: {'; '.join(changes)}" if changes else "environment: the same as the golden rows'"


def run_environment(folder: Path) -> dict | None:
    """The environment a run folder's rows were made in (its run.json; stsa_bench.core.environment.recorded), None
    when the folder does not record one or its run.json cannot be read."""
    try:
        return next(iter(recorded(json.loads((Path(folder) / "run.json").read_text()))), None)
    except (OSError, ValueError, AttributeError):
        return None
