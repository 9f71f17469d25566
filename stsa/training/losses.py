"""STSA training losses (paper section III-C; spec/stsa.md "Training").

Guidance:  L_heatmap = L_semantic + L_temporal,
           L_semantic = ||H_g - H_p||^2 + ||P_g - K(H_p)||^2 (K: CNN keypoint extractor),
           L_temporal = ||(P_p[t+1] - P_p[t]) - (P_g[t+1] - P_g[t])||^2 (adjacent-frame motion, as IP-LAP).
Synthesis: L_face = 4 L_perc + 0.25 L_gan + 1 L_feat + 0.1 L_sync + 0.01 L_mi,
           L_gan least-squares (patch discriminator), L_feat = L1 between discriminator features of
           the generated and the real face, L_sync = BCE(cos(a, v), 1) with a frozen lip-sync expert
           (Wav2Lip `SyncNet_color` interface: expert(mel (B,1,80,16), faces (B,15,48,96)) -> (a, v)),
           L_perc and L_mi from `renderer_losses` (`PerceptualLoss`, `mine_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..guidance import CONTENT_POINTS


class KeypointExtractor(nn.Module):
    """CNN K: content heatmap (N,1,128,128) -> the 57 content points (N,2,57), crop-normalised."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, cin = [], 1
        for cout in (width, 2 * width, 4 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 2 * CONTENT_POINTS)

    def forward(self, heatmap: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.features(heatmap), 1).flatten(1)
        return self.head(pooled).view(-1, 2, CONTENT_POINTS)


def frozen_call(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) with gradients to x only (parameters detached), e.g. K on predicted heatmaps."""
    params = {k: v.detach() for k, v in module.named_parameters()}
    return torch.func.functional_call(module, params, (x,))


def temporal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of adjacent-frame motion; pred/target (B, T, ...) with T >= 2."""
    return F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix) on 128x128 faces: returns the intermediate features and the patch logits last."""

    def __init__(self, in_channels: int = 3, width: int = 64, n_layers: int = 3):
        super().__init__()
        blocks, cin = [nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2))], width
        for i in range(1, n_layers + 1):
            cout = width * min(2 ** i, 8)
            stride = 2 if i < n_layers else 1
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, stride, 1), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2)))
            cin = cout
        blocks.append(nn.Conv2d(cin, 1, 4, 1, 1))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, generator side: E[(D(G) - 1)^2]."""
    return (fake_logits - 1).square().mean()


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN, discriminator side: (E[(D(x) - 1)^2] + E[D(G)^2]) / 2."""
    return 0.5 * ((real_logits - 1).square().mean() + fake_logits.square().mean())


def feature_matching_loss(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean over discriminator layers (logits excluded) of L1(features(G), features(x))."""
    pairs = list(zip(fake_feats[:-1], real_feats[:-1]))
    return sum(F.l1_loss(f, r.detach()) for f, r in pairs) / len(pairs)


def expert_faces(faces: torch.Tensor) -> torch.Tensor:
    """(B, 5, 3, 128, 128) BGR [0,1] -> (B, 15, 48, 96): each frame resized to 96x96, lower half, frames on channels."""
    b, t = faces.shape[:2]
    small = F.interpolate(faces.flatten(0, 1).float(), size=(96, 96), mode="bilinear", align_corners=False, antialias=True)
    return small[:, :, 48:].reshape(b, t * 3, 48, 96)


def sync_probability(expert: nn.Module, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Wav2Lip expert score: cosine similarity of the (non-negative) audio and face embeddings, (B,)."""
    audio, video = expert(mel, expert_faces(faces))
    return F.cosine_similarity(audio, video).clamp(1e-6, 1 - 1e-6)


def sync_loss(expert: nn.Module, mel: torch.Tensor, faces: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
    """BCE(cos(a, v), label) (label 1 when None), as Wav2Lip's expert loss."""
    p = sync_probability(expert, mel, faces).float()
    target = torch.ones_like(p) if label is None else label.reshape(p.shape).float()
    return -(target * p.log() + (1 - target) * (1 - p).log()).mean()
