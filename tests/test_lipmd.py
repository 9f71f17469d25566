"""LipLMD (lipmd, lipmd_l2, lipmd_iod): point set, known answers, NumPy reference on a real clip,
chunking invariance, faceless frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrics import build_metric
from metrics.base import EvalPair
from metrics.lipmd import LEFT_EYE_POINTS, LIP_POINTS, RIGHT_EYE_POINTS
from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.errors import ClipError

from .helpers import eval_pair

TAG = PreprocessConfig().crop_tag()
NAMES = ("lipmd", "lipmd_l2", "lipmd_iod")
CLIP = "smeetrs__deep_avsr__00001.mp4"  # LRS2-format 160x160, 120 frames


def make_pair(pred_lm, gt_lm, pred_found=None, gt_found=None, size=(160, 160), video="clip.mp4", batch_size=64) -> EvalPair:
    n = len(gt_lm)
    frames = np.zeros((n, size[1], size[0], 3), dtype=np.uint8)
    pred_found = np.isfinite(pred_lm).all(axis=(1, 2)) if pred_found is None else pred_found
    gt_found = np.isfinite(gt_lm).all(axis=(1, 2)) if gt_found is None else gt_found
    pair = eval_pair(n, video=Path(video), pred_frames=frames.copy(), gt_frames=frames, gt_landmarks=gt_lm, gt_has_face=gt_found, batch_size=batch_size)
    pair.memo["pred_landmarks"] = (pred_lm, pred_found)
    return pair


def synthetic_landmarks(n: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0.2, 0.8, (n, 478, 3)).astype(np.float32)
    lm[:, RIGHT_EYE_POINTS, 0] = 0.35
    lm[:, LEFT_EYE_POINTS, 0] = 0.65
    lm[:, RIGHT_EYE_POINTS + LEFT_EYE_POINTS, 1] = 0.4
    return lm


def value(name: str, pred, gt, **kw) -> float:
    m = build_metric(name, TAG)
    m.update_pair(make_pair(pred, gt, **kw))
    return m.compute()


def test_point_sets_are_mediapipes():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    def points(conn):
        return tuple(sorted({i for edge in conn for i in edge}))

    assert LIP_POINTS == points(fmc.FACEMESH_LIPS) and len(LIP_POINTS) == 40
    assert RIGHT_EYE_POINTS == points(fmc.FACEMESH_RIGHT_EYE)
    assert LEFT_EYE_POINTS == points(fmc.FACEMESH_LEFT_EYE)


def test_ids_and_direction():
    assert build_metric("lipmd", TAG).id == f"lipmd[{TAG},mediapipe40,l1,imgnorm]"
    assert build_metric("lipmd_l2", TAG).id == f"lipmd_l2[{TAG},mediapipe40,l2,imgnorm]"
    assert build_metric("lipmd_iod", TAG).id == f"lipmd_iod[{TAG},mediapipe40,l1,iod=eyecontour16]"
    assert not any(build_metric(n, TAG).higher_is_better or build_metric(n, TAG).pooled for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_identical_landmarks_give_zero(name):
    lm = synthetic_landmarks()
    assert value(name, lm, lm.copy()) == 0.0


def test_known_offset():
    gt = synthetic_landmarks()
    dx, dy = 0.003, -0.004
    pred = gt.copy()
    pred[..., 0] += dx
    pred[..., 1] += dy
    assert value("lipmd", pred, gt) == pytest.approx((abs(dx) + abs(dy)) / 2, rel=1e-4)
    assert value("lipmd_l2", pred, gt) == pytest.approx(np.hypot(dx, dy), rel=1e-4)
    # 160x160 frame, eye centres 0.3 apart -> 48 px; lip L1 in px = (0.48 + 0.64) / 2
    assert value("lipmd_iod", pred, gt) == pytest.approx(((abs(dx) + abs(dy)) * 160 / 2) / 48, rel=1e-4)


def test_iod_uses_pixels_on_non_square_frames():
    gt = synthetic_landmarks()
    pred = gt.copy()
    pred[..., 1] += 0.01  # 0.01 * 90 px = 0.9 px vertical
    # eyes 0.3 * 320 = 96 px apart; L1 per coordinate = (0 + 0.9) / 2
    assert value("lipmd_iod", pred, gt, size=(320, 90)) == pytest.approx(0.45 / 96, rel=1e-4)


def test_faceless_frames_are_skipped_and_counted():
    gt = synthetic_landmarks(10)
    pred = gt.copy()
    pred[..., 0] += 0.01
    pred[[2, 5]] = np.nan
    gt_found = np.ones(10, bool)
    gt_found[7] = False
    gt[7] = np.nan
    for name in NAMES:
        m = build_metric(name, TAG)
        m.update_pair(make_pair(pred, gt, gt_found=gt_found, batch_size=4))
        assert m.count == 7
        assert m.note == "3 of 10 frames without a face skipped"
    m = build_metric("lipmd", TAG)
    m.update_pair(make_pair(pred, gt, gt_found=gt_found))
    assert m.compute() == pytest.approx(0.005, rel=1e-4)


def test_found_mask_is_honoured_even_with_finite_landmarks():
    gt = synthetic_landmarks(6)
    pred = gt + 0.01
    found = np.array([True, True, False, True, True, True])
    m = build_metric("lipmd", TAG)
    m.update_pair(make_pair(pred, gt, pred_found=found))
    assert m.count == 5 and m.note == "1 of 6 frames without a face skipped"


def test_no_common_face_is_a_clip_error():
    gt = synthetic_landmarks(4)
    pred = np.full_like(gt, np.nan)
    m = build_metric("lipmd", TAG)
    with pytest.raises(ClipError, match=r"some/video\.mp4.*no frame has a face"):
        m.update_pair(make_pair(pred, gt, video="some/video.mp4"))


def test_all_faces_leave_no_note():
    lm = synthetic_landmarks(5)
    m = build_metric("lipmd", TAG)
    m.update_pair(make_pair(lm + 0.001, lm))
    assert m.note is None and m.count == 5


def test_add_landmarks_accumulates_like_update_pair():
    gt = synthetic_landmarks(9, seed=3)
    pred = synthetic_landmarks(9, seed=4)
    a = build_metric("lipmd_l2", TAG)
    a.add_landmarks(pred[:4], gt[:4])
    a.add_landmarks(pred[4:], gt[4:])
    b = build_metric("lipmd_l2", TAG)
    b.update_pair(make_pair(pred, gt))
    assert a.compute() == pytest.approx(b.compute(), rel=1e-12)


# --- real clip: FaceMesh landmarks of LRS2 frames, generated = the same video 3 frames later ---


@pytest.fixture(scope="module")
def real_landmarks(shared):
    from stsa_bench.core.faces import FaceMeshDetector
    from stsa_bench.core.media import decode_video

    cfg = PreprocessConfig()
    frames, _ = decode_video(shared / "clips" / CLIP, cfg.fps)
    with FaceMeshDetector(cfg.static_image_mode, cfg.refine_landmarks, cfg.min_detection_confidence) as det:
        lm, found = det(frames)
    assert found.all()
    return lm, frames.shape[2], frames.shape[1]


def reference(pred: np.ndarray, gt: np.ndarray, kind: str, width: int, height: int) -> float:
    """Direct loops over frames and lip points of the definitions."""
    per_frame = []
    for p, g in zip(pred, gt):
        if kind == "l1":
            per_frame.append(np.mean([abs(float(p[i, c]) - float(g[i, c])) for i in LIP_POINTS for c in (0, 1)]))
        elif kind == "l2":
            per_frame.append(np.mean([np.hypot(float(p[i, 0]) - g[i, 0], float(p[i, 1]) - g[i, 1]) for i in LIP_POINTS]))
        else:
            scale = (width, height)
            l1 = np.mean([abs(float(p[i, c]) - float(g[i, c])) * scale[c] for i in LIP_POINTS for c in (0, 1)])
            right = np.mean([[g[i, 0] * width, g[i, 1] * height] for i in RIGHT_EYE_POINTS], axis=0)
            left = np.mean([[g[i, 0] * width, g[i, 1] * height] for i in LEFT_EYE_POINTS], axis=0)
            per_frame.append(l1 / np.linalg.norm(left - right))
    return float(np.mean(per_frame))


@pytest.mark.parametrize("name,kind", [("lipmd", "l1"), ("lipmd_l2", "l2"), ("lipmd_iod", "iod")])
def test_matches_numpy_reference_on_real_clip(real_landmarks, name, kind):
    lm, w, h = real_landmarks
    pred, gt = lm[3:], lm[:-3]
    ours = value(name, pred, gt, size=(w, h))
    ref = reference(pred, gt, kind, w, h)
    assert ours == pytest.approx(ref, rel=1e-9)
    assert 0 < ours < (0.2 if kind == "iod" else 0.05)


def test_real_clip_against_itself_is_zero_and_lag_grows(real_landmarks):
    lm, w, h = real_landmarks
    assert value("lipmd", lm, lm.copy(), size=(w, h)) == 0.0
    lags = [value("lipmd", lm[k:], lm[: len(lm) - k], size=(w, h)) for k in (1, 5)]
    assert lags[0] < lags[1]


@pytest.mark.parametrize("name", NAMES)
def test_chunking_invariance_on_real_clip(real_landmarks, name):
    lm, w, h = real_landmarks
    pred, gt = lm[2:].copy(), lm[:-2].copy()
    pred[[4, 40]] = np.nan
    values = []
    for batch in (1, 7, 64, 1000):
        m = build_metric(name, TAG)
        m.update_pair(make_pair(pred, gt, size=(w, h), batch_size=batch))
        values.append(m.compute())
        assert m.note == f"2 of {len(gt)} frames without a face skipped"
    assert values == pytest.approx([values[0]] * 4, rel=1e-12)
