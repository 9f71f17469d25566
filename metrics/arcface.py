"""ArcFace `iresnet100`, weight-compatible with insightface's arcface_torch backbone (`backbones/iresnet.py`,
`get_model("r100", fp16=False)`; weights `ms1mv3_arcface_r100_fp16/backbone.pth`), as vico's CSIM builds it.

Stem 3x3 conv -> BN -> PReLU; stages of 3 / 13 / 30 / 3 `IBasicBlock`s (64 / 128 / 256 / 512 channels, the
first block of each stage strided 2 with a 1x1 conv + BN shortcut); block = BN -> 3x3 conv -> BN -> PReLU ->
3x3 conv (stride) -> BN, plus the shortcut, no activation after the sum; BN2d(512) -> flatten (NCHW order)
-> Linear(25088, 512) -> BatchNorm1d `features`. Every BN has eps 1e-5; no conv has a bias. Input:
(B, 3, 112, 112) RGB in [-1, 1]; output: the 512-d embedding, not normalised. Golden parity:
`../shared/golden/arcface_iresnet100` (tests/test_csim.py).
"""

from __future__ import annotations

import torch
from torch import nn

LAYERS = (3, 13, 30, 3)
WIDTHS = (64, 128, 256, 512)
EPS = 1e-5


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=EPS)
        self.conv1 = conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet100(nn.Module):
    """iresnet100 up to the `features` embedding; state-dict keys and order as insightface's."""

    def __init__(self, num_features: int = 512):
        super().__init__()
        self.conv1 = conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=EPS)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (blocks, width) in enumerate(zip(LAYERS, WIDTHS), start=1):
            stage = [IBasicBlock(cin, width, stride=2)] + [IBasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=EPS)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))
