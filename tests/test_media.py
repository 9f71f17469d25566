from __future__ import annotations

import numpy as np
import pytest

from stsa_bench.core.errors import ClipError
from stsa_bench.core.media import decode_audio, decode_video, write_video, write_wav

from .helpers import write_late_audio, write_sideways, write_vfr_video


def numbered_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame i is filled with value 4*i, so the source index can be read back after resampling."""
    return np.stack([np.full((h, w, 3), 4 * i, dtype=np.uint8) for i in range(n)])


def source_index(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 4)) for f in frames]


def test_lossless_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 36, 52, 3), dtype=np.uint8)
    audio = (0.5 * np.sin(2 * np.pi * 220 * np.arange(8 * 640) / 16000)).astype(np.float32)
    write_video(tmp_path / "a.mkv", frames, 25, audio)
    got, info = decode_video(tmp_path / "a.mkv")
    assert np.array_equal(got, frames)
    assert info.src_frames == 8 and not info.variable_rate
    assert np.abs(decode_audio(tmp_path / "a.mkv") - audio).max() < 1e-4


@pytest.mark.parametrize("codec", ["ffv1", "libx264rgb"])
@pytest.mark.parametrize("degrees", [0, 90, 180, -90])
@pytest.mark.parametrize("mirrored", [False, True])
def test_frames_are_turned_upright_by_the_display_matrix(tmp_path, degrees, mirrored, codec):
    """A video that stores its frames turned (phones store them sideways) decodes to the frames it displays, in every
    one of the eight orientations a display matrix of quarter turns and a mirror can give; the info says what was done.
    libx264's frames carry an SEI entry beside the matrix (av 18.1.1 broke reading such frames: every x264 video failed)."""
    rng = np.random.default_rng(1)
    upright = rng.integers(0, 256, (3, 20, 36, 3), dtype=np.uint8)
    stored = write_sideways(tmp_path / "v.mkv", upright, None, degrees, mirrored, codec)
    if codec == "libx264rgb":
        import av
        from av.sidedata.sidedata import Type

        with av.open(str(tmp_path / "v.mkv")) as c:
            assert Type.SEI_UNREGISTERED in next(c.decode(video=0)).side_data, "x264's SEI beside the matrix"
    got, info = decode_video(tmp_path / "v.mkv")
    assert np.array_equal(got, upright) and (info.width, info.height) == (36, 20)
    assert (info.upright == "") == (degrees == 0 and not mirrored)
    if degrees % 180:
        assert stored.shape[1:3] == (36, 20), "stored sideways"


def test_audio_that_starts_after_the_video_is_aligned_with_silence(tmp_path):
    """An audio stream whose first sample is at 0.4 s (screen recordings, some muxers): the samples land at their
    time on the video's timeline (as the official pipeline's `ffmpeg -async 1`), and the clip's note says so;
    before, the audio was shifted 10 frames early and the clip passed every check."""
    from stsa_bench.core.config import PreprocessConfig
    from stsa_bench.core.media import read_audio
    from stsa_bench.core.preprocess import Prepared, load_audio
    from stsa_bench.core.suites import Clip

    frames = numbered_frames(50)
    audio = np.zeros(50 * 640, np.float32)
    audio[16000:16160] = 0.5
    write_late_audio(tmp_path / "late.mkv", frames, audio, late_s=0.4)
    got, lead = read_audio(tmp_path / "late.mkv")
    assert lead == 0.4 and len(got) == len(audio) and np.argmax(got) == 16000
    assert np.abs(got - audio).max() < 1e-4
    _, info = decode_video(tmp_path / "late.mkv")
    padded, meta = load_audio(Clip("late", tmp_path / "late.mkv"), PreprocessConfig(), 50, info)
    assert np.array_equal(padded, got)
    note = Prepared(Clip("late", tmp_path / "late.mkv"), 50, 32, 32, padded, *(np.zeros(0),) * 4, meta).note
    assert "audio starts 0.40 s after the video (silence before it)" in note
    write_vfr_video(tmp_path / "aligned.mkv", frames, [i / 25 for i in range(50)], audio)
    assert read_audio(tmp_path / "aligned.mkv")[1] == 0.0
    long = np.zeros(5 * 16000, np.float32)
    write_late_audio(tmp_path / "broken.mkv", frames, long, late_s=3.0)
    with pytest.raises(ClipError, match="broken.mkv: audio starts 3.00 s after the video, more than the clip can be aligned by"):
        load_audio(Clip("broken", tmp_path / "broken.mkv"), PreprocessConfig(), 50, info)
    write_late_audio(tmp_path / "primed.mkv", frames, audio, late_s=0.002)
    _, meta = load_audio(Clip("primed", tmp_path / "primed.mkv"), PreprocessConfig(), 50, info)
    assert meta["audio_lead_s"] == 0.002 and "audio starts" not in (Prepared(Clip("p", tmp_path), 50, 32, 32, padded,
                                                                             *(np.ones(50),) * 4, meta).note or "")  # fmt: skip


