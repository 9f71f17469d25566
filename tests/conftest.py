from __future__ import annotations

import os
from pathlib import Path

import pytest

from stsa_bench.paths import shared_root


def pytest_configure(config):
    os.environ.setdefault("GLOG_minloglevel", "2")


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_root()
    if root is None:
        pytest.skip("needs the project's shared material: set STSA_BENCH_SHARED or place it at ../shared")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the whole session (demo clips and preprocessing are reused across tests)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def demo_run(cache_dir, tmp_path_factory):
    """The README's main job: `stsa-bench run --suite demo --out DIR`, run once per session."""
    from stsa_bench.cli import main

    out = tmp_path_factory.mktemp("demo_run")
    rc = main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false"])
    return rc, out


@pytest.fixture(scope="session")
def make_weights(shared):
    """The shared golden-weight formula, imported from its shared path (never copied into the repo)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("golden_make_weights", shared / "golden" / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden_state(shared, make_weights):
    return make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "syncnet_S" / "manifest.json"))


@pytest.fixture(scope="session")
def golden_path(golden_state, tmp_path_factory) -> Path:
    """SyncNet S weights from the golden formula, saved in the official format (a state dict)."""
    import torch

    path = tmp_path_factory.mktemp("weights") / "syncnet_golden.pt"
    torch.save(golden_state, path)
    return path
