"""Pure (model-free) pieces of the STSA inference pipeline.

Everything here is numpy/OpenCV (torch only where noted) and works on already-extracted data:
MediaPipe FaceMesh landmarks, wav2vec2 features, frames.  Facts (landmark index lists, connection
lists, window offsets, margins, kernel sizes, rounding) follow the official inference script,
github.com/SCAILab-USTC/STSA @ 43994a7 (`inference.py`, `draw_landmark.py`,
`boundary_heatmap_draw.py`); the line numbers quoted below refer to that commit.

Coordinate conventions (as the official script):
  * MediaPipe landmarks are normalised to [0, 1] of the full frame (x by width, y by height).
  * Crop coordinates are normalised to [0, 1] of the *unrounded* crop bounds (inference.py
    L454-466); a sketch point lands on pixel floor(p * size), capped at size - 1, and a point
    outside [0, 1] is dropped together with its connections (draw_landmark.py L29-45, L173).
  * Frames and face crops are BGR uint8 (OpenCV); network images are BGR / 255.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

# ---------------------------------------------------------------------------------------------
# 1. Landmark index sets and sketch connections (inference.py L58-136)
# ---------------------------------------------------------------------------------------------

#: The 131 MediaPipe FaceMesh ids STSA uses, in the official order (`ori_sequence_idx`, L58-67):
#: positions 0-24 face oval (left ear -> chin -> right ear), 25-34 right brow, 35-44 left brow,
#: 45-58 nose, 59-74 right eye, 75-90 left eye, 91-110 outer lips, 111-130 inner lips.
MP_ORDER_131: tuple[int, ...] = (
    162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397,
    288, 361, 323, 454, 356, 389,
    70, 63, 105, 66, 107, 55, 65, 52, 53, 46,
    336, 296, 334, 293, 300, 276, 283, 282, 295, 285,
    168, 6, 197, 195, 5,
    48, 115, 220, 45, 4, 275, 440, 344, 278,
    33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7,
    362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382,
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
)

_r = lambda a, b: list(range(a, b))  # noqa: E731  (half-open position ranges into MP_ORDER_131)

#: Positions (into MP_ORDER_131) of the 76 pose points used for pose / reference sketches
#: (upper face incl. oval points 132 and 361; `full_face_landmark_sequence` L128-136).
POSE76_POS: tuple[int, ...] = tuple(_r(0, 5) + _r(20, 25) + _r(25, 91))
#: Positions of the 55 content points paired with POSE76 (15 jaw + 40 lips).
CONTENT55_POS: tuple[int, ...] = tuple(_r(5, 20) + _r(91, 131))
#: Positions of the 74 pose points paired with the network's 57 predicted content points
#: (`pose_landmark_idx_74`, L166-169; `full_face_landmark_sequence_original`, L132-134).
POSE74_POS: tuple[int, ...] = tuple(_r(0, 4) + _r(21, 25) + _r(25, 91))
#: Positions of the 57 content points the guidance network predicts: 17 jaw then 40 lips.
CONTENT57_POS: tuple[int, ...] = tuple(_r(4, 21) + _r(91, 131))

POSE76_IDS = tuple(MP_ORDER_131[i] for i in POSE76_POS)
CONTENT55_IDS = tuple(MP_ORDER_131[i] for i in CONTENT55_POS)
POSE74_IDS = tuple(MP_ORDER_131[i] for i in POSE74_POS)
CONTENT57_IDS = tuple(MP_ORDER_131[i] for i in CONTENT57_POS)
#: Full-face order used for reference sketches (76 pose + 55 content) and for predicted target
#: sketches (74 pose + 57 predicted content).
FULL_IDS_76_55 = POSE76_IDS + CONTENT55_IDS
FULL_IDS_74_57 = POSE74_IDS + CONTENT57_IDS

#: MediaPipe ids whose distance is the lip openness (upper/lower lip midpoints, L38).
LIP_OPENNESS_IDS = (0, 17)


def _pairs(*pairs: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(pairs))


# Connection lists (MediaPipe id pairs), inference.py L70-126.
LIPS = _pairs(
    (61, 146), (146, 91), (91, 181), (181, 84), (84, 17), (17, 314), (314, 405), (405, 321),
    (321, 375), (375, 291), (61, 185), (185, 40), (40, 39), (39, 37), (37, 0), (0, 267),
    (267, 269), (269, 270), (270, 409), (409, 291),
    (78, 95), (95, 88), (88, 178), (178, 87), (87, 14), (14, 317), (317, 402), (402, 318),
    (318, 324), (324, 308), (78, 191), (191, 80), (80, 81), (81, 82), (82, 13), (13, 312),
    (312, 311), (311, 310), (310, 415), (415, 308),
)
LEFT_EYE = _pairs(
    (263, 249), (249, 390), (390, 373), (373, 374), (374, 380), (380, 381), (381, 382),
    (382, 362), (263, 466), (466, 388), (388, 387), (387, 386), (386, 385), (385, 384),
    (384, 398), (398, 362),
)
LEFT_EYEBROW = _pairs(
    (276, 283), (283, 282), (282, 295), (295, 285), (300, 293), (293, 334), (334, 296), (296, 336),
)
RIGHT_EYE = _pairs(
    (33, 7), (7, 163), (163, 144), (144, 145), (145, 153), (153, 154), (154, 155), (155, 133),
    (33, 246), (246, 161), (161, 160), (160, 159), (159, 158), (158, 157), (157, 173), (173, 133),
)
RIGHT_EYEBROW = _pairs(
    (46, 53), (53, 52), (52, 65), (65, 55), (70, 63), (63, 105), (105, 66), (66, 107),
)
FACE_OVAL = _pairs(
    (389, 356), (356, 454), (454, 323), (323, 361), (361, 288), (288, 397), (397, 365),
    (365, 379), (379, 378), (378, 400), (400, 377), (377, 152), (152, 148), (148, 176),
    (176, 149), (149, 150), (150, 136), (136, 172), (172, 58), (58, 132), (132, 93), (93, 234),
    (234, 127), (127, 162),
)
NOSE = _pairs(
    (168, 6), (6, 197), (197, 195), (195, 5), (5, 4), (4, 45), (45, 220), (220, 115), (115, 48),
    (4, 275), (275, 440), (440, 344), (344, 278),
)
FACE_OVAL_UPPER = _pairs(
    (389, 356), (356, 454), (454, 323), (323, 361), (132, 93), (93, 234), (234, 127), (127, 162),
)
FACE_OVAL_LOWER = tuple(p for p in FACE_OVAL if p not in FACE_OVAL_UPPER)

#: Full-face sketch (`FACEMESH_CONNECTION`, L118-121): 153 lines.
FULL_CONNECTIONS = tuple(sorted(set(LIPS + LEFT_EYE + LEFT_EYEBROW + RIGHT_EYE + RIGHT_EYEBROW
                                    + FACE_OVAL + NOSE)))
#: Pose (upper-face) sketch (`FACEMESH_POSE`, L123-126).
POSE_CONNECTIONS = tuple(sorted(set(LEFT_EYE + LEFT_EYEBROW + RIGHT_EYE + RIGHT_EYEBROW + NOSE
                                    + FACE_OVAL_UPPER)))


def local_connections(connections: Iterable[tuple[int, int]], ids: Sequence[int]) -> np.ndarray:
    """Map MediaPipe-id connections to row pairs of a points array ordered as `ids`.

    Connections with an endpoint absent from `ids` are dropped (the official drawer only draws a
    line when both ends are known). Returns int64 (M, 2).
    """
    pos = {int(k): i for i, k in enumerate(ids)}
    rows = [(pos[a], pos[b]) for a, b in connections if a in pos and b in pos]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 2)


def select_landmarks(mp_landmarks: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Pick MediaPipe ids (in that order) from (..., 468|478, 2+) landmarks -> (..., len(ids), 2)."""
    arr = np.asarray(mp_landmarks)
    return arr[..., list(ids), :2]


