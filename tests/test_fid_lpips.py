"""FID (pytorch-fid parity and the reference values), LPIPS (lpips parity), scikit-image SSIM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metrics import build_metric
from metrics.fid import FID_WEIGHTS, build_inception, frechet_distance, inception_features
from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.media import decode_video
from stsa_bench.core.weights import WeightsMissing

TAG = PreprocessConfig().crop_tag()


@pytest.fixture(scope="module")
def fid_weights(shared):
    return shared / "weights" / "pt_inception-2015-12-05_convonly.pth"


@pytest.fixture(scope="module")
def inception(fid_weights):
    return build_inception(fid_weights)


@pytest.fixture(scope="module")
def reference(shared):
    return json.loads((shared / "golden" / "reference_values_dev.json").read_text())["entries"]


def native_frames(path):
    """Every stored frame once (ffmpeg -fps_mode passthrough)."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.slow
def test_conv_only_weights_are_accepted_and_fc_is_the_only_gap(fid_weights):
    from stsa_bench.core.weights import load_state_dict

    keys = set(load_state_dict(fid_weights))
    assert {"fc.weight", "fc.bias"}.isdisjoint(keys) and len(keys) > 300
    build_inception(fid_weights)


@pytest.mark.parametrize("clip", ["smeetrs__deep_avsr__00001.mp4", "rizkiarm__LipNet__bbaf2n.mpg"])
@pytest.mark.slow
def test_inception_features_match_reference(shared, reference, inception, clip):
    entry = next(e for e in reference if e["metric"] == "FID_features_per_clip" and e["clip"] == clip)
    frames = native_frames(shared / "clips" / clip)
    if isinstance(entry["crop"], dict):
        c = entry["crop"]
        frames = frames[:, c["top"] : c["top"] + c["side"], c["left"] : c["left"] + c["side"]]
    assert len(frames) == entry["n_frames"]
    feats = inception_features(inception, frames, "cpu")
    np.testing.assert_allclose(feats.mean(axis=0)[:3], entry["act_mean_first3"], atol=1e-5)


@pytest.mark.slow
def test_fid_matches_reference_through_the_harness_decoder(shared, reference, inception):
    """FID_b at 25 fps: OpenTalker real vs its Wav2Lip dub, frames from stsa_bench's own decoder."""
    entry = next(
        e for e in reference if e["metric"] == "FID_b" and e["decoding"].startswith("25fps") and "wav2lip" in e["generated"]
    )
    real, _ = decode_video(shared / "clips" / entry["real"])
    gen, _ = decode_video(shared / "clips" / entry["generated"])
    assert (len(real), len(gen)) == (entry["n_real"], entry["n_generated"])
    a = inception_features(inception, gen, "cpu")
    b = inception_features(inception, real, "cpu")
    assert frechet_distance(a, b) == pytest.approx(entry["FID"], abs=1e-4)


def test_frechet_distance_matches_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 64)) ** 2
    b = (rng.standard_normal((260, 64)) + 0.2) ** 2
    ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(ref, abs=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    few = a[:40]  # fewer frames than features: a singular covariance takes the eigendecomposition branch
    ref = calculate_frechet_distance(few.mean(0), np.cov(few, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(few, b) == pytest.approx(ref, rel=1e-6)


@pytest.mark.slow
def test_fid_metric_pooled_state_and_batch_invariance(fid_weights, tmp_path):
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-30, 31, gt.shape), 0, 255).astype(np.uint8)
    whole = build_metric("fid", TAG, weights={"fid": str(fid_weights)})
    whole.update(pred, gt)
    parts = build_metric("fid", TAG, weights={"fid": str(fid_weights)})
    states = []
    for i in (0, 5):
        parts.reset()
        parts.update(pred[i : i + (5 if i == 0 else 7)], gt[i : i + (5 if i == 0 else 7)])
        states.append(parts.state())
    parts.reset()
    for s in states:
        parts.merge(s)
    assert parts.count == whole.count == 12
    assert parts.compute() == pytest.approx(whole.compute(), rel=1e-9)
    moved = build_metric("fid", TAG, device="cpu:0", weights={"fid": str(fid_weights)})  # the device route (crops moved once)
    moved.update(pred, gt)
    assert moved.compute() == pytest.approx(whole.compute(), rel=1e-9)
    same = build_metric("fid", TAG, weights={"fid": str(fid_weights)})
    same.update(gt, gt)
    assert abs(same.compute()) < 1e-3
    assert whole.id == f"fid[{TAG},inception-pool3,resize299-bilinear,pooled]" and not whole.higher_is_better


def test_missing_fid_weights_reason_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("STSA_BENCH_WEIGHTS", raising=False)
    m = build_metric("fid", TAG)
    with pytest.raises(WeightsMissing) as e:
        m.update(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8))
    msg = str(e.value)
    assert FID_WEIGHTS.filename in msg and FID_WEIGHTS.url in msg and "weights.fid=PATH" in msg and "\n" not in msg


