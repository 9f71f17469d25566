"""Measurement primitives of `stsa-bench bench`: the plan (sizes per device and mode), median timing with
synchronisation, peak memory, the skip signal for components that cannot run, and synthetic frames."""

from __future__ import annotations

import contextlib
import importlib
import platform
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class Skip(Exception):
    """A component that cannot run here; the message is the reason."""


@dataclass(frozen=True)
class Plan:
    device: str
    quick: bool
    rounds: int
    warmup: int
    frames: int
    heavy_frames: int
    stsa_batch: int
    w2l_batch: int
    loop_frames: int
    method_frames: int
    slim: int
    frame_size: int = 160


def make_plan(device: str, quick: bool) -> Plan:
    """quick: tiny inputs, one round, on CPU the renderer at channels / 8 (paper size: ~330 GFLOP per frame);
    full: the harness's batch sizes at paper size. heavy_frames: FID and RAFT."""
    if device.startswith("cuda"):
        return Plan(device, quick, 1 if quick else 3, 1, *((8, 8, 8, 16, 2, 8, 1) if quick else (128, 128, 32, 128, 8, 64, 1)))
    return Plan(device, quick, 1 if quick else 3, 1, *((6, 2, 1, 2, 1, 4, 8) if quick else (32, 16, 2, 16, 2, 8, 1)))


def need(module: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception as exc:
        raise Skip(f"{module} is not importable ({type(exc).__name__})") from exc


def cpu_flags() -> tuple[str, bool]:
    """(CPU model name, whether it has bf16 instructions: avx512_bf16 or AMX; else bf16 is emulated)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    return (names[0] if names else platform.processor() or "unknown"), "avx512_bf16" in info or "amx_bf16" in info


def reset_peak(dev: torch.device) -> str:
    """Reset the peak-memory mark; returns what `peak_mb` will report."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return "cuda max allocated"
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        return "process max RSS"
    return "process max RSS, whole run"


def peak_mb(dev: torch.device) -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else rss


def measure(plan: Plan, fn, frames: int, batch: int, device: str | None = None, precision: str = "fp32",
            warmup: int | None = None, **extra) -> dict:  # fmt: skip
    """Median seconds of fn() over plan.rounds after `warmup` (default plan.warmup) calls -> a record."""
    dev, warmup = torch.device(device or plan.device), plan.warmup if warmup is None else warmup
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    sync()
    kind, times = reset_peak(dev), []
    for i in range(warmup + plan.rounds):
        t0 = time.perf_counter()
        fn()
        sync()
        times += [time.perf_counter() - t0] if i >= warmup else []
    s = statistics.median(times)
    return {"frames_per_s": round(frames / s, 3), "seconds": round(s, 5), "frames": frames, "batch_size": batch,
            "device": str(dev), "precision": precision, "rounds": len(times), "warmup": warmup,
            "peak_memory_mb": round(peak_mb(dev), 1), "peak_memory_kind": kind, **extra}  # fmt: skip


def moving_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a smooth random texture moving 1 px down and 0.5 px right per frame."""
    import cv2
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size + n, size + n, 3)).astype(np.float32), (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack([base[i : i + size, i // 2 : i // 2 + size] for i in range(n)])
