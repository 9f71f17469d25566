"""In-tree Wav2Lip inference: mel features, windows, boxes, and an end-to-end run with golden weights."""

from __future__ import annotations

import numpy as np
import pytest

from baselines import build_method
from baselines.base import MethodEnv, Sample
from baselines.wav2lip import smooth_boxes, wav2lip_boxes
from stsa_bench.cli import main
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.mel import mel_windows, wav2lip_mel
from stsa_bench.core.results import read_rows

from .conftest import LRS2_CLIP as CLIP


@pytest.mark.slow
def test_mel_matches_librosa_formula():
    """Official audio.py: librosa.stft (reflect-padded, librosa 0.7's default) and librosa.filters.mel."""
    librosa = pytest.importorskip("librosa", reason="librosa is the reference for Wav2Lip's mel (dev extra)")
    from scipy.signal import lfilter

    wav = (np.random.default_rng(0).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    stft = librosa.stft(y=lfilter([1, -0.97], [1], wav), n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    mel = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ np.abs(stft)
    s = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    ref = np.clip(8 * (s + 100) / 100 - 4, -4, 4)
    ours = wav2lip_mel(wav)
    assert ours.shape == ref.shape == (80, 161)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def official_chunks(mel: np.ndarray, fps: int) -> list[np.ndarray]:
    """The loop of the official inference.py, restated."""
    chunks, i = [], 0
    while True:
        start = int(i * 80.0 / fps)
        if start + 16 > mel.shape[1]:
            chunks.append(mel[:, mel.shape[1] - 16 :])
            return chunks
        chunks.append(mel[:, start : start + 16])
        i += 1


def test_mel_windows_extend_the_official_loop():
    n = 50
    mel = wav2lip_mel(np.random.default_rng(1).standard_normal(n * 640).astype(np.float32))
    windows = mel_windows(mel, n, 25)
    official = official_chunks(mel, 25)
    assert len(official) == n - 3 and windows.shape == (n, 80, 16)
    assert all(np.array_equal(w, o) for w, o in zip(windows, official))
    assert all(np.array_equal(w, official[-1]) for w in windows[len(official) :])


def test_box_smoothing_is_the_official_forward_mean():
    boxes = np.array([[0, 0, 10, 10]] * 4 + [[5, 5, 15, 15]] * 4)
    out = smooth_boxes(boxes)
    assert out.dtype == boxes.dtype and out[0].tolist() == [1, 1, 11, 11] and out[3].tolist() == [4, 4, 14, 14]
    assert out[-1].tolist() == out[-4].tolist(), "the last t boxes share the final window"

    lm = np.full((6, 478, 3), np.nan, np.float32)
    lm[[0, 5], :, 0] = np.linspace(0.25, 0.75, 478)
    lm[[0, 5], :, 1] = np.linspace(0.2, 0.6, 478)
    b = wav2lip_boxes(lm, 100, 100, smooth=False)
    assert b[2].tolist() == [25, 20, 75, 70], "missing frames interpolated, 10 px bottom pad"


@pytest.mark.slow
def test_generation_pastes_only_inside_the_boxes_and_is_batch_invariant(golden_wav2lip_path, lrs2_sample):
    env = MethodEnv("cpu", {"wav2lip": str(golden_wav2lip_path)})
    s = lrs2_sample
    gen = build_method("wav2lip", {"batch_size": 128}, env).generate(s)
    n, h, w = s.frames.shape[:3]
    assert gen.frames.shape == s.frames.shape and gen.frames.dtype == np.uint8 and gen.audio is s.audio
    boxes = wav2lip_boxes(s.landmarks, w, h)
    outside = np.ones((n, h, w), bool)
    for m, (x1, y1, x2, y2) in zip(outside, boxes):
        m[y1:y2, x1:x2] = False
    assert np.array_equal(gen.frames[outside], s.frames[outside])
    assert (gen.frames[~outside] != s.frames[~outside]).mean() > 0.5

    small = build_method("wav2lip", {"batch_size": 7}, env).generate(s)
    assert np.abs(small.frames.astype(int) - gen.frames).max() <= 1


@pytest.mark.slow
def test_end_to_end_run_writes_a_25fps_video_with_the_driving_audio(golden_wav2lip_path, shared, cache_dir, tmp_path):
    from stsa_bench.core.media import decode_audio, decode_video
    from stsa_bench.core.paths import sha256_file

    out = tmp_path / "run"
    rc = main(["run", "--suite", "folder", "--out", str(out), f"data.root={shared / 'clips'}", f"cache_dir={cache_dir}",
               f"suite.include=[{CLIP}]", "--methods", "gt,wav2lip", "--metrics", "psnr,ssim", "runtime.progress=false",
               "runtime.save_videos=true", f"weights.wav2lip={golden_wav2lip_path}", "wav2lip.batch_size=32"])  # fmt: skip
    assert rc == 0
    rows = {(r.method, r.metric.split("[")[0]): r for r in read_rows(out / "results.jsonl")}
    w2l = rows[("wav2lip", "psnr")]
    assert w2l.status == "ok" and w2l.value < rows[("gt", "psnr")].value
    assert w2l.method_weights_sha == sha256_file(golden_wav2lip_path) and w2l.method_version == "official-inference"

    gt_frames, _ = decode_video(shared / "clips" / f"{CLIP}.mp4")
    frames, info = decode_video(out / "videos" / "wav2lip" / f"{CLIP}.mp4")
    assert info.src_fps == pytest.approx(25.0) and len(frames) == len(gt_frames)
    audio = decode_audio(out / "videos" / "wav2lip" / f"{CLIP}.mp4")
    driving = decode_audio(shared / "clips" / f"{CLIP}.mp4")
    assert abs(len(audio) - len(gt_frames) * 640) <= 2048
    k = min(len(audio), len(driving)) - 4000
    assert np.corrcoef(audio[2000:k], driving[2000:k])[0, 1] > 0.95


def test_missing_weights_and_bad_options():
    with pytest.raises(ConfigError, match="wav2lip.pads needs 4 integers"):
        build_method("wav2lip", {"pads": [0, 10]})
    m = build_method("wav2lip_gan", {}, MethodEnv("cpu", {"wav2lip_gan": "/nonexistent/wav2lip_gan.pth"}))
    lm = np.random.default_rng(0).random((8, 478, 3)).astype(np.float32) * 0.5 + 0.25
    s = Sample("c", np.zeros((8, 64, 64, 3), np.uint8), np.zeros(8 * 640, np.float32), 25, 16000, lm, np.zeros((8, 3)))
    with pytest.raises(Exception, match=r"weights.wav2lip_gan=/nonexistent/wav2lip_gan.pth: no such file"):
        m.generate(s)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_checkpoints_load_only_when_allowed(tmp_path):
    """A TorchScript archive runs code when loaded: refused by default, its parameters read with the opt-in."""
    import torch

    from baselines.wav2lip_model import SyncNetColor, load_wav2lip
    from stsa_bench.core.weights import WeightsMissing

    model = SyncNetColor().eval()
    torch.jit.script(model).save(str(tmp_path / "expert.pt"))
    with pytest.raises(WeightsMissing, match=r"expert.pt: a TorchScript archive.*weights.allow_torchscript=true"):
        load_wav2lip(tmp_path / "expert.pt", model=SyncNetColor())
    loaded = load_wav2lip(tmp_path / "expert.pt", model=SyncNetColor(), allow_torchscript=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
