"""STSA inference over a whole clip, batched over frames (the official script runs one frame per forward).

Per output frame i (official inference.py @43994a7):
  template slots   s_t = ping-pong template index of i - 2 + t, t = 0..4 (clamped at 0)
  guidance input   wav2vec2 windows of frames i-2..i+2, pose heatmaps of the templates s_t, and the
                   N_l reference full-face heatmaps (fixed per clip)
  renderer input   the crop of template s_2 (lower half zeroed by the model), the predicted content
                   heatmap of t = 2 (clamped to 1, 3 channels), the N reference crops and heatmaps,
                   and frame i's wav2vec2 window
  output           the generated 128x128 face pasted into s_2's box, blended with the soft mask.
References (N_l landmark sets and N images) are the frames at int(linspace) positions of the frames
sorted by lip openness. `official_compat` pairs every reference image with the last reference's
heatmap, as the official script does (a defect); by default each reference has its own heatmap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import blend as B
from . import pipeline as P
from .precision import check_precision, emulation_warning


@dataclass(frozen=True)
class STSAOptions:
    batch_size: int = 32
    num_refs: int = 5
    official_compat: bool = False
    precision: str = "fp32"


@dataclass
class ClipInputs:
    """One template clip: BGR uint8 frames (N, H, W, 3), FaceMesh landmarks (N, 478|468, 2+) normalised
    to the frame, 68 iBUG points (N, 68, 2) in pixels for the blending mask, 16 kHz mono audio."""

    frames: np.ndarray
    landmarks: np.ndarray
    landmarks68: np.ndarray
    wav: np.ndarray


class STSAGenerator:
    """Guidance net + renderer + wav2vec2 on one device; `__call__` dubs a clip."""

    def __init__(self, guidance, renderer, wav2vec2, device: str = "cpu", options: STSAOptions | None = None):
        self.options = options or STSAOptions()
        check_precision(self.options.precision)
        self.device = torch.device(device)
        warning = emulation_warning(self.options.precision, self.device.type)
        if warning:
            warnings.warn(warning, stacklevel=2)
        self.guidance = guidance.to(self.device).eval()
        self.renderer = renderer.to(self.device).eval()
        self.wav2vec2 = wav2vec2.to(self.device).eval()

    def _autocast(self):
        p = self.options.precision
        if p == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def prepare(self, clip: ClipInputs, n_frames: int | None = None) -> dict:
        """Crops, boxes, heatmaps, references and audio windows (numpy), all model-free except wav2vec2."""
        from .audio import wav2vec2_features

        n_tpl, h, w = clip.frames.shape[:3]
        feats = wav2vec2_features(self.wav2vec2, clip.wav, str(self.device))
        n_out = P.num_audio_frames(len(feats)) if n_frames is None else n_frames
        used = P.select_landmarks(clip.landmarks, P.CROP_IDS)
        bounds = [P.crop_bounds(u, w, h) for u in used]
        boxes = [P.crop_box(u, w, h) for u in used]
        crops = P.crop_resize(clip.frames, boxes)
        full = np.stack([P.to_crop_coords(P.select_landmarks(lm, P.FULL_IDS_76_55), b) for lm, b in zip(clip.landmarks, bounds)])
        pose = full[:, : len(P.POSE76_IDS)]
        refs = P.select_references(P.lip_openness(clip.landmarks), self.options.num_refs)
        return {
            "n_out": n_out,
            "boxes": boxes,
            "crops": crops,
            "pose_heatmaps": P.pose_heatmaps(pose),
            "ref_guidance": P.full_heatmaps(full[refs]),
            "ref_crops": crops[refs],
            "ref_heatmaps": P.reference_heatmaps(full[refs], self.options.official_compat),
            "windows": P.audio_windows(feats, n_out),
            "slots": P.template_window_indices(n_tpl, n_out),
        }

    @torch.inference_mode()
    def faces(self, prep: dict) -> np.ndarray:
        """Generated faces, float32 (n_out, 128, 128, 3) BGR in [0, 1], in batches of `batch_size` frames."""
        dev, bs = self.device, max(1, self.options.batch_size)
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)  # noqa: E731
        windows = P.guidance_windows(prep["windows"])
        ref_g = as_t(prep["ref_guidance"][None, :, None])
        ref_imgs = as_t(prep["ref_crops"].transpose(0, 3, 1, 2)[None].astype(np.float32) / 255.0)
        ref_h = as_t(np.repeat(prep["ref_heatmaps"][None, :, None], 3, axis=2))
        out = np.empty((prep["n_out"], 128, 128, 3), np.float32)
        for start in range(0, prep["n_out"], bs):
            sl = slice(start, min(prep["n_out"], start + bs))
            b = sl.stop - sl.start
            slots = prep["slots"][sl]
            with self._autocast():
                heat, _ = self.guidance(as_t(windows[sl]), as_t(prep["pose_heatmaps"][slots][:, :, None]), ref_g.expand(b, -1, -1, -1, -1))
                centre = heat.reshape(b, -1, 1, 128, 128)[:, 2].clamp(max=1.0).repeat(1, 3, 1, 1)[:, None]
                target = as_t(prep["crops"][slots[:, 2]].transpose(0, 3, 1, 2)[:, None].astype(np.float32) / 255.0)
                face = self.renderer(
                    target, centre.float(), ref_imgs.expand(b, -1, -1, -1, -1), ref_h.expand(b, -1, -1, -1, -1), as_t(prep["windows"][sl][:, None])
                )
            out[sl] = face[:, :, 0].float().permute(0, 2, 3, 1).cpu().numpy()
        return out

    def __call__(self, clip: ClipInputs, n_frames: int | None = None) -> np.ndarray:
        """Dubbed BGR uint8 frames (n_out, H, W, 3): n_frames, or as many as the audio drives."""
        prep = self.prepare(clip, n_frames)
        faces = self.faces(prep)
        out = np.empty((prep["n_out"],) + clip.frames.shape[1:], np.uint8)
        for i, (face, tpl) in enumerate(zip(faces, prep["slots"][:, 2])):
            mask, window = B.soft_mask_window(clip.landmarks68[tpl], clip.frames.shape[1:])
            out[i] = B.paste_back_window(clip.frames[tpl], face, prep["boxes"][tpl], mask, window)
        return out
