"""What a run writes besides its rows: the run folder's config and manifest, pooled metrics' per-clip
partials, the report's frame strips, and `timing.json`."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from pathlib import Path

from .core import environment
from .core.config import RunConfig, differing_keys, hashed_part
from .core.errors import ConfigError
from .core.layout import strip_path
from .core.media import DECODE_VERSION
from .core.paths import atomic_write_bytes, atomic_write_text
from .core.provenance import git_sha, harness_version
from .core.ranks import Rank
from .core.suites import Clip, manifest_hash
from .core.timing import StageTimer, breakdown_line


def init_run_dir(out: Path, cfg: RunConfig, write: bool = True, log: Callable[[str], None] = print) -> None:
    """Save the resolved config of the first invocation (read-only) and, in run.json, the environment, every
    invocation (with its own environment) and the methods the folder holds. A later invocation may add methods
    and metrics; it is refused when the run-level config (suite, preprocessing, seed) differs, when a method name
    already here comes with other options, or when the value-deciding environment differs (unless
    `runtime.allow_env_change`). `write=False` only checks (the ranks other than 0 of a sharded run)."""
    run_json = out / "run.json"
    prev = json.loads(run_json.read_text()) if run_json.is_file() else None
    env = environment.capture()
    changes: list[str] = []
    if prev is not None:
        _check_same_run(out, prev, cfg)
        _check_same_decode(out, prev)
        _check_same_methods(out, prev, cfg)
        changes = _check_same_environment(out, prev, env, cfg.runtime.allow_env_change, log if write else lambda _: None)
    if not write:
        return
    invocation = {
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
        "methods": list(cfg.methods),
        "metrics": list(cfg.metrics),
        "config": dict(cfg.resolved),
        "environment": env,
        **({"allow_env_change": True, "environment_changes": changes} if changes else {}),
    }
    methods = {name: {**cfg.method_entry(name), "hash": cfg.method_config_hash(name)} for name in cfg.methods}
    if prev is None:
        from omegaconf import OmegaConf

        out.mkdir(parents=True, exist_ok=True)
        cfg_path = out / "config.yaml"
        atomic_write_text(cfg_path, OmegaConf.to_yaml(OmegaConf.create(dict(cfg.resolved))))
        os.chmod(cfg_path, 0o444)
        info = {
            "config_hash": cfg.config_hash,
            "git_sha": git_sha(),
            "harness_version": harness_version(),
            "decode_version": DECODE_VERSION,
            "environment": env,
            "created": invocation["time"],
            "config": dict(cfg.resolved),
            "methods": methods,
            "invocations": [invocation],
        }
    else:
        info = {**prev, "config_hash": cfg.config_hash, "methods": {**prev.get("methods", {}), **methods},
                "invocations": prev.get("invocations", []) + [invocation]}  # fmt: skip
    atomic_write_text(run_json, json.dumps(info, indent=1))


RUN_FILES = ("run.json", "results.jsonl", ".run.lock")
"""A folder holding one of these is a run folder (it may be extended or resumed, or a run is writing it)."""


def check_out(out: Path, cfg: RunConfig | None = None, data_dirs: list[Path] | None = None) -> None:
    """`--out` is a folder this process can create and write into, and a place for a run's files: not a filesystem
    root, the home folder, the cache or a folder inside it, inside the data or the shared folder, nor a non-empty
    folder that is not a run folder. A ConfigError says why otherwise."""
    from .core.paths import shared_root

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, not a folder")
    where = out.expanduser().resolve()
    refuse = [(Path(where.anchor), "a filesystem root"), (Path.home().resolve(), "your home folder")]
    inside = [(Path(d).resolve(), "the data") for d in (data_dirs or [])] + ([(shared_root(), "the shared folder")] if shared_root() else [])
    if cfg is not None:
        inside.append((Path(cfg.cache_dir).resolve(), "the cache"))
    for path, what in refuse:
        if where == path:
            raise ConfigError(f"--out {out}: is {what}; give a folder of its own, e.g. --out results/<name>")
    for path, what in inside:
        if where == path or path in where.parents:
            raise ConfigError(f"--out {out}: is inside {what} ({path}); give a folder of its own, e.g. --out results/<name>")
    cache = Path(cfg.cache_dir).resolve() if cfg is not None else None
    others = where.is_dir() and any(not f.name.startswith(".") and f.resolve() != cache for f in where.iterdir())
    if others and not any((where / f).exists() for f in RUN_FILES):
        raise ConfigError(f"--out {out}: holds other files and is not a run folder (no run.json or results.jsonl); use a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def _check_same_run(out: Path, prev: dict, cfg: RunConfig) -> None:
    """Same run-level config, or a ConfigError listing the keys that differ. A folder whose hash was taken
    by an older definition (it also covered methods and metrics) but whose run-level config is the same
    is accepted; init_run_dir then records the current hash."""
    if prev["config_hash"] == cfg.config_hash:
        return
    diff = differing_keys(hashed_part(prev["config"]), hashed_part(cfg.resolved))
    if not diff and "invocations" not in prev:
        return
    why = f"differs in {', '.join(diff[:8])}" if diff else "made by another harness version"
    raise ConfigError(
        f"{out} holds a run made with another config (hash {prev['config_hash']}, now {cfg.config_hash}; {why}); "
        f"methods and metrics may be added to a run folder, nothing else changed: use another --out"
    )


def _check_same_decode(out: Path, prev: dict) -> None:
    """The folder's rows were decoded the way this harness decodes (`media.DECODE_VERSION`; folders made before
    it was recorded are version 1), or a ConfigError: an extended folder would mix both."""
    before = prev.get("decode_version", 1)
    if before != DECODE_VERSION:
        raise ConfigError(
            f"{out} holds rows decoded by decode version {before}, this harness decodes by version {DECODE_VERSION} "
            f"(2: phone videos stored sideways turned upright, audio that starts late aligned); rows of such clips would "
            f"differ: use another --out"
        )


def _check_same_environment(out: Path, prev: dict, env: dict, allowed: bool, log: Callable[[str], None]) -> list[str]:
    """The value-deciding differences between the folder's environment and this one (environment.VALUE_DECIDING):
    none, or a ConfigError naming each, or with `allowed` the list (recorded in the invocation) and a note."""
    before = next(iter(environment.recorded(prev)), None)
    if before is None:
        log(f"{out}: made before run folders recorded their environment (environment unknown); extended, and this invocation's environment recorded")
        return []
    changes = environment.value_differences(before, env)
    if changes and not allowed:
        raise ConfigError(
            f"{out} was run in another environment ({'; '.join(changes)}); its rows and new ones could differ: use "
            f"another --out, or runtime.allow_env_change=true to extend it anyway (recorded in run.json)"
        )
    if changes:
        log(f"{out}: extended in another environment ({'; '.join(changes)}) with runtime.allow_env_change=true; recorded in run.json")
    return changes


def _check_same_methods(out: Path, prev: dict, cfg: RunConfig) -> None:
    """A method name already in the folder must come with the same registered method and options."""
    for name, entry in prev.get("methods", {}).items():
        if name not in cfg.methods or entry["hash"] == cfg.method_config_hash(name):
            continue
        new = cfg.method_entry(name)
        before, now = {"method": entry["method"], **entry["options"]}, {"method": new["method"], **new["options"]}
        added = _option_defaults(new["method"])
        diff = [k for k in differing_keys(before, now) if not (k not in before and k in added and now.get(k) == added[k])]
        if not diff:
            continue
        label = f"{name}_2"
        raise ConfigError(
            f"{out}: method {name!r} ran here with other options (differs in {', '.join(diff) or 'defaults'}); "
            f"keep both as separate rows with a label, e.g. --methods {label}:{new['method']} and {label}.<key>=<value>, "
            f"or use another --out"
        )


def _option_defaults(method: str) -> dict:
    """A registered method's option defaults: an option a newer harness added, at its default, is no difference."""
    from .core.config import plain_defaults
    from .core.registry import METHODS

    options = getattr(METHODS.get(method), "Options", None) if method in METHODS.names() else None
    return plain_defaults(options) if options is not None else {}


