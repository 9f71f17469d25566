"""In-tree Wav2Lip (Prajwal et al., "A Lip Sync Expert Is All You Need", ACM MM 2020).

Inference as the official `inference.py` does it, with one stated difference: face boxes come
from this harness's FaceMesh landmarks instead of S3FD.

- Boxes: the landmarks' extent per frame (FaceMesh reaches higher up the forehead than S3FD),
  grown by `pads` (top, bottom, left, right; official default 0 10 0 0), clipped to the frame,
  then the official 5-frame forward mean (`get_smoothened_boxes`, integer boxes).
- Face: the box resized to 96x96 (bilinear), BGR; the input is the face with its lower half zeroed
  stacked with the unmasked face (the official inference reference is the frame itself), / 255.
- Audio: Wav2Lip's mel (`wav2lip_mel`); frame i gets the 16 mel frames from int(i x 80 / fps).
  The official loop stops at the first window that would overrun the mel and outputs that many
  frames (3 short of N at 25 fps); here frames past it reuse that last full window, so the output
  keeps all N frames and is identical to the official output on the frames both have.
- Paste-back: the prediction x 255 truncated to uint8, resized (bilinear) to the box and pasted;
  every pixel outside the box is the template's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from stsa_bench.core import catalogue
from stsa_bench.core.devices import resolve_device
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.mel import mel_windows, wav2lip_mel
from stsa_bench.core.registry import METHODS
from stsa_bench.core.weights import LazyWeights, WeightsSpec

from .base import Generated, Method, Sample

FACE = 96
SMOOTH_T = 5


def smooth_boxes(boxes: np.ndarray, t: int = SMOOTH_T) -> np.ndarray:
    """The official `get_smoothened_boxes`: box i = mean of boxes i..i+t-1 (the last t near the end), in place on ints."""
    boxes = boxes.copy()
    n = len(boxes)
    for i in range(n):
        window = boxes[n - t :] if i + t > n else boxes[i : i + t]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def wav2lip_boxes(landmarks: np.ndarray, width: int, height: int, pads=(0, 10, 0, 0), smooth: bool = True) -> np.ndarray:
    """(N, 4) int x1, y1, x2, y2: landmark extent + pads (top, bottom, left, right), clipped, gaps
    interpolated from the nearest frames with a face, then smoothed (official 5-frame mean)."""
    from stsa_bench.core.faces import fill_missing_frames

    xy = landmarks[..., :2].astype(np.float64) * [width, height]
    raw = fill_missing_frames(np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1))
    top, bottom, left, right = pads
    x1 = np.maximum(0, raw[:, 0] - left)
    y1 = np.maximum(0, raw[:, 1] - top)
    x2 = np.minimum(width, raw[:, 2] + right)
    y2 = np.minimum(height, raw[:, 3] + bottom)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(int)
    boxes = smooth_boxes(boxes) if smooth and len(boxes) >= SMOOTH_T else boxes
    if ((boxes[:, 2] - boxes[:, 0]) < 2).any() or ((boxes[:, 3] - boxes[:, 1]) < 2).any():
        raise ValueError("a face box is smaller than 2 pixels")
    return boxes


@dataclass(frozen=True)
class Wav2LipOptions:
    batch_size: int = 128
    """Frames per generator batch (official --wav2lip_batch_size)."""
    pads: tuple[int, ...] = (0, 10, 0, 0)
    """Face box padding top, bottom, left, right in pixels (official --pads)."""
    smooth: bool = True
    """The official 5-frame box smoothing (false = --nosmooth)."""


@METHODS.register("wav2lip")
class Wav2LipMethod(Method):
    """Wav2Lip generator (official `wav2lip.pth`), FaceMesh face boxes, batched on `runtime.device`."""

    version = "official-inference"
    Options = Wav2LipOptions
    weights_spec: ClassVar[WeightsSpec] = catalogue.WAV2LIP

    @classmethod
    def weights_specs(cls) -> list[WeightsSpec]:
        return [cls.weights_spec]

    def __init__(self, env=None, /, **options):
        super().__init__(env, **options)
        if len(self.opts.pads) != 4:
            raise ConfigError(f"{self.name}.pads needs 4 integers (top, bottom, left, right), got {list(self.opts.pads)}")
        if self.opts.batch_size < 1:
            raise ConfigError(f"{self.name}.batch_size must be >= 1")
        self.device = resolve_device(self.env.device)
        self._weights = LazyWeights(self.weights_spec, self.env.weights, self._load)

    def _load(self, path):
        from .wav2lip_model import load_wav2lip

        allow = self.weights_spec.torchscript or bool(self.env.weights.get("allow_torchscript", False))
        return load_wav2lip(path, self.device, allow_torchscript=allow)

    def model(self):
        model = self._weights.get()
        self.weights_sha = self._weights.sha256
        return model

    def generate(self, sample: Sample) -> Generated:
        import cv2
        import torch

        frames = np.asarray(sample.frames)
        n, h, w = frames.shape[:3]
        try:
            boxes = wav2lip_boxes(sample.landmarks, w, h, self.opts.pads, self.opts.smooth)
            mels = mel_windows(wav2lip_mel(sample.audio), n, sample.fps)
        except ValueError as exc:
            raise ClipError(f"{sample.clip_id}: wav2lip: {exc}") from exc
        model = self.model()
        out = frames.copy()
        for start in range(0, n, self.opts.batch_size):
            idx = range(start, min(n, start + self.opts.batch_size))
            faces = np.stack([cv2.resize(frames[i, y1:y2, x1:x2, ::-1], (FACE, FACE)) for i in idx for x1, y1, x2, y2 in [boxes[i]]])
            masked = faces.copy()
            masked[:, FACE // 2 :] = 0
            x = np.concatenate([masked, faces], axis=3).astype(np.float32) / 255.0
            face_t = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
            mel_t = torch.from_numpy(mels[start : start + len(idx)])[:, None].to(self.device)
            with torch.inference_mode():
                pred = model(mel_t, face_t)
            pred = (pred.permute(0, 2, 3, 1).float().cpu().numpy() * 255.0).astype(np.uint8)
            for p, i in zip(pred, idx):
                x1, y1, x2, y2 = boxes[i]
                out[i, y1:y2, x1:x2] = cv2.resize(np.ascontiguousarray(p[..., ::-1]), (x2 - x1, y2 - y1))
        return Generated(out, sample.audio)


@METHODS.register("wav2lip_gan")
class Wav2LipGANMethod(Wav2LipMethod):
    """Wav2Lip with the visual-quality discriminator checkpoint (official `wav2lip_gan.pth`)."""

    weights_spec = catalogue.WAV2LIP_GAN
