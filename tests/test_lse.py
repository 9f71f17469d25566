"""LSE-C / LSE-D: golden SyncNet parity, the official reference values on real clips, batch-size
invariance, failures (missing weights, short clips) and the CLI. Never downloads anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import build_metric
from metrics.base import EvalPair
from metrics.lse import (
    LSEC,
    SyncScores,
    bgr224,
    evaluate,
    mfcc,
    offset_distances,
    pcm16,
)
from metrics.syncnet import SYNCNET_WEIGHTS, FastSyncNet, SyncNetS, load_syncnet
from stsa_bench.core.config import PreprocessConfig
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.frames import as_frames
from stsa_bench.core.paths import shared_root
from stsa_bench.core.weights import WeightsMissing

from .helpers import eval_pair as base_pair

TAG = PreprocessConfig().crop_tag()
LRS2 = "smeetrs__deep_avsr__00001.mp4"
DELAYED = "smeetrs__deep_avsr__00001__audio_delay200ms.mkv"


def golden_dir(shared: Path) -> Path:
    return shared / "golden" / "syncnet_S"


@pytest.fixture(scope="session")
def golden_model(golden_path) -> SyncNetS:
    return load_syncnet(golden_path)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No syncnet_v2.model anywhere the resolver looks."""
    monkeypatch.setenv("STSA_BENCH_WEIGHTS", str(tmp_path / "empty_weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch"))


def lse_metrics(golden_path, **options):
    weights = {"syncnet": str(golden_path), "download": False}
    return [build_metric(n, TAG, "cpu", options, weights) for n in ("lse_c", "lse_d")]


def eval_pair(video: Path, frames: np.ndarray, audio: np.ndarray, audio_valid: int, method: str = "gt") -> EvalPair:
    """An EvalPair as the runner builds it (whole-frame LSE reads frames and audio only)."""
    n = len(frames)
    none = np.zeros((n, 0), dtype=np.float32)
    boxes = np.tile(np.array([[frames.shape[2] / 2, frames.shape[1] / 2, min(frames.shape[1:3])]], np.float32), (n, 1))
    return base_pair(
        n, clip_id=video.stem, video=video, method=method, pred_frames=frames, gt_frames=frames, pred_audio=audio,
        gt_audio=audio, audio_valid=audio_valid, pred_crops=none, gt_crops=none, boxes=boxes, gt_has_face=np.ones(n, bool),
        gt_landmarks=none,
    )  # fmt: skip


def harness_pair(video: Path, audio: Path | None = None) -> EvalPair:
    """Decode and pad exactly as the runner does (stsa_bench.core.preprocess.load_media)."""
    from stsa_bench.core.preprocess import load_media
    from stsa_bench.core.suites import Clip

    frames, pcm, meta = load_media(Clip(video.stem, video, audio), PreprocessConfig())
    valid = min(len(pcm), int(round(meta["audio_s"] * 16000)))
    return eval_pair(video, frames, pcm, valid)


# --- the network -------------------------------------------------------------------------------


def test_state_dict_layout_equals_manifest(shared):
    manifest = json.loads((golden_dir(shared) / "manifest.json").read_text())
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in SyncNetS().state_dict().items()]
    assert ours == manifest["state_dict"]


def test_golden_outputs(shared, golden_state):
    """The manifest's calls on inputs.pt (eval, no_grad, CPU, float32) reproduce outputs.pt."""
    d = golden_dir(shared)
    manifest = json.loads((d / "manifest.json").read_text())
    model = SyncNetS()
    model.load_state_dict(golden_state, strict=True)
    model.eval()
    inputs, golden = torch.load(d / "inputs.pt"), torch.load(d / "outputs.pt")
    checked = []
    with torch.no_grad():
        for call in manifest["calls"]:
            cast = {"none": None, "torch.float32": torch.float32}
            args = [inputs[a["input"]] if cast[a["cast"]] is None else inputs[a["input"]].to(cast[a["cast"]]) for a in call["args"]]
            out = getattr(model, call["method"])(*args)
            (name,) = call["outputs"]
            gold = golden[name]
            assert out.shape == gold.shape and out.dtype == gold.dtype
            err = (out - gold).abs().max().item()
            assert err <= 1e-4 * max(1.0, gold.abs().max().item()), f"{name}: max |diff| {err}"
            checked.append(name)
    assert checked == ["forward_aud", "forward_lip", "forward_lipfeat"]


