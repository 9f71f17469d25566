"""FVD: VideoGPT's windows and preprocessing, both Frechet modes, the official reference values
(../shared/golden/reference_fvd_dev.json) through the harness's decoder, and the TorchScript detector's plumbing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metrics.fid import frechet_distance
from metrics.fvd import WINDOW, WindowEmbedder, frechet_videogpt, resize_crop, window_logits


def fake_embed(calls: list | None = None):
    """A cheap stand-in for the I3D: per window, the mean of each frame (16 numbers) padded to 400."""

    def embed(windows):
        if calls is not None:
            calls.append(len(windows))
        means = windows.mean(dim=(1, 3, 4)).numpy()
        return np.pad(means, ((0, 0), (0, 400 - means.shape[1]))).astype(np.float32)

    return embed


@pytest.mark.parametrize(("hw", "resized", "offset"), [((288, 360), (224, 280), (0, 28)), ((1080, 1920), (224, 399), (0, 87)), ((160, 160), (224, 224), (0, 0))])
def test_resize_follows_videogpt(hw, resized, offset):
    """Short side 224, long side ceil(L * (224 / S)), centre crop at (size - 224) // 2: the sizes and crops the
    reference entries record (resized_hw_before_crop, crop_top_left); [0, 255] maps to [-1, 1]."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    x = resize_crop(frames)
    assert x.shape == (3, 2, 224, 224)
    full = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, size=resized, mode="bilinear", align_corners=False)
    want = (full[:, :, offset[0] : offset[0] + 224, offset[1] : offset[1] + 224] - 0.5) * 2
    torch.testing.assert_close(x, want.permute(1, 0, 2, 3), rtol=0, atol=1e-6)
    assert float(resize_crop(np.zeros((1, 8, 8, 3), np.uint8)).min()) == pytest.approx(-1.0, abs=1e-6)
    assert float(resize_crop(np.full((1, 8, 8, 3), 255, np.uint8)).max()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 5, 16, 40, 200])
def test_windows_are_chunk_invariant_and_drop_the_tail(chunk):
    """Windows start at 0, 16, 32, ...; a tail shorter than 16 frames is dropped; any chunk size gives the
    same logits as the whole clip at once."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (53, 20, 24, 3), dtype=np.uint8)
    got = window_logits(frames, fake_embed(), chunk=chunk)
    assert got.shape == (53 // WINDOW, 400)
    whole = np.stack([fake_embed()(resize_crop(frames[s : s + WINDOW]).unsqueeze(0))[0] for s in range(0, 48, WINDOW)])
    np.testing.assert_array_equal(got, whole)


def test_identical_windows_go_through_the_network_once():
    calls: list[int] = []
    frames = np.repeat(np.random.default_rng(2).integers(0, 256, (1, 12, 12, 3), dtype=np.uint8), 64, axis=0)
    out = window_logits(frames, fake_embed(calls), chunk=64, batch=4)
    assert calls == [1] and out.shape == (4, 400) and (out == out[0]).all()


def test_chunks_out_of_order_are_refused():
    embedder = WindowEmbedder(fake_embed(), resize_crop, 4)
    embedder(np.zeros((10, 8, 8, 3), np.uint8), 0)
    with pytest.raises(RuntimeError, match="out of order"):
        embedder(np.zeros((10, 8, 8, 3), np.uint8), 20)


def test_frechet_modes_agree_when_no_singular_value_is_below_the_threshold():
    """With variances far above 1e-10 VideoGPT's float32 routine is the exact distance (within float32
    rounding); with tiny ones its un-rooted small singular values give a set against itself Tr S1 + Tr S2,
    not 0 (the fixture README's finding)."""
    rng = np.random.default_rng(3)
    a = rng.normal(0, 2, (600, 24)) @ rng.normal(0, 1, (24, 24))
    b = rng.normal(0.3, 2, (500, 24)) @ rng.normal(0, 1, (24, 24))
    exact = frechet_distance(a, b)
    assert frechet_videogpt(a, b) == pytest.approx(exact, rel=1e-4)
    assert frechet_videogpt(a, a) == pytest.approx(0.0, abs=1e-3 * exact)
    tiny = rng.normal(0, 1e-4, (8, 400)).astype(np.float32)
    cov_trace = float(np.trace(np.cov(tiny.astype(np.float64), rowvar=False)))
    assert frechet_videogpt(tiny, tiny) == pytest.approx(2 * cov_trace, rel=1e-3)
    assert frechet_distance(tiny, tiny) == pytest.approx(0.0, abs=1e-6 * cov_trace)


def test_options_are_checked_and_named_in_the_id():
    from metrics.base import build_metric
    from stsa_bench.core.errors import ConfigError

    m = build_metric("fvd", "face128@25fps/pp=x", options={"region": "frame", "frechet": "videogpt"})
    assert m.id == "fvd[frame@25fps/ffmpeg_cfr/16kHz,i3d400-w16s16,bilinear-short224-crop224,frechet=videogpt,pooled]"
    assert build_metric("fvd", "face128@25fps/pp=x").id.startswith("fvd[face128@25fps/pp=x,")
    with pytest.raises(ConfigError, match="fvd.frechet='vidoegpt'.*did you mean 'videogpt'"):
        build_metric("fvd", "c", options={"frechet": "vidoegpt"})


def test_a_clip_shorter_than_a_window_fails_with_its_reason(tmp_path):
    import torch

    from metrics.base import build_metric
    from metrics.i3d import InceptionI3d
    from stsa_bench.core.errors import ClipError
    from tests.helpers import eval_pair

    path = tmp_path / "i3d.pt"
    torch.save(InceptionI3d().state_dict(), path)
    metric = build_metric("fvd", "c", weights={"i3d": str(path)})
    with pytest.raises(ClipError, match="needs at least 16 frames, the clip has 12"):
        metric.update_pair(eval_pair(12))


@pytest.fixture(scope="module")
def i3d(shared, make_weights, tmp_path_factory):
    """The golden I3D as the metric builds it (channels-last), and its call."""
    import torch

    from metrics.fvd import build_i3d, run_i3d

    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save(make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "i3d_fvd" / "manifest.json")), path)
    model = build_i3d(path)
    return lambda windows: run_i3d(model, windows)


