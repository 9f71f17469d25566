"""Wav2Lip's log-mel spectrogram (official `audio.py` / `hparams.py`), shared by the in-tree
Wav2Lip method and the lip-sync expert used in training."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_STEP = 16


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels per ln 6.4)."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=4)
def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) Slaney triangular filters with area normalisation 2 / (f[i+2] - f[i])
    (Slaney's Auditory Toolbox; librosa.filters.mel defaults)."""
    fft_f = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    width = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def wav2lip_mel(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised log-mel spectrogram (80, 1 + len // 200) of 16 kHz mono audio (official audio.py / hparams.py).

    y = pre-emphasis (1 - 0.97 z^-1); |STFT| with n_fft 800, hop 200, periodic Hann 800, centred
    with reflect padding; 80 Slaney mel bands 55-7600 Hz; S = 20 log10(max(1e-5, mel)) - 20;
    out = clip(8 (S + 100) / 100 - 4, -4, 4).
    """
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) < 2:
        raise ValueError("audio too short for a mel spectrogram")
    y = np.empty_like(wav)
    y[0] = wav[0]
    y[1:] = wav[1:] - PREEMPHASIS * wav[:-1]
    pad = N_FFT // 2
    if len(y) <= pad:
        raise ValueError(f"audio too short for Wav2Lip's mel ({len(y)} samples, reflect padding needs > {pad})")
    y = np.pad(y, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP]
    window = np.hanning(WIN + 1)[:-1].astype(np.float32)
    mag = np.abs(np.fft.rfft(frames * window, n=N_FFT, axis=1)).astype(np.float32)
    mel = mel_basis() @ mag.T
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    return np.clip(2 * MAX_ABS * ((s - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_windows(mel: np.ndarray, n_frames: int, fps: int) -> np.ndarray:
    """(n_frames, 80, 16): frame i gets mel[:, s : s + 16] with s = min(int(i x 80 / fps), T - 16)."""
    t = mel.shape[1]
    if t < MEL_STEP:
        raise ValueError(f"audio too short: {t} mel frames, Wav2Lip needs {MEL_STEP}")
    starts = np.minimum((np.arange(n_frames) * (80.0 / fps)).astype(int), t - MEL_STEP)
    return np.stack([mel[:, s : s + MEL_STEP] for s in starts])
