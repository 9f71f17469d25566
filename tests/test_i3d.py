"""The in-tree I3D against the golden fixture of VideoGPT's InceptionI3d (../shared/golden/i3d_fvd)."""

from __future__ import annotations

import pytest

from metrics.i3d import InceptionI3d, same_padding


def test_same_padding_follows_tensorflow():
    """TF SAME: the extra pixel goes at the end; sizes divisible by the stride pad k - s (README of the fixture)."""
    assert same_padding(16, 7, 2) == (2, 3) and same_padding(224, 7, 2) == (2, 3)
    assert same_padding(112, 3, 2) == (0, 1) and same_padding(7, 3, 1) == (1, 1)
    assert same_padding(15, 3, 2) == (1, 1) and same_padding(14, 2, 2) == (0, 0) and same_padding(5, 1, 1) == (0, 0)


@pytest.fixture(scope="module")
def golden_i3d(shared, make_weights):
    import torch

    folder = shared / "golden" / "i3d_fvd"
    state = make_weights.golden_state_dict_from_manifest(str(folder / "manifest.json"))
    model = InceptionI3d(400, in_channels=3)
    assert set(model.state_dict()) == set(state), "state-dict keys differ from VideoGPT's"
    model.load_state_dict(state)
    inputs = torch.load(folder / "inputs.pt", weights_only=True)
    outputs = torch.load(folder / "outputs.pt", weights_only=True)
    return model.eval(), inputs["video"].to(torch.float32), outputs


@pytest.mark.slow
def test_golden_logits_features_and_batch_invariance(golden_i3d):
    """Logits and trunk features within 1e-5 absolute of the official class (noise 2.4e-7; BatchNorm eps 1e-3
    instead of 1e-5 would move the logits by 8.5e-4); each sample alone gives its batched logits."""
    import torch

    model, video, want = golden_i3d
    with torch.inference_mode():
        logits = model(video)
        features = model.extract_features(video)
        alone = model(video[1:])
    assert logits.shape == (2, 400) and features.shape == (2, 1024, 1, 1, 1)
    assert (logits - want["logits"]).abs().max() < 1e-5
    assert (features - want["extract_features"]).abs().max() < 1e-5
    assert (alone[0] - logits[1]).abs().max() < 1e-5
