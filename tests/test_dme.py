"""DME (dme: RAFT, dme_dis: OpenCV DIS): the definition by hand, NumPy reference on real crops,
chunking invariance, pooled state/merge, RAFT with random weights, missing weights, CLI run."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from metrics import build_metric
from metrics.base import EvalPair
from metrics.dme import RAFT_WEIGHTS, dme_terms, gray_frames, raft_flow
from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.weights import WeightsMissing

from .helpers import eval_pair

TAG = PreprocessConfig().crop_tag()
CLIP = "smeetrs__deep_avsr__00001.mp4"  # LRS2-format 160x160, 120 frames


def make_pair(pred_crops: np.ndarray, gt_crops: np.ndarray, batch_size: int = 64) -> EvalPair:
    return eval_pair(len(gt_crops), pred_frames=pred_crops, gt_frames=gt_crops, pred_crops=pred_crops, gt_crops=gt_crops,
                     batch_size=batch_size)


def moving_texture(n: int = 8, size: int = 96, step: int = 2, seed: int = 0) -> np.ndarray:
    """A smooth periodic texture translated by `step` px to the right per frame (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size, size, 3))
    spec = np.fft.fft2(noise, axes=(0, 1))
    f = np.fft.fftfreq(size)
    lowpass = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) / (2 * 0.06**2))[..., None]
    tex = np.real(np.fft.ifft2(spec * lowpass, axes=(0, 1)))
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 200 + 30
    base = tex.astype(np.uint8)
    return np.stack([np.roll(base, step * t, axis=1) for t in range(n)])


def run_metric(name: str, pred, gt, batch_size: int = 64, **kw):
    m = build_metric(name, TAG, **kw)
    m.update_pair(make_pair(pred, gt, batch_size))
    return m


# --- the definition on hand-made flows ---


def test_hand_computed_terms():
    flow_gt = np.zeros((2, 2, 2, 2))
    flow_gen = np.zeros((2, 2, 2, 2))
    flow_gt[0, 0, 0] = (3, 4)  # |u|+|v| = 7: in M
    flow_gt[0, 0, 1] = (0.5, 0.4)  # 0.9: not in M
    flow_gt[0, 1, 0] = (2, 0)  # source pixel black -> zeroed -> not in M
    flow_gt[0, 1, 1] = (-1, 1)  # 2: in M
    flow_gen[0, 0, 0] = (10, 10)  # generated source pixel black -> zeroed -> EPE 5
    flow_gen[0, 1, 1] = (-1, -2)  # EPE 3
    flow_gen[0, 0, 1] = (100, 100)  # outside M: ignored
    flow_gt[1] = 0.5  # |u|+|v| = 1, not > 1: empty mask, pair skipped
    src_gt = np.full((2, 2, 2, 3), 50, np.uint8)
    src_gen = src_gt.copy()
    src_gt[0, 1, 0] = 0
    src_gen[0, 0, 0] = 0
    values, kept = dme_terms(flow_gt, flow_gen, src_gt, src_gen)
    assert kept.tolist() == [True, False]
    assert values[0] == pytest.approx((5 + 3) / 2) and np.isnan(values[1])


def test_black_needs_all_three_channels_zero():
    flow_gt = np.full((1, 1, 2, 2), 2.0)
    src = np.zeros((1, 1, 2, 3), np.uint8)
    src[0, 0, 1, 2] = 1  # only the blue channel: RGB sum 1, not black
    values, kept = dme_terms(flow_gt, np.zeros_like(flow_gt), src, None)
    assert kept.all() and values[0] == pytest.approx(np.hypot(2, 2))


def test_ids_direction_pooled():
    assert build_metric("dme", TAG).id == f"dme[{TAG},raft_large,iters20]"
    assert build_metric("dme_dis", TAG).id == f"dme_dis[{TAG},dis_medium]"
    for name in ("dme", "dme_dis"):
        m = build_metric(name, TAG)
        assert m.pooled and not m.higher_is_better


