"""The Kinetics-400 I3D of FVD, weight-compatible with VideoGPT's `InceptionI3d(400, in_channels=3)`
(`videogpt/fvd/pytorch_i3d.py`, a port of piergiaj/pytorch-i3d; weights `i3d_pretrained_400.pt`).

Every convolution is `Unit3D`: TensorFlow "SAME" zero padding computed from the input size at run time,
Conv3d without bias, BatchNorm3d (eps 1e-5, VideoGPT's value; piergiaj and TF use 1e-3), ReLU. The
embedding is `forward`: the 400 pre-softmax logits averaged over the remaining time steps (VideoGPT).
Input: (B, 3, T, 224, 224) RGB in [-1, 1], T >= 9 (T = 16 for FVD). Golden parity:
`../shared/golden/i3d_fvd` (tests/test_i3d.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INCEPTION_BLOCKS = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
"""(name, input channels, [b0, b1a, b1b, b2a, b2b, b3b]) per Inception block; pools as (name, kernel, stride)."""


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME": total p = max(k - s, 0) if size % s == 0 else max(k - size % s, 0); the extra one at the end."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) for a SAME convolution or pool."""
    pads = [same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]
    return F.pad(x, (*pads[2], *pads[1], *pads[0]))


class Unit3D(nn.Module):
    """SAME-padded Conv3d -> BatchNorm3d(eps 1e-5) -> ReLU (the logits unit: conv with bias only)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Zero SAME padding, then max pooling (its inputs are ReLU outputs, so zeros act as -inf)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches concatenated: 1x1x1 | 1x1x1 -> 3x3x3 | 1x1x1 -> 3x3x3 | 3x3x3 max pool -> 1x1x1."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D up to the 400 Kinetics logits; state-dict keys as VideoGPT's (`Conv3d_1a_7x7.conv3d.weight`, ...)."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3):
        super().__init__()
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)
        self.endpoints = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        for name, a, b in INCEPTION_BLOCKS:
            self.add_module(name, MaxPoolSame(a, b) if name.startswith("MaxPool") else Inception(a, b))
            self.endpoints.append(name)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1024, T', 1, 1): the trunk and the (2, 7, 7) average pool."""
        for name in self.endpoints:
            x = getattr(self, name)(x)
        return self.avg_pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 400): the logits averaged over T' (VideoGPT's FVD embedding)."""
        logits = self.logits(self.dropout(self.extract_features(x)))
        return logits.squeeze(3).squeeze(3).mean(2)
