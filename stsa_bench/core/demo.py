"""The embedded demo suite: talking clips synthesised from `skimage.data.astronaut()`.

A smoke suite, not a benchmark. Each clip: a speech-like audio track (voiced syllables:
harmonics of a vibrato f0 shaped by vowel formants, Hann-windowed, with noise bursts for
consonants) and the portrait's mouth opened in step with the syllable envelope, plus a
slow sub-pixel head drift. Fully determined by (n_clips, seconds, size, seed, DEMO_VERSION).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .media import write_video
from .paths import build_dir_atomically

DEMO_VERSION = 1
FPS, SR = 25, 16000
MOUTH_XY = (223.2, 146.7)
"""Mouth centre of the astronaut portrait (512x512), mean of FaceMesh inner-lip points 13 and 14."""
FACE_CENTRE = (224.0, 136.0)
VOWELS = ((730, 1090, 1.0), (270, 2290, 0.35), (300, 870, 0.45), (530, 1840, 0.75), (660, 1720, 0.9))
"""(F1 Hz, F2 Hz, relative mouth opening) of /a i u e ae/."""


def speech_like(seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mono float32 audio at 16 kHz and the per-sample mouth-opening target in [0, 1]."""
    n = int(round(seconds * SR))
    audio = np.zeros(n, dtype=np.float64)
    opening = np.zeros(n, dtype=np.float64)
    t_cur = 0.12
    while t_cur < seconds - 0.25:
        dur = rng.uniform(0.12, 0.3)
        start, stop = int(t_cur * SR), min(n, int((t_cur + dur) * SR))
        t = np.arange(stop - start) / SR
        f1, f2, open_ = VOWELS[rng.integers(len(VOWELS))]
        f0 = rng.uniform(100, 190) * (1 + 0.04 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = np.zeros_like(t)
        for k in range(1, 40):
            fk = k * f0.mean()
            if fk > 4000:
                break
            gain = sum(1.0 / (1.0 + ((fk - f) / 90.0) ** 2) for f in (f1, f2)) / k**0.5
            voiced += gain * np.sin(k * phase)
        env = np.sin(np.pi * t / dur) ** 2 * rng.uniform(0.6, 1.0)
        audio[start:stop] += env * voiced / 4.0
        opening[start:stop] = np.maximum(opening[start:stop], env * open_)
        if rng.random() < 0.5:
            burst = int(rng.uniform(0.02, 0.04) * SR)
            b0 = max(0, start - burst)
            noise = np.diff(rng.standard_normal(start - b0 + 1))
            audio[b0:start] += 0.08 * noise * np.hanning(start - b0)
        t_cur += dur + (rng.uniform(0.25, 0.45) if rng.random() < 0.2 else rng.uniform(0.03, 0.12))
    audio *= 0.5 / max(np.abs(audio).max(), 1e-9)
    return audio.astype(np.float32), opening


def frame_openness(opening: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean opening over each 40 ms frame."""
    per = SR // FPS
    o = opening[: n_frames * per].reshape(n_frames, per).mean(axis=1)
    return np.clip(o / max(o.max(), 1e-9), 0.0, 1.0)


def open_mouth(image: np.ndarray, o: float, amplitude: float = 9.0) -> np.ndarray:
    """Lower lip and jaw pulled down by `o * amplitude` px (upper lip up by a quarter), dark gap between."""
    import cv2

    h, w = image.shape[:2]
    cx, cy = MOUTH_XY
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    wx = np.exp(-(((xs - cx) / 30.0) ** 2))
    d = o * amplitude
    below = np.clip(1.0 - (ys - cy - 8.0) / 40.0, 0.0, 1.0) * (ys >= cy)
    above = np.clip(1.0 - (cy - ys) / 22.0, 0.0, 1.0) * (ys < cy)
    dy = wx * (d * below - 0.25 * d * above)
    out = cv2.remap(image, xs, ys - dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if d > 0.5:
        mask = np.zeros((h, w), dtype=np.float32)
        centre = (int(round(cx * 4)), int(round((cy + 0.375 * d) * 4)))
        axes = (int(round(17 * 4)), int(round(0.62 * d * 4)))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1, lineType=cv2.LINE_AA, shift=2)
        mask = cv2.GaussianBlur(mask, (5, 5), 1.2)[..., None]
        out = (out * (1 - mask) + np.array([52, 18, 24], np.float32) * mask).round().clip(0, 255).astype(np.uint8)
    return out


def make_clip(seed: int, seconds: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N, size, size, 3) uint8, audio float32) for one demo clip."""
    import cv2
    import skimage.data

    rng = np.random.default_rng([DEMO_VERSION, seed])
    base = skimage.data.astronaut()
    audio, opening = speech_like(seconds, rng)
    n = int(round(seconds * FPS))
    openness = frame_openness(opening, n)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        t = i / FPS
        dx = 1.5 * np.sin(2 * np.pi * t / 2.1 + phase[0])
        dy = 1.0 * np.sin(2 * np.pi * t / 1.7 + phase[1])
        scale = size / 224.0 * (1 + 0.01 * np.sin(2 * np.pi * t / 2.9 + phase[2]))
        img = open_mouth(base, float(openness[i]))
        fx, fy = FACE_CENTRE
        m = np.array([[scale, 0, size / 2 - scale * (fx + dx)], [0, scale, size / 2 - scale * (fy + dy)]], np.float32)
        frames[i] = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return frames, audio[: n * SR // FPS]


def ensure_demo_clips(folder: Path, n_clips: int, seconds: float, size: int, seed: int) -> Path:
    """Write demo_00.mkv ... (FFV1 + PCM, lossless) into `folder` once, atomically."""

    def build(tmp: Path) -> None:
        for k in range(n_clips):
            frames, audio = make_clip(seed * 1000 + k, seconds, size)
            write_video(tmp / f"demo_{k:02d}.mkv", frames, FPS, audio, SR, lossless=True)

    return build_dir_atomically(Path(folder), build)
