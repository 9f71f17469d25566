"""MediaPipe FaceMesh landmarks (478 points with refine_landmarks) per frame."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

N_LANDMARKS = 478
LIP_POINTS = (
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
    185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
)  # fmt: skip
"""The 40 FaceMesh indices of mediapipe's FACEMESH_LIPS connections (sorted)."""


def backend_version() -> str:
    import mediapipe

    return f"mediapipe-{mediapipe.__version__}"


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what MediaPipe's C++ side (glog/absl/TFLite) prints straight to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceMeshDetector:
    """Landmarks of the most prominent face in each RGB frame.

    Returns image-normalised (x, y) in [0, 1] and MediaPipe's relative depth z, shape
    (N, 478, 3) float32, NaN where no face was found, and the (N,) found mask.
    """

    def __init__(self, static_image_mode: bool = True, refine_landmarks: bool = True, min_detection_confidence: float = 0.5):
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import mediapipe as mp

        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                refine_landmarks=refine_landmarks,
                max_num_faces=1,
                min_detection_confidence=min_detection_confidence,
            )
            self._mesh.process(np.zeros((64, 48, 3), dtype=np.uint8))
        self.n_points = N_LANDMARKS if refine_landmarks else 468

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((len(frames), self.n_points, 3), np.nan, dtype=np.float32)
        found = np.zeros(len(frames), dtype=bool)
        with quiet_native_stderr():
            for i, frame in enumerate(frames):
                res = self._mesh.process(np.ascontiguousarray(frame))
                if res.multi_face_landmarks:
                    pts = res.multi_face_landmarks[0].landmark
                    out[i] = [(p.x, p.y, p.z) for p in pts]
                    found[i] = True
        return out, found

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ARCFACE_FIVE_POINTS = ((33, 133), (362, 263), (1,), (61,), (291,))
"""FaceMesh points averaged into ArcFace's five (image-left eye, image-right eye, nose tip, mouth corners): eye-corner
means as insightface's eval_ijbc.py takes them from 68 points (the reference_csim_dev.json alignment)."""
ARCFACE_TEMPLATE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))
"""insightface `face_align.arcface_dst`: the five points' places in a 112x112 ArcFace crop."""


def five_points(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 5, 2) float32 pixel coordinates (x * W, y * H in float64) of ARCFACE_FIVE_POINTS; NaN where no face."""
    lm = np.asarray(landmarks, dtype=np.float64)[..., :2] * np.array([width, height], dtype=np.float64)
    return np.stack([lm[:, list(group)].mean(axis=1) for group in ARCFACE_FIVE_POINTS], axis=1).astype(np.float32)


DLIB68_FROM_FACEMESH = (
    234, 93, 132, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 361, 323, 454,  # jaw
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows
    168, 197, 5, 4, 98, 97, 2, 326, 327,  # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,  # outer lips
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips
)  # fmt: skip
"""FaceMesh indices standing in for the 68 iBUG / dlib / OpenFace points, in their order."""


def fill_missing_frames(values: np.ndarray) -> np.ndarray:
    """Per-frame arrays (N, ...) as float64 with frames holding any NaN replaced by linear
    interpolation between the nearest complete frames (held constant before the first and after the
    last). Raises ValueError when no frame is complete."""
    v = np.array(values, dtype=np.float64)
    found = np.isfinite(v.reshape(len(v), -1)).all(axis=1)
    if not found.any():
        raise ValueError("no face in any frame")
    idx, t = np.flatnonzero(found), np.arange(len(v))
    flat = v.reshape(len(v), -1)
    for c in range(flat.shape[1]):
        flat[:, c] = np.interp(t, idx, flat[idx, c])
    return flat.reshape(v.shape)


def landmarks68(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 68, 2) pixel landmarks in the 68-point order from FaceMesh (N, 478, 2+) image-normalised
    landmarks; frames without a face filled by `fill_missing_frames` (ValueError when none has one)."""
    return fill_missing_frames(landmarks[:, DLIB68_FROM_FACEMESH, :2].astype(np.float64) * [width, height])
