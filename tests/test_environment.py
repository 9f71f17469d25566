"""The environment a run's values come from (issue 28): recorded in run.json, a folder extended in another
value-deciding environment refused (or, with the override, recorded), shown in reports, beside a drift, and by
doctor against the lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stsa_bench.cli import main
from stsa_bench.core import environment

RUN = ["run", "--suite", "demo", "runtime.progress=false", "suite.n_clips=1"]


def run_into(out: Path, cache_dir: Path, *extra: str) -> int:
    return main([*RUN, "--out", str(out), f"cache_dir={cache_dir}", *extra])


def test_capture_names_every_value_deciding_part():
    env = environment.capture()
    import av
    import numpy
    import torch

    assert env["av"] == av.__version__ and env["numpy"] == numpy.__version__ and env["torch"] == torch.__version__
    assert all(env[lib].count(".") == 2 for lib in environment.FFMPEG_LIBS), env
    assert set(environment.VALUE_DECIDING) | {"python", "opencv", "scipy", "lpips", "pytorch-fid", "transformers", "cpu", "gpu"} <= set(env)
    assert env["cpu"] and env["mediapipe"] != "not installed"


@pytest.mark.parametrize(
    ("change", "decisive"),
    [
        ({"torch": "2.14.2"}, False),
        ({"torch": "2.15.0"}, True),
        ({"numpy": "1.25.0"}, False),
        ({"numpy": "2.0.0"}, True),
        ({"av": "0.0.1"}, True),
        ({"libswscale": "0.0.1"}, True),
        ({"mediapipe": "0.0.1"}, True),
        ({"scipy": "1.16.0", "cpu": "other", "gpu": "NVIDIA H200"}, False),
    ],
)
def test_value_deciding_differences(change, decisive):
    """FFmpeg's libraries, av and mediapipe in full, torch to major.minor, numpy to major; the rest is shown, not refused."""
    env = {**environment.capture(), "torch": "2.14.1", "numpy": "1.26.4"}
    other = {**env, **change}
    assert bool(environment.value_differences(env, other)) == decisive
    assert environment.differences(env, other) == [f"{k} {env[k]} -> {v}" for k, v in change.items()]


def test_a_folder_is_not_extended_in_another_environment_unless_asked(tmp_path, cache_dir, capsys, monkeypatch):
    """run.json records the environment; a later invocation under another av (and its libavcodec) is refused before
    any work with the versions named and the override; with the override the folder grows and the invocation says so."""
    out = tmp_path / "run"
    assert run_into(out, cache_dir, "--methods", "gt", "--metrics", "psnr") == 0
    info = json.loads((out / "run.json").read_text())
    here = environment.capture()
    assert info["environment"] == here and info["invocations"][0]["environment"] == here

    moved = {**here, "av": "99.0.0", "libavcodec": "99.1.100"}
    monkeypatch.setattr(environment, "capture", lambda: moved)
    capsys.readouterr()
    assert run_into(out, cache_dir, "--methods", "gt,static", "--metrics", "psnr") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"av {here['av']} -> 99.0.0" in err and f"libavcodec {here['libavcodec']} -> 99.1.100" in err
    assert "runtime.allow_env_change=true" in err
    assert len(json.loads((out / "run.json").read_text())["invocations"]) == 1
    assert {json.loads(line)["method"] for line in (out / "results.jsonl").read_text().splitlines()} == {"gt"}

    assert run_into(out, cache_dir, "--methods", "gt,static", "--metrics", "psnr", "runtime.allow_env_change=true") == 0
    assert "extended in another environment" in capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    last = info["invocations"][-1]
    assert last["allow_env_change"] is True and last["environment"] == moved
    assert last["environment_changes"] == [f"av {here['av']} -> 99.0.0", f"libavcodec {here['libavcodec']} -> 99.1.100"]
    assert info["environment"] == here, "the folder's environment stays the one it was made in"
    assert environment.recorded(info) == [here, moved]


