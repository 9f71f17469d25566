"""pytest-benchmark figures for LSE (frames/s, golden weights) and a side-by-side with a pipeline
written in the structure of the official evaluation. Not timed assertions: the speed ratio is recorded."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import build_metric
from metrics.base import EvalPair
from metrics.lse import pcm16
from metrics.syncnet import SyncNetS, load_syncnet
from stsa_bench.core.config import PreprocessConfig

from .helpers import mean_s, smoke

CLIP = "smeetrs__deep_avsr__00001.mp4"  # LRS2-format 160x160, 120 frames, 16 kHz mono


@pytest.fixture(scope="module")
def golden_path(shared, tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("golden_make_weights", shared / "golden" / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)
    path = tmp_path_factory.mktemp("weights") / "syncnet_golden.pt"
    torch.save(make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "syncnet_S" / "manifest.json")), path)
    return path


@pytest.fixture(scope="module")
def clip(shared):
    from stsa_bench.core.media import decode_audio, decode_video

    path = shared / "clips" / CLIP
    frames, audio = decode_video(path)[0], decode_audio(path)
    n = len(frames)
    padded = np.pad(audio[: n * 640], (0, max(0, n * 640 - len(audio))))
    return path, frames, padded, min(len(audio), n * 640)


def harness_lse(metrics, clip):
    """lse_c + lse_d as the runner calls them: one EvalPair, shared SyncNet pass, batch 64."""
    path, frames, audio, valid = clip
    empty = np.zeros((len(frames), 0), np.float32)
    pair = EvalPair(
        clip_id=path.stem, video=path, method="gt", fps=25, sample_rate=16000, pred_frames=frames, gt_frames=frames,
        pred_audio=audio, gt_audio=audio, audio_valid=valid, pred_crops=empty, gt_crops=empty,
        boxes=np.zeros((len(frames), 3), np.float32), gt_landmarks=empty, gt_has_face=np.ones(len(frames), bool),
    )  # fmt: skip
    for m in metrics:
        m.reset()
        m.update_pair(pair)
    return metrics[0].scores


def reference_style_lse(
    model: SyncNetS, frames: np.ndarray, audio: np.ndarray, work: Path, vshift: int = 15, batch_size: int = 20
):
    """LSE in the structure of syncnet_python's SyncNetInstance.evaluate (Wav2Lip scores_LSE variant), written
    here for comparison: frames dumped to lossless PNG files and read back with cv2.imread, audio written to
    a 16-bit WAV and read back, windows stacked into batches of 20 by slicing, autograd left on, and one
    pairwise_distance call per window. Returns (LSE-D, LSE-C, offset)."""
    import cv2
    import python_speech_features
    from scipy.io import wavfile

    work.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(work / f"{i + 1:06d}.png"), frame[..., ::-1])
    wavfile.write(work / "audio.wav", 16000, pcm16(audio))

    images = [cv2.resize(cv2.imread(str(p)), (224, 224)) for p in sorted(work.glob("*.png"))]
    video = torch.from_numpy(np.stack(images, axis=3)[None].transpose(0, 3, 4, 1, 2).astype(float)).float()
    rate, wav = wavfile.read(work / "audio.wav")
    coeffs = np.stack(list(zip(*python_speech_features.mfcc(wav, rate))))
    cepstra = torch.from_numpy(coeffs[None, None].astype(float)).float()

    last = min(len(images), len(wav) // 640) - 5
    lip, aud = [], []
    for start in range(0, last, batch_size):
        stop = min(last, start + batch_size)
        lip.append(model.forward_lip(torch.cat([video[:, :, v : v + 5] for v in range(start, stop)], 0)).data)
        aud.append(model.forward_aud(torch.cat([cepstra[:, :, :, 4 * v : 4 * v + 20] for v in range(start, stop)], 0)).data)
    lip, aud = torch.cat(lip, 0), torch.cat(aud, 0)

    padded = F.pad(aud, (0, 0, vshift, vshift))
    width = 2 * vshift + 1
    dists = [F.pairwise_distance(lip[[i], :].repeat(width, 1), padded[i : i + width, :]) for i in range(len(lip))]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    low, idx = torch.min(mdist, 0)
    return float(low), float(torch.median(mdist) - low), vshift - int(idx)


def lse_pair(golden_path):
    weights = {"syncnet": str(golden_path)}
    return [build_metric(n, PreprocessConfig().crop_tag(), "cpu", {}, weights) for n in ("lse_c", "lse_d")]


@pytest.mark.slow
def test_bench_lse_harness(benchmark, golden_path, clip):
    metrics = lse_pair(golden_path)
    t0 = time.perf_counter()
    scores = benchmark.pedantic(harness_lse, args=(metrics, clip), rounds=3, iterations=1, warmup_rounds=1)
    mean, n = mean_s(benchmark, time.perf_counter() - t0), len(clip[1])
    benchmark.extra_info["frames"] = n
    benchmark.extra_info["frames_per_s"] = round(n / mean, 1)
    benchmark.extra_info["windows_per_s"] = round(scores.n_windows / mean, 1)
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    assert scores.n_windows == n - 5


@pytest.mark.slow
def test_bench_lse_reference_style_side_by_side(benchmark, golden_path, clip, tmp_path):
    """Same clip and weights: the harness and the reference-style pipeline agree within the reference
    tolerance. The two are timed alternately (the harness in each round's untimed setup) and extra_info
    holds both speeds and their ratio, best round each."""
    model = load_syncnet(golden_path)
    _, frames, audio, valid = clip
    metrics = lse_pair(golden_path)
    if not smoke(benchmark):
        harness_lse(metrics, clip)
    harness_times, rounds = [], iter(range(1000))

    def time_harness():
        t0 = time.perf_counter()
        harness_lse(metrics, clip)
        harness_times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    ref = benchmark.pedantic(
        lambda: reference_style_lse(model, frames, audio[:valid], tmp_path / f"run{next(rounds)}"),
        setup=time_harness, rounds=3, iterations=1,
    )  # fmt: skip
    stats = getattr(benchmark, "stats", None)
    t_ref = stats.stats.min if stats is not None else time.perf_counter() - t0 - harness_times[-1]
    scores = metrics[0].scores
    n = len(frames)
    benchmark.extra_info["frames"] = n
    benchmark.extra_info["frames_per_s"] = round(n / t_ref, 1)
    benchmark.extra_info["harness_frames_per_s"] = round(n / min(harness_times), 1)
    benchmark.extra_info["speed_ratio_harness_vs_reference_style"] = round(t_ref / min(harness_times), 2)
    lse_d, lse_c, offset = ref
    assert abs(scores.lse_d - lse_d) <= 1e-5 * lse_d
    assert abs(scores.lse_c - lse_c) <= 2e-5 * lse_d
    assert scores.offset == offset
