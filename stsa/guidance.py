"""STSA guidance prediction network ("Heatmap_generator"), weight-compatible with the official checkpoint.

Given T=5 wav2vec2 audio windows, the T pose heatmaps (upper-face sketch) of the template frames and
N_l full-face reference heatmaps, the network predicts, for every frame, a lip+jaw heatmap and the
57 content landmarks (17 jaw + 40 lip points).

Data flow:
  1. Convolutional encoders map each audio window, pose heatmap and reference heatmap to a 512-d
     vector; one shared LayerNorm normalises all three kinds.
  2. A Transformer encoder fuses the token sequence [N_l reference, T audio, T pose] (positional
     tables on audio and pose tokens, a learned modality embedding on every token).
  3. A coupled decoder turns each audio-token output (lip branch) and pose-token output (jaw branch)
     into a 128x128 heatmap, exchanging messages between the branches at 8x8 and injecting the pose
     heatmap at 32x32.
  4. Each branch heatmap is re-encoded, added to its token (shortcut) and mapped linearly to
     landmarks.

State-dict keys equal the official ones. Two facts of the official layout are kept on purpose:
`heatmap_decoder.message_j2l` exists but is never applied (the official decoder uses `message_l2j` in
both directions), and the positional tables `fusion_transformer.position_{v,a}.pe` are persistent
buffers, so a checkpoint's values replace the sinusoidal tables built here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .checkpoints import load_state_dict

JAW_POINTS = 17
N_LIP_POINTS = 40
CONTENT_POINTS = JAW_POINTS + N_LIP_POINTS

MODALITY_POSE, MODALITY_AUDIO, MODALITY_REFERENCE = 1, 2, 3

AUDIO_CHANNELS = 768


class ConvUnit(nn.Module):
    """act(BN(conv(x)) [+ x]): a convolution with batch norm, optional identity shortcut, ReLU or tanh."""

    def __init__(self, conv: nn.Module, norm: nn.Module, residual: bool = False, act: str = "relu"):
        super().__init__()
        self.conv_block = nn.Sequential(conv, norm)
        self.residual = residual
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        if self.residual:
            y = y + x
        return self.act(y)


def conv1d_unit(cin, cout, kernel, stride, padding, residual=False, act="relu") -> ConvUnit:
    """ConvUnit over a 1-D sequence (Conv1d + BatchNorm1d)."""
    return ConvUnit(nn.Conv1d(cin, cout, kernel, stride, padding), nn.BatchNorm1d(cout), residual, act)


def conv2d_unit(cin, cout, kernel, stride, padding, residual=False, act="relu") -> ConvUnit:
    """ConvUnit over an image (Conv2d + BatchNorm2d)."""
    return ConvUnit(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), residual, act)


class UpConvUnit(nn.Module):
    """ReLU(BN(transposed conv 4x4 (x))): one upsampling step of the heatmap decoder."""

    def __init__(self, cin: int, cout: int, stride: int, padding: int):
        super().__init__()
        self.convT_block = nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convT_block(x))


# (cin, cout, kernel, stride, padding, residual); the last unit of every encoder ends in tanh.
_AUDIO_ENCODER = [
    (AUDIO_CHANNELS, 128, 3, 1, 1, False),
    (128, 128, 3, 1, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 2, 1, False),
    (512, 512, 3, 1, 1, True),
    (512, 512, 3, 1, 1, True),
    (512, 512, 3, 1, 1, False),
    (512, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
]

_HEATMAP_ENCODER = [
    (1, 32, 3, 2, 1, False),
    (32, 32, 3, 1, 1, True),
    (32, 32, 3, 1, 1, True),
    (32, 64, 3, 3, 1, False),
    (64, 64, 3, 1, 1, True),
    (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False),
    (128, 128, 3, 1, 1, True),
    (128, 128, 3, 1, 1, True),
    (128, 256, 3, 3, 1, False),
    (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False),
    (512, 512, 1, 1, 0, False),
]


def _encoder(unit, spec) -> nn.Sequential:
    """Stack of conv units from a spec table; the final unit uses tanh."""
    last = len(spec) - 1
    return nn.Sequential(
        *(unit(*row[:5], residual=row[5], act="tanh" if i == last else "relu") for i, row in enumerate(spec))
    )


def audio_encoder() -> nn.Sequential:
    """(N, 768, 10) wav2vec2 window -> (N, 512, 1) embedding in (-1, 1)."""
    return _encoder(conv1d_unit, _AUDIO_ENCODER)


def heatmap_encoder() -> nn.Sequential:
    """(N, 1, 128, 128) heatmap -> (N, 512, 1, 1) embedding in (-1, 1)."""
    return _encoder(conv2d_unit, _HEATMAP_ENCODER)


class SinusoidalTable(nn.Module):
    """Persistent (1, max_len, d_model) positional table; returns its first L rows for a (B, L, d) input."""

    def __init__(self, d_model: int = 512, max_len: int = 512):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", table.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pe[:, : x.size(1)]


class FusionTransformer(nn.Module):
    """Post-LN Transformer encoder over [reference, audio, pose] tokens with positional and modality embeddings."""

    def __init__(self, T: int, d_model: int, nlayers: int, nhead: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.T = T
        self.position_v = SinusoidalTable(d_model)
        self.position_a = SinusoidalTable(d_model)
        self.modality = nn.Embedding(4, d_model, padding_idx=0)
        self.dropout = nn.Dropout(p=dropout)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)

    def _modality(self, index: int, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """(batch, length, d) modality embedding rows for one modality index."""
        return self.modality(torch.full((batch, length), index, dtype=torch.long, device=device))

    def forward(self, ref: torch.Tensor, audio: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B, N_l, d), (B, T, d), (B, T, d) -> (B, N_l + 2T, d) fused tokens."""
        B, n_ref, device = ref.size(0), ref.size(1), ref.device
        pose_tokens = pose + self.position_v(pose) + self._modality(MODALITY_POSE, B, self.T, device)
        audio_tokens = audio + self.position_a(audio) + self._modality(MODALITY_AUDIO, B, self.T, device)
        ref_tokens = ref + self._modality(MODALITY_REFERENCE, B, n_ref, device)
        tokens = self.dropout(torch.cat((ref_tokens, audio_tokens, pose_tokens), dim=1))
        return self.transformer_encoder(tokens)