def test_a_folder_made_before_environments_were_recorded_is_extended_with_a_note(tmp_path, cache_dir, capsys):
    out = tmp_path / "old"
    assert run_into(out, cache_dir, "--methods", "gt", "--metrics", "psnr") == 0
    info = json.loads((out / "run.json").read_text())
    del info["environment"]
    for inv in info["invocations"]:
        del inv["environment"]
    (out / "run.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert run_into(out, cache_dir, "--methods", "gt,static", "--metrics", "psnr") == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "environment unknown" in line]
    assert len(notes) == 1 and str(out) in notes[0]
    info = json.loads((out / "run.json").read_text())
    assert "environment" not in info and environment.recorded(info) == [environment.capture()]


def test_reports_state_the_environment(tmp_path, cache_dir, capsys):
    """One line in Markdown, a comment in LaTeX, fields in JSON; 'unknown' for folders that do not record it."""
    out = tmp_path / "run"
    assert run_into(out, cache_dir, "--methods", "gt,static", "--metrics", "psnr") == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--format", "md,tex,json"]) == 0
    env = environment.capture()
    md = (tmp_path / "rep" / "table.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("- environment: ")]
    assert lines == [f"- environment: {environment.summary(env)}"]
    assert f"av {env['av']} (libavcodec {env['libavcodec']}" in lines[0] and f"CPU {env['cpu']}" in lines[0]
    assert (tmp_path / "rep" / "table.tex").read_text().splitlines()[0] == f"% environment: {environment.summary(env)}"
    assert json.loads((tmp_path / "rep" / "table.json").read_text())["provenance"]["environment"] == [env]

    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k not in ("environment", "invocations")}))
    assert main(["report", str(out), "--out", str(tmp_path / "old"), "--format", "md"]) == 0
    assert "- environment: unknown (not recorded)" in (tmp_path / "old" / "table.md").read_text()


def test_check_shows_the_environment_changes_beside_a_drift(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    assert run_into(out, cache_dir, "--methods", "gt,static", "--metrics", "psnr") == 0
    golden = tmp_path / "golden.json"
    assert main(["check", str(out), "--golden", str(golden), "--update"]) == 0
    doc = json.loads(golden.read_text())
    here = environment.capture()
    assert doc["environment"] == here
    doc["environment"] = {**here, "av": "17.0.0", "libavcodec": "61.19.100"}
    for row in doc["rows"]:
        row["value"] = row["value"] + 1.0 if row["method"] == "static" else row["value"]
    golden.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["check", str(out), "--golden", str(golden)]) == 1
    text = capsys.readouterr().out
    assert "| drift |" in text
    assert f"environment changes since the golden rows: av 17.0.0 -> {here['av']}; libavcodec 61.19.100 -> {here['libavcodec']}" in text
    del doc["environment"]
    golden.write_text(json.dumps(doc))
    assert main(["check", str(out), "--golden", str(golden)]) == 1
    assert "environment of the golden rows: unknown" in capsys.readouterr().out


def test_doctor_warns_when_installed_versions_differ_from_the_lock(tmp_path, cache_dir, capsys, monkeypatch):
    import av

    from stsa_bench import doctor

    lock = tmp_path / "lock.txt"
    lock.write_text(f"av==0.0.1 \\\n    --hash=sha256:00\nnumpy=={__import__('numpy').__version__}\nnot-a-real-package==1.0\n")
    monkeypatch.setattr(environment, "LOCK", lock)
    assert main(["doctor", "--suite", "demo", f"cache_dir={cache_dir}", "--methods", "gt", "--metrics", "psnr"]) == 0
    out = capsys.readouterr().out
    assert f"warning: av {av.__version__} (lock 0.0.1)" in out and "warning: not-a-real-package not installed (lock 1.0)" in out
    assert "warning: numpy" not in out and "2 installed versions differ" in out and "the run can go." in out
    monkeypatch.setattr(environment, "LOCK", tmp_path / "absent.txt")
    assert doctor.lock_state() == (f"no lock beside the package ({tmp_path / 'absent.txt'}; installed from a wheel?): versions not compared", [])