def test_gray_frames_is_opencv_per_frame():
    x = moving_texture(3, 40)
    want = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in x])
    np.testing.assert_array_equal(gray_frames(x), want)


# --- dme_dis known answers ---


def test_identical_video_gives_zero():
    x = moving_texture()
    m = run_metric("dme_dis", x, x.copy())
    # every consecutive pair moves by 2 px (> the 1 px mask threshold): all len - 1 pairs retained
    assert (m.count, m.skipped) == (len(x) - 1, 0) and m.compute() == 0.0


def test_static_video_against_known_translation():
    """GT moves 2 px per frame, generated is frozen: DME ~ |F_gt| = 2 px."""
    gt = moving_texture(step=2)
    static = np.repeat(gt[:1], len(gt), axis=0)
    m = run_metric("dme_dis", static, gt)
    assert m.count == len(gt) - 1
    assert m.compute() == pytest.approx(2.0, abs=0.15)


def test_no_motion_pairs_are_skipped_and_counted():
    x = moving_texture(6)
    gt = np.concatenate([x[:3], np.repeat(x[3:4], 3, axis=0)])  # pairs 3->4, 4->5 still
    m = run_metric("dme_dis", x, gt)
    # by construction: a pair is skipped exactly when its two ground-truth frames are identical (no motion)
    n_pairs = len(gt) - 1
    n_still = sum(np.array_equal(gt[t], gt[t + 1]) for t in range(n_pairs))
    assert (n_pairs, n_still) == (5, 2)  # the construction above, not the metric's output
    assert (m.count, m.skipped) == (n_pairs - n_still, n_still)
    assert m.note == f"{n_still} of {n_pairs} frame pairs without ground-truth motion skipped"
    still = run_metric("dme_dis", x, np.repeat(x[:1], 6, axis=0))
    assert still.count == 0 and still.skipped == n_pairs
    with pytest.raises(ValueError, match="no frame pair with ground-truth motion"):
        still.compute()


# --- real crops: LRS2 clip cut with FaceMesh boxes; generated = the clip 2 frames later, same boxes ---


@pytest.fixture(scope="module")
def real_crops(shared):
    from stsa_bench.core.faces import FaceMeshDetector
    from stsa_bench.core.media import decode_video
    from stsa_bench.core.preprocess import crop_faces, face_boxes

    cfg = PreprocessConfig()
    frames, _ = decode_video(shared / "clips" / CLIP, cfg.fps)
    frames = frames[:42]
    with FaceMeshDetector(cfg.static_image_mode, cfg.refine_landmarks, cfg.min_detection_confidence) as det:
        lm, found = det(frames)
    boxes = face_boxes(lm, found, frames.shape[2], frames.shape[1], cfg.box_scale, cfg.smooth_sigma)
    gt = crop_faces(frames[:40], boxes[:40], cfg.crop_size)
    pred = crop_faces(frames[2:42], boxes[:40], cfg.crop_size)
    gt[5:9, :, :12] = 0  # a black band (as outside-the-frame padding) to exercise the zeroing rule
    pred[20:24, -12:] = 0
    return pred, gt


