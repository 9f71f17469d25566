"""The real clips of ../shared/clips: faces in every frame, and a warm cache."""

from __future__ import annotations

import csv
import time

import pytest

from stsa_bench.cli import main


@pytest.fixture(scope="module")
def real_clip_ids(shared):
    with open(shared / "clips" / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["file"].rsplit(".", 1)[0] for r in rows if r["real_or_generated"] == "real"]
    assert len(ids) == 12
    return ids


def prepare_table(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1].isdigit():
            rows[parts[0]] = parts
    return rows


@pytest.mark.slow
def test_prepare_shared_clips_face_in_every_frame_then_cache_hit(shared, real_clip_ids, tmp_path, capsys):
    args = ["prepare", "--suite", "folder", f"data.root={shared / 'clips'}", f"cache_dir={tmp_path}", "runtime.progress=false"]
    t0 = time.perf_counter()
    assert main(args) == 0
    cold = time.perf_counter() - t0
    table = prepare_table(capsys.readouterr().out)
    for clip in real_clip_ids:
        _, frames, with_face, status = table[clip][:4]
        assert int(frames) > 50 and with_face == frames, (clip, frames, with_face)
        assert status == "prepared"
    t0 = time.perf_counter()
    assert main(args) == 0
    warm = time.perf_counter() - t0
    table = prepare_table(capsys.readouterr().out)
    assert all(row[3] == "cached" for row in table.values())
    print(f"prepare shared clips: cold {cold:.1f} s, cached {warm:.2f} s ({cold / warm:.0f}x)")


def test_audio_beside_video_is_paired(shared, tmp_path):
    from stsa_bench.core.config import DataConfig
    from stsa_bench.core.suites import SuiteContext, load_suite

    clips = {c.id: c for c in load_suite(SuiteContext("folder", {}, DataConfig(shared / "clips"), tmp_path))}
    assert clips["tanshuai0219__EDTalk__mouth_source"].audio.name == "tanshuai0219__EDTalk__mouth_source.wav"
    assert all(c.error is None for c in clips.values())
    assert len(clips) == 17