def test_fast_path_reproduces_golden_outputs(shared, golden_model, golden_state):
    """load_syncnet keeps the golden tensors bit for bit; FastSyncNet (folded BatchNorm, 2-D lip convolutions)
    reproduces the golden outputs within the same tolerance as the module."""
    loaded = golden_model.state_dict()
    assert list(loaded) == list(golden_state) and all(torch.equal(loaded[k], v) for k, v in golden_state.items())
    d = golden_dir(shared)
    inputs, golden = torch.load(d / "inputs.pt"), torch.load(d / "outputs.pt")
    fast = FastSyncNet(golden_model)
    with torch.inference_mode():
        aud = fast.audio(inputs["mfcc"])
        lip = torch.cat([fast.lip_windows(clip.permute(1, 2, 3, 0)) for clip in inputs["video_uint8"]])
    for name, ours in (("forward_aud", aud), ("forward_lip", lip)):
        gold = golden[name]
        assert ours.shape == gold.shape
        assert (ours - gold).abs().max().item() <= 1e-4 * max(1.0, gold.abs().max().item()), name


def test_lip_windows_equal_forward_lip_on_a_sequence(shared, golden_model):
    """Window v of a frame sequence = forward_lip of frames v..v+4."""
    from stsa_bench.core.media import decode_video

    frames = bgr224(decode_video(shared / "clips" / LRS2)[0][:11])
    with torch.inference_mode():
        fast = FastSyncNet(golden_model).lip_windows(torch.from_numpy(frames))
        x = torch.from_numpy(frames).permute(3, 0, 1, 2).float()
        slow = golden_model.forward_lip(torch.stack([x[:, v : v + 5] for v in range(len(frames) - 4)]))
    assert fast.shape == (7, 1024)
    assert (fast - slow).abs().max().item() <= 1e-4 * max(1.0, slow.abs().max().item())


def test_load_syncnet_checks_keys(tmp_path, golden_state):
    bad = dict(golden_state)
    bad["netcnnaud.0.kernel"] = bad.pop("netcnnaud.0.weight")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(WeightsMissing, match=r"bad\.pt: not a syncnet_v2\.model state dict \(1 missing keys"):
        load_syncnet(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMissing, match=r"junk\.pt: holds objects other than tensors and plain containers \(or it is not a checkpoint\)"):
        load_syncnet(tmp_path / "junk.pt")


# --- the math ----------------------------------------------------------------------------------


def test_pcm16_is_ffmpeg_flt_to_s16():
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -1.7, 1.5 / 32768, 2.5 / 32768, -2.5 / 32768], np.float32)
    assert pcm16(x).tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768, 2, 2, -2]
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    assert np.array_equal(pcm16(pcm.astype(np.float32) / 32768), pcm)


def test_offset_distances_equal_official_loop():
    """Vectorised distances equal calc_pdist's per-window pairwise_distance loop over zero-padded audio."""
    g = torch.Generator().manual_seed(0)
    video, audio = 50 * torch.randn(40, 1024, generator=g), 5 * torch.randn(40, 1024, generator=g)
    padded = F.pad(audio, (0, 0, 15, 15))
    loop = torch.stack([F.pairwise_distance(video[[i]].repeat(31, 1), padded[i : i + 31]) for i in range(40)], 1)
    assert torch.equal(offset_distances(video, audio, 15, chunk=7), loop)


