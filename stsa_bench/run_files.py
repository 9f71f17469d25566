"""What a run writes besides its rows: the run folder's config and manifest, pooled metrics' per-clip
partials, the report's frame strips, and `timing.json`."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from .core.config import RESUME_FREE_KEYS, RunConfig, flatten
from .core.errors import ConfigError
from .core.paths import atomic_write_bytes, atomic_write_text
from .core.provenance import git_sha, harness_version
from .core.ranks import Rank
from .core.suites import Clip, manifest_hash
from .core.timing import StageTimer, breakdown_line


def init_run_dir(out: Path, cfg: RunConfig, write: bool = True) -> None:
    """Save the resolved config once (read-only); refuse to resume a run made with another config.
    `write=False` only checks (the ranks other than 0 of a sharded run)."""
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
    if not write:
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


def write_manifest(out: Path, suite: str, clips: list[Clip]) -> None:
    manifest = out / "manifest.json"
    if not manifest.is_file():
        listing = {c.id: {"video": str(c.video), "audio": str(c.audio) if c.audio else None, "sha256": c.sha256, "error": c.error} for c in clips}
        atomic_write_text(manifest, json.dumps({"suite": suite, "manifest_hash": manifest_hash(clips), "clips": listing}, indent=1))


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


def digest(text: str) -> str:
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
