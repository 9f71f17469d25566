"""Device selection shared by metrics, methods and training."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when CUDA is available, else `cpu`. A named device is returned as given after two checks: a
    name torch does not know, and a CUDA device on a machine without CUDA or an index beyond its GPUs, are a
    ConfigError (one line) instead of a failure of every row. Other kinds (mps, ...) are not checked here."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device (auto, cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            build = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no usable GPU or driver"
            raise ConfigError(f"device {device!r}: this machine has no CUDA device (torch {torch.__version__}, {build}); use cpu or auto")
        if parsed.index is not None and parsed.index >= n:
            raise ConfigError(f"device {device!r}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    return device