# ---------------------------------------------------------------------------------------------
# 2. Sketch -> heatmap (draw_landmark.py L29-45, L113-180; boundary_heatmap_draw.py L29-49)
# ---------------------------------------------------------------------------------------------

HEATMAP_SIZE = 128
HEATMAP_CUTOFF = 3.0  # sigma = 1: d >= 3 sigma -> 0
DIST_MASK_SIZE = 5  # cv2.distanceTransform(..., cv2.DIST_L2, 5) (approximate 5x5 L2 mask)


def _valid_unit(v: float) -> bool:
    return (v > 0 or math.isclose(0.0, v)) and (v < 1 or math.isclose(1.0, v))


def sketch_pixels(points: np.ndarray, size: int = HEATMAP_SIZE) -> list[tuple[int, int] | None]:
    """Normalised crop coords (K,2) -> integer pixel (x, y) or None if outside [0, 1]."""
    out: list[tuple[int, int] | None] = []
    for x, y in np.asarray(points, dtype=np.float64)[:, :2]:
        if not (np.isfinite(x) and np.isfinite(y) and _valid_unit(float(x)) and _valid_unit(float(y))):
            out.append(None)
            continue
        out.append((min(math.floor(x * size), size - 1), min(math.floor(y * size), size - 1)))
    return out


