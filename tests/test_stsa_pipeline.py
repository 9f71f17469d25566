"""STSA inference pipeline, pure pieces (stsa/pipeline.py): hand-computed values, official facts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stsa import blend as B
from stsa import pipeline as P


def _ids(edges):
    return {i for e in edges for i in e}


# -- landmark sets and connections ------------------------------------------------------------


def test_landmark_sets_match_connection_derivation():
    assert len(P.MP_ORDER_131) == 131 == len(set(P.MP_ORDER_131))
    assert _ids(P.FULL_CONNECTIONS) == set(P.MP_ORDER_131)
    pose_from_edges = _ids(P.POSE_CONNECTIONS)
    assert set(P.POSE76_IDS) == pose_from_edges and len(P.POSE76_IDS) == 76
    assert set(P.CONTENT55_IDS) == set(P.MP_ORDER_131) - pose_from_edges and len(P.CONTENT55_IDS) == 55
    pose74 = _ids(P.NOSE + P.RIGHT_EYEBROW + P.RIGHT_EYE + P.LEFT_EYE + P.LEFT_EYEBROW) | {
        162, 127, 234, 93, 389, 356, 454, 323}
    assert set(P.POSE74_IDS) == pose74 and len(P.POSE74_IDS) == 74
    assert len(P.CONTENT57_IDS) == 57
    jaw = P.CONTENT57_IDS[:17]
    assert jaw[0] == 132 and jaw[8] == 152 and jaw[-1] == 361
    assert P.CONTENT57_IDS[17:] == P.MP_ORDER_131[91:]
    # official order = position in MP_ORDER_131
    for ids in (P.POSE76_IDS, P.CONTENT55_IDS, P.POSE74_IDS, P.CONTENT57_IDS):
        pos = [P.MP_ORDER_131.index(i) for i in ids]
        assert pos == sorted(pos)
    assert len(P.FULL_CONNECTIONS) == 40 + 16 + 8 + 16 + 8 + 24 + 13
    assert set(P.FACE_OVAL_LOWER) | set(P.FACE_OVAL_UPPER) == set(P.FACE_OVAL)


def test_local_connections_drops_missing():
    rows = P.local_connections([(10, 20), (20, 30), (30, 99)], [30, 20, 10])
    assert rows.tolist() == [[2, 1], [1, 0]]


# -- heatmaps ---------------------------------------------------------------------------------


def _hline():
    # (0.25, 0.5) -> pixel (32, 64); (0.75, 0.5) -> pixel (96, 64)
    return np.array([[0.25, 0.5], [0.75, 0.5]]), np.array([[0, 1]])


def test_heatmap_horizontal_line_values():
    pts, con = _hline()
    h = P.draw_heatmap(pts, con)
    assert h.shape == (128, 128) and h.dtype == np.float32
    assert np.all(h[64, 32:97] == 1.0)
    assert np.allclose(h[63, 32:97], math.exp(-0.5)) and np.allclose(h[65, 32:97], math.exp(-0.5))
    assert np.allclose(h[62, 40:90], math.exp(-2.0)) and np.allclose(h[66, 40:90], math.exp(-2.0))
    assert np.all(h[61, :] == 0) and np.all(h[67, :] == 0) and np.all(h[:58] == 0)
    # beyond the end: 1 px -> exp(-1/2); diagonal neighbour -> 5x5 mask distance 1.4
    assert np.isclose(h[64, 97], math.exp(-0.5))
    assert np.isclose(h[65, 97], math.exp(-1.4 ** 2 / 2), atol=1e-6)
    assert np.all(h[64, 99:] == 0) and np.all(h[64, :30] == 0)
    assert h.min() >= 0 and h.max() <= 1


def test_heatmap_pixel_mapping_and_out_of_range():
    s = P.draw_sketch(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0, 1]]))
    assert np.all(s[0, :] == 0) and s[1:].min() == 1  # x=1 -> capped at 127
    # a point outside [0,1] removes its line
    h = P.draw_heatmap(np.array([[0.2, 0.5], [1.01, 0.5]]), np.array([[0, 1]]))
    assert np.all(h == 0)


def test_draw_heatmaps_batched():
    pts, con = _hline()
    batch = np.stack([pts, pts[::-1] * 0.5])
    hs = P.draw_heatmaps(batch, con)
    assert hs.shape == (2, 128, 128)
    np.testing.assert_array_equal(hs[0], P.draw_heatmap(pts, con))
    np.testing.assert_array_equal(hs[1], P.draw_heatmap(pts[::-1] * 0.5, con))


def _random_face(rng, n):
    # plausible-ish points: random in [0.1, 0.9]
    return rng.uniform(0.1, 0.9, size=(n, 131, 2))


def test_reference_heatmaps_official_compat():
    rng = np.random.default_rng(0)
    refs = _random_face(rng, 5)
    fixed = P.reference_heatmaps(refs)
    compat = P.reference_heatmaps(refs, official_compat=True)
    assert fixed.shape == compat.shape == (5, 128, 128)
    for i in range(5):
        np.testing.assert_array_equal(fixed[i], P.full_heatmaps(refs[i:i + 1])[0])
        np.testing.assert_array_equal(compat[i], fixed[4])
    assert not np.array_equal(fixed[0], fixed[4])
    assert P.pose_heatmaps(refs[:, :76]).shape == (5, 128, 128)


# -- crop -------------------------------------------------------------------------------------


def test_crop_box_margin_clip_and_mapping():
    w, h = 200, 100
    lm = np.array([[50.0, 20.0], [150.0, 80.0]]) / [w, h]
    assert P.crop_box(lm, w, h) == (45, 15, 155, 85)
    assert P.crop_box_px(lm * [w, h], w, h) == (45, 15, 155, 85)
    lm2 = np.array([[2.0, 1.0], [199.0, 98.0]]) / [w, h]  # clipped to the frame
    assert P.crop_box(lm2, w, h) == (0, 0, 200, 100)
    b = P.crop_bounds(lm, w, h)
    c = P.to_crop_coords(lm, b)
    np.testing.assert_allclose(c[0], [5 / 110, 5 / 70])
    np.testing.assert_allclose(c[1], [105 / 110, 65 / 70])
    frames = [np.full((h, w, 3), 7, np.uint8)]
    faces = P.crop_resize(frames, [P.crop_box(lm, w, h)])
    assert faces.shape == (1, 128, 128, 3) and np.all(faces == 7)


# -- references -------------------------------------------------------------------------------


def test_select_references_linspace_and_ties():
    op = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])  # 10 frames
    # sorted order: 9,1,5,3,7,2,8,4,6,0 ; positions int(linspace(0,9,5)) = 0,2,4,6,9
    assert P.select_references(op, 5).tolist() == [9, 5, 7, 8, 0]
    ties = np.zeros(7)
    assert P.select_references(ties, 5).tolist() == [0, 1, 3, 4, 6]  # 0,1.5,3,4.5,6 -> trunc
    np.testing.assert_array_equal(P.select_references(op, 5), P.select_references(op.copy(), 5))
    assert P.select_references(np.array([0.3, 0.1]), 5).tolist() == [1, 1, 1, 1, 0]


def test_lip_openness():
    lm = np.zeros((2, 478, 2))
    lm[:, 17] = [[0.3, 0.4], [0.0, 0.1]]
    np.testing.assert_allclose(P.lip_openness(lm), [0.5, 0.1])


# -- audio ------------------------------------------------------------------------------------


def test_audio_windows_start_end():
    L = 20
    feats = np.tile(np.arange(1, L + 1, dtype=np.float32)[:, None], (1, 768))  # row k -> k+1
    n = P.num_audio_frames(L)
    assert n == 11  # chunks while L - max(0, 2(i-2)) >= 4 -> i <= 10
    w = P.audio_windows(feats)
    assert w.shape == (11, 768, 10)
    assert w[0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert w[1, 5].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert w[2, 0].tolist() == list(range(1, 11))
    assert w[10, 0].tolist() == [17, 18, 19, 20, 0, 0, 0, 0, 0, 0]
    assert P.audio_windows(feats, 13)[12].sum() == 0  # fully outside
    g = P.guidance_windows(w)
    assert g.shape == (11, 5, 768, 10)
    assert np.all(g[0, :2] == 0) and np.array_equal(g[0, 2], w[0]) and np.array_equal(g[0, 4], w[2])
    assert np.all(g[10, 3:] == 0) and np.array_equal(g[10, 1], w[9])
    assert np.array_equal(g[5], w[3:8])


# -- template sequence ------------------------------------------------------------------------


def _official_sequence(n_vid, n_chunks):
    seq = list(range(n_vid))
    rep = n_chunks // n_vid + 1
    seq = seq + list(reversed(seq))
    return seq * ((rep + 1) // 2)


@pytest.mark.parametrize("n_vid,n_chunks", [(3, 10), (5, 5), (4, 17), (1, 3), (7, 2)])
def test_ping_pong_matches_official_prefix(n_vid, n_chunks):
    off = _official_sequence(n_vid, n_chunks)
    ours = P.ping_pong_indices(n_vid, len(off) + 5)
    assert ours[:len(off)].tolist() == off


def test_ping_pong_and_template_windows():
    assert P.ping_pong_indices(3, 10).tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2]
    t = P.template_window_indices(3, 4)
    assert t.tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2], [0, 1, 2, 2, 1], [1, 2, 2, 1, 0]]


# -- paste-back -------------------------------------------------------------------------------


def _square68(c=100, r=50):
    # jaw 0..16 along the bottom half-ring, brows 17..26 along the top: convex when ordered
    ang_jaw = np.linspace(np.pi, 0, 17)  # left -> bottom -> right (y down)
    jaw = np.stack([c + r * np.cos(ang_jaw), c + r * np.sin(ang_jaw)], 1)
    brow = np.stack([np.linspace(c - r, c + r, 10), np.full(10, c - r)], 1)
    pts = np.zeros((68, 2))
    pts[:17], pts[17:27] = jaw, brow
    return pts


def test_soft_mask_and_paste_back():
    m = B.soft_mask(_square68(), (200, 220, 3))
    assert m.shape == (200, 220) and m.min() >= 0 and m.max() <= 1
    assert m[100, 100] == 1.0 and m[70, 100] == 1.0
    assert m[5, 5] == 0.0 and m[190, 215] == 0.0
    assert 0 < m[50, 100] < 1  # on the brow edge: blurred
    frame = np.zeros((200, 220, 3), np.uint8)
    face = np.full((128, 128, 3), 200, np.uint8)
    out = B.paste_back(frame, face, (60, 60, 140, 140), m)
    assert out.dtype == np.uint8 and out[100, 100].tolist() == [200] * 3
    assert np.all(out[:40] == 0)
    hard = B.paste_back(frame, np.full((3, 128, 128), 0.5, np.float32), (60, 60, 140, 140), None)
    assert hard[100, 100].tolist() == [127] * 3 and hard[10, 10].tolist() == [0] * 3


def test_windowed_mask_and_paste_equal_the_full_frame_ones():
    """soft_mask_window / paste_back_window (the faster path STSA uses) give the same bytes as soft_mask /
    paste_back on the whole frame, for faces inside, across the edge of and outside the frame."""
    rng = np.random.default_rng(1)
    for k in range(60):
        h, w = (720, 1280) if k % 2 else (160, 160)
        cx, cy, r = rng.uniform(-50, w + 50), rng.uniform(-50, h + 50), rng.uniform(5, 300)
        ang = np.sort(rng.uniform(0, 2 * np.pi, 68))
        lm = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        full = B.soft_mask(lm, (h, w, 3))
        mask, (y0, y1, x0, x1) = B.soft_mask_window(lm, (h, w, 3))
        outside = full.copy()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any() and np.array_equal(full[y0:y1, x0:x1], mask), k
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        bx0, by0 = int(np.clip(cx - 60, 0, w - 2)), int(np.clip(cy - 60, 0, h - 2))
        box = (bx0, by0, min(w, bx0 + 120), min(h, by0 + 120))
        face = rng.random((128, 128, 3)).astype(np.float32)
        assert np.array_equal(B.paste_back(frame, face, box, full), B.paste_back_window(frame, face, box, mask, (y0, y1, x0, x1))), k