def _entries() -> list:
    root = shared_root()
    if root is None:
        return [None]
    ref = json.loads((root / "golden" / "reference_values_dev.json").read_text())
    return [e for e in ref["entries"] if e.get("metric") == "LSE" and e["variant"] == "png"]


def _source(shared: Path, entry: dict, tmp_path: Path) -> tuple[Path, Path | None]:
    """(video, separate audio or None) for a reference entry; the audio-delayed LRS2 clip is rebuilt."""
    clips = shared / "clips"
    if entry["clip"] == DELAYED:
        path = tmp_path / DELAYED
        delay_audio(clips / LRS2, path, 0.2)
        return path, None
    video = clips / entry["clip"]
    wav = video.with_suffix(".wav")
    if not video.is_file():
        pytest.skip(f"{video} is missing")
    return video, wav if wav.is_file() else None


def delay_audio(src: Path, dst: Path, seconds: float) -> None:
    """`ffmpeg -i SRC -map 0:v -map 0:a -c:v copy -af adelay=..:all=1 -c:a pcm_s16le DST.mkv` (the reference's recipe)."""
    import av

    from stsa_bench.core.media import decode_audio

    pcm = np.concatenate([np.zeros(int(round(seconds * 16000)), np.int16), pcm16(decode_audio(src))])
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        aout = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            out.mux(aout.encode(frame))
        out.mux(aout.encode())


@pytest.mark.slow
@pytest.mark.parametrize("entry", _entries(), ids=lambda e: e["clip"] if e else "no-shared")
def test_reference_values(shared, entry, golden_path, golden_model, tmp_path):
    """The harness's default LSE (decode as the runner does, metric.update_pair) reproduces the official
    code's `png` values: |dLSE-D| <= 1e-5 LSE-D, |dLSE-C| <= 2e-5 LSE-D (shared/golden/REFERENCE_VALUES.md)."""
    video, audio = _source(shared, entry, tmp_path)
    pair = harness_pair(video, audio)
    lse_c, lse_d = lse_metrics(golden_path)
    for m in (lse_c, lse_d):
        m.reset()
        m.update_pair(pair)
    scores = lse_c.scores
    assert lse_d.scores is scores
    assert (pair.n_frames, scores.n_windows) == (entry["n_frames"], entry["n_windows"])

    frames = bgr224(pair.pred_frames[:5])
    coeffs = torch.from_numpy(mfcc(pcm16(pair.pred_audio[: 6 * 640])))
    with torch.inference_mode():
        v0 = golden_model.forward_lip(torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float())[0, :3]
        a0 = golden_model.forward_aud(coeffs[None, None, :, :20])[0, :3]
    for name, ours, ref in (("video", v0, entry["video_emb0_first3"]), ("audio", a0, entry["audio_emb0_first3"])):
        msg = f"first-window {name} embedding differs from the official pipeline's"
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-4 * max(1.0, np.abs(ref).max()), err_msg=msg)

    ref_d, ref_c = entry["LSE_D"], entry["LSE_C"]
    assert abs(lse_d.compute() - ref_d) <= 1e-5 * ref_d, (lse_d.compute(), ref_d)
    assert abs(lse_c.compute() - ref_c) <= 2e-5 * ref_d, (lse_c.compute(), ref_c)
    best, second = np.sort(entry["mdist"])[:2]
    if second - best > 0.05:
        assert scores.offset == entry["offset"]
        assert lse_c.note == lse_d.note == f"offset {entry['offset']:+d}"


# --- metric behaviour --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_clip(shared):
    from stsa_bench.core.media import decode_audio, decode_video

    path = shared / "clips" / LRS2
    frames, audio = decode_video(path)[0][:40], decode_audio(path)[: 40 * 640]
    return path, frames, audio