def fake_torchvision_backbone(net: str, path):
    """A torchvision-format state dict for the lpips backbone, random but fixed (no download)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
    torch.save(model.state_dict(), path)
    return model


@pytest.mark.parametrize("name,net", [("lpips", "alex"), ("lpips_vgg", "vgg")])
@pytest.mark.slow
def test_lpips_matches_the_lpips_package(tmp_path, name, net):
    import lpips

    tv = fake_torchvision_backbone(net, tmp_path / "backbone.pth")
    ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    features = tv.features
    for key, module in ref.net.named_modules():
        if key.count(".") == 1 and hasattr(module, "weight") and module.weight is not None:
            idx = int(key.split(".")[1])
            module.weight.data.copy_(features[idx].weight.data)
            module.bias.data.copy_(features[idx].bias.data)
    rng = np.random.default_rng(2)
    gt = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-40, 41, gt.shape), 0, 255).astype(np.uint8)
    with torch.no_grad():
        want = ref(torch.from_numpy(pred).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 255, normalize=True)
    key = "lpips_alex" if net == "alex" else "lpips_vgg"
    values = []
    for batch in (1, 6):
        m = build_metric(name, TAG, weights={key: str(tmp_path / "backbone.pth")})
        for i in range(0, 6, batch):
            m.update(pred[i : i + batch], gt[i : i + batch])
        values.append(m.compute())
    assert values[0] == pytest.approx(float(want.mean()), rel=1e-5)
    assert values[1] == pytest.approx(values[0], rel=1e-6)
    ident = build_metric(name, TAG, weights={key: str(tmp_path / "backbone.pth")})
    ident.update(gt, gt.copy())
    assert ident.compute() == pytest.approx(0.0, abs=1e-6)
    ident.reset()
    ident.update(gt, gt)
    assert ident.compute() == 0.0 and ident.count == len(gt), "the ground truth's own pair"


def alexnet_features(path):
    """Only the `features.*` tensors of a random torchvision AlexNet (all that LPIPS reads), saved at `path`."""
    import torchvision

    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}, path)
    return str(path)


def test_lpips_ground_truth_features_serve_every_method_of_a_clip(tmp_path, monkeypatch):
    """Two methods' pairs on one clip: the ground truth's activations are computed for the first only, and each
    value equals the lpips package's forward (no sharing) to the last bit; beyond the memory budget nothing is kept."""
    from metrics.base import EvalPair
    from metrics.lpips import _LPIPS

    weights = {"lpips_alex": alexnet_features(tmp_path / "alex.pth")}
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    outputs = [np.clip(gt.astype(int) + rng.integers(-s, s + 1, gt.shape), 0, 255).astype(np.uint8) for s in (20, 60)]
    calls = []
    original = _LPIPS.features
    monkeypatch.setattr(_LPIPS, "features", lambda self, x: calls.append(len(x)) or original(self, x))

    def scores(memory_bytes):
        memo, values = {}, []
        for pred in outputs:
            m = build_metric("lpips", TAG, weights=weights)
            m.update_pair(EvalPair.of_crops(pred, gt, batch_size=3, gt_memo=memo, memory_bytes=memory_bytes))
            values.append(m.compute())
        return values, memo

    shared, memo = scores(memory_bytes=2**30)
    assert calls == [3, 3, 3, 3, 1, 1] + [3, 3, 1], "the second method computes its own side only"
    assert len(memo) == 1
    calls.clear()
    alone, memo = scores(memory_bytes=2**19)
    assert calls == [3, 3, 3, 3, 1, 1] * 2 and not memo, "7 frames of 0.13 MB of activations exceed 0.5 MB: not kept"
    model = build_metric("lpips", TAG, weights=weights).model()
    with torch.inference_mode():
        want = [sum(float(model(to_unit(p[i : i + 3]), to_unit(gt[i : i + 3]), normalize=True).double().sum()) for i in (0, 3, 6)) / 7
                for p in outputs]  # fmt: skip
    assert shared == alone == want


def to_unit(x):
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def test_lpips_missing_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("STSA_BENCH_WEIGHTS", raising=False)
    m = build_metric("lpips", TAG)
    with pytest.raises(WeightsMissing, match="alexnet-owt-7be5be79.pth"):
        m.update(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.uint8))


