"""Third-party plugins: the code of docs/extending.md, installed as a throw-away distribution.

Its code blocks are written out as the package `my_plugin`, with a
`.dist-info` whose entry points come from the section's pyproject block; nothing in the repository
is edited. The plugins must be listed without being imported, and run on the demo suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_INFER = '''
import sys
from pathlib import Path
from stsa_bench.core.media import decode_video, write_video

def arg(name):
    return sys.argv[sys.argv.index(name) + 1]

frames, _ = decode_video(Path(arg("--face")), 25)
assert Path(arg("--ckpt")).is_file() and Path(arg("--audio")).is_file()
frames[:, frames.shape[1] // 2 :] //= 2
write_video(Path(arg("--out")), frames, 25, None, lossless=False)
'''


def extending_section() -> str:
    return (ROOT / "docs" / "extending.md").read_text()


def install_plugin(site: Path) -> dict[str, dict[str, str]]:
    """Write docs/extending.md's blocks as `my_plugin` plus its dist-info under `site`; returns the entry points."""
    section = extending_section()
    blocks = re.findall(r"```python\n(# (\S+)\n.*?)```", section, flags=re.S)
    assert {path for _, path in blocks} == {"my_plugin/mean_abs.py", "my_plugin/my_talker.py", "my_plugin/listed.py"}
    for code, path in blocks:
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    (site / "my_plugin" / "__init__.py").write_text("")
    (toml,) = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    groups = tomllib.loads(toml)["project"]["entry-points"]
    info = site / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items())
    )
    return groups


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory, cache_dir):
    site = tmp_path_factory.mktemp("site")
    groups = install_plugin(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "STSA_BENCH_CACHE": str(cache_dir)}
    return env, groups


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stsa_bench.cli", *args], env=env, capture_output=True, text=True, timeout=600)


def test_entry_points_match_the_registered_names(plugin_env):
    _, groups = plugin_env
    assert groups == {
        "stsa_bench.metrics": {"mean_abs": "my_plugin.mean_abs"},
        "stsa_bench.methods": {"my_talker": "my_plugin.my_talker"},
        "stsa_bench.suites": {"listed": "my_plugin.listed"},
    }


def test_plugins_are_listed_without_importing_them(plugin_env):
    env, _ = plugin_env
    code = (
        "import sys; from stsa_bench.core.registry import METHODS, METRICS, SUITES; "
        "print(METRICS.module_of('mean_abs'), METHODS.module_of('my_talker'), SUITES.module_of('listed'), "
        "any(m.startswith('my_plugin') for m in sys.modules), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["my_plugin.mean_abs", "my_plugin.my_talker", "my_plugin.listed", "False", "False"]
    listing = cli(env, "ls")
    assert listing.returncode == 0, listing.stderr
    for name in ("mean_abs", "my_talker", "listed"):
        assert name in listing.stdout
    assert "mean_abs[face128@25fps/pp=" in listing.stdout and "rgb,scale=255]" in listing.stdout


@pytest.mark.slow
def test_plugin_metric_and_method_run_on_the_demo_suite(plugin_env, tmp_path):
    env, _ = plugin_env
    checkout = tmp_path / "MyTalker"
    (checkout / "checkpoints").mkdir(parents=True)
    (checkout / "checkpoints" / "my_talker.pth").write_bytes(b"weights")
    (checkout / "infer.py").write_text(FAKE_INFER)
    out = tmp_path / "run"
    args = ["run", "--suite", "demo", "--methods", "gt,static,my_talker", "--metrics", "psnr,mean_abs", "--out", str(out),
            f"my_talker.repo={checkout}", f"my_talker.python={sys.executable}", "mean_abs.scale=1", "runtime.progress=false"]  # fmt: skip
    done = cli(env, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    mean_abs = {(r["clip"], r["method"]): r for r in rows if r["metric"].startswith("mean_abs[")}
    assert len(mean_abs) == 9 and all(r["status"] == "ok" for r in mean_abs.values()), [r["error"] for r in mean_abs.values()]
    assert {r["metric"] for r in mean_abs.values()} == {"mean_abs[face128@25fps/pp=3fdc607b,rgb,scale=1]"}
    by_method = {m: [r["value"] for (c, mm), r in mean_abs.items() if mm == m] for m in ("gt", "static", "my_talker")}
    assert by_method["gt"] == [0.0, 0.0, 0.0]
    assert min(by_method["static"]) > 0 and min(by_method["my_talker"]) > 0.01
    assert all(r["higher_is_better"] is False and r["group"] == "Visual Quality" for r in mean_abs.values())
    calls = [r for r in rows if r["method"] == "my_talker"]
    assert all(r["status"] == "ok" for r in calls)


@pytest.mark.slow
def test_plugin_suite_runs(plugin_env, tmp_path):
    from stsa_bench.core.demo import make_clip
    from stsa_bench.core.media import write_video

    env, _ = plugin_env
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    for seed in (0, 1):
        frames, audio = make_clip(seed, 1.2, 160)
        write_video(root / "videos" / f"talk{seed}.mp4", frames, 25, audio, 16000)
    (root / "clips.txt").write_text("videos/talk0.mp4\nvideos/talk1.mp4\nvideos/absent.mp4\n")
    out = tmp_path / "run"
    done = cli(env, "run", "--suite", "listed", "--methods", "gt", "--metrics", "psnr", "--out", str(out),
               f"data.root={root}", "runtime.progress=false")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["clip"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    assert rows["talk0"]["status"] == rows["talk1"]["status"] == "ok" and rows["talk0"]["value"] == pytest.approx(80.0)
    assert rows["absent"]["status"] == "failed" and "absent.mp4" in rows["absent"]["error"]
    assert np.isfinite(rows["talk1"]["value"])