def test_30fps_nearest_timestamp(tmp_path):
    frames = numbered_frames(30)
    write_video(tmp_path / "b.mkv", frames, 30)
    got, info = decode_video(tmp_path / "b.mkv", fps=25, mode="nearest")
    assert len(got) == 25
    assert info.src_fps == pytest.approx(30)
    # output slot k shows the latest input frame i with round(i * 25 / 30) <= k
    expected = [max(i for i in range(30) if round(i * 25 / 30) <= k) for k in range(25)]
    assert source_index(got) == expected


def test_30fps_ffmpeg_cfr(tmp_path):
    """Hand-worked vsync-cfr: delta = i*25/30 - n_out + 1; every frame is written until delta < -1.1
    (frame 13: 10.83 - 13 + 1 = -1.17 is dropped); frame 14 follows."""
    frames = numbered_frames(30)
    write_video(tmp_path / "c.mkv", frames, 30)
    got, _ = decode_video(tmp_path / "c.mkv", fps=25, mode="ffmpeg_cfr")
    assert source_index(got)[:14] == list(range(13)) + [14]


@pytest.mark.slow
def test_ffmpeg_cfr_matches_reference_frames(shared):
    """Frame for frame what the reference's `ffmpeg -r 25` PNG dumps held: per-frame PSNR of real vs
    generated (VFR 22.13 fps and 22.17 fps sources) and the frame counts of the -r 25 LSE entries."""
    import json

    from skimage.metrics import peak_signal_noise_ratio

    ref = json.loads((shared / "golden" / "reference_values_dev.json").read_text())["entries"]
    clips = shared / "clips"
    for e in (e for e in ref if e["metric"] == "PSNR_SSIM" and (clips / e["generated"]).is_file()):
        real, _ = decode_video(clips / e["real"])
        gen, _ = decode_video(clips / e["generated"])
        assert (len(real), len(gen)) == (e["n_frames_real"], e["n_frames_generated"])
        ours = [peak_signal_noise_ratio(real[i], gen[i], data_range=255) for i in range(e["n_compared"])]
        np.testing.assert_allclose(ours, e["PSNR_per_frame"][: e["n_compared"]], atol=1e-9)
    for e in (e for e in ref if e["metric"] == "LSE" and e["variant"] == "png" and (clips / e["clip"]).is_file()):
        assert len(decode_video(clips / e["clip"])[0]) == e["n_frames"], e["clip"]


def test_variable_frame_rate(tmp_path):
    frames = numbered_frames(10)
    times = [0.0, 0.04, 0.08, 0.20, 0.24, 0.28, 0.30, 0.32, 0.36, 0.40]
    write_vfr_video(tmp_path / "v.mkv", frames, times)
    got, info = decode_video(tmp_path / "v.mkv", fps=25, mode="nearest")
    assert info.variable_rate
    assert len(got) == 11
    # the 0.08 -> 0.20 gap holds frame 2; 0.30 rounds into slot 8 after 0.28 (slot 7) and 0.32 (slot 8) wins
    assert source_index(got) == [0, 1, 2, 2, 2, 3, 4, 5, 7, 8, 9]


def test_audio_resampled_to_16k_mono(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    write_wav(tmp_path / "t.wav", tone, sr)
    got = decode_audio(tmp_path / "t.wav", 16000)
    assert abs(len(got) - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(got[:16000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ClipError, match="nope.mp4: no such file"):
        decode_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ClipError, match="bad.mp4: cannot be opened"):
        decode_video(bad)
    write_video(tmp_path / "silent.mkv", numbered_frames(3), 25)
    with pytest.raises(ClipError, match="silent.mkv: no audio stream"):
        decode_audio(tmp_path / "silent.mkv")