def draw_sketch(points: np.ndarray, connections: np.ndarray, size: int = HEATMAP_SIZE) -> np.ndarray:
    """uint8 (size, size) canvas: 1 background, 0 on the 1-px (8-connected) connection lines.

    `points` (K, 2) are normalised crop coordinates; `connections` (M, 2) are row pairs into them
    (see `local_connections`).
    """
    canvas = np.ones((size, size), dtype=np.uint8)
    px = sketch_pixels(points, size)
    for a, b in np.asarray(connections, dtype=np.int64).reshape(-1, 2):
        pa, pb = px[a], px[b]
        if pa is not None and pb is not None:
            cv2.line(canvas, pa, pb, 0, 1)
    return canvas


def sketch_to_heatmap(sketch: np.ndarray) -> np.ndarray:
    """Distance-transform heatmap of a 0-on-lines sketch: exp(-d^2/2) for d < 3, else 0 (float32)."""
    d = cv2.distanceTransform(np.asarray(sketch, dtype=np.uint8), cv2.DIST_L2, DIST_MASK_SIZE)
    d = np.asarray(d, dtype=np.float32)
    near = d < HEATMAP_CUTOFF
    h = np.zeros_like(d)
    h[near] = np.exp(-d[near] * d[near] / 2.0)
    return h


def draw_heatmap(points: np.ndarray, connections: np.ndarray, size: int = HEATMAP_SIZE) -> np.ndarray:
    """Heatmap (size, size) float32 of the sketch of `points` (K,2, normalised crop coords)."""
    return sketch_to_heatmap(draw_sketch(points, connections, size))


def draw_heatmaps(points: np.ndarray, connections: np.ndarray, size: int = HEATMAP_SIZE) -> np.ndarray:
    """Batched `draw_heatmap`: (N, K, 2) -> (N, size, size) float32."""
    pts = np.asarray(points)
    out = np.zeros((pts.shape[0], size, size), dtype=np.float32)
    for i in range(pts.shape[0]):
        out[i] = draw_heatmap(pts[i], connections, size)
    return out


_POSE_ROWS = local_connections(POSE_CONNECTIONS, POSE76_IDS)
_FULL_ROWS_76_55 = local_connections(FULL_CONNECTIONS, FULL_IDS_76_55)
_FULL_ROWS_74_57 = local_connections(FULL_CONNECTIONS, FULL_IDS_74_57)


def pose_heatmaps(pose76: np.ndarray) -> np.ndarray:
    """Pose heatmaps (N, 128, 128) from (N, 76, 2) crop coords ordered as POSE76_IDS (L641-656)."""
    return draw_heatmaps(pose76, _POSE_ROWS)


def full_heatmaps(full131: np.ndarray, predicted: bool = False) -> np.ndarray:
    """Full-face heatmaps (N, 128, 128) from (N, 131, 2) crop coords.

    Order FULL_IDS_76_55 (references, L510-519) or, with `predicted=True`, FULL_IDS_74_57
    (74 template pose points + 57 predicted content points, L677-686).
    """
    return draw_heatmaps(full131, _FULL_ROWS_74_57 if predicted else _FULL_ROWS_76_55)


