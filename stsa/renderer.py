"""STSA face synthesis network (paper section III-B), weight-compatible with the official `Face_renderer`.

Two compositions share one layout:

* `FaceRenderer` (here): inference. `forward` returns only the generated face; it builds no VGG,
  downloads nothing and never touches the global RNG. It owns every official state-dict key except the
  VGG-19 perceptual network (`perceptual.*`), which `load_renderer` filters out of a checkpoint. The
  CIL networks `align_layers` and `mine` are built here too: their weights are in every checkpoint.
* `stsa.training.renderer_losses.FaceRendererTrainer`: training. Adds the VGG-19 perceptual loss
  (torchvision `vgg19(weights=None)`, weights come from the checkpoint) at the official position, so
  its `state_dict()` has exactly the official keys, order, shapes and dtypes; its forward also returns
  the perceptual loss, the pooled CIL embeddings of both deformation paths and the MINE loss. (Still
  importable from here, for the official-loop benchmark; importing it loads the training code.)

Checkpoint facts kept for compatibility: `spatial_module.adaAT_128/_64/_32` and
`spatial_module.appearance_conv_list_128/_64/_32` are the same modules as `spatial_module.adaAT.0/1/2`
and `spatial_module.appearance_conv_list.0/1/2` (both names are state-dict keys of one tensor);
`source_img_encoder` and VGG layers after relu_5_1 hold weights but are never used.

Conventions: images are BGR in [0, 1], 128x128; N = 5 references. Sampling grids use the
align_corners=True coordinate convention while `grid_sample` runs with align_corners=False, as in the
official model (a zero flow is therefore not an identity warp).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from os import PathLike

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint, state_dict_of, strip_module_prefix

NUM_REFS = 5
PERCEPTUAL_PREFIX = "perceptual."


def _corner_coords(n: int, like: torch.Tensor) -> torch.Tensor:
    """`n` coordinates spanning [-1, 1] with the end points on the first and last sample."""
    return 2 * (torch.arange(n).to(like) / (n - 1)) - 1


def _resize_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="nearest")


def _warp(x: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Bilinear warp of `x` (B,C,H,W) by a (B,h,w,2) sampling grid, the grid bilinearly resized to (H,W)."""
    if deformation.shape[1:3] != x.shape[2:]:
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=x.shape[2:], mode="bilinear")
        deformation = deformation.permute(0, 2, 3, 1)
    return F.grid_sample(x, deformation, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------------------------- blocks


class ConvNormReLU(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU (stride 1: same size; stride 2 or more: downsampling)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class PreActResBlock(nn.Module):
    """x + conv2(relu(bn2(conv1(relu(bn1(x)))))), channel count preserved."""

    def __init__(self, channels: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(channels)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class AudioConv(nn.Module):
    """Conv1d -> BatchNorm1d (-> + input) -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, padding: int = 1, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv1d(cin, cout, 3, stride, padding), nn.BatchNorm1d(cout))
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return F.relu(out)


class AdaINLayer(nn.Module):
    """Instance norm modulated per channel by a vector: IN(x) * (1 + gamma(v)) + beta(v)."""

    def __init__(self, channels: int, cond_dim: int, hidden: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def forward(self, x, cond):
        h = self.mlp_shared(cond.reshape(cond.size(0), -1))
        gamma = self.mlp_gamma(h)[:, :, None, None]
        beta = self.mlp_beta(h)[:, :, None, None]
        return F.instance_norm(x) * (1 + gamma) + beta


class SPADELayer(nn.Module):
    """Instance norm modulated per pixel by a feature map: IN(x) + IN(x) * gamma(m) + beta(m)."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 256):
        super().__init__()
        self.conv1 = nn.Conv2d(cond_channels, hidden, 3, padding=1)
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x, cond):
        normed = F.instance_norm(x)
        h = self.conv1(cond)
        return normed + normed * self.gamma(h) + self.beta(h)


class _ModulatedBlock(nn.Module):
    """Two (modulate -> LeakyReLU(0.2) -> 3x3 conv) steps sharing one condition."""

    def _run(self, x, cond, first, second):
        x = self.conv_1(F.leaky_relu(first(x, cond), 0.2))
        return self.conv_2(F.leaky_relu(second(x, cond), 0.2))


class AdaINBlock(_ModulatedBlock):
    """Audio-conditioned block: AdaIN, LeakyReLU, conv, twice."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.adain_layer_1 = AdaINLayer(channels, cond_dim)
        self.adain_layer_2 = AdaINLayer(channels, cond_dim)

    def forward(self, x, cond):
        return self._run(x, cond, self.adain_layer_1, self.adain_layer_2)


class SPADEBlock(_ModulatedBlock):
    """Spatially conditioned block: SPADE, LeakyReLU, conv, twice."""

    def __init__(self, channels: int, cond_channels: int, hidden: int = 256):
        super().__init__()
        self.conv_1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.spade_layer_1 = SPADELayer(channels, cond_channels, hidden)
        self.spade_layer_2 = SPADELayer(channels, cond_channels, hidden)

    def forward(self, x, cond):
        return self._run(x, cond, self.spade_layer_1, self.spade_layer_2)


class AdaAT(nn.Module):
    """Adaptive affine transformation: one (scale, rotation, translation) per channel, predicted from a code.

    Each channel is resampled through its own 2-D affine grid; the sampling is trilinear over
    (channel, y, x), so with the align_corners=True channel coordinates neighbouring channels mix.
    """

    def __init__(self, code_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.commn_linear = nn.Sequential(nn.Linear(code_dim, code_dim), nn.ReLU())
        self.scale = nn.Sequential(nn.Linear(code_dim, channels), nn.Sigmoid())
        self.rotation = nn.Sequential(nn.Linear(code_dim, channels), nn.Tanh())
        self.translation = nn.Sequential(nn.Linear(code_dim, 2 * channels), nn.Tanh())

    def forward(self, feat, code):
        b, c, h, w = feat.shape
        code = self.commn_linear(code)
        scale = (self.scale(code) * 2)[:, :, None, None]
        angle = (self.rotation(code) * 3.14159)[:, :, None, None]
        shift = self.translation(code).view(b, c, 2, 1, 1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        x = _corner_coords(w, feat).view(1, 1, 1, w)
        y = _corner_coords(h, feat).view(1, 1, h, 1)
        gx = (cos * x - sin * y) * scale + shift[:, :, 0]
        gy = (sin * x + cos * y) * scale + shift[:, :, 1]
        gz = _corner_coords(c, feat).view(1, c, 1, 1).expand(b, c, h, w)
        grid = torch.stack([gx, gy, gz], dim=-1)
        out = F.grid_sample(feat.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.squeeze(1)


# -------------------------------------------------------------------------------------------- encoders


class ReferenceImageEncoder(nn.Module):
    """The N references stacked on channels -> features at 128^2 (32 ch), 64^2 (128 ch), 32^2 (256 ch).

    Channels are stacked colour-major (all references' channel 0, then channel 1, ...), as in the
    official model; the reference heatmaps elsewhere are stacked reference-major.
    """

    def __init__(self, num_refs: int = NUM_REFS, slim: int = 1):
        super().__init__()
        c32, c64, c128, c256 = (n // slim for n in (32, 64, 128, 256))
        self.conv1 = nn.Sequential(ConvNormReLU(3 * num_refs, c32), PreActResBlock(c32), PreActResBlock(c32))
        self.conv2 = nn.Sequential(
            ConvNormReLU(c32, c64, stride=2), ConvNormReLU(c64, c128), PreActResBlock(c128), PreActResBlock(c128)
        )
        self.conv3 = nn.Sequential(
            ConvNormReLU(c128, c256, stride=2), ConvNormReLU(c256, c256), PreActResBlock(c256), PreActResBlock(c256)
        )

    def forward(self, refs):
        f128 = self.conv1(refs.transpose(1, 2).flatten(1, 2))
        f64 = self.conv2(f128)
        return [f128, f64, self.conv3(f64)]


class HeatmapEncoder(nn.Module):
    """Heatmap(s) -> 32-channel features at 1/4 resolution."""

    def __init__(self, in_channels: int, slim: int = 1):
        super().__init__()
        c = 32 // slim
        self.heatmap_down = nn.Sequential(
            ConvNormReLU(in_channels, c, kernel_size=7, padding=3),
            ConvNormReLU(c, c, stride=2),
            ConvNormReLU(c, c, stride=2),
        )

    def forward(self, x):
        return self.heatmap_down(x)


class AudioEncoder(nn.Module):
    """wav2vec2 window (B,768,10) -> audio code (B,128,1)."""

    def __init__(self, slim: int = 1):
        super().__init__()
        c = 128 // slim
        self.w2v_encoder = nn.Sequential(
            AudioConv(768, c),
            AudioConv(c, c, stride=2),
            AudioConv(c, c, residual=True),
            AudioConv(c, c, residual=True),
            AudioConv(c, c, stride=2),
            AudioConv(c, c, residual=True),
            AudioConv(c, c, residual=True),
            AudioConv(c, c, residual=True),
            AudioConv(c, c, padding=0),
        )

    def forward(self, x):
        return self.w2v_encoder(x)


# ------------------------------------------------------------------------------------ deformation paths


class SpatialPath(nn.Module):
    """Spatial path: channel-wise AdaAT deformation of the stacked-reference features at 3 scales.

    The affine parameters come from [audio code, pooled CNN code of (32^2 reference features,
    reference heatmaps, target heatmap)].
    """

    def __init__(self, slim: int = 1):
        super().__init__()
        c32, c128, c256 = (n // slim for n in (32, 128, 256))
        self.alignment_encoder = nn.Sequential(
            ConvNormReLU(c256 + c32 + c32, c128),
            ConvNormReLU(c128, c128, kernel_size=11, padding=5),
            ConvNormReLU(c128, c128, padding=1, stride=3),
            ConvNormReLU(c128, c128, kernel_size=7, padding=3),
            ConvNormReLU(c128, c128, stride=2),
            ConvNormReLU(c128, c128),
            ConvNormReLU(c128, c128, stride=2),
            ConvNormReLU(c128, c128),
            ConvNormReLU(c128, c128, padding=0, stride=2),
        )
        self.adaAT_32 = AdaAT(c256, c256)
        self.adaAT_64 = AdaAT(c256, c128)
        self.adaAT_128 = AdaAT(c256, c32)
        self.adaAT = nn.ModuleList([self.adaAT_128, self.adaAT_64, self.adaAT_32])
        self.appearance_conv_list_32 = self._appearance(c256)
        self.appearance_conv_list_64 = self._appearance(c128)
        self.appearance_conv_list_128 = self._appearance(c32)
        self.appearance_conv_list = nn.ModuleList(
            [self.appearance_conv_list_128, self.appearance_conv_list_64, self.appearance_conv_list_32]
        )

    @staticmethod
    def _appearance(channels: int) -> nn.ModuleList:
        """Residual convs before and after the deformation."""
        return nn.ModuleList(
            [nn.Sequential(PreActResBlock(channels), PreActResBlock(channels)) for _ in range(2)]
        )

    def forward(self, ref_feats, ref_heatmap_feats, target_heatmap_feats, audio_code):
        align = self.alignment_encoder(torch.cat([ref_feats[2], ref_heatmap_feats, target_heatmap_feats], 1))
        code = torch.cat([audio_code.squeeze(-1), F.adaptive_avg_pool2d(align, 1).flatten(1)], 1)
        out = []
        for feat, (before, after), warp in zip(ref_feats, self.appearance_conv_list, self.adaAT):
            out.append(after(warp(before(feat), code)))
        return out


class TemporalPath(nn.Module):
    """Temporal path: per reference, a dense flow and a confidence map, predicted from the reference
    (image + heatmap) with SPADE (target heatmap) and AdaIN (audio); the warped multi-scale reference
    features are averaged with the sigmoid confidences as weights (normalised by their sum + 1e-5).
    """

    def __init__(self, hidden: int = 256, slim: int = 1):
        super().__init__()
        c32, c128, c256, hidden = (n // slim for n in (32, 128, 256, hidden))
        self.conv1 = nn.Conv2d(6, c32, 7, padding=3)
        self.conv1_bn = nn.BatchNorm2d(c32)
        self.conv2 = nn.Conv2d(c32, c128, 3, stride=2, padding=1)
        self.conv2_bn = nn.BatchNorm2d(c128)
        self.conv3 = nn.Conv2d(c128, c256, 3, stride=2, padding=1)
        self.conv3_bn = nn.BatchNorm2d(c256)
        self.spade_layer_1 = SPADEBlock(c128, 3, hidden)
        self.adain_1 = AdaINBlock(c128, c128)
        self.spade_layer_2 = SPADEBlock(c128, 3, hidden)
        self.adain_2 = AdaINBlock(c128, c128)
        self.spade_layer_4 = SPADEBlock(c32, 3, hidden)
        self.conv_4 = nn.Conv2d(c32, 2, 7, padding=3)
        self.conv_5 = nn.Sequential(
            nn.Conv2d(c32, c32, 7, padding=3), nn.ReLU(), nn.Conv2d(c32, 1, 7, padding=3), nn.Sigmoid()
        )

    def _flow_and_features(self, ref_img, ref_heatmap, target_heatmap, target_heatmap_64, audio):
        """One reference -> (sampling grid, confidence map, features at 128^2, 64^2, 32^2)."""
        f128 = F.relu(self.conv1_bn(self.conv1(torch.cat([ref_img, ref_heatmap], 1))))
        f64 = F.relu(self.conv2_bn(self.conv2(f128)))
        f32 = F.relu(self.conv3_bn(self.conv3(f64)))
        h = self.spade_layer_1(f64, target_heatmap_64)
        h = self.adain_1(h, audio)
        h = self.spade_layer_2(h, target_heatmap_64)
        h = self.adain_2(h, audio)
        h = self.spade_layer_4(F.pixel_shuffle(h, 2), target_heatmap)
        flow = self.conv_4(h)
        weight = self.conv_5(h)
        _, _, fh, fw = flow.shape
        flow = 2 * torch.cat([flow[:, :1] / (fw - 1), flow[:, 1:] / (fh - 1)], 1)
        grid = torch.stack(
            torch.meshgrid(_corner_coords(fh, flow), _corner_coords(fw, flow), indexing="ij")[::-1], -1
        )
        return grid + flow.permute(0, 2, 3, 1), weight, (f128, f64, f32)

    def forward(self, ref_imgs, ref_heatmaps, target_heatmap, audio_code):
        audio = audio_code.transpose(1, 2)
        target_heatmap_64 = _resize_nearest(target_heatmap, 64)
        sums, total = [0.0, 0.0, 0.0], 0.0
        for n in range(ref_imgs.size(1)):
            grid, weight, feats = self._flow_and_features(
                ref_imgs[:, n], ref_heatmaps[:, n], target_heatmap, target_heatmap_64, audio
            )
            total = total + weight
            for i, feat in enumerate(feats):
                sums[i] = sums[i] + _warp(feat, grid) * _resize_nearest(weight, feat.size(-1))
        total = total + 1e-5
        return [s / _resize_nearest(total, s.size(-1)) for s in sums]


# ------------------------------------------------------------------------------------------- generator


class InpaintingGenerator(nn.Module):
    """Masked face + target heatmap -> face; fused reference features enter via SPADE, audio via AdaIN."""

    def __init__(self, slim: int = 1):
        super().__init__()
        c32, c128, c256, c512 = (n // slim for n in (32, 128, 256, 512))
        self.conv1 = nn.Conv2d(6, c32, 7, padding=3, bias=False)
        self.conv1_bn = nn.BatchNorm2d(c32)
        self.conv2 = nn.Conv2d(c32, c128, 3, stride=2, padding=1, bias=False)
        self.conv2_bn = nn.BatchNorm2d(c128)
        self.conv3 = nn.Conv2d(c128, c512, 3, stride=2, padding=1, bias=False)
        self.conv3_bn = nn.BatchNorm2d(c512)
        self.spade_1 = SPADEBlock(c512, c256, hidden=c256)
        self.adain_1 = AdaINBlock(c512, c128)
        self.spade_2 = SPADEBlock(c128, c128, hidden=c256)
        self.adain_2 = AdaINBlock(c128, c128)
        self.spade_3 = SPADEBlock(c32, c32, hidden=c256)
        self.adain_3 = AdaINBlock(c32, c128)
        self.conv_last = nn.Conv2d(c32, 3, 7, padding=3, bias=False)

    def forward(self, x, ref_feats, audio_code):
        audio = audio_code.transpose(1, 2)
        x = F.relu(self.conv1_bn(self.conv1(x)))
        x = F.relu(self.conv2_bn(self.conv2(x)))
        x = F.relu(self.conv3_bn(self.conv3(x)))
        x = F.pixel_shuffle(self.adain_1(self.spade_1(x, ref_feats[2]), audio), 2)
        x = F.pixel_shuffle(self.adain_2(self.spade_2(x, ref_feats[1]), audio), 2)
        x = self.adain_3(self.spade_3(x, ref_feats[0]), audio)
        return torch.sigmoid(self.conv_last(F.leaky_relu(x, 0.01)))


# ------------------------------------------------------------------------------------- CIL networks


class ChannelAlign(nn.Module):
    """1x1 conv + BatchNorm projecting deformed features to the 128-d CIL embedding space."""

    def __init__(self, cin: int, cout: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class MINE(nn.Module):
    """Statistics network T_theta(x, y) of the Donsker-Varadhan mutual-information bound (its loss:
    `stsa.training.renderer_losses.mine_loss`)."""

    def __init__(self, in_dim: int = 256, hidden: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)
        for fc in (self.fc1, self.fc2, self.fc3):
            nn.init.normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x, y):
        h = F.elu(self.fc1(torch.cat([x, y], 1)))
        return self.fc3(F.elu(self.fc2(h)))


# ----------------------------------------------------------------------------------------- full model


class FlatBatch:
    """Inputs flattened to (B*T, ...) rows, time-major (row t*B + b); references repeated T times."""

    def __init__(self, face, target_heatmap, ref_imgs, ref_heatmaps, audio):
        self.shape = None
        if face.dim() == 5:
            b, t = face.shape[:2]
            self.shape = (b, t)
            face, target_heatmap, audio = (x.transpose(0, 1).flatten(0, 1) for x in (face, target_heatmap, audio))
            ref_imgs, ref_heatmaps = ref_imgs.repeat(t, 1, 1, 1, 1), ref_heatmaps.repeat(t, 1, 1, 1, 1)
        self.face, self.target_heatmap, self.audio = face, target_heatmap, audio
        self.ref_imgs, self.ref_heatmaps = ref_imgs, ref_heatmaps

    def unflatten(self, rows):
        """(T*B, C, H, W) -> (B, C, T, H, W) for 5-D inputs; unchanged for 4-D ones."""
        if self.shape is None:
            return rows
        b, t = self.shape
        return rows.view(t, b, *rows.shape[1:]).permute(1, 2, 0, 3, 4)


class FaceRenderer(nn.Module):
    """STSA face synthesis (inference composition; see the module docstring).

    forward(T_frame_img (B,T,3,H,W), T_driving_heatmap (B,T,3,H,W), ref_N_frame_img (B,N,3,H,W),
    ref_N_frame_heatmap (B,N,3,H,W), T_audio_w2v (B,T,768,10)) -> generated face (B,3,T,H,W).
    4-D inputs without the T axis give (B,3,H,W). Rows 64..127 of the template face are masked here.
    `perceptual` (training only) is registered at its official state-dict position, after `translation`.
    `slim` divides every channel width (1 = the official network; larger values give small test models).
    `use_spatial` / `use_temporal` False replace that path's deformed features by zeros (Table III
    ablations "w/o spatial path" / "w/o temporal path").
    """

    def __init__(self, *, perceptual: nn.Module | None = None, slim: int = 1):
        super().__init__()
        self.slim = slim
        c32, c64, c128, c256, c512 = (n // slim for n in (32, 64, 128, 256, 512))
        self.ref_imgs_encoder = ReferenceImageEncoder(slim=slim)
        self.heatmap_encoder_tar = HeatmapEncoder(3, slim=slim)
        self.heatmap_encoder_ref = HeatmapEncoder(3 * NUM_REFS, slim=slim)
        self.audio_encoder = AudioEncoder(slim=slim)
        self.spatial_module = SpatialPath(slim=slim)
        self.temporal_module = TemporalPath(slim=slim)
        self.source_img_encoder = nn.Sequential(
            ConvNormReLU(3, c32, kernel_size=7, padding=3),
            ConvNormReLU(c32, c64, stride=2),
            ConvNormReLU(c64, c128, stride=2),
        )
        self.fuse_32 = nn.Sequential(ConvNormReLU(c512, c256), ConvNormReLU(c256, c256))
        self.fuse_64 = nn.Sequential(ConvNormReLU(c256, c128), ConvNormReLU(c128, c128))
        self.fuse_128 = nn.Sequential(ConvNormReLU(c64, c32), ConvNormReLU(c32, c32))
        self.translation = InpaintingGenerator(slim=slim)
        if perceptual is not None:
            self.perceptual = perceptual
        self.align_layers = nn.ModuleList([ChannelAlign(c, c128) for c in (c32, c128, c256)])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
        self.mine = MINE(c256, c128)
        self.use_spatial = True
        self.use_temporal = True

    def deform_and_generate(self, batch: FlatBatch):
        """Flattened rows -> (generated face rows, spatially deformed feats, temporally deformed feats)."""
        masked = batch.face.clone()
        masked[:, :, masked.size(2) // 2 :] = 0
        audio_code = self.audio_encoder(batch.audio)
        spatial = temporal = None
        if self.use_spatial:
            ref_feats = self.ref_imgs_encoder(batch.ref_imgs)
            spatial = self.spatial_module(
                ref_feats,
                self.heatmap_encoder_ref(batch.ref_heatmaps.flatten(1, 2)),
                self.heatmap_encoder_tar(batch.target_heatmap),
                audio_code,
            )
        if self.use_temporal:
            temporal = self.temporal_module(batch.ref_imgs, batch.ref_heatmaps, batch.target_heatmap, audio_code)
        spatial = spatial or [torch.zeros_like(f) for f in temporal]
        temporal = temporal or [torch.zeros_like(f) for f in spatial]
        fused = [
            fuse(torch.cat([s, t], 1))
            for fuse, s, t in zip((self.fuse_128, self.fuse_64, self.fuse_32), spatial, temporal)
        ]
        face = self.translation(torch.cat([masked, batch.target_heatmap], 1), fused, audio_code)
        return face, spatial, temporal

    def forward(self, T_frame_img, T_driving_heatmap, ref_N_frame_img, ref_N_frame_heatmap, T_audio_w2v):
        batch = FlatBatch(T_frame_img, T_driving_heatmap, ref_N_frame_img, ref_N_frame_heatmap, T_audio_w2v)
        face, _, _ = self.deform_and_generate(batch)
        return batch.unflatten(face)


# ------------------------------------------------------------------------------------------- checkpoints


def split_official_state_dict(state: Mapping[str, torch.Tensor]):
    """Official checkpoint state -> (renderer state, perceptual-VGG state).

    Strips DataParallel `module.` prefixes; the renderer part is every key not under `perceptual.`.
    """
    renderer, perceptual = OrderedDict(), OrderedDict()
    for key, value in strip_module_prefix(state).items():
        (perceptual if key.startswith(PERCEPTUAL_PREFIX) else renderer)[key] = value
    return renderer, perceptual


RENDERER_INFO_KEY = "stsa_bench"
"""Checkpoint entry (beside "state_dict") with the settings a trained variant needs at inference:
{"slim": channel divisor, "use_spatial": bool, "use_temporal": bool}. Official checkpoints lack it."""


def slim_of(state: Mapping[str, torch.Tensor]) -> int:
    """Channel divisor of a renderer state dict (the official network has 32 channels in `translation.conv1`)."""
    return 32 // state["translation.conv1.weight"].shape[0]


def load_renderer(path_or_state_dict, device="cpu") -> FaceRenderer:
    """Inference `FaceRenderer` in eval mode from an official checkpoint (path or loaded dict).

    Accepts `{"state_dict": ...}` or a bare state dict, with or without `module.` prefixes.
    The VGG-19 `perceptual.*` weights are dropped; every other key must match exactly (strict).
    Checkpoints written by `stsa.training` may be slim and may carry path ablations (RENDERER_INFO_KEY).
    """
    checkpoint = path_or_state_dict
    if isinstance(checkpoint, (str, PathLike)):
        checkpoint = load_checkpoint(checkpoint)
    info = checkpoint.get(RENDERER_INFO_KEY, {}) if isinstance(checkpoint, Mapping) else {}
    renderer_state, _ = split_official_state_dict(state_dict_of(checkpoint))
    model = FaceRenderer(slim=slim_of(renderer_state))
    model.use_spatial = bool(info.get("use_spatial", True))
    model.use_temporal = bool(info.get("use_temporal", True))
    model.load_state_dict(renderer_state, strict=True)
    return model.to(device).eval()


def __getattr__(name: str):
    """`FaceRendererTrainer` lives with the training code; importing it from here loads that code."""
    if name == "FaceRendererTrainer":
        from .training.renderer_losses import FaceRendererTrainer

        return FaceRendererTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