class CoupledHeatmapDecoder(nn.Module):
    """Two transposed-conv branches (lip: conv_t1-6, jaw: conv_t7-12), 1x1 -> 128x128, with message passing.

    After the second step (256 ch, 8x8) each branch adds `message_l2j` applied to the other branch;
    after the fourth (64 ch, 32x32) each adds an encoding of the pose heatmap. Output: tanh per branch.
    """

    def __init__(self, in_channels: int = 512, out_channels: int = 1):
        super().__init__()
        c = in_channels
        steps = [
            (c, c, 1, 0),
            (c, c // 2, 2, 1),
            (c // 2, c // 4, 2, 1),
            (c // 4, c // 8, 2, 1),
            (c // 8, c // 16, 2, 1),
            (c // 16, out_channels, 2, 1),
        ]
        for i, step in enumerate(steps + steps, start=1):
            self.add_module(f"conv_t{i}", UpConvUnit(*step))
        self.message_l2j = nn.Sequential(conv2d_unit(c // 2, c // 2, 3, 1, 1))
        self.message_j2l = nn.Sequential(conv2d_unit(c // 2, c // 2, 3, 1, 1))
        self.message_p2j = nn.Sequential(conv2d_unit(1, 32, 3, 2, 1), conv2d_unit(32, c // 8, 3, 2, 1))
        self.message_p2l = nn.Sequential(conv2d_unit(1, 32, 3, 2, 1), conv2d_unit(32, c // 8, 3, 2, 1))
        self.tanh = nn.Tanh()

    def _branch(self, first: int) -> list[nn.Module]:
        return [getattr(self, f"conv_t{i}") for i in range(first, first + 6)]

    def forward(self, lip: torch.Tensor, jaw: torch.Tensor, pose_heatmap: torch.Tensor):
        """(N, 512, 1, 1), (N, 512, 1, 1), (N, 1, 128, 128) -> lip and jaw heatmaps, each (N, 1, 128, 128)."""
        lip_up, jaw_up = self._branch(1), self._branch(7)
        x, y = lip, jaw
        for i in range(2):
            x, y = lip_up[i](x), jaw_up[i](y)
        x, y = x + self.message_l2j(y), y + self.message_l2j(x)
        for i in range(2, 4):
            x, y = lip_up[i](x), jaw_up[i](y)
        x = x + self.message_p2l(pose_heatmap)
        y = y + self.message_p2j(pose_heatmap)
        for i in range(4, 6):
            x, y = lip_up[i](x), jaw_up[i](y)
        return self.tanh(x), self.tanh(y)


def _init_linear_layers(module: nn.Module) -> None:
    """Xavier-normal weights and zero biases for every Linear (training initialisation of the official model)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        nn.init.constant_(module.bias, 0.0)


class GuidanceNet(nn.Module):
    """STSA guidance prediction: audio + pose + reference heatmaps -> content heatmap and landmarks."""

    def __init__(
        self,
        T: int = 5,
        d_model: int = 512,
        nlayers: int = 8,
        nhead: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
    ):
        super().__init__()
        if d_model != 512:
            raise ValueError(f"the encoders and decoder are built for 512-d tokens, got d_model={d_model}")
        self.T = T
        self.mel_encoder = audio_encoder()
        self.pose_encoder = heatmap_encoder()
        self.ref_encoder = heatmap_encoder()
        self.lip_encoder = heatmap_encoder()
        self.jaw_encoder = heatmap_encoder()
        self.heatmap_decoder = CoupledHeatmapDecoder(d_model, 1)
        self.fusion_transformer = FusionTransformer(T, d_model, nlayers, nhead, dim_feedforward, dropout)
        self.mouse_keypoint_map = nn.Linear(d_model, N_LIP_POINTS * 2)
        self.jaw_keypoint_map = nn.Linear(d_model, JAW_POINTS * 2)
        self.apply(_init_linear_layers)
        self.Norm = nn.LayerNorm(d_model)

    def forward(self, audio_windows: torch.Tensor, pose_heatmaps: torch.Tensor, ref_heatmaps: torch.Tensor):
        """Predict the lower-face guidance of T consecutive frames.

        audio_windows (B, T, 768, 10), pose_heatmaps (B, T, 1, 128, 128), ref_heatmaps (B, N_l, 1, 128, 128)
        -> content_heatmap (B*T, 1, 128, 128) in [0, 2) (lip + jaw, rows batch-major: b*T + t),
           content_landmarks (B*T, 2, 57): row 0 x, row 1 y; points 0-16 jaw, 17-56 lips.
        """
        B, T, n_ref = audio_windows.size(0), audio_windows.size(1), ref_heatmaps.size(1)
        n_pose = pose_heatmaps.size(1)
        if T != self.T or n_pose != self.T:
            raise ValueError(f"expected T={self.T} audio windows and pose heatmaps, got {T} and {n_pose}")
        d = self.Norm.normalized_shape[0]

        pose_flat = pose_heatmaps.reshape(B * T, *pose_heatmaps.shape[2:])
        audio = self.Norm(self.mel_encoder(audio_windows.reshape(B * T, *audio_windows.shape[2:])).flatten(1))
        pose = self.Norm(self.pose_encoder(pose_flat).flatten(1))
        ref = self.Norm(self.ref_encoder(ref_heatmaps.reshape(B * n_ref, *ref_heatmaps.shape[2:])).flatten(1))

        tokens = self.fusion_transformer(ref.view(B, n_ref, d), audio.view(B, T, d), pose.view(B, T, d))
        lip_token = tokens[:, n_ref : n_ref + T].reshape(B * T, d)
        jaw_token = tokens[:, n_ref + T :].reshape(B * T, d)

        lip_map, jaw_map = self.heatmap_decoder(lip_token[..., None, None], jaw_token[..., None, None], pose_flat)

        lip_landmarks = self.mouse_keypoint_map(self.lip_encoder(lip_map).flatten(1) + lip_token)
        jaw_landmarks = self.jaw_keypoint_map(self.jaw_encoder(jaw_map).flatten(1) + jaw_token)
        interleaved_xy = torch.cat([jaw_landmarks, lip_landmarks], dim=1).reshape(B * T, CONTENT_POINTS, 2)
        return lip_map + jaw_map, interleaved_xy.transpose(1, 2)


def load_guidance(path_or_state_dict, device: str | torch.device = "cpu") -> GuidanceNet:
    """GuidanceNet in eval mode, strictly loaded from a checkpoint path or an in-memory state dict.

    Accepts the official format (a dict whose "state_dict" holds the weights, keys optionally prefixed
    with "module.") as well as a bare state dict. Paths are read with torch.load(weights_only=True).
    """
    state = load_state_dict(path_or_state_dict)
    model = GuidanceNet()
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