def reference_heatmaps(ref_full131: np.ndarray, official_compat: bool = False) -> np.ndarray:
    """Heatmaps (N, 128, 128) of the N reference frames' full-face sketches (FULL_IDS_76_55 order).

    Default: each reference gets its own heatmap. `official_compat=True` reproduces the official
    defect (inference.py L552-565: the per-reference `sketch2heatmap` line is commented out, so
    every reference image is paired with the heatmap of the *last* N_l reference frame, which is
    the last entry here because the official N_l and N references use the same indices).
    """
    pts = np.asarray(ref_full131)
    if official_compat:
        last = full_heatmaps(pts[-1:])
        return np.repeat(last, pts.shape[0], axis=0)
    return full_heatmaps(pts)


# ---------------------------------------------------------------------------------------------
# 3. Crop box, crops, landmark mapping (inference.py L392-418, L453-466, L569-570, L705)
# ---------------------------------------------------------------------------------------------

CROP_MARGIN_PX = 5
CROP_IDS = tuple(sorted(MP_ORDER_131))  # `all_landmarks_idx`: the 131 ids of the full sketch


def crop_bounds(landmarks: np.ndarray, width: int, height: int,
                margin_px: float = CROP_MARGIN_PX) -> tuple[float, float, float, float]:
    """Normalised crop bounds (x_min, y_min, x_max, y_max) of the used landmarks.

    `landmarks` (K, 2) normalised frame coords of the used points (e.g. `select_landmarks(lm,
    CROP_IDS)`); min/max +/- margin_px / size, clipped to [0, 1].
    """
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    x_min = max(lm[:, 0].min() - margin_px / width, 0.0)
    x_max = min(lm[:, 0].max() + margin_px / width, 1.0)
    y_min = max(lm[:, 1].min() - margin_px / height, 0.0)
    y_max = min(lm[:, 1].max() + margin_px / height, 1.0)
    return float(x_min), float(y_min), float(x_max), float(y_max)


def crop_box(landmarks: np.ndarray, width: int, height: int,
             margin_px: float = CROP_MARGIN_PX) -> tuple[int, int, int, int]:
    """Integer pixel box (x0, y0, x1, y1), x1/y1 exclusive: int() of the clipped bounds x size."""
    x_min, y_min, x_max, y_max = crop_bounds(landmarks, width, height, margin_px)
    return int(x_min * width), int(y_min * height), int(x_max * width), int(y_max * height)


def crop_box_px(landmarks_px: np.ndarray, width: int, height: int,
                margin_px: float = CROP_MARGIN_PX) -> tuple[int, int, int, int]:
    """`crop_box` for landmarks given in frame pixels."""
    lm = np.asarray(landmarks_px, dtype=np.float64)[:, :2] / np.array([width, height], dtype=np.float64)
    return crop_box(lm, width, height, margin_px)


