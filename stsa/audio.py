"""STSA's audio features: wav2vec2 `last_hidden_state` (768-d, 50 Hz) of 16 kHz mono speech.

The official pipeline uses `facebook/wav2vec2-base-960h` through `transformers`: the processor's
zero-mean unit-variance normalisation of the whole waveform, x' = (x - mean) / sqrt(var + 1e-7),
then `Wav2Vec2Model(x').last_hidden_state`. Weights come from a local folder or the local Hugging
Face cache only (`local_files_only=True`); nothing is downloaded here.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import torch

WAV2VEC2_ID = "facebook/wav2vec2-base-960h"
FEATURE_DIM = 768
FEATURE_RATE = 50


def normalize_waveform(wav: np.ndarray) -> np.ndarray:
    """Wav2Vec2FeatureExtractor's do_normalize: (x - mean) / sqrt(var + 1e-7), float32."""
    x = np.asarray(wav, dtype=np.float32)
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)


def load_wav2vec2(source: str | PathLike | None = None, device: str = "cpu"):
    """Wav2Vec2Model from a local folder, or `facebook/wav2vec2-base-960h` from the local HF cache, in eval mode."""
    from transformers import Wav2Vec2Model

    try:
        model = Wav2Vec2Model.from_pretrained(str(source or WAV2VEC2_ID), local_files_only=True)
    except OSError as exc:
        raise FileNotFoundError(
            f"wav2vec2 weights not found locally ({source or WAV2VEC2_ID}); pass a folder holding "
            f"{WAV2VEC2_ID} (config.json + model weights) or fill the Hugging Face cache"
        ) from exc
    return model.to(device).eval()


def tiny_wav2vec2(seed: int = 0):
    """A small randomly initialised Wav2Vec2Model with the real frame rate (320x downsampling) and
    width (768), for tests and benchmarks of the pipeline without the real weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=FEATURE_DIM,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=256,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=False,
    )
    torch.manual_seed(seed)
    return Wav2Vec2Model(config).eval()


@torch.inference_mode()
def wav2vec2_features(model, wav: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(L, 768) float32 features at 50 Hz of 16 kHz mono `wav` (normalised first)."""
    x = torch.from_numpy(normalize_waveform(wav))[None].to(device)
    return model(x).last_hidden_state[0].float().cpu().numpy()
