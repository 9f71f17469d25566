"""The software and machine a run's values come from: recorded in run.json, compared when a run folder is
extended, shown in reports and beside a drift; and the installed packages against the lock CI tested."""

from __future__ import annotations

import importlib.metadata
import platform
import re
from pathlib import Path

PACKAGES = ("torch", "torchvision", "av", "mediapipe", "numpy", "scipy", "lpips", "pytorch-fid", "transformers")
"""Distributions whose versions are recorded (opencv is read from cv2 itself: several distributions provide it)."""

FFMPEG_LIBS = ("libavcodec", "libavformat", "libswscale", "libswresample")
"""The FFmpeg libraries PyAV decodes and resamples with."""

VALUE_DECIDING = {"av": None, **dict.fromkeys(FFMPEG_LIBS), "mediapipe": None, "torch": 2, "numpy": 1}
"""What decides a row's value (decoder, landmarker, torch's kernels, numpy's numerics) -> how many leading version
parts must agree when a run folder is extended (None: all of them)."""

LOCK = Path(__file__).resolve().parents[2] / "requirements" / "lock.txt"
"""The runtime lock of the tested set (scripts/lock.sh); absent where the harness was installed from a wheel."""


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def capture() -> dict[str, str]:
    """{what: version or name} of python, the PACKAGES (torch as it names itself, with its build: 2.14.1+cu130),
    opencv, PyAV's FFmpeg libraries, torch's CUDA build and cuDNN (when a GPU is usable), and the CPU and GPU names."""
    import av
    import cv2
    import torch

    env = {"python": platform.python_version(), **{d: _dist_version(d) for d in PACKAGES}, "opencv": cv2.__version__}
    env["torch"] = torch.__version__
    env.update({lib: ".".join(map(str, av.library_versions.get(lib, ()))) or "unknown" for lib in FFMPEG_LIBS})
    gpu = torch.cuda.is_available()
    env["torch_cuda"] = torch.version.cuda or "none"
    env["cudnn"] = str(torch.backends.cudnn.version()) if gpu and torch.backends.cudnn.is_available() else "none"
    env["cpu"] = cpu_name()
    env["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if gpu else "none"
    return env


def recorded(info: dict) -> list[dict]:
    """The distinct environments a run.json records: the folder's first (the one it was made in, else the first an
    invocation recorded), then any other an invocation ran in; [] for folders made before they were recorded."""
    envs: list[dict] = []
    for env in [info.get("environment"), *(i.get("environment") for i in info.get("invocations", []))]:
        if env and env not in envs:
            envs.append(env)
    return envs


def _leading(version: str, parts: int | None) -> str:
    return version if parts is None else ".".join(re.split(r"[.+]", version)[:parts])


def value_differences(before: dict, now: dict) -> list[str]:
    """'libavcodec 62.28.102 -> 62.28.103' for each VALUE_DECIDING entry whose leading parts differ."""
    out = []
    for key, parts in VALUE_DECIDING.items():
        a, b = str(before.get(key, "unknown")), str(now.get(key, "unknown"))
        if _leading(a, parts) != _leading(b, parts):
            out.append(f"{key} {a} -> {b}")
    return out


def differences(before: dict, now: dict) -> list[str]:
    """'av 18.1.0 -> 18.1.1' for every recorded entry that differs."""
    return [f"{k} {before.get(k, 'unknown')} -> {now.get(k, 'unknown')}" for k in dict.fromkeys([*before, *now])
            if before.get(k) != now.get(k)]  # fmt: skip


def summary(env: dict) -> str:
    """One line: python, torch (CUDA, cuDNN), av (FFmpeg libraries), the other packages, CPU and GPU."""
    if not env:
        return "unknown (not recorded)"
    cuda = env.get("torch_cuda", "none")
    torch = env.get("torch", "?") + (f" (CUDA {cuda}" + (f", cuDNN {env['cudnn']}" if env.get("cudnn", "none") != "none" else "") + ")"
                                     if cuda != "none" else "")  # fmt: skip
    ffmpeg = ", ".join(f"{lib} {env[lib]}" for lib in FFMPEG_LIBS if lib in env)
    rest = [f"{k} {env[k]}" for k in ("torchvision", "mediapipe", "opencv", "numpy", "scipy", "lpips", "pytorch-fid", "transformers") if k in env]
    return " · ".join([f"python {env.get('python', '?')}", f"torch {torch}", f"av {env.get('av', '?')} ({ffmpeg})", *rest,
                       f"CPU {env.get('cpu', '?')}", f"GPU {env.get('gpu', '?')}"])  # fmt: skip


def read_lock(path: Path) -> dict[str, str]:
    """{normalised name: version} of the `name==version` pins of a pip requirements lock."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_differences(lock: dict[str, str]) -> list[str]:
    """'av 18.1.0 (lock 18.1.1)' for each pinned package installed at another version or not at all."""
    out = []
    for name, pinned in sorted(lock.items()):
        got = _dist_version(name)
        if got != pinned:
            out.append(f"{name} {got} (lock {pinned})")
    return out
