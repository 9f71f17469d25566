"""External jobs as the real official codes need them (issue 31): each in its own plain-ASCII working directory,
names with spaces and shell characters intact, concurrent jobs in one checkout apart, ffmpeg found or offered,
the harness's face box, and provenance (checkpoint sha256, commit). The fake checkout reproduces what only
the real Wav2Lip showed (tests/fake_method.py); the guards below prove the fake fails where the real code did."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from baselines import build_method
from baselines.base import MethodEnv
from baselines.external.jobs import PLAIN, job_name, weights_sha
from baselines.external.wav2lip_official import harness_box
from stsa_bench.cli import main
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.results import read_rows

from .test_external import calls, make_checkout, options

W2L = "wav2lip_official"


def lower_half_inverted(out: np.ndarray, src: np.ndarray) -> bool:
    """The fake's output of `src`: its lower half inverted (H.264 and DIVX loss allowed)."""
    h = src.shape[1]
    upper = np.abs(out[:, : h // 2 - 8].astype(int) - src[: len(out), : h // 2 - 8]).mean()
    lower = np.abs(out[:, h // 2 + 8 :].astype(int) - (255 - src[: len(out), h // 2 + 8 :].astype(int))).mean()
    return upper < 10 and lower < 10


def other_sample(sample):
    """A second clip: the demo frames mirrored left-right, its own id and hash."""
    frames = np.ascontiguousarray(np.asarray(sample.frames)[:, :, ::-1])
    w = frames.shape[2]
    boxes = sample.boxes.copy()
    boxes[:, 0] = w - 1 - boxes[:, 0]
    landmarks = sample.landmarks.copy()
    landmarks[..., 0] = 1 - landmarks[..., 0]
    return replace(sample, clip_id="mirror", sha256="e" * 64, frames=frames, boxes=boxes, landmarks=landmarks)


def stage(folder: Path, sample) -> None:
    from stsa_bench.core.media import write_video, write_wav

    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / "template.mp4", np.asarray(sample.frames), 25, None, lossless=False, crf=0)
    write_wav(folder / "audio.wav", sample.audio, 16000)


def official_way(repo: Path, folder: Path, env: dict) -> subprocess.Popen:
    """The fake run as the adapter ran it before: in the checkout, absolute paths."""
    args = [sys.executable, "inference.py", "--checkpoint_path", str(repo / "checkpoints/wav2lip.pth"), "--face",
            str(folder / "template.mp4"), "--audio", str(folder / "audio.wav"), "--outfile", str(folder / "result.mp4")]  # fmt: skip
    return subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fake_env(**extra: str) -> dict:
    from baselines.external.jobs import find_ffmpeg, program_dir

    exe, source = find_ffmpeg("auto", os.environ.get("PATH"))
    assert exe, "the tests need ffmpeg: imageio-ffmpeg is in the dev extra"
    path = os.environ["PATH"] if source == "PATH" else f"{program_dir('ffmpeg', exe)}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **extra}


def test_names_with_spaces_and_shell_characters_reach_the_official_code_intact(tmp_path, demo_sample, monkeypatch):
    """A clip id and a run folder with a space, `$` and a backtick: the job runs in a plain folder with relative names,
    and the output is the clip's. Guard: the fake, run the old way on those paths, exits 0 and writes nothing (the real
    Wav2Lip's shell-string ffmpeg split `.../deep clip $x/result.mp4`)."""
    repo = make_checkout(tmp_path / "src", W2L)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    sample = replace(demo_sample, clip_id="deep clip $HOME `id`")
    run_dir = tmp_path / "my run $PATH"
    m = build_method(W2L, options(W2L, repo), MethodEnv("cpu", {}, run_dir))
    gen = m.generate(sample)
    (call,) = calls(repo)
    assert PLAIN.fullmatch(call["cwd"]) and Path(call["cwd"]).is_relative_to(tmp_path / "tmp" / "stsa-bench-work")
    assert Path(call["cwd"]).name == job_name(sample.clip_id, sample.sha256) and "deep_clip_HOME_id" in call["cwd"]
    assert lower_half_inverted(np.asarray(gen.frames)[:17], np.asarray(sample.frames))
    assert m.kept_path(sample).is_file() and run_dir in m.kept_path(sample).parents

    (repo / "temp").mkdir()
    plain, old = tmp_path / "plain", tmp_path / "deep clip $x"
    for folder in (plain, old):
        stage(folder, sample)
    assert official_way(repo, plain, fake_env()).wait(60) == 0 and (plain / "result.mp4").is_file()
    proc = official_way(repo, old, fake_env())
    assert proc.wait(60) == 0 and not (old / "result.mp4").exists(), "the fake muxes as the real code: the space splits it"

    monkeypatch.setattr(tempfile, "tempdir", str(old))
    with pytest.raises(ConfigError, match=r"both hold characters a shell splits or expands: external methods need one of them plain"):
        build_method(W2L, options(W2L, repo), MethodEnv("cpu", {}, run_dir)).generate(replace(sample, sha256="f" * 64))


def test_the_checkout_s_own_files_of_a_job_s_names_are_left_alone(tmp_path, demo_sample):
    """A checkout holding files named like the job's logs or outputs (stdout.log, result.mp4, temp/): the job writes
    its own, and the checkout's are untouched."""
    repo = make_checkout(tmp_path / "src", W2L)
    (repo / "stdout.log").write_text("the user's log")
    (repo / "result.mp4").write_bytes(b"the user's video")
    (repo / "temp").mkdir()
    (repo / "temp" / "README.md").write_text("kept")
    m = build_method(W2L, options(W2L, repo), MethodEnv("cpu", {}, tmp_path / "run"))
    assert lower_half_inverted(np.asarray(m.generate(demo_sample).frames)[:17], np.asarray(demo_sample.frames))
    assert (repo / "stdout.log").read_text() == "the user's log" and (repo / "result.mp4").read_bytes() == b"the user's video"
    assert sorted(p.name for p in (repo / "temp").iterdir()) == ["README.md"]


def test_two_jobs_in_one_checkout_at_once_give_their_own_outputs(tmp_path, demo_sample):
    """Two clips generated at the same time from one checkout (threads): each job writes temp/result.avi in its own
    folder, so each output is its clip's. Guard: two runs of the fake in the checkout, as before, both past writing
    temp/result.avi before either muxes (FAKE_BARRIER), do not both give their own clip."""
    repo = make_checkout(tmp_path / "src", W2L)
    samples = [demo_sample, other_sample(demo_sample)]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {"FAKE_BARRIER": f"{barrier},2"}
    m = build_method(W2L, options(W2L, repo, env=env), MethodEnv("cpu", {}, tmp_path / "run"))
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(m.generate, samples))
    assert len({c["cwd"] for c in calls(repo)}) == 2
    for gen, sample in zip(outs, samples):
        assert lower_half_inverted(np.asarray(gen.frames)[:17], np.asarray(sample.frames)), sample.clip_id
    assert len(list(barrier.iterdir())) == 2, "the jobs overlapped"

    from stsa_bench.core.media import decode_video

    (repo / "temp").mkdir()
    folders = [tmp_path / "old" / s.clip_id for s in samples]
    shared_env = fake_env(FAKE_BARRIER=f"{tmp_path / 'barrier2'},2")
    (tmp_path / "barrier2").mkdir()
    for folder, sample in zip(folders, samples):
        stage(folder, sample)
    procs = [official_way(repo, folder, shared_env) for folder in folders]
    assert [p.wait(60) for p in procs] == [0, 0]
    right = [(f / "result.mp4").is_file() and lower_half_inverted(decode_video(f / "result.mp4", 25)[0], np.asarray(s.frames))
             for f, s in zip(folders, samples)]  # fmt: skip
    assert not all(right), "in one working directory the second temp/result.avi replaces the first"


@pytest.mark.slow
def test_two_ranks_in_one_checkout_give_the_rows_of_one_process(tmp_path, cache_dir):
    """torchrun with two ranks, each running its clip's job while the other's runs (FAKE_BARRIER): the rows equal a
    single process's."""
    repo = make_checkout(tmp_path / "src", W2L)
    (tmp_path / "barrier").mkdir()
    common = [sys.executable, "-m", "stsa_bench.cli", "run", "--suite", "demo", "suite.n_clips=2", f"cache_dir={cache_dir}",
              "runtime.progress=false", "--methods", W2L, "--metrics", "psnr", f"{W2L}.repo={repo}", f"{W2L}.python={sys.executable}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([*common, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    ranks = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common[1:]]
    two = subprocess.run([*ranks, "--out", str(tmp_path / "two"), f"+{W2L}.env.FAKE_BARRIER='{tmp_path / 'barrier'},2'"],
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert len(list((tmp_path / "barrier").iterdir())) == 2, "the two ranks' jobs overlapped"
    rows = {r.clip: r for r in read_rows(tmp_path / "one" / "results.jsonl")}
    sharded = {r.clip: r for r in read_rows(tmp_path / "two" / "results.jsonl")}
    assert rows.keys() == sharded.keys() and len(rows) == 2
    for clip, row in rows.items():
        assert row.status == sharded[clip].status == "ok"
        assert sharded[clip].value == pytest.approx(row.value, rel=2e-4), clip  # H.264 via ffmpeg: not bit-reproducible


def test_doctor_names_a_missing_ffmpeg_and_the_fix(tmp_path, cache_dir, monkeypatch, capsys):
    repo = make_checkout(tmp_path / "src", W2L)
    args = ["doctor", "--suite", "demo", "--methods", W2L, f"{W2L}.repo={repo}", f"{W2L}.python={sys.executable}", f"cache_dir={cache_dir}"]
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "wav2lip_official needs ffmpeg (Wav2Lip's code runs it to write its video, and exits 0 without one)" in out
    assert "pip install 'stsa-bench[ffmpeg]', or set wav2lip_official.ffmpeg=PATH" in out and "the run cannot go yet" in out
    monkeypatch.delitem(sys.modules, "imageio_ffmpeg")
    main(args)
    out = capsys.readouterr().out
    assert "ffmpeg" in out and "(imageio-ffmpeg)" in out and "wav2lip_official@0123456789ab" in out and "needs ffmpeg" not in out
    assert main([*args[:3], "--methods", f"mine:{W2L}", f"mine.repo={repo}", "mine.python=/no/python", args[-1]]) == 1
    assert "mine.python=/no/python: not an executable" in capsys.readouterr().out, "settings are named by the row label"


def test_the_harness_box_needs_no_detector_and_rows_carry_the_checkpoint_sha(tmp_path, cache_dir):
    """`boxes=harness` passes --box from the harness's landmarks (no s3fd.pth in the checkout); rows say so and carry
    the checkpoint's sha256; with S3FD the detector's hash joins it. The env option takes a dict."""
    repo = make_checkout(tmp_path / "src", W2L)
    (repo / "checkpoints/wav2lip.pth").write_bytes(b"wav2lip weights")
    (repo / "face_detection/detection/sfd/s3fd.pth").unlink()
    common = ["run", "--suite", "demo", "suite.n_clips=1", f"cache_dir={cache_dir}", "runtime.progress=false", "--methods",
              f"gt,{W2L}", "--metrics", "psnr", f"{W2L}.repo={repo}", f"{W2L}.python={sys.executable}"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "harness"), f"{W2L}.boxes=harness"]) == 0
    (call,) = calls(repo)
    box = [int(v) for v in call["argv"][call["argv"].index("--box") + 1 :][:4]]
    row = next(r for r in read_rows(tmp_path / "harness" / "results.jsonl") if r.method == W2L)
    assert row.status == "ok" and row.method_weights_sha == hashlib.sha256(b"wav2lip weights").hexdigest()
    assert f"faces: harness box top {box[0]} bottom {box[1]} left {box[2]} right {box[3]}" in row.note
    from stsa_bench.core.media import decode_video

    (kept,) = (tmp_path / "harness" / "generated" / W2L).glob("*.mp4")
    h, w = decode_video(kept, 25)[0].shape[1:3]
    assert 0 <= box[0] < box[1] <= h and 0 <= box[2] < box[3] <= w and (box[1] - box[0]) * (box[3] - box[2]) < h * w / 2

    with pytest.raises(ConfigError, match="no face_detection/detection/sfd/s3fd.pth"):
        build_method(W2L, options(W2L, repo))
    (repo / "face_detection/detection/sfd/s3fd.pth").write_bytes(b"s3fd weights")
    assert main([*common, "--out", str(tmp_path / "s3fd"), f"{W2L}.env={{FAKE_MODE: fail}}"]) == 0
    row = next(r for r in read_rows(tmp_path / "s3fd" / "results.jsonl") if r.method == W2L)
    sha = [hashlib.sha256(b).hexdigest()[:16] for b in (b"wav2lip weights", b"s3fd weights")]
    assert row.status == "failed" and "exited with 3" in row.error and row.method_weights_sha == "+".join(sha)


def test_harness_box_is_the_landmarks_union_plus_pads():
    lm = np.full((3, 478, 3), np.nan, np.float32)
    lm[0, :, :2] = np.linspace([0.3, 0.2], [0.6, 0.7], 478)
    lm[2, :, :2] = np.linspace([0.35, 0.25], [0.65, 0.75], 478)
    (top, bottom, left, right), spread = harness_box(lm, 200, 100, (0, 10, 0, 0))
    assert (top, bottom, left, right) == (20, 85, 60, 130) and spread == pytest.approx(70 * 55 / (60 * 50), rel=1e-3)
    assert harness_box(lm, 200, 100, (5, 40, 70, 80))[0] == (15, 100, 0, 200), "pads clip to the frame"


def test_commit_setting_ffmpeg_setting_and_folder_checkpoints(tmp_path):
    repo = make_checkout(tmp_path / "src", W2L)
    assert build_method(W2L, options(W2L, repo, commit="0123456789abcdef")).version == f"{W2L}@0123456789ab"
    with pytest.raises(ConfigError, match=rf"{W2L}.commit=ffff: the checkout .* is at 0123456789ab"):
        build_method(W2L, options(W2L, repo, commit="ffff"))
    import shutil

    shutil.rmtree(repo / ".git")
    assert build_method(W2L, options(W2L, repo)).version == f"{W2L}@unknown"
    assert build_method(W2L, options(W2L, repo, commit="5c90fa9b4a2c2a37d0b4ebf7633ac41534eb9941")).version == f"{W2L}@5c90fa9b4a2c"
    with pytest.raises(ConfigError, match=rf"{W2L} needs ffmpeg .*: ffmpeg=/no/ffmpeg is not an executable; install ffmpeg"):
        build_method(W2L, options(W2L, repo, ffmpeg="/no/ffmpeg"))

    folder = tmp_path / "ckpt"
    (folder / "demo").mkdir(parents=True)
    (folder / "demo" / "latest_net_G.pth").write_bytes(b"g")
    (folder / "demo" / "opt.txt").write_text("not a checkpoint")
    first = weights_sha([folder])
    (folder / "demo" / "opt.txt").write_text("changed")
    assert weights_sha([folder]) == first, "only checkpoint files count"
    (folder / "demo" / "latest_net_G.pth").write_bytes(b"h")
    assert weights_sha([folder]) != first and weights_sha([tmp_path / "none"]) is None


def test_torch_hub_files_the_code_loads_are_required_and_hashed(tmp_path):
    """IP-LAP's renderer builds a pretrained VGG19 and its paste-back runs face_alignment: files from the torch hub cache,
    which the code would download at run time. They must be in place, and count in method_weights_sha."""
    repo = make_checkout(tmp_path / "src", "iplap")
    vgg = tmp_path / "src" / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    vgg.unlink()
    with pytest.raises(ConfigError, match=r"iplap: no .*vgg19-dcbb9e9d.pth: IP-LAP's code loads it from the torch hub cache .*"
                       r"download https://download.pytorch.org/models/vgg19-dcbb9e9d.pth there"):  # fmt: skip
        build_method("iplap", options("iplap", repo))
    vgg.write_bytes(b"vgg")
    m = build_method("iplap", options("iplap", repo))
    assert len(m.weights_sha.split("+")) == 5 and m.weights_sha.split("+")[2] == hashlib.sha256(b"vgg").hexdigest()[:16]
