"""Method `stsa` end to end on a shared real clip: golden-formula weights for both networks, a tiny
random wav2vec2 (offline), the first 6 frames (the renderer is heavy on CPU: about 4 s a frame at paper size)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baselines import build_method
from baselines.base import MethodEnv, Sample
from stsa_bench.cli import main
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.results import read_rows

N = 6


@pytest.fixture(scope="module")
def stsa_weights(shared, make_weights, tmp_path_factory) -> dict:
    import torch

    from stsa.audio import tiny_wav2vec2

    root = tmp_path_factory.mktemp("stsa")
    heat = make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "stsa_heatmap_generator" / "manifest.json"))
    face = make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "stsa_face_renderer" / "manifest.json"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in heat.items()}}, root / "heatmap_weight.pth")
    torch.save({"state_dict": face}, root / "face_weight.pth")
    tiny_wav2vec2().save_pretrained(root / "wav2vec2")
    return {"heatmap_ckpt": str(root / "heatmap_weight.pth"), "renderer_ckpt": str(root / "face_weight.pth"), "wav2vec2": str(root / "wav2vec2")}


@pytest.fixture(scope="module")
def short_sample(lrs2_sample) -> Sample:
    s = lrs2_sample
    return Sample(s.clip_id, s.frames[:N], s.audio[: N * 640], 25, 16000, s.landmarks[:N], s.boxes[:N], s.sha256)


@pytest.mark.slow
def test_generation_is_deterministic_batch_invariant_and_stays_inside_the_mask(stsa_weights, short_sample):
    from stsa.blend import soft_mask
    from stsa_bench.core.faces import landmarks68

    s = short_sample
    a = build_method("stsa", {**stsa_weights, "batch_size": N}, MethodEnv("cpu")).generate(s)
    b = build_method("stsa", {**stsa_weights, "batch_size": 4}, MethodEnv("cpu")).generate(s)
    assert a.frames.shape == s.frames.shape and a.frames.dtype == np.uint8 and a.audio is s.audio
    assert np.abs(a.frames.astype(int) - b.frames).max() <= 1, "batch size changes at most the last uint8 level"
    h, w = s.frames.shape[1:3]
    pts = landmarks68(s.landmarks, w, h)
    outside = np.stack([soft_mask(p, (h, w)) == 0 for p in pts])
    assert outside.any() and np.array_equal(a.frames[outside], s.frames[outside])
    assert (a.frames[~outside] != s.frames[~outside]).mean() > 0.3


@pytest.mark.slow
def test_cli_run_writes_25fps_video_with_audio(stsa_weights, lrs2_sample, cache_dir, tmp_path):
    from stsa_bench.core.media import decode_audio, decode_video, write_video

    clips = tmp_path / "clips"
    write_video(clips / "short.mkv", lrs2_sample.frames[:N], 25, lrs2_sample.audio[: N * 640], 16000, lossless=True)
    out = tmp_path / "run"
    settings = [f"stsa.{k}={v}" for k, v in stsa_weights.items()]
    rc = main(["run", "--suite", "folder", "--out", str(out), f"data.root={clips}", f"cache_dir={cache_dir}",
               "--methods", "gt,stsa", "--metrics", "psnr", "runtime.progress=false", "runtime.save_videos=true", *settings])  # fmt: skip
    assert rc == 0
    rows = {r.method: r for r in read_rows(out / "results.jsonl")}
    assert rows["stsa"].status == "ok" and rows["stsa"].value < rows["gt"].value
    assert rows["stsa"].method_weights_sha and "+" in rows["stsa"].method_weights_sha
    frames, info = decode_video(out / "videos" / "stsa" / "short.mp4")
    assert len(frames) == N and info.src_fps == pytest.approx(25.0)
    assert len(decode_audio(out / "videos" / "stsa" / "short.mp4")) > 0.8 * N * 640


def test_missing_settings_name_each_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"stsa.heatmap_ckpt is not set: the path of the official heatmap_weight.pth"):
        build_method("stsa", {})
    ckpt = tmp_path / "h.pth"
    ckpt.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"stsa.renderer_ckpt is not set: the path of the official face_weight.pth"):
        build_method("stsa", {"heatmap_ckpt": str(ckpt)})
    with pytest.raises(ConfigError, match=r"stsa.renderer_ckpt=/nope.pth: no such file"):
        build_method("stsa", {"heatmap_ckpt": str(ckpt), "renderer_ckpt": "/nope.pth"})
    with pytest.raises(ConfigError, match="stsa.precision='int8'"):
        build_method("stsa", {"heatmap_ckpt": str(ckpt), "renderer_ckpt": str(ckpt), "precision": "int8"})


def test_stsa_package_never_imports_the_harness():
    root = Path(__file__).resolve().parents[1] / "stsa"
    for path in root.rglob("*.py"):
        text = path.read_text()
        for banned in ("stsa_bench", "baselines", "metrics"):
            assert f"import {banned}" not in text and f"from {banned}" not in text, f"{path.name} imports {banned}"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_inference_runs_under_cpu_autocast(precision, short_sample):
    """Both networks under autocast on the CPU (random weights, renderer at channels / 32: without native
    kernels, low-precision CPU convolutions are emulated); the faces stay finite and close to float32."""
    import torch

    from stsa.audio import tiny_wav2vec2
    from stsa.guidance import GuidanceNet
    from stsa.inference import ClipInputs, STSAGenerator, STSAOptions
    from stsa.precision import emulation_warning
    from stsa.renderer import FaceRenderer
    from stsa_bench.core.faces import fill_missing_frames, landmarks68

    torch.manual_seed(0)
    nets = (GuidanceNet(), FaceRenderer(slim=32), tiny_wav2vec2())
    s, n = short_sample, 2
    h, w = s.frames.shape[1:3]
    clip = ClipInputs(s.frames[:n, ..., ::-1], fill_missing_frames(s.landmarks[:n]), landmarks68(s.landmarks[:n], w, h), s.audio[: n * 640])
    fp32 = STSAGenerator(*nets, "cpu", STSAOptions(batch_size=n))
    if emulation_warning(precision, "cpu"):
        with pytest.warns(UserWarning, match=f"precision={precision} on this CPU"):
            low = STSAGenerator(*nets, "cpu", STSAOptions(batch_size=n, precision=precision))
    else:
        low = STSAGenerator(*nets, "cpu", STSAOptions(batch_size=n, precision=precision))
    prep = fp32.prepare(clip, n)
    a, b = fp32.faces(prep), low.faces(prep)
    assert b.shape == a.shape == (n, 128, 128, 3) and np.isfinite(b).all()
    assert np.abs(a - b).mean() < 0.02 * max(1e-6, float(np.abs(a).mean())) + 0.01, (np.abs(a - b).mean(), np.abs(a).mean())
