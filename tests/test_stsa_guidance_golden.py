"""STSA guidance network (official `Heatmap_generator`): state-dict layout, golden-output parity, loading."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest
import torch

import stsa.guidance
from stsa.guidance import GuidanceNet, load_guidance

FOLDER = "stsa_heatmap_generator"
OUTPUT_NAMES = ("predict_content_heatmap", "predict_content_landmark")


@pytest.fixture(scope="module")
def golden_dir(shared) -> Path:
    return shared / "golden" / FOLDER


@pytest.fixture(scope="module")
def manifest(golden_dir) -> dict:
    return json.loads((golden_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def golden_state(golden_dir, make_weights) -> dict:
    return make_weights.golden_state_dict_from_manifest(str(golden_dir / "manifest.json"))


@pytest.fixture(scope="module")
def golden_io(golden_dir):
    inputs = torch.load(golden_dir / "inputs.pt", weights_only=True)
    outputs = torch.load(golden_dir / "outputs.pt", weights_only=True)
    return inputs, outputs


@pytest.fixture(scope="module")
def model(golden_state, tmp_path_factory) -> GuidanceNet:
    """Golden weights saved the official way (under "state_dict", DataParallel prefix), read back by the loader."""
    path = tmp_path_factory.mktemp("stsa_guidance") / "heatmap_weight.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in golden_state.items()}, "epoch": 0}, path)
    return load_guidance(path)


@pytest.fixture(scope="module")
def fresh_model() -> GuidanceNet:
    """A freshly constructed network, built while every socket connection is refused."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access while building the guidance network")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        return GuidanceNet()


@pytest.fixture(scope="module")
def batched_outputs(model, golden_io):
    inputs, _ = golden_io
    with torch.no_grad():
        return model(*inputs.values())


def test_state_dict_layout(manifest, fresh_model):
    state = fresh_model.state_dict()
    layout = [[k, list(v.shape), str(v.dtype)] for k, v in state.items()]
    assert {k for k, _, _ in layout} == {k for k, _, _ in manifest["state_dict"]}
    assert layout == manifest["state_dict"]
    assert len(state) == manifest["state_dict_key_count"]
    assert any(k.startswith("heatmap_decoder.message_j2l.") for k in state)


@pytest.mark.slow
def test_positional_tables_are_loaded_not_recomputed(model, golden_state, fresh_model):
    table = model.fusion_transformer.position_a.pe
    assert torch.equal(table, golden_state["fusion_transformer.position_a.pe"])
    assert not torch.equal(table, fresh_model.fusion_transformer.position_a.pe)


@pytest.mark.slow
def test_golden_outputs(manifest, golden_io, batched_outputs):
    inputs, golden = golden_io
    (call,) = manifest["calls"]
    assert [a["input"] for a in call["args"]] == list(inputs)
    assert call["outputs"] == list(OUTPUT_NAMES)
    for name, ours in zip(OUTPUT_NAMES, batched_outputs, strict=True):
        gold = golden[name]
        assert ours.shape == gold.shape and ours.dtype == gold.dtype, name
        dev = (ours - gold).abs().max().item()
        assert dev <= 1e-4 * max(1.0, gold.abs().max().item()), f"{name}: max deviation {dev:.3g}"


@pytest.mark.slow
def test_batch_size_invariance(model, golden_io, batched_outputs):
    inputs, _ = golden_io
    B = next(iter(inputs.values())).shape[0]
    with torch.no_grad():
        singles = [model(*(x[b : b + 1] for x in inputs.values())) for b in range(B)]
    for i, name in enumerate(OUTPUT_NAMES):
        one_by_one = torch.cat([s[i] for s in singles])
        torch.testing.assert_close(one_by_one, batched_outputs[i], rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_loader_returns_eval_model_and_loads_strictly(model, golden_state):
    assert isinstance(model, GuidanceNet) and not model.training
    assert torch.equal(model.Norm.weight, golden_state["Norm.weight"])
    broken = dict(golden_state)
    broken.pop("heatmap_decoder.message_j2l.0.conv_block.0.weight")
    with pytest.raises(RuntimeError, match="message_j2l") as err:
        load_guidance(broken)
    assert "Unexpected key" not in str(err.value)


@pytest.mark.slow
def test_wrong_frame_count_is_rejected(model):
    with pytest.raises(ValueError, match="T=5"):
        model(torch.zeros(1, 4, 768, 10), torch.zeros(1, 4, 1, 128, 128), torch.zeros(1, 5, 1, 128, 128))


def test_builds_offline_without_vgg(fresh_model, manifest):
    net = fresh_model
    assert sum(p.numel() for p in net.parameters()) == manifest["parameter_count"]
    names = [type(m).__name__.lower() for m in net.modules()] + list(net.state_dict())
    assert not any("vgg" in n or "perceptual" in n for n in names)

    imported, todo, seen = set(), [Path(stsa.guidance.__file__)], set()
    while todo:  # stsa.guidance and the stsa modules it imports (stsa.checkpoints)
        path = todo.pop()
        seen.add(path)
        tree = ast.parse(path.read_text())
        imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for n in (n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)):
            sibling = path.with_name(f"{n.module}.py")
            if n.level == 1 and n.module and "." not in n.module and sibling.is_file():
                todo += [] if sibling in seen else [sibling]
            else:
                imported.add("." * n.level + (n.module or "").split(".")[0])
    assert seen == {Path(stsa.guidance.__file__), Path(stsa.guidance.__file__).with_name("checkpoints.py")}
    assert imported <= {"__future__", "collections", "math", "pathlib", "typing", "numpy", "torch"}, imported