def to_crop_coords(landmarks: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Normalised frame coords (..., 2) -> normalised crop coords using the unrounded bounds."""
    x_min, y_min, x_max, y_max = bounds
    lm = np.asarray(landmarks, dtype=np.float64)[..., :2]
    out = np.empty_like(lm)
    out[..., 0] = (lm[..., 0] - x_min) / (x_max - x_min)
    out[..., 1] = (lm[..., 1] - y_min) / (y_max - y_min)
    return out


def crop_resize(frames: Sequence[np.ndarray], boxes: Sequence[tuple[int, int, int, int]],
                size: int = HEATMAP_SIZE) -> np.ndarray:
    """Crop each frame (BGR uint8, H x W x 3) to its box and resize to size x size (cv2 default
    bilinear). Returns uint8 (N, size, size, 3); divide by 255 for the networks."""
    out = np.zeros((len(frames), size, size, 3), dtype=np.uint8)
    for i, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes)):
        out[i] = cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (size, size))
    return out


# ---------------------------------------------------------------------------------------------
# 4. Reference selection (inference.py L386-390, L474-477, L525)
# ---------------------------------------------------------------------------------------------


def lip_openness(mp_landmarks: np.ndarray) -> np.ndarray:
    """Distance between ids 0 and 17 in normalised frame coords (no aspect correction): (N,)."""
    lm = np.asarray(mp_landmarks, dtype=np.float64)
    d = lm[..., LIP_OPENNESS_IDS[0], :2] - lm[..., LIP_OPENNESS_IDS[1], :2]
    return np.linalg.norm(d, axis=-1)


def select_references(openness: np.ndarray, n: int = 5) -> np.ndarray:
    """Frame indices of n references: frames sorted by openness (stable: ties keep frame order),
    taken at positions int(linspace(0, N-1, n)) (truncation). int64 (n,)."""
    op = np.asarray(openness, dtype=np.float64).reshape(-1)
    order = np.argsort(op, kind="stable")
    pos = np.linspace(0.0, len(op) - 1, num=n).astype(np.int64)  # values >= 0: astype == int()
    return order[pos]


# ---------------------------------------------------------------------------------------------
# 5. Audio windows (inference.py L347-367, L583, L601-606, L702)
# ---------------------------------------------------------------------------------------------

W2V_STEP = 10
W2V_PER_FRAME = 2  # 50 Hz / 25 fps


def num_audio_frames(n_features: int) -> int:
    """Number of output frames the official script makes from L wav2vec2 vectors: chunk i exists
    while L - max(0, 2(i-2)) >= 4 (L356)."""
    i = 0
    while n_features - max(0, W2V_PER_FRAME * (i - 2)) >= 2 * W2V_PER_FRAME:
        i += 1
    return i


def audio_windows(features: np.ndarray, n_frames: int | None = None, frames: Sequence[int] | None = None) -> np.ndarray:
    """Per-frame windows (n_frames, 768, 10): frame i = features[2(i-2) : 2(i-2)+10].T, zeros
    where the window leaves the audio. n_frames defaults to `num_audio_frames(L)`; `frames` picks
    only those frame indices (len(frames), 768, 10)."""
    feats = np.asarray(features)
    L, C = feats.shape
    if frames is None:
        frames = range(num_audio_frames(L) if n_frames is None else n_frames)
    out = np.zeros((len(frames), C, W2V_STEP), dtype=np.float32)
    for row, i in enumerate(frames):
        s = W2V_PER_FRAME * (int(i) - 2)
        a, b = max(s, 0), min(s + W2V_STEP, L)
        if b > a:
            out[row, :, a - s:b - s] = feats[a:b].T
    return out


def guidance_windows(windows: np.ndarray, T: int = 5) -> np.ndarray:
    """(n, 768, 10) per-frame windows -> (n, T, 768, 10): frame i gets windows i-2..i+2, with an
    all-zero window for indices outside 0..n-1 (L601-606)."""
    w = np.asarray(windows, dtype=np.float32)
    n = w.shape[0]
    half = T // 2
    out = np.zeros((n, T) + w.shape[1:], dtype=np.float32)
    for t in range(T):
        src = np.arange(n) + t - half
        ok = (src >= 0) & (src < n)
        out[ok, t] = w[src[ok]]
    return out


# ---------------------------------------------------------------------------------------------
# 6. Template frame sequence for audio longer than video (inference.py L583-589, L601-618)
# ---------------------------------------------------------------------------------------------


def ping_pong_indices(n_template: int, n_needed: int) -> np.ndarray:
    """Template frame index per output position: 0..n-1, n-1..0, 0..n-1, ... (endpoints repeated).

    The official list (L584-589) is a prefix of this sequence; where the official list would be
    too short (an IndexError there) this one simply continues the pattern.
    """
    if n_template <= 0:
        raise ValueError("n_template must be positive")
    period = np.concatenate([np.arange(n_template), np.arange(n_template)[::-1]])
    reps = -(-n_needed // period.size) if n_needed > 0 else 0
    return np.tile(period, reps)[:n_needed].astype(np.int64)


def template_window_indices(n_template: int, n_frames: int, T: int = 5) -> np.ndarray:
    """(n_frames, T) template frame per guidance slot: sequence[max(0, i - 2 + t)] (L609).

    Slot T//2 is the frame whose crop, box and background output frame i uses.
    """
    seq = ping_pong_indices(n_template, n_frames + T)
    idx = np.arange(n_frames)[:, None] + np.arange(T)[None, :] - T // 2
    return seq[np.maximum(idx, 0)]
