"""The training-only parts of the official `Face_renderer`: VGG-19 perceptual loss, MINE (CIL) loss, and
`FaceRendererTrainer`, the training composition of `stsa.renderer.FaceRenderer`.

The official checkpoint keeps the loss networks as attributes of the renderer, so their modules stay
where the state-dict layout puts them: `perceptual.*` (VGG-19, registered by `FaceRendererTrainer`
at its official position, after `translation`), `align_layers.*` and `mine.*` (built by `FaceRenderer`
itself, whose strict loads need them). What lives here is what only training runs: the VGG feature
stack and the perceptual loss, the Donsker-Varadhan MINE loss, and the forward that computes them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..renderer import MINE, FaceRenderer, FlatBatch

PERCEPTUAL_LAYERS = {1: "relu_1_1", 6: "relu_2_1", 11: "relu_3_1", 20: "relu_4_1", 29: "relu_5_1"}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------ MINE


def mine_dv_loss(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """-(E_joint[T] - log E_marginal[exp T]): the negative Donsker-Varadhan mutual-information bound."""
    return -(joint.mean() - torch.log(torch.exp(marginal).mean()))


def mine_loss(mine: MINE, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DV loss of the statistics network `mine`, the marginal drawn by shuffling `y` over the batch
    (one `torch.randperm` from the global RNG)."""
    joint = mine(x, y)
    marginal = mine(x, y[torch.randperm(y.size(0))])
    return mine_dv_loss(joint, marginal)


# ------------------------------------------------------------------------------------------ perceptual


class _VGGFeatures(nn.Module):
    """torchvision VGG-19 feature stack returning the activations named in PERCEPTUAL_LAYERS."""

    def __init__(self):
        super().__init__()
        from torchvision.models import vgg19

        self.network = vgg19(weights=None).features
        for p in self.network.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        out, last = {}, max(PERCEPTUAL_LAYERS)
        for i, layer in enumerate(self.network):
            x = layer(x)
            if i in PERCEPTUAL_LAYERS:
                out[PERCEPTUAL_LAYERS[i]] = x
            if i == last:
                break
        return out


class PerceptualLoss(nn.Module):
    """VGG-19 L1 feature loss at relu_{1..5}_1 over 2 scales, plus 250 x L1 of Gram matrices at full scale.

    Images in [0, 1] are normalised as the official code does: ((x + 1) / 2 - mean) / std.
    """

    def __init__(self, num_scales: int = 2, style_weight: float = 250.0):
        super().__init__()
        self.model = _VGGFeatures()
        self.num_scales = num_scales
        self.style_weight = style_weight

    @staticmethod
    def _normalize(x):
        mean = x.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        return ((x + 1) / 2 - mean) / std

    @staticmethod
    def _gram(f):
        b, c, h, w = f.shape
        f = f.reshape(b, c, h * w)
        return f.bmm(f.transpose(1, 2)) / (h * w * c)

    def forward(self, pred, target):
        self.model.eval()
        pred, target = self._normalize(pred), self._normalize(target)
        feat_loss, style_loss = 0.0, 0.0
        for scale in range(self.num_scales):
            fp, ft = self.model(pred), self.model(target)
            for name in PERCEPTUAL_LAYERS.values():
                p, t = fp[name], ft[name].detach()
                feat_loss = feat_loss + F.l1_loss(p, t)
                if scale == 0:
                    style_loss = style_loss + F.l1_loss(self._gram(p), self._gram(t))
            if scale != self.num_scales - 1:
                kw = dict(mode="bilinear", scale_factor=0.5, align_corners=False, recompute_scale_factor=True)
                pred, target = F.interpolate(pred, **kw), F.interpolate(target, **kw)
        return feat_loss + style_loss * self.style_weight


# ----------------------------------------------------------------------------------------- full model


class FaceRendererTrainer(FaceRenderer):
    """Training composition: FaceRenderer + VGG-19 perceptual loss; state dict identical to the official one.

    `forward_train` (also `forward`) returns, like the official `Face_renderer.forward`:
    (generated face (B,3,T,H,W), perceptual loss (1,), 3 pooled spatial embeddings (B*T,128),
    3 pooled temporal embeddings (B*T,128), MINE loss (1,)). The MINE marginals draw 3
    `torch.randperm` from the global RNG.
    """

    def __init__(self, slim: int = 1):
        super().__init__(perceptual=PerceptualLoss(), slim=slim)

    def forward_train(self, T_frame_img, T_driving_heatmap, ref_N_frame_img, ref_N_frame_heatmap, T_audio_w2v):
        batch = FlatBatch(T_frame_img, T_driving_heatmap, ref_N_frame_img, ref_N_frame_heatmap, T_audio_w2v)
        face, spatial, temporal = self.deform_and_generate(batch)
        spatial_pool = [F.adaptive_avg_pool2d(a(f), 1).flatten(1) for a, f in zip(self.align_layers, spatial)]
        temporal_pool = [F.adaptive_avg_pool2d(a(f), 1).flatten(1) for a, f in zip(self.align_layers, temporal)]
        mine = sum(mine_loss(self.mine, x, y) for x, y in zip(spatial_pool, temporal_pool)) / len(spatial_pool)
        perceptual_loss = self.perceptual(face, batch.face)
        return batch.unflatten(face), perceptual_loss.reshape(1), spatial_pool, temporal_pool, mine.reshape(1)

    forward = forward_train
