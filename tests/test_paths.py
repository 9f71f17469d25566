from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from stsa_bench.core.paths import atomic_write_text, build_dir_atomically, cache_key


def test_cache_key_is_content_addressed():
    k = cache_key("prep", content=["abc"], params={"a": 1, "b": 2})
    assert k == cache_key("prep", content=["abc"], params={"b": 2, "a": 1})
    assert k != cache_key("prep", content=["abd"], params={"a": 1, "b": 2})
    assert k != cache_key("prep", content=["abc"], params={"a": 1, "b": 3})
    assert k != cache_key("prep", content=["abc"], params={"a": 1, "b": 2}, version=2)
    assert len(k) == 64


def _builder(final: str, counter: str) -> None:
    def build(tmp: Path) -> None:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.3)
        (tmp / "data.txt").write_text("done")

    build_dir_atomically(Path(final), build)


def test_two_processes_build_once(tmp_path):
    final, counter = tmp_path / "entry", tmp_path / "count"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_builder, args=(str(final), str(counter))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counter.read_text() == "x"
    assert (final / "data.txt").read_text() == "done"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_failed_build_leaves_nothing(tmp_path):
    final = tmp_path / "entry"

    def boom(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")

    try:
        build_dir_atomically(final, boom)
    except RuntimeError:
        pass
    assert not final.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_atomic_write_replaces(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert oct(p.stat().st_mode & 0o777) != oct(0o600)