@pytest.mark.slow
def test_ssim_variants_against_their_reference_packages(shared):
    """ssim (default) against piq.ssim; ssim_skimage against skimage.structural_similarity (data_range 255)."""
    piq = pytest.importorskip("piq", reason="piq is the reference package of the default SSIM (dev extra)")
    from skimage.metrics import structural_similarity

    frames, _ = decode_video(shared / "clips" / "Hangz-nju-cuhk__Talking-Face_PC-AVS__00010.mp4")
    gt = frames[:5]
    pred = np.clip(gt.astype(int) + np.random.default_rng(3).integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    ours = build_metric("ssim", TAG)
    ours.update(pred, gt)
    t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255  # noqa: E731
    assert ours.compute() == pytest.approx(float(piq.ssim(t(pred), t(gt), data_range=1.0)), abs=1e-6)
    sk = build_metric("ssim_skimage", TAG)
    sk.update(pred, gt)
    ref = np.mean([
        structural_similarity(g, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)
        for p, g in zip(pred, gt)
    ])
    assert sk.compute() == pytest.approx(ref, abs=1e-7)
    psnr = build_metric("psnr", TAG)
    psnr.update(pred, gt)
    assert psnr.compute() == pytest.approx(float(piq.psnr(t(pred), t(gt), data_range=1.0, reduction="none").mean()), abs=1e-5)


class _CountingNet:
    """A stand-in feature network: per-image mean colour tiled to 2048 values; counts the images it sees."""

    def __init__(self):
        self.seen = 0

    def __call__(self, x):
        self.seen += len(x)
        return [x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048, None, None]]


def test_identical_frames_go_through_the_network_once():
    rng = np.random.default_rng(0)
    distinct = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    frames = distinct[[0, 0, 1, 0, 2, 2, 1]]
    net = _CountingNet()
    feats = inception_features(net, frames, "cpu", batch_size=2)
    assert net.seen == 3
    one_by_one = np.concatenate([inception_features(_CountingNet(), f[None], "cpu") for f in frames])
    np.testing.assert_array_equal(feats, one_by_one)


def test_ground_truth_method_reuses_the_ground_truth_features(monkeypatch, tmp_path):
    import metrics.fid as fid

    calls = []
    monkeypatch.setattr(fid, "inception_features", lambda model, frames, device, **_: calls.append(len(frames)) or np.ones((len(frames), 4)))
    metric = build_metric("fid", TAG, weights={"fid": str(tmp_path / "unused.pth")})
    monkeypatch.setattr(metric, "model", lambda: None)
    crops = np.zeros((5, 8, 8, 3), np.uint8)
    metric.update(crops, crops)
    assert calls == [5], "one pass for the ground truth, reused for the generated side"
    metric.update(crops, crops.copy())
    assert calls == [5, 5, 5]


def test_frames_equal_to_ground_truth_frames_take_their_features():
    """A shifted output (`shift`) holds the ground truth's frames: only the frames not among them go through the
    network, and the features equal a full pass."""
    import torch

    from metrics.fid import inception_features

    seen = []

    def model(x):
        seen.append(len(x))
        return [x.mean(dim=(2, 3), keepdim=True).repeat(1, 683, 1, 1)[:, :2048]]

    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (9, 6, 6, 3), dtype=np.uint8)
    shifted = np.concatenate([rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8), gt[:-2]])
    gt_features = inception_features(model, gt, "cpu", batch_size=4)
    seen.clear()
    reused = inception_features(model, shifted, "cpu", batch_size=4, known=(gt, gt_features))
    assert sum(seen) == 2, "only the two new frames are computed"
    np.testing.assert_array_equal(reused, inception_features(model, shifted, "cpu", batch_size=4))
    moved = inception_features(model, shifted, "cpu", batch_size=4, on_device=torch.from_numpy(shifted), known=(gt, gt_features))
    np.testing.assert_array_equal(moved, reused)


@pytest.mark.slow
def test_a_run_computes_the_ground_truth_lpips_side_once_per_clip(cache_dir, tmp_path, monkeypatch):
    """gt, static and mouth_blur on each demo clip: the ground truth's activations once per clip (the gt row needs
    none), each method's own once; the rows equal a run that keeps nothing (`runtime.frames_in_memory_mb=0`)."""
    from metrics.lpips import _LPIPS
    from stsa_bench.cli import main
    from stsa_bench.core.results import read_rows

    calls = []
    original = _LPIPS.features
    monkeypatch.setattr(_LPIPS, "features", lambda self, x: calls.append(len(x)) or original(self, x))
    args = ["run", "--suite", "demo", f"cache_dir={cache_dir}", "--methods", "gt,static,mouth_blur", "--metrics", "lpips",
            "suite.n_clips=2", "runtime.progress=false", f"weights.lpips_alex={alexnet_features(tmp_path / 'alex.pth')}"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "kept")]) == 0
    assert calls == [60] * 3 * 2, "per clip: the ground truth, static, mouth_blur"
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "none"), "runtime.frames_in_memory_mb=0"]) == 0
    assert calls == [60] * 4 * 2, "nothing kept: mouth_blur computes the ground truth again"
    kept, none = ({(r.clip, r.method): (r.value, r.status) for r in read_rows(tmp_path / d / "results.jsonl")} for d in ("kept", "none"))
    assert kept == none and len(kept) == 6 and kept[("demo_00", "gt")] == (0.0, "ok") and kept[("demo_00", "static")][0] > 0
