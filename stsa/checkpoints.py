"""Reading checkpoints: the one place that unwraps `{"state_dict": ...}` and strips DataParallel prefixes.

Official STSA and Wav2Lip checkpoints are `torch.save({"state_dict": model.state_dict(), ...})` of an
`nn.DataParallel` model, so every key starts with `module.`; checkpoints written by `stsa.training`
and most torchvision-style downloads are bare state dicts without the prefix. Both read the same way.
Files are read with torch.load(weights_only=True): no arbitrary objects are ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

MODULE_PREFIX = "module."
"""Prefix `nn.DataParallel` / DistributedDataParallel put before every key of the wrapped model."""


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with one leading `module.` removed from every key that has it (order and values kept)."""
    return {(k[len(MODULE_PREFIX) :] if k.startswith(MODULE_PREFIX) else k): v for k, v in state.items()}


def state_dict_of(checkpoint: Any) -> dict[str, Any]:
    """The weights of a loaded checkpoint: its `state_dict` entry (or the checkpoint itself when it is a
    bare state dict), `module.` prefixes stripped. TypeError when there is no state dict."""
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"expected a state dict or a checkpoint dict with 'state_dict', got {type(checkpoint).__name__}")
    return strip_module_prefix(checkpoint)


def load_checkpoint(path: str | PurePath) -> Any:
    """torch.load of a checkpoint file onto the CPU, tensors and plain containers only."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict(path_or_checkpoint: Any) -> dict[str, Any]:
    """`state_dict_of` a checkpoint file (str or path) or of an already loaded checkpoint."""
    if isinstance(path_or_checkpoint, (str, PurePath)):
        path_or_checkpoint = load_checkpoint(path_or_checkpoint)
    return state_dict_of(path_or_checkpoint)