@pytest.mark.slow
def test_batch_size_invariance(short_clip, golden_model):
    _, frames, audio = short_clip
    net, bgr = FastSyncNet(golden_model), bgr224(frames)
    runs = [evaluate(net, bgr, audio, 15, b) for b in (1, 8, 35, 64)]
    for r in runs[1:]:
        assert r.offset == runs[0].offset and r.n_windows == 35
        np.testing.assert_allclose(r.mdist, runs[0].mdist, rtol=1e-6)
        assert abs(r.lse_c - runs[0].lse_c) <= 1e-6 * runs[0].lse_d


@pytest.mark.slow
def test_option_batch_size_and_sharing(short_clip, golden_path, monkeypatch):
    """lse_c and lse_d share one SyncNet pass per pair; the model loads once per metric instance."""
    import metrics.syncnet as syncnet

    path, frames, audio = short_clip
    loads = []
    real = syncnet.load_syncnet
    monkeypatch.setattr(syncnet, "load_syncnet", lambda *a: loads.append(a) or real(*a))
    lse_c, lse_d = lse_metrics(golden_path, batch_size=16)
    pairs = [eval_pair(path, frames, audio, len(audio)), eval_pair(path, frames, np.roll(audio, 3200), len(audio), "shift")]
    values = []
    for pair in pairs:
        pair.batch_size = 1
        for m in (lse_c, lse_d):
            m.reset()
            m.update_pair(pair)
            values.append(m.compute())
        (scores,) = [v for v in pair.memo.values() if isinstance(v, SyncScores)]
        assert values[-2:] == [scores.lse_c, scores.lse_d]
    assert len(loads) == 1 and lse_d._lazy["syncnet"]._model is None
    assert values[:2] != values[2:]
    assert lse_c.id == "lse_c[whole224@25fps/ffmpeg_cfr/16kHz,bgr,syncnet_v2,vshift15,png]" and lse_d.id.startswith("lse_d[whole224@25fps/ffmpeg_cfr")
    assert lse_c.weights_sha256 == lse_d.weights_sha256 and len(lse_c.weights_sha256) == 64


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [64, 7])
def test_windows_equal_to_ground_truth_windows_take_their_embeddings(short_clip, golden_path, golden_model, monkeypatch, chunk):
    """The `gt` row embeds the ground truth's 36 windows once for the clip; a video shifted by 3 frames then embeds only
    the 3 windows that cross its wrap, a frozen frame one window, and both score as computed from scratch (1e-6)."""
    path, frames, audio = short_clip
    windows = []
    real = FastSyncNet.lip_windows
    monkeypatch.setattr(FastSyncNet, "lip_windows", lambda self, x: windows.append(len(x) - 4) or real(self, x))
    gt_memo: dict = {}
    shifted, frozen = np.roll(frames, 3, axis=0), np.repeat(frames[:1], len(frames), axis=0)
    for video, method, computed in ((frames, "gt", 36), (shifted, "shifted", 3), (frozen, "frozen", 1)):
        pair = eval_pair(path, frames, audio, len(audio), method)
        if method != "gt":
            pair.pred_frames, pair.pred_crops = as_frames(video), pair.gt_crops.copy()
        pair.gt_memo, pair.chunk_frames = gt_memo, chunk
        lse_c, lse_d = lse_metrics(golden_path)
        windows.clear()
        lse_d.update_pair(pair)
        lse_c.update_pair(pair)
        assert sum(windows) == computed, method
        want = evaluate(FastSyncNet(golden_model), bgr224(video), audio)
        assert lse_d.compute() == pytest.approx(want.lse_d, rel=1e-6) and lse_c.compute() == pytest.approx(want.lse_c, rel=1e-5)


