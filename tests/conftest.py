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