def reference_dme(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    """The definition pair by pair, with OpenCV DIS (MEDIUM) on grayscale frames."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    total, kept, skipped = 0.0, 0, 0
    for t in range(len(gt) - 1):
        flows = []
        for video in (gt, pred):
            a = cv2.cvtColor(video[t], cv2.COLOR_RGB2GRAY)
            b = cv2.cvtColor(video[t + 1], cv2.COLOR_RGB2GRAY)
            flow = dis.calc(a, b, None).astype(np.float64)
            flow[video[t].astype(int).sum(axis=2) == 0] = 0
            flows.append(flow)
        f_gt, f_gen = flows
        mask = np.abs(f_gt[..., 0]) + np.abs(f_gt[..., 1]) > 1
        if not mask.any():
            skipped += 1
            continue
        epe = np.sqrt((f_gt[..., 0] - f_gen[..., 0]) ** 2 + (f_gt[..., 1] - f_gen[..., 1]) ** 2)
        total += epe[mask].mean()
        kept += 1
    return total / kept, kept, skipped


@pytest.fixture(scope="module")
def real_reference(real_crops) -> tuple[float, int, int]:
    """(DME, retained pairs, skipped pairs) of the real crops by the definition (`reference_dme`)."""
    pred, gt = real_crops
    ref, kept, skipped = reference_dme(pred, gt)
    assert kept + skipped == len(gt) - 1  # every consecutive pair is either retained or skipped
    return ref, kept, skipped


def test_dme_dis_matches_numpy_reference_on_real_crops(real_crops, real_reference):
    pred, gt = real_crops
    assert gt.shape == (40, 128, 128, 3)
    ref, kept, skipped = real_reference
    m = run_metric("dme_dis", pred, gt)
    assert (m.count, m.skipped) == (kept, skipped) and kept > 20
    assert m.compute() == pytest.approx(ref, rel=1e-9)
    assert m.compute() > 0


def test_dme_dis_chunking_invariance(real_crops, real_reference):
    pred, gt = real_crops
    _, kept, skipped = real_reference  # pair counts by the definition, independent of the metric's code
    values = []
    for batch in (1, 5, 16, 64):
        m = run_metric("dme_dis", pred, gt, batch_size=batch)
        values.append(m.compute())
        assert (m.count, m.skipped) == (kept, skipped), batch
    assert values == pytest.approx([values[0]] * 4, rel=1e-12)


def test_pooled_state_merge_equals_all_at_once(real_crops):
    pred, gt = real_crops
    clips = [(pred[:17], gt[:17]), (pred[17:], gt[17:]), (gt[::-1].copy(), pred[::-1].copy())]
    whole = build_metric("dme_dis", TAG)
    states = []
    for p, g in clips:
        whole.update_pair(make_pair(p, g, 8))
        m = build_metric("dme_dis", TAG)
        m.update_pair(make_pair(p, g, 8))
        buf = io.BytesIO()
        np.savez(buf, **m.state())
        buf.seek(0)
        with np.load(buf) as z:
            states.append({k: z[k] for k in z.files})
    merged = build_metric("dme_dis", TAG)
    for s in states:
        merged.merge(s)
    assert merged.count == whole.count == sum(int(s["count"]) for s in states)
    assert merged.skipped == whole.skipped
    assert merged.compute() == pytest.approx(whole.compute(), rel=1e-12)
    merged.reset()
    assert merged.count == 0 and merged.skipped == 0


# --- RAFT (torchvision raft_large) with random weights; never downloaded ---


@pytest.fixture(scope="module")
def random_raft(tmp_path_factory) -> str:
    import torch
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_random.pth"
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    return str(path)


def test_raft_flow_scales_pads_and_unpads():
    """A stand-in network that echoes its first image shows the [-1, 1] input and the crop-back."""
    import torch

    class Echo(torch.nn.Module):
        def forward(self, a, b, num_flow_updates):
            assert a.shape[-2] % 8 == 0 and a.shape[-1] % 8 == 0 and num_flow_updates == 20
            return [a[:, :2] * 0, a[:, :2]]

    x = np.random.default_rng(0).integers(0, 256, (2, 13, 21, 3), dtype=np.uint8)
    flow = raft_flow(Echo(), x, x)
    assert flow.shape == (2, 13, 21, 2)
    np.testing.assert_allclose(flow, x[..., :2] / 127.5 - 1.0, atol=1e-6)


@pytest.mark.slow
def test_raft_random_weights_finite_and_batch_invariant(random_raft):
    x = moving_texture(3, 100, step=3)  # 100 px: padded to 128 inside
    pred = np.clip(x.astype(int) + 20, 0, 255).astype(np.uint8)[::-1].copy()
    weights = {"raft": random_raft}
    values = []
    for batch in (1, 2):
        m = run_metric("dme", pred, x, batch_size=batch, weights=weights)
        assert m.count + m.skipped == 2 and m.count > 0
        values.append(m.compute())
    assert np.isfinite(values[0]) and values[0] > 0
    assert values[1] == pytest.approx(values[0], rel=1e-4)
    same = run_metric("dme", x, x.copy(), weights=weights)
    assert same.compute() == 0.0
    assert same.weights_sha256 and len(same.weights_sha256) == 64


@pytest.mark.slow
def test_raft_model_is_loaded_once(random_raft):
    m = build_metric("dme", TAG, weights={"raft": random_raft})
    x = moving_texture(2, 32)
    m.update(x, x)
    model = m.model()
    m.reset()
    m.update(x, x)
    assert m.model() is model


def test_missing_raft_weights_name_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("STSA_BENCH_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    x = moving_texture(3, 32)
    m = build_metric("dme", TAG)
    with pytest.raises(WeightsMissing) as err:
        m.update_pair(make_pair(x, x))
    msg = str(err.value)
    assert RAFT_WEIGHTS.filename in msg and RAFT_WEIGHTS.url in msg
    m = build_metric("dme", TAG, weights={"raft": str(tmp_path / "nope.pth")})
    with pytest.raises(WeightsMissing, match=r"nope\.pth.*" + RAFT_WEIGHTS.url.replace(".", r"\.")):
        m.update(x, x)


# --- end to end ---


@pytest.mark.slow
def test_cli_run_lipmd_and_dme_dis(cache_dir, tmp_path):
    from stsa_bench.cli import main
    from stsa_bench.core.results import read_rows

    out = tmp_path / "run"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt,static"]
    rc = main(args + ["--metrics", "lipmd,dme_dis", "runtime.progress=false"])
    assert rc == 0
    rows = read_rows(out / "results.jsonl")
    assert rows and all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"]
    lipmd = [r for r in rows if r.metric.startswith("lipmd[")]
    assert {r.method for r in lipmd} == {"gt", "static"} and len(lipmd) == 6
    assert all(r.value == 0.0 for r in lipmd if r.method == "gt")
    assert all(r.value > 0 for r in lipmd if r.method == "static")
    dme = {r.method: r for r in rows if r.metric.startswith("dme_dis[")}
    assert len([r for r in rows if r.metric.startswith("dme_dis[")]) == 2
    assert all(r.clip == "*" for r in dme.values())
    assert dme["gt"].value == 0.0 and dme["static"].value > 0
    assert dme["gt"].n_frames == dme["static"].n_frames > 0
    assert (out / "summary.md").is_file()
    assert "dme_dis" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_ground_truth_flows_are_computed_once_per_clip(cache_dir, tmp_path, monkeypatch):
    """Three methods on each demo clip: the ground truth's flows are computed once per clip, each method's
    own flows once (methods that return the ground-truth frames reuse them), and the values equal a run
    of each method alone."""
    from metrics.dme import DMEDIS
    from stsa_bench.cli import main
    from stsa_bench.core.results import read_rows

    pairs = []
    original = DMEDIS.flow_run
    monkeypatch.setattr(DMEDIS, "flow_run", lambda self, frames: pairs.append(len(frames) - 1) or original(self, frames))
    out = tmp_path / "run"
    rc = main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt,static,shift",
               "--metrics", "dme_dis", "suite.n_clips=2", "runtime.progress=false"])  # fmt: skip
    assert rc == 0
    assert sum(pairs) == 2 * (1 + 1) * 59, "per clip: the ground truth's 59 flows, then static's (gt and shift return the ground-truth frames)"

    rows = {r.method: r for r in read_rows(out / "results.jsonl")}
    fresh = tmp_path / "fresh"
    for method in ("static", "shift"):
        assert main(["run", "--suite", "demo", "--out", str(fresh / method), f"cache_dir={cache_dir}", "--methods", method,
                     "--metrics", "dme_dis", "suite.n_clips=2", "runtime.progress=false"]) == 0  # fmt: skip
        alone = read_rows(fresh / method / "results.jsonl")[0]
        assert alone.value == rows[method].value and alone.n_frames == rows[method].n_frames
