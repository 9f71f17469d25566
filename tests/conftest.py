from __future__ import annotations

import os
from pathlib import Path

import pytest

from stsa_bench.core.paths import shared_root
from stsa_bench.core.process import allocator_defaults

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # xdist workers share the cores: threads = cores / workers
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _threads)
allocator_defaults()  # as the command line sets them, so that tests and benchmarks run as users do

LRS2_CLIP = "smeetrs__deep_avsr__00004"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Benchmarks run once each, as tests, unless `--benchmark-enable` asks for timings (README, Development)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    if hasattr(config.option, "benchmark_disable"):
        config.option.benchmark_disable = True


def pytest_collection_modifyitems(config, items):
    """Every test that needs ../shared (the `shared` fixture, directly or through another fixture)
    carries the `shared` marker, so `-m "not shared"` selects the tests that run without it."""
    for item in items:
        if "shared" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_root()
    if root is None:
        pytest.skip("needs the project's shared material: set STSA_BENCH_SHARED or place it at ../shared")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the whole session (demo clips and preprocessing are reused across tests), shared by the
    xdist workers: the cache is built for concurrent writers (locks, atomic renames), so each entry is made once."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / "shared-cache"
        path.mkdir(exist_ok=True)
        return path
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


@pytest.fixture(scope="session")
def golden_wav2lip_path(shared, make_weights, tmp_path_factory) -> Path:
    """Golden Wav2Lip weights saved the way the official checkpoints are: DataParallel prefix, extra keys."""
    import torch

    state = make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "wav2lip" / "manifest.json"))
    path = tmp_path_factory.mktemp("w2l") / "wav2lip.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "global_step": 0}, path)
    return path


@pytest.fixture(scope="session")
def lrs2_sample(shared, cache_dir):
    """The LRS2-format shared clip (160x160, 25 fps) as a method sees it."""
    from baselines.base import Sample
    from stsa_bench.core.config import PreprocessConfig
    from stsa_bench.core.paths import sha256_file
    from stsa_bench.core.preprocess import Preprocessor
    from stsa_bench.core.suites import Clip

    video = shared / "clips" / f"{LRS2_CLIP}.mp4"
    clip = Clip(LRS2_CLIP, video, sha256=sha256_file(video))
    prep = Preprocessor(PreprocessConfig(), cache_dir)
    p, frames = prep.prepare(clip), prep.frames(clip)
    return Sample(clip.id, frames, p.audio, 25, 16000, p.landmarks, p.boxes, clip.sha256)


@pytest.fixture(scope="module")
def demo_sample(cache_dir):
    """The first demo clip's first 20 frames as a method sees them."""
    from baselines.base import Sample
    from stsa_bench.core.config import DataConfig, PreprocessConfig
    from stsa_bench.core.preprocess import Preprocessor
    from stsa_bench.core.suites import SuiteContext, load_suite

    from .helpers import make_config

    clip = load_suite(SuiteContext("demo", make_config("suite=demo").suite_options, DataConfig(), cache_dir))[0]
    prep = Preprocessor(PreprocessConfig(), cache_dir)
    p, frames = prep.prepare(clip), prep.frames(clip)
    n = 20
    return Sample(clip.id, frames[:n], p.audio[: n * 640], 25, 16000, p.landmarks[:n], p.boxes[:n], clip.sha256)
