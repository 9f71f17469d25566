"""Paste-back of the generated face into the frame (STSA official inference.py L175-205, L722-732,
github.com/SCAILab-USTC/STSA @ 43994a7): a soft mask from the 68-point face hull, blurred, and a blend.

`soft_mask_window` / `paste_back_window` compute the same bytes on the window around the face only
(the mask is exactly 0 elsewhere); the pipeline uses them, the whole-frame versions are the reference.
"""

from __future__ import annotations

import cv2
import numpy as np

MASK_BLUR_KSIZE = (21, 21)
MASK_BLUR_SIGMA = 11
#: 68-point (face_alignment / iBUG) hull order: jaw 0..16 then brows 26..17 (L198).
MASK_CONTOUR_68 = tuple(range(0, 17)) + tuple(range(26, 16, -1))


def soft_mask(landmarks68: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Blending mask (H, W) float64 in [0, 1].

    `landmarks68` are 68 iBUG points in frame pixels (the official detects them with
    face_alignment on the original crop and offsets them by the box corner). Points truncated to
    int, polygon jaw+reversed brows filled with 255 (cv2.fillConvexPoly) on uint8, blurred
    21x21 sigma 11 (result stays uint8), divided by 255.
    """
    pts = np.asarray(landmarks68, dtype=np.float64)[:, :2].astype(np.int32)[list(MASK_CONTOUR_68)]
    h, w = int(frame_shape[0]), int(frame_shape[1])
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, pts, 255)
    mask = cv2.GaussianBlur(mask, MASK_BLUR_KSIZE, MASK_BLUR_SIGMA)
    return mask.astype(np.float64) / 255.0


MASK_MARGIN = 2 * (MASK_BLUR_KSIZE[0] // 2)
"""Pixels beyond the hull's bounding box + this margin are 0 in the blurred mask, and so are their
reflected neighbours at a window edge: soft_mask on that window equals soft_mask of the frame there."""


def soft_mask_window(landmarks68: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """soft_mask restricted to the window (y0, y1, x0, x1) outside which it is exactly 0: equal to
    `soft_mask(...)[y0:y1, x0:x1]` (tested), at a cost set by the face, not the frame."""
    pts = np.asarray(landmarks68, dtype=np.float64)[:, :2].astype(np.int32)[list(MASK_CONTOUR_68)]
    h, w = int(frame_shape[0]), int(frame_shape[1])
    x0, x1 = max(0, int(pts[:, 0].min()) - MASK_MARGIN), min(w, int(pts[:, 0].max()) + 1 + MASK_MARGIN)
    y0, y1 = max(0, int(pts[:, 1].min()) - MASK_MARGIN), min(h, int(pts[:, 1].max()) + 1 + MASK_MARGIN)
    if x0 >= x1 or y0 >= y1:
        return np.zeros((0, 0)), (0, 0, 0, 0)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    cv2.fillConvexPoly(mask, pts - np.array([x0, y0], dtype=np.int32), 255)
    mask = cv2.GaussianBlur(mask, MASK_BLUR_KSIZE, MASK_BLUR_SIGMA)
    return mask.astype(np.float64) / 255.0, (y0, y1, x0, x1)


def paste_back_window(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray,
                      window: tuple[int, int, int, int]) -> np.ndarray:
    """paste_back with the mask of soft_mask_window: the blend runs on the window only, the rest of the
    frame is copied (where the mask is 0, the blend returns the frame exactly). Equal to
    paste_back(frame, face, box, soft_mask(...)) (tested)."""
    if np.asarray(face).dtype != np.uint8:
        face = face_to_uint8(face)
    x0, y0, x1, y1 = box
    resized = cv2.resize(np.ascontiguousarray(face), (x1 - x0, y1 - y0))
    out = np.array(frame, copy=True)
    wy0, wy1, wx0, wx1 = window
    if wy0 >= wy1 or wx0 >= wx1:
        return out
    region = np.asarray(frame[wy0:wy1, wx0:wx1])
    pasted = region.copy()
    iy0, iy1, ix0, ix1 = max(y0, wy0), min(y1, wy1), max(x0, wx0), min(x1, wx1)
    if iy0 < iy1 and ix0 < ix1:
        pasted[iy0 - wy0 : iy1 - wy0, ix0 - wx0 : ix1 - wx0] = resized[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    m = mask[:, :, None]
    out[wy0:wy1, wx0:wx1] = (pasted * m + region.astype(np.float64) * (1 - m)).astype(np.uint8)
    return out


def face_to_uint8(face: np.ndarray) -> np.ndarray:
    """Renderer output (3, H, W) or (H, W, 3) in [0, 1] -> uint8 HWC by truncation (L722)."""
    f = np.asarray(face)
    if f.ndim == 3 and f.shape[0] == 3 and f.shape[-1] != 3:
        f = np.transpose(f, (1, 2, 0))
    return (f * 255).astype(np.uint8)


def paste_back(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int],
               mask: np.ndarray | None) -> np.ndarray:
    """Resize `face` (uint8 HWC, or float in [0,1]) into `box` (x0, y0, x1, y1) of a copy of
    `frame`, then blend: out = pasted * mask + frame * (1 - mask), truncated to uint8 (L175-183).
    With mask None the hard paste is returned."""
    if np.asarray(face).dtype != np.uint8:
        face = face_to_uint8(face)
    x0, y0, x1, y1 = box
    pasted = np.array(frame, copy=True)
    pasted[y0:y1, x0:x1] = cv2.resize(np.ascontiguousarray(face), (x1 - x0, y1 - y0))
    if mask is None:
        return pasted
    m = np.asarray(mask, dtype=np.float64)
    if m.ndim == 2:
        m = m[:, :, None]
    out = pasted * m + np.asarray(frame, dtype=np.float64) * (1 - m)
    return out.astype(np.uint8)
