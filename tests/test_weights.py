"""Weights files are untrusted input: loading never runs code stored in them."""

from __future__ import annotations

import os

import pytest
import torch

from stsa_bench.core import catalogue
from stsa_bench.core.weights import WeightsMissing, load_state_dict


class _Payload:
    """Unpickling this object would run a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, path)
    with pytest.raises(WeightsMissing, match=r"evil.pth: holds objects other than tensors.*system") as err:
        load_state_dict(path)
    assert not marker.exists() and "weights_only" not in str(err.value)


def test_torchscript_archive_is_refused_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load was called"))
    with pytest.raises(WeightsMissing) as err:
        load_state_dict(path)
    message = str(err.value)
    assert "scripted.pt" in message and "weights.allow_torchscript=true" in message and "weights_only" not in message


def test_torchscript_archive_loads_its_parameters_with_the_opt_in(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = tmp_path / "scripted.pt"
    torch.jit.script(model).save(str(path))
    state = load_state_dict(path, allow_torchscript=True)
    assert set(state) == {"weight", "bias"} and torch.equal(state["weight"], model.weight.detach())


def test_not_a_checkpoint_names_the_file(tmp_path):
    """Random bytes (seeded; some of them once made torch's unpickler raise IndexError) are refused in one line."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "noise.pth"
    for _ in range(200):
        path.write_bytes(rng.bytes(int(rng.integers(1, 512))))
        with pytest.raises(WeightsMissing, match="noise.pth: ") as err:
            load_state_dict(path)
        assert "weights_only" not in str(err.value)


def test_catalogue_names_every_file_once():
    names = [s.name for s in catalogue.CATALOGUE.values()]
    files = [s.filename for s in catalogue.CATALOGUE.values()]
    assert len(set(names)) == len(names) and len(set(files)) == len(files)
    for spec in catalogue.CATALOGUE.values():
        assert spec.url.startswith(("https://", "http://")) and spec.licence and spec.used_by
        assert spec.sha256 == "" or len(spec.sha256) in (8, 64)
        assert spec.torchscript == (spec.name == "i3d_styleganv"), "only StyleGAN-V's FVD detector is TorchScript"


def test_metrics_and_methods_use_catalogue_entries():
    from stsa_bench.core.registry import METHODS, METRICS

    listed = set(catalogue.CATALOGUE.values())
    for name in METRICS.names():
        assert set(METRICS.get(name).weights_specs()) <= listed, name
    for name in ("wav2lip", "wav2lip_gan"):
        assert METHODS.get(name).weights_spec in listed
