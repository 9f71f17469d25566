from __future__ import annotations

import numpy as np
import pytest

from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.errors import ClipError
from stsa_bench.core.media import write_video
from stsa_bench.core.preprocess import Preprocessor, crop_faces, face_boxes
from stsa_bench.core.suites import hash_clip

from .helpers import demo_media


def square_landmarks(cx: float, cy: float, half: float, w: int, h: int) -> np.ndarray:
    pts = np.array([[cx - half, cy - half], [cx + half, cy + half], [cx, cy]])
    return np.c_[pts / [w, h], np.zeros(3)]


def test_face_boxes_interpolate_gaps_and_smooth():
    w = h = 200
    lm = np.stack([square_landmarks(100 + i, 100, 20, w, h) for i in range(9)]).astype(np.float32)
    found = np.ones(9, dtype=bool)
    found[3:6] = False
    lm[~found] = np.nan
    boxes = face_boxes(lm, found, w, h, scale=1.5, sigma=0)
    np.testing.assert_allclose(boxes[:, 0], 100 + np.arange(9), atol=1e-4)
    np.testing.assert_allclose(boxes[:, 2], 60.0, atol=1e-4)
    jitter = lm.copy()
    jitter[found, :, 0] += np.where(np.arange(9)[found] % 2, 0.02, -0.02)[:, None]
    smooth = face_boxes(jitter, found, w, h, scale=1.5, sigma=2.0)
    raw = face_boxes(jitter, found, w, h, scale=1.5, sigma=0)
    assert np.diff(smooth[:, 0]).std() < np.diff(raw[:, 0]).std()


def test_crop_faces_pads_outside_black():
    frame = np.full((1, 40, 40, 3), 200, dtype=np.uint8)
    crops = crop_faces(frame, np.array([[0.0, 20.0, 40.0]]), 8)
    assert crops.shape == (1, 8, 8, 3)
    assert crops[0, :, :3].max() == 0 and crops[0, :, 5:].min() == 200


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    frames, audio = demo_media(3)
    write_video(d / "c.mkv", frames, 25, audio)
    return hash_clip("c", d / "c.mkv"), frames


@pytest.mark.slow
def test_prepare_then_cache_hit(demo_clip, tmp_path, monkeypatch):
    clip, frames = demo_clip
    prep = Preprocessor(PreprocessConfig(), tmp_path)
    p = prep.prepare(clip)
    assert p.n_frames == len(frames) == p.n_face
    assert p.crops.shape == (len(frames), 128, 128, 3)
    assert p.landmarks.shape == (len(frames), 478, 3)
    assert len(p.audio) == len(frames) * 640
    assert prep.is_cached(clip)
    monkeypatch.setattr(Preprocessor, "_build", lambda *a: pytest.fail("cache miss"))
    again = Preprocessor(PreprocessConfig(), tmp_path).prepare(clip)
    assert np.array_equal(again.crops, p.crops)
    # another protocol is another cache entry
    assert not Preprocessor(PreprocessConfig(crop_size=96), tmp_path).is_cached(clip)


@pytest.mark.slow
def test_landmarks_track_the_mouth(demo_clip, tmp_path):
    """Inner-lip gap (FaceMesh 13-14) must follow the synthetic mouth opening."""
    from stsa_bench.core.demo import DEMO_VERSION, frame_openness, speech_like

    clip, frames = demo_clip
    p = Preprocessor(PreprocessConfig(), tmp_path).prepare(clip)
    gap = np.linalg.norm((p.landmarks[:, 13, :2] - p.landmarks[:, 14, :2]) * [p.width, p.height], axis=1)
    _, opening = speech_like(2.4, np.random.default_rng([DEMO_VERSION, 3]))
    assert np.corrcoef(gap, frame_openness(opening, len(frames)))[0, 1] > 0.8


def test_clip_with_error_is_not_prepared(tmp_path):
    clip = hash_clip("x", tmp_path / "missing.mp4")
    with pytest.raises(ClipError, match="missing.mp4: missing"):
        Preprocessor(PreprocessConfig(), tmp_path).prepare(clip)