@pytest.mark.slow
def test_face_crop_mode(short_clip, golden_path):
    path, frames, audio = short_clip
    (m,) = [build_metric("lse_d", TAG, "cpu", {"mode": "face_crop"}, {"syncnet": str(golden_path)})]
    pair = eval_pair(path, frames, audio, len(audio))
    pair.boxes[:] = (80, 90, 100)
    m.update_pair(pair)
    assert m.id == f"lse_d[{TAG},face224,bgr,syncnet_v2,vshift15,png]"
    assert np.isfinite(m.compute()) and m.scores.n_windows == 35
    with pytest.raises(ConfigError, match="lse.mode='mouth'"):
        build_metric("lse_c", TAG, "cpu", {"mode": "mouth"}, {})
    with pytest.raises(ConfigError, match="unknown setting lse.vshfit"):
        build_metric("lse_c", TAG, "cpu", {"vshfit": 3}, {})


def test_missing_weights_names_file_and_url(short_clip, no_weights, tmp_path):
    path, frames, audio = short_clip
    pair = eval_pair(path, frames, audio, len(audio))
    m = build_metric("lse_c", TAG, "cpu", {}, {"syncnet": None, "download": False})
    with pytest.raises(WeightsMissing) as exc:
        m.update_pair(pair)
    assert isinstance(exc.value, ClipError)
    assert SYNCNET_WEIGHTS.filename in str(exc.value) and SYNCNET_WEIGHTS.url in str(exc.value)
    assert "weights.syncnet=PATH" in str(exc.value)
    m = build_metric("lse_d", TAG, "cpu", {}, {"syncnet": str(tmp_path / "nowhere.model")})
    with pytest.raises(WeightsMissing, match=r"nowhere\.model: no such file .*lipsync/data/syncnet_v2\.model"):
        m.update_pair(pair)


def test_too_short_clip_raises(short_clip, golden_path):
    path, frames, audio = short_clip
    m = LSEC(crop_tag=TAG, weights={"syncnet": str(golden_path)})
    with pytest.raises(ClipError, match=rf"{path.name}: 5 frames and 0.20 s of audio .* at least 6 frames"):
        m.update_pair(eval_pair(path, frames[:5], audio[: 5 * 640], 5 * 640))
    with pytest.raises(ClipError, match=r"40 frames and 0.20 s of audio"):
        m.update_pair(eval_pair(path, frames, audio, 5 * 640))
    with pytest.raises(ValueError, match="no clip was given"):
        m.compute()


# --- end to end --------------------------------------------------------------------------------


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_cli_run_with_golden_weights(cache_dir, golden_path, tmp_path):
    from stsa_bench.cli import main

    out = tmp_path / "run"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt,shift",
            "--metrics", "lse_c,lse_d", f"weights.syncnet={golden_path}", "runtime.progress=false"]  # fmt: skip
    assert main(args) == 0
    rows = _rows(out)
    assert len(rows) == 3 * 2 * 2 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["metric"] for r in rows} == {f"{n}[whole224@25fps/ffmpeg_cfr/16kHz,bgr,syncnet_v2,vshift15,png]" for n in ("lse_c", "lse_d")}
    assert all(r["note"].startswith("offset ") and len(r["weights_sha"]) == 64 and r["n_frames"] == 60 for r in rows)
    by = {(r["clip"], r["method"], r["metric"][:5]): r["value"] for r in rows}
    assert any(by[(c, "gt", "lse_d")] != by[(c, "shift", "lse_d")] for c, _, _ in by)


@pytest.mark.slow
def test_cli_run_without_weights_fails_rows_only(cache_dir, no_weights, tmp_path):
    from stsa_bench.cli import main

    out = tmp_path / "run"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "--methods", "gt",
            "--metrics", "psnr,lse_c,lse_d", "runtime.progress=false"]  # fmt: skip
    assert main(args) == 0
    rows = _rows(out)
    lse = [r for r in rows if r["metric"].startswith("lse")]
    psnr = [r for r in rows if r["metric"].startswith("psnr")]
    assert len(lse) == 6 and len(psnr) == 3
    assert all(r["status"] == "ok" for r in psnr)
    for r in lse:
        assert r["status"] == "failed"
        assert "syncnet_v2.model" in r["error"] and SYNCNET_WEIGHTS.url in r["error"] and "weights.syncnet=PATH" in r["error"]
