"""Wav2Lip generator and its SyncNet_color lip-sync expert, weight-compatible with the official checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stsa_bench.core import catalogue
from stsa_bench.core.weights import WeightsMissing, load_state_dict

WAV2LIP_WEIGHTS = catalogue.WAV2LIP
WAV2LIP_GAN_WEIGHTS = catalogue.WAV2LIP_GAN
LIPSYNC_EXPERT_WEIGHTS = catalogue.LIPSYNC_EXPERT


class ConvBNReLU(nn.Module):
    """Conv (or transposed conv) + BatchNorm + ReLU, with an optional identity shortcut before the ReLU."""

    def __init__(self, cin, cout, kernel, stride, padding, residual=False, transpose=False, output_padding=0):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x):
        y = self.conv_block(x)
        if self.residual:
            y = y + x
        return F.relu(y)


def _res(c):
    return ConvBNReLU(c, c, 3, 1, 1, residual=True)


def _up(cin, cout):
    return ConvBNReLU(cin, cout, 3, 2, 1, transpose=True, output_padding=1)


def _audio_encoder(extra_256_residual):
    layers = [
        ConvBNReLU(1, 32, 3, 1, 1), _res(32), _res(32),
        ConvBNReLU(32, 64, 3, (3, 1), 1), _res(64), _res(64),
        ConvBNReLU(64, 128, 3, 3, 1), _res(128), _res(128),
        ConvBNReLU(128, 256, 3, (3, 2), 1), _res(256),
    ]
    if extra_256_residual:
        layers.append(_res(256))
    layers += [ConvBNReLU(256, 512, 3, 1, 0), ConvBNReLU(512, 512, 1, 1, 0)]
    return nn.Sequential(*layers)


class Wav2Lip(nn.Module):
    """Wav2Lip generator: forward(audio (B,1,80,16) or (B,T,1,80,16), face (B,6,96,96) or (B,6,T,96,96))."""

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBNReLU(6, 16, 7, 1, 3)),
            nn.Sequential(ConvBNReLU(16, 32, 3, 2, 1), _res(32), _res(32)),
            nn.Sequential(ConvBNReLU(32, 64, 3, 2, 1), _res(64), _res(64), _res(64)),
            nn.Sequential(ConvBNReLU(64, 128, 3, 2, 1), _res(128), _res(128)),
            nn.Sequential(ConvBNReLU(128, 256, 3, 2, 1), _res(256), _res(256)),
            nn.Sequential(ConvBNReLU(256, 512, 3, 2, 1), _res(512)),
            nn.Sequential(ConvBNReLU(512, 512, 3, 1, 0), ConvBNReLU(512, 512, 1, 1, 0)),
        ])
        self.audio_encoder = _audio_encoder(extra_256_residual=False)
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBNReLU(512, 512, 1, 1, 0)),
            nn.Sequential(ConvBNReLU(1024, 512, 3, 1, 0, transpose=True), _res(512)),
            nn.Sequential(_up(1024, 512), _res(512), _res(512)),
            nn.Sequential(_up(768, 384), _res(384), _res(384)),
            nn.Sequential(_up(512, 256), _res(256), _res(256)),
            nn.Sequential(_up(320, 128), _res(128), _res(128)),
            nn.Sequential(_up(160, 64), _res(64), _res(64)),
        ])
        self.output_block = nn.Sequential(ConvBNReLU(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def forward(self, audio_sequences, face_sequences):
        batch = audio_sequences.size(0)
        sequence = face_sequences.dim() > 4
        if sequence:
            steps = audio_sequences.size(1)
            audio_sequences = torch.cat([audio_sequences[:, t] for t in range(steps)], dim=0)
            face_sequences = torch.cat([face_sequences[:, :, t] for t in range(face_sequences.size(2))], dim=0)

        x = self.audio_encoder(audio_sequences)
        skips = []
        f = face_sequences
        for block in self.face_encoder_blocks:
            f = block(f)
            skips.append(f)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), skips.pop()), dim=1)
        x = self.output_block(x)

        if sequence:
            x = torch.stack(torch.split(x, batch, dim=0), dim=2)
        return x


class SyncNetColor(nn.Module):
    """Wav2Lip's lip-sync expert: forward(audio (B,1,80,16), face (B,15,48,96)) -> L2-normalised (audio, face) embeddings."""

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(
            ConvBNReLU(15, 32, 7, 1, 3),
            ConvBNReLU(32, 64, 5, (1, 2), 1), _res(64), _res(64),
            ConvBNReLU(64, 128, 3, 2, 1), _res(128), _res(128), _res(128),
            ConvBNReLU(128, 256, 3, 2, 1), _res(256), _res(256),
            ConvBNReLU(256, 512, 3, 2, 1), _res(512), _res(512),
            ConvBNReLU(512, 512, 3, 2, 1),
            ConvBNReLU(512, 512, 3, 1, 0),
            ConvBNReLU(512, 512, 1, 1, 0),
        )
        self.audio_encoder = _audio_encoder(extra_256_residual=True)

    def forward(self, audio_sequences, face_sequences):
        face = self.face_encoder(face_sequences)
        audio = self.audio_encoder(audio_sequences)
        audio = F.normalize(audio.reshape(audio.size(0), -1), p=2.0, dim=1)
        face = F.normalize(face.reshape(face.size(0), -1), p=2.0, dim=1)
        return audio, face


def load_wav2lip(path, device="cpu", model=None, allow_torchscript: bool = False):
    """Wav2Lip (or the given model, e.g. SyncNetColor()) strictly loaded from an official checkpoint, in
    eval mode; a TorchScript archive only with `allow_torchscript` (weights.allow_torchscript=true)."""
    model = Wav2Lip() if model is None else model
    state = load_state_dict(Path(path), allow_torchscript)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:])[:300]
        raise WeightsMissing(f"{path}: not a {type(model).__name__} checkpoint ({detail})") from exc
    return model.to(device).eval()
