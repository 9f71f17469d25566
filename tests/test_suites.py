from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stsa_bench.core.config import DataConfig
from stsa_bench.core.demo import make_clip
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.media import write_video, write_wav
from stsa_bench.core.suites import SuiteContext, load_suite

from .helpers import demo_media, make_config


def ctx_for(name: str, cache, root=None, audio_root=None, refreeze=False) -> SuiteContext:
    cfg = make_config(f"suite={name}")
    return SuiteContext(name, cfg.suite_options, DataConfig(root, audio_root), cache, refreeze)


def test_lrs2_without_root_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("STSA_BENCH_LRS2_ROOT", raising=False)
    with pytest.raises(ConfigError, match="STSA_BENCH_LRS2_ROOT"):
        load_suite(ctx_for("lrs2", tmp_path))


def test_cli_lrs2_without_root_fails_fast(tmp_path):
    """The missing root stops the run before it makes its folder or reads any clip (one line, exit 2)."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "STSA_BENCH_LRS2_ROOT"}
    res = subprocess.run(
        [sys.executable, "-m", "stsa_bench.cli", "run", "--suite", "lrs2", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert not (tmp_path / "o").exists()
    assert res.returncode == 2
    assert "STSA_BENCH_LRS2_ROOT" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_lrs2_fake_root_reports_missing_by_id(tmp_path, monkeypatch):
    ids = make_config("suite=lrs2").suite_options["ids"]
    root = tmp_path / "lrs2"
    frames, audio = demo_media(0)
    for i in ids[:2]:
        (root / "main" / i).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / "main" / f"{i}.mp4", frames, 25, audio)
    monkeypatch.setenv("STSA_BENCH_LRS2_ROOT", str(root))
    clips = load_suite(ctx_for("lrs2", tmp_path / "cache"))
    missing = [c for c in clips if c.error]
    assert [c.id for c in clips] == list(ids)
    assert [c.id for c in missing] == list(ids[2:])
    assert all("missing" in c.error and c.id in c.error for c in missing)
    assert all(c.sha256 for c in clips[:2])


def test_cmlr_layout_video_and_audio_trees(tmp_path):
    ids = make_config("suite=cmlr").suite_options["ids"]
    frames, audio = demo_media(1)
    i = ids[0]
    (tmp_path / "video" / i).parent.mkdir(parents=True)
    (tmp_path / "audio" / i).parent.mkdir(parents=True)
    write_video(tmp_path / "video" / f"{i}.mp4", frames, 25)
    write_wav(tmp_path / "audio" / f"{i}.wav", audio)
    clips = load_suite(ctx_for("cmlr", tmp_path / "cache", root=tmp_path))
    assert clips[0].audio == tmp_path / "audio" / f"{i}.wav" and clips[0].error is None
    assert sum(c.error is not None for c in clips) == 39


def test_folder_pairs_separate_audio_and_detects_changes(tmp_path):
    d = tmp_path / "vids"
    d.mkdir()
    frames, audio = demo_media(2)
    write_video(d / "a.mp4", frames, 25)
    write_wav(d / "a.wav", audio)
    write_video(d / "b.mkv", frames, 25, audio)
    cache = tmp_path / "cache"
    clips = load_suite(ctx_for("folder", cache, root=d))
    assert [(c.id, c.audio.name if c.audio else None) for c in clips] == [("a", "a.wav"), ("b", None)]
    # a changed file is reported by name, not silently evaluated
    write_video(d / "b.mkv", frames[::-1].copy(), 25, audio)
    changed = {c.id: c.error for c in load_suite(ctx_for("folder", cache, root=d))}
    assert changed["a"] is None
    assert "b.mkv: content changed since the folder manifest was frozen" in changed["b"]
    assert all(c.error is None for c in load_suite(ctx_for("folder", cache, root=d, refreeze=True)))


def test_folder_without_root_or_videos(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_suite(ctx_for("folder", tmp_path))
    with pytest.raises(ConfigError, match="no video files"):
        load_suite(ctx_for("folder", tmp_path, root=tmp_path))


@pytest.mark.slow
def test_demo_suite_is_deterministic(tmp_path):
    a = load_suite(ctx_for("demo", tmp_path / "c1"))
    b = load_suite(ctx_for("demo", tmp_path / "c2"))
    assert len(a) == 3
    assert [c.sha256 for c in a] == [c.sha256 for c in b]
    f1, a1 = make_clip(7, 1.0, 96)
    f2, a2 = make_clip(7, 1.0, 96)
    assert np.array_equal(f1, f2) and np.array_equal(a1, a2)
    assert not np.array_equal(make_clip(8, 1.0, 96)[0], f1)


def test_nfc_and_nfd_forms_of_one_name_are_told_apart(tmp_path, cache_dir):
    """Issue 30: 'é' stored as NFC and as NFD became two rows that looked identical. Ids are NFC; two files whose
    names differ only by normalisation keep apart with a short digest of their bytes."""
    import unicodedata

    from stsa_bench.core.config import DataConfig
    from stsa_bench.core.suites import SuiteContext, load_suite

    nfc, nfd = unicodedata.normalize("NFC", "caf\u00e9"), unicodedata.normalize("NFD", "caf\u00e9")
    assert nfc != nfd
    for name in (nfc, nfd):
        (tmp_path / f"{name}.mkv").write_bytes(name.encode())
    naive = unicodedata.normalize("NFD", "na\u00efve")
    (tmp_path / f"{naive}.mkv").write_bytes(b"x")
    clips = load_suite(SuiteContext("folder", {"kind": "folder"}, DataConfig(root=str(tmp_path)), cache_dir))
    ids = sorted(c.id for c in clips)
    assert len(set(ids)) == 3 and "na\u00efve" in ids
    assert all(unicodedata.is_normalized("NFC", i) for i in ids)
    twins = [i for i in ids if i.startswith(f"{nfc}.mkv~")]
    assert len(twins) == 2
