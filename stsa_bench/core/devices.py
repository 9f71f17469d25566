"""Device selection shared by metrics, methods and training."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when CUDA is available, else `cpu`; anything else is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
