"""Wav2Lip and SyncNet_color: state-dict layout, golden-output parity and checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from baselines.wav2lip_model import (
    LIPSYNC_EXPERT_WEIGHTS,
    WAV2LIP_GAN_WEIGHTS,
    WAV2LIP_WEIGHTS,
    SyncNetColor,
    Wav2Lip,
    load_wav2lip,
)
from stsa_bench.core.weights import WeightsMissing

MODELS = {"wav2lip": Wav2Lip, "wav2lip_syncnet_color": SyncNetColor}


def manifest(shared: Path, folder: str) -> dict:
    return json.loads((shared / "golden" / folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def golden_states(shared, make_weights):
    return {
        folder: make_weights.golden_state_dict_from_manifest(str(shared / "golden" / folder / "manifest.json"))
        for folder in MODELS
    }


def flatten(names, result, out):
    if not isinstance(result, (list, tuple)):
        result = [result]
    for name, value in zip(names, result, strict=True):
        if isinstance(name, list):
            flatten(name, value, out)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                out[f"{name}.{i}"] = v
        else:
            out[name] = value


@pytest.mark.parametrize("folder", list(MODELS))
def test_state_dict_layout(shared, folder):
    man = manifest(shared, folder)
    layout = [[k, list(v.shape), str(v.dtype)] for k, v in MODELS[folder]().state_dict().items()]
    assert layout == man["state_dict"]


@pytest.mark.parametrize("folder", list(MODELS))
@pytest.mark.slow
def test_golden_outputs(shared, golden_states, folder):
    d = shared / "golden" / folder
    man = manifest(shared, folder)
    model = MODELS[folder]()
    model.load_state_dict(golden_states[folder], strict=True)
    model.eval()
    inputs, golden = torch.load(d / "inputs.pt"), torch.load(d / "outputs.pt")
    out = {}
    with torch.no_grad():
        for call in man["calls"]:
            args = [
                inputs[a["input"]] if a["cast"] == "none" else inputs[a["input"]].to(getattr(torch, a["cast"][6:]))
                for a in call["args"]
            ]
            if call["global_torch_manual_seed_before_call"] is not None:
                torch.manual_seed(call["global_torch_manual_seed_before_call"])
            flatten(call["outputs"], getattr(model, call["method"])(*args), out)
    assert set(out) == set(golden)
    for name, gold in golden.items():
        ours = out[name]
        assert ours.shape == gold.shape and ours.dtype == gold.dtype, name
        dev = (ours - gold).abs().max().item()
        assert dev <= 1e-4 * max(1.0, gold.abs().max().item()), f"{name}: max deviation {dev:.3g}"


@pytest.mark.slow
def test_wav2lip_sequence_form_matches_frames(golden_states):
    model = Wav2Lip()
    model.load_state_dict(golden_states["wav2lip"], strict=True)
    model.eval()
    g = torch.Generator().manual_seed(1)
    mel = torch.rand((1, 2, 1, 80, 16), generator=g)
    face = torch.rand((1, 6, 2, 96, 96), generator=g)
    with torch.no_grad():
        seq = model(mel, face)
        frames = [model(mel[:, t], face[:, :, t]) for t in range(2)]
    assert seq.shape == (1, 3, 2, 96, 96)
    for t in range(2):
        torch.testing.assert_close(seq[:, :, t], frames[t], rtol=0, atol=1e-5)


def test_load_official_checkpoint_format(golden_states, tmp_path):
    wrapped = {"state_dict": {f"module.{k}": v for k, v in golden_states["wav2lip"].items()}, "global_step": 0}
    path = tmp_path / "wav2lip.pth"
    torch.save(wrapped, path)
    model = load_wav2lip(path)
    assert isinstance(model, Wav2Lip) and not model.training
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in golden_states["wav2lip"].items())

    expert = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": golden_states["wav2lip_syncnet_color"]}, expert)
    assert isinstance(load_wav2lip(expert, model=SyncNetColor()), SyncNetColor)


def test_wrong_key_raises_weights_missing(golden_states, tmp_path):
    state = dict(golden_states["wav2lip"])
    state["output_block.9.weight"] = state.pop("output_block.1.weight")
    path = tmp_path / "broken_wav2lip.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsMissing, match="broken_wav2lip.pth"):
        load_wav2lip(path)

    shapes = dict(golden_states["wav2lip"])
    shapes["output_block.1.bias"] = torch.zeros(4)
    path = tmp_path / "shape_wav2lip.pth"
    torch.save(shapes, path)
    with pytest.raises(WeightsMissing, match="shape_wav2lip.pth"):
        load_wav2lip(path)


def test_weights_specs():
    assert [s.filename for s in (WAV2LIP_WEIGHTS, WAV2LIP_GAN_WEIGHTS, LIPSYNC_EXPERT_WEIGHTS)] == [
        "wav2lip.pth",
        "wav2lip_gan.pth",
        "lipsync_expert.pth",
    ]
    assert all(s.sha256 == "" and s.url.startswith("https://") for s in (WAV2LIP_WEIGHTS, WAV2LIP_GAN_WEIGHTS, LIPSYNC_EXPERT_WEIGHTS))
