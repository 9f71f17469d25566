"""Normalising a method's output to the harness protocol.

Rule: frames at the sample's fps; exactly as many frames as the driving audio spans (N). Up to
`slack` missing frames (default MAX_FRAME_SLACK; a method whose audio windows span k frames and
that stops at the last full window declares k - 1) are filled by repeating the last one, and
extra frames are cut from the end; a larger shortfall fails. A different resolution is resized to
the template's (cv2 area when shrinking, bilinear when enlarging). The driving audio is what the
output carries. Every change is listed in the note that goes into the rows.
"""

from __future__ import annotations

import numpy as np

from stsa_bench.core.errors import ClipError

from .base import Generated, Sample

MAX_FRAME_SLACK = 2


def normalize_output(frames: np.ndarray, sample: Sample, source: str, slack: int = MAX_FRAME_SLACK, notes: list[str] | None = None) -> Generated:
    """Generated at the template's size and length with the driving audio; `note` lists what changed."""
    import cv2

    n, notes = len(sample.frames), list(notes or [])
    if len(frames) < n - slack:
        raise ClipError(f"{source}: {len(frames)} frames, the driving audio needs {n} (at most {slack} may be missing)")
    if len(frames) != n:
        notes.append(f"{len(frames)} frames -> {n}")
        frames = frames[:n] if len(frames) > n else np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])
    h, w = sample.frames.shape[1:3]
    if frames.shape[1:3] != (h, w):
        notes.append(f"resized {frames.shape[2]}x{frames.shape[1]} -> {w}x{h}")
        interp = cv2.INTER_AREA if frames.shape[1] > h else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])
    return Generated(np.ascontiguousarray(frames), sample.audio, "; ".join(notes) or None, source)