def write_manifest(out: Path, suite: str, clips: list[Clip]) -> None:
    manifest = out / "manifest.json"
    if not manifest.is_file():
        listing = {c.id: {"video": str(c.video), "audio": str(c.audio) if c.audio else None, "sha256": c.sha256, "error": c.error,
                          "group": c.group} for c in clips}  # fmt: skip
        atomic_write_text(manifest, json.dumps({"suite": suite, "manifest_hash": manifest_hash(clips), "clips": listing}, indent=1))


class Partials:
    """Per-clip partial states of pooled metrics: `<out>/partials/<method>/<metric-key>/<clip-sha>.npz`."""

    def __init__(self, out: Path):
        self.root = out / "partials"

    def folder(self, method: str, metric_id: str) -> Path:
        from .core.paths import cache_key

        return self.root / method / cache_key("metric-id", params=metric_id)[:16]

    def path(self, method: str, metric, clip: Clip) -> Path:
        return self.folder(method, metric.id) / f"{clip.sha256}.npz"

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


def digest(text: str) -> str:
    from .core.paths import sha256_bytes

    return sha256_bytes(text.encode())


STRIP_FRAMES = 4


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
        atomic_write_bytes(strip_path(out, method, clip.id), png.tobytes())


def write_timing(out: Path, timer: StageTimer, suite: str, rank: Rank) -> dict:
    """This invocation's seconds per stage (see stsa_bench.core.timing): `<out>/timing.json`, or per rank
    `<out>/timing/rank<r>.json` under torchrun (merged by rank 0)."""
    report = timer.report(suite=suite, rank=rank.rank, world_size=rank.world_size)
    report["line"] = breakdown_line(report)
    path = out / "timing" / f"rank{rank.rank}.json" if rank.sharded else out / "timing.json"
    atomic_write_text(path, json.dumps(report, indent=1))
    return report


def merge_timing(out: Path, suite: str, world_size: int) -> dict:
    """`<out>/timing.json` of a sharded run: stage seconds summed over ranks, wall time of the slowest, each rank's report."""
    ranks = [json.loads((out / "timing" / f"rank{r}.json").read_text()) for r in range(world_size)]
    total = max(x["total_s"] for x in ranks)
    stages: dict[str, dict] = {}
    for x in ranks:
        for k, v in x["stages"].items():
            acc = stages.setdefault(k, {"s": 0.0, "calls": 0})
            acc["s"] += v["s"]
            acc["calls"] += v["calls"]
    busy = sum(x["total_s"] for x in ranks)
    for v in stages.values():
        v["share"] = round(v["s"] / busy, 4) if busy else 0.0
    merged = {"suite": suite, "world_size": world_size, "total_s": total, "rank_seconds": busy,
              "stages": dict(sorted(stages.items(), key=lambda kv: -kv[1]["s"])), "ranks": ranks}  # fmt: skip
    merged["line"] = breakdown_line(merged) + f" (over {world_size} ranks)"
    atomic_write_text(out / "timing.json", json.dumps(merged, indent=1))
    return merged
