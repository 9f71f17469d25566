"""SyncNet "S" (the architecture of `syncnet_v2.model`), re-implemented for LSE-C / LSE-D.

Architecture and state-dict layout follow joonson/syncnet_python `SyncNetModel.S(num_layers_in_fc_layers=1024)`
(Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV-W 2016), so the official weights
load unchanged. Checked against the golden fixture `shared/golden/syncnet_S` (tests/test_lse.py).

Inputs: audio (B, 1, 13, 20) unnormalised MFCC (20 columns = 0.2 s); video (B, 3, 5, 224, 224) five 25 fps
frames, BGR, raw 0-255 floats. Outputs: 1024-d embeddings, compared by Euclidean distance.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stsa_bench.core import catalogue
from stsa_bench.core.weights import WeightsMissing, load_state_dict

EMBED_DIM = 1024

SYNCNET_WEIGHTS = catalogue.SYNCNET
"""The official SyncNet weights (no sha256 is published: any file is accepted and its digest recorded)."""


def _audio_trunk() -> nn.Sequential:
    """2-D conv stack on the 13x20 MFCC patch -> (B, 512, 1, 1). Module indices match the official keys."""
    return nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(1, 1),
        nn.Conv2d(64, 192, 3, padding=1),
        nn.BatchNorm2d(192),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=(1, 2)),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.BatchNorm2d(384),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.BatchNorm2d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(256, 512, (5, 4)),
        nn.BatchNorm2d(512),
        nn.ReLU(),
    )


def _video_trunk() -> nn.Sequential:
    """3-D conv stack on 5 frames of 224x224 -> (B, 512, 1, 1, 1). Module indices match the official keys."""
    return nn.Sequential(
        nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)),
        nn.BatchNorm3d(96),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)),
        nn.BatchNorm3d(256),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(256, 512, (1, 6, 6)),
        nn.BatchNorm3d(512),
        nn.ReLU(inplace=True),
    )


def _head(out_dim: int) -> nn.Sequential:
    """512 -> 512 -> out_dim fully connected head (BatchNorm1d + ReLU in between)."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out_dim))


class SyncNetS(nn.Module):
    """SyncNet "S": audio and lip streams mapped to a shared `embed_dim`-d space (official default 1024)."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_trunk()
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = _video_trunk()

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC -> (B, embed_dim)."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 -> (B, embed_dim)."""
        return self.netfclip(self.forward_lipfeat(x))

    def forward_lipfeat(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 -> (B, 512) conv features before the lip head (ReLU output)."""
        return self.netcnnlip(x).flatten(1)


class FastSyncNet:
    """The same functions as SyncNetS, rearranged for throughput (same values up to float32 rounding).

    - Every BatchNorm (eval) is folded into the convolution before it (in float64, then float32):
      w * s, (b - mean) * s + beta with s = gamma / sqrt(var + eps).
    - ReLU is applied after MaxPool (both monotone, so they commute); 1x1 stride-1 pools are dropped.
    - The lip stream's first Conv3d (temporal kernel 5) is a Conv2d over the 15 channels of five stacked
      frames (frame-major, then B, G, R); its later kernels are 1 in time, so the rest is 2-D per window.
    - channels_last tensors throughout (oneDNN / cuDNN NHWC kernels).
    Built from the model's current weights (rebuild after loading others). Checked against the golden
    outputs and against `forward_lip` / `forward_aud` in tests/test_lse.py.
    """

    def __init__(self, model: SyncNetS):
        self.lip_ops = _fold_trunk(model.netcnnlip)
        self.aud_ops = _fold_trunk(model.netcnnaud)
        self.lip_head = model.netfclip
        self.aud_head = model.netfcaud

    def lip_windows(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) BGR 0-255 frames (any dtype) -> (T - 4, embed_dim): `forward_lip` of every window v = frames v..v+4."""
        n = len(frames) - 4
        x = torch.cat([frames[t : t + n] for t in range(5)], dim=3).permute(0, 3, 1, 2).to(torch.float32)
        return self.lip_head(_run(self.lip_ops, x).flatten(1))

    def audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, embed_dim): `forward_aud`."""
        x = mfcc.to(torch.float32).contiguous(memory_format=torch.channels_last)
        return self.aud_head(_run(self.aud_ops, x).flatten(1))


def _fold_trunk(trunk: nn.Sequential) -> list[tuple]:
    """Conv+BatchNorm pairs folded, ReLU moved after MaxPool, identity pools dropped: a list of 2-D ops."""
    ops: list[tuple] = []
    layers = list(trunk)
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            ops.append(("conv", *_fold(layer, layers[i + 1])))
        elif isinstance(layer, (nn.MaxPool2d, nn.MaxPool3d)):
            kernel, stride, pad = (_pair2d(v) for v in (layer.kernel_size, layer.stride, layer.padding))
            if kernel == stride == (1, 1):
                continue
            relu = ops.pop() if ops[-1][0] == "relu" else None
            ops += [("pool", kernel, stride, pad)] + ([relu] if relu else [])
        elif isinstance(layer, nn.ReLU):
            ops.append(("relu",))
    return ops


def _pair2d(v) -> tuple[int, int]:
    """A 2-D (or the spatial part of a 3-D) kernel/stride/padding argument as (h, w)."""
    v = (v, v) if isinstance(v, int) else tuple(v)
    return v[-2:]


def _fold(conv: nn.Conv2d | nn.Conv3d, bn: nn.BatchNorm2d | nn.BatchNorm3d) -> tuple:
    """Conv + eval BatchNorm -> 2-D (weight, bias, stride, padding); a temporal kernel becomes input channels (frame-major)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    weight = conv.weight.double() * scale.reshape(-1, *[1] * (conv.weight.dim() - 1))
    bias = (conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()
    if weight.dim() == 5:
        o, i, kt, kh, kw = weight.shape
        weight = weight.permute(0, 2, 1, 3, 4).reshape(o, kt * i, kh, kw)
    weight = weight.to(torch.float32).contiguous(memory_format=torch.channels_last)
    return weight, bias.to(torch.float32), _pair2d(conv.stride), _pair2d(conv.padding)


def _run(ops: list[tuple], x: torch.Tensor) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    for op in ops:
        if op[0] == "conv":
            x = F.conv2d(x, op[1], op[2], stride=op[3], padding=op[4])
        elif op[0] == "pool":
            x = F.max_pool2d(x, op[1], op[2], op[3])
        else:
            x = x.relu_()
    return x


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncNetS:
    """SyncNetS in eval mode on `device`, filled from a torch-saved state dict with the official key names.

    The file is read with `torch.load(weights_only=True)`; keys must match exactly (missing or unknown
    keys raise WeightsMissing naming the file), as must shapes.
    """
    path = Path(path)
    try:
        state = load_state_dict(path)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise WeightsMissing(f"{path}: cannot be read as a SyncNet state dict ({type(exc).__name__}: {exc})") from exc
    model = SyncNetS()
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unknown = [k for k in state if k not in want]
    if missing or unknown:
        raise WeightsMissing(
            f"{path}: not a {SYNCNET_WEIGHTS.filename} state dict "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unknown)} unknown keys, e.g. {unknown[:3]})"
        )
    bad = [k for k, v in want.items() if tuple(state[k].shape) != tuple(v.shape)]
    if bad:
        raise WeightsMissing(
            f"{path}: {len(bad)} tensors have the wrong shape, e.g. {bad[0]} {tuple(state[bad[0]].shape)} "
            f"instead of {tuple(want[bad[0]].shape)}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