@pytest.mark.slow
def test_reference_logits_and_fvd_through_the_harness_decoder(shared, i3d):
    """FVD(b) at 25 fps (the reference's `-r 25` decode = the harness's): OpenTalker's real clip against its Wav2Lip
    and unsynced versions. Per-window logits within 1e-5, FVD within 1e-3 relative in both modes."""

    from stsa_bench.core.media import decode_video

    entries = json.loads((shared / "golden" / "reference_fvd_dev.json").read_text())["entries"]

    real = "OpenTalker__video-retalking__1.mp4"
    logits = {}
    for clip in (real, "Zz-ww__SadTalker-Video-Lip-Sync__wav2lip.mp4", "Zz-ww__SadTalker-Video-Lip-Sync__sync_none.mp4"):
        ref = next(e for e in entries if e.get("clip") == clip and e["decoding"] == "r25" and "window0_logits_400" in e)
        frames, _ = decode_video(shared / "clips" / clip)
        assert len(frames) == ref["n_frames"]
        logits[clip] = window_logits(frames, i3d, chunk=48, batch=2)
        assert len(logits[clip]) == ref["n_windows"]
        np.testing.assert_allclose(logits[clip][0], ref["window0_logits_400"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(logits[clip].mean(axis=0)[:8], ref["windows_mean_logits_first8"], rtol=0, atol=1e-5)
    for e in entries:
        if e["metric"] == "FVD_b" and e["decoding"] == "r25" and e["generated"] in logits:
            gen, ref_real = logits[e["generated"]], logits[real]
            assert frechet_videogpt(gen, ref_real) == pytest.approx(e["FVD_videogpt_float32"], rel=1e-3)
            assert frechet_distance(gen, ref_real) == pytest.approx(e["FVD_stylegan_v_scipy_sqrtm_float64"], rel=1e-3)
    self_entry = next(e for e in entries if e["metric"] == "FVD_b_self" and e["decoding"] == "r25")
    assert frechet_videogpt(logits[real], logits[real]) == pytest.approx(self_entry["FVD_videogpt_float32"], rel=1e-3)
    assert frechet_distance(logits[real], logits[real]) == pytest.approx(0.0, abs=1e-11)


def random_pair(n: int, seed: int):
    from tests.helpers import eval_pair

    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for _ in range(2)]
    return eval_pair(n, pred_crops=crops[0], gt_crops=crops[1])


def native_frames(path):
    """Every stored frame once, the stream's tagged matrix (the reference's `ffmpeg -fps_mode passthrough`)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.slow
def test_reference_dev_pool_and_every_native_fingerprint(shared, i3d):
    """The dev pools (10 real clips, 64 windows, against 5 generated ones, 90 windows, several at ~22 or 30 fps, so
    decoded natively as the reference was): the first window's 400 logits of each of these 15 clips within 1e-5 and
    FVD_dev_real_vs_generated in both modes within 1e-3 relative (measured: 5e-10 and 6e-7)."""

    reference = json.loads((shared / "golden" / "reference_fvd_dev.json").read_text())

    pools = reference["meta"]["pools"]
    pooled = {*pools["dev_real_25fps"]["clips_in_order"], *pools["dev_generated"]["clips_in_order"]}
    logits = {}
    for e in reference["entries"]:
        if e.get("decoding") == "native" and "window0_logits_400" in e and e["clip"] in pooled:
            logits[e["clip"]] = window_logits(native_frames(shared / "clips" / e["clip"]), i3d, chunk=64, batch=2)
            assert len(logits[e["clip"]]) == e["n_windows"]
            np.testing.assert_allclose(logits[e["clip"]][0], e["window0_logits_400"], rtol=0, atol=1e-5)
    assert len(logits) == 15
    real = np.concatenate([logits[c] for c in pools["dev_real_25fps"]["clips_in_order"]])
    generated = np.concatenate([logits[c] for c in pools["dev_generated"]["clips_in_order"]])
    want = next(e for e in reference["entries"] if e["metric"] == "FVD_dev_real_vs_generated")
    assert (len(real), len(generated)) == (want["n_real"], want["n_generated"])
    assert frechet_videogpt(generated, real) == pytest.approx(want["FVD_videogpt_float32"], rel=1e-3)
    assert frechet_distance(generated, real) == pytest.approx(want["FVD_stylegan_v_scipy_sqrtm_float64"], rel=1e-3)


class ScriptedI3D:
    """Builds a small TorchScript module with the StyleGAN-V detector's call signature (the real file is not here)."""

    @staticmethod
    def save(path):
        import torch

        class Detector(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = torch.nn.Linear(3, 400)

            def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False) -> torch.Tensor:
                if rescale:
                    x = x / 255.0 * 2 - 1
                return self.proj(x.mean(dim=(2, 3, 4)))

        torch.manual_seed(0)
        torch.jit.save(torch.jit.script(Detector()), str(path))


def test_fvd_styleganv_needs_the_opt_in_and_reads_frames_20_to_35(tmp_path):
    """The TorchScript detector loads only with weights.allow_torchscript=true; it sees frames 20-35 of the
    face crops at 224x224 in [0, 1]. A scripted stand-in, since the official file cannot be pinned here."""
    from metrics.base import build_metric
    from stsa_bench.core.errors import ClipError
    from stsa_bench.core.weights import WeightsMissing
    from tests.helpers import eval_pair

    path = tmp_path / "i3d_torchscript.pt"
    ScriptedI3D.save(path)
    refused = build_metric("fvd_styleganv", "c", weights={"i3d_styleganv": str(path)})
    with pytest.raises(WeightsMissing, match="TorchScript.*weights.allow_torchscript=true"):
        refused.update_pair(eval_pair(40))
    metric = build_metric("fvd_styleganv", "c", weights={"i3d_styleganv": str(path), "allow_torchscript": True})
    pairs = [random_pair(40, s) for s in range(3)]
    for pair in pairs:
        metric.update_pair(pair)
    state = metric.state()
    assert state["pred"].shape == (3, 400) and metric.compute() > 0
    changed = random_pair(40, 0)
    changed.pred_crops[:20] = 0
    changed.pred_crops[36:] = 255
    metric.reset()
    metric.update_pair(changed)
    np.testing.assert_array_equal(metric.state()["pred"], state["pred"][:1])
    with pytest.raises(ClipError, match="frames 20-35, the clip has 30"):
        metric.update_pair(eval_pair(30))



def test_per_clip_partials_merge_to_the_pooled_value(tmp_path):
    """Pooled like FID: each clip's saved state (its windows' logits) merged later gives the value of one pass
    over all clips, whatever the windows per batch."""
    import torch

    from metrics.base import build_metric
    from metrics.i3d import InceptionI3d

    path = tmp_path / "i3d.pt"
    torch.save(InceptionI3d().state_dict(), path)
    pairs = [random_pair(40, seed) for seed in range(4)]

    def metric(batch: int):
        m = build_metric("fvd", "c", weights={"i3d": str(path)}, options={"batch_windows": batch})
        m.embed = fake_embed()
        return m

    whole = metric(4)
    for pair in pairs:
        whole.update_pair(pair)
    states = []
    for pair in pairs:
        one = metric(1)
        one.update_pair(pair)
        states.append(one.state())
    merged = metric(4)
    for state in states:
        merged.merge(state)
    assert merged.count == whole.count == 8
    assert merged.compute() == pytest.approx(whole.compute(), rel=1e-12) and whole.compute() > 0
