"""STSA audio features: wav2vec2 through transformers, offline (a tiny random config stands in for the real weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stsa.audio import FEATURE_DIM, load_wav2vec2, normalize_waveform, tiny_wav2vec2, wav2vec2_features


def test_normalisation_matches_the_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    wav = (np.random.default_rng(0).standard_normal(8000) * 0.3 + 0.05).astype(np.float32)
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    ref = fe(wav, sampling_rate=16000, return_tensors="np").input_values[0]
    np.testing.assert_allclose(normalize_waveform(wav), ref, atol=1e-5)


@pytest.mark.slow
def test_features_are_50hz_768d_and_load_from_a_local_folder(tmp_path):
    model = tiny_wav2vec2()
    wav = (np.random.default_rng(1).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    feats = wav2vec2_features(model, wav)
    assert feats.shape == (99, FEATURE_DIM) and feats.dtype == np.float32 and np.isfinite(feats).all()
    model.save_pretrained(tmp_path / "w2v")
    again = wav2vec2_features(load_wav2vec2(tmp_path / "w2v"), wav)
    np.testing.assert_allclose(again, feats, atol=1e-5)


@pytest.mark.slow
def test_missing_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="wav2vec2 weights not found locally"):
        load_wav2vec2(tmp_path / "nothing-here")
    assert torch.is_grad_enabled()
