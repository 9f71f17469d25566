"""External-checkout adapters against fake checkouts that implement each method's documented CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from baselines import build_method
from baselines.base import MethodEnv
from baselines.external.base import stderr_tail
from baselines.external.dinet import write_openface_csv
from stsa_bench.cli import main
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.faces import DLIB68_FROM_FACEMESH, landmarks68
from stsa_bench.core.registry import METHODS
from stsa_bench.core.results import read_rows

FAKE = Path(__file__).with_name("fake_method.py")
ADAPTERS = sorted(n for n in METHODS.names() if (METHODS.module_of(n) or "").startswith("baselines.external."))
"""The methods registered under baselines/external/ (found by the registry's scan)."""

CHECKOUT_FILES = {
    "wav2lip_official": ["inference.py", "checkpoints/wav2lip.pth", "face_detection/detection/sfd/s3fd.pth"],
    "dinet": ["inference.py", "asserts/clip_training_DINet_256mouth.pth", "asserts/output_graph.pb"],
    "iplap": ["inference_single.py", "test/checkpoints/landmarkgenerator_checkpoint.pth", "test/checkpoints/renderer_checkpoint.pth"],
    "talklip": ["inf_demo.py", "ckpt/talklip.pt", "av_hubert/avhubert/hubert.py", "face_detection/detection/sfd/s3fd.pth"],
    "musetalk": ["scripts/__init__.py", "scripts/inference.py", "models/musetalkV15/unet.pth", "models/musetalkV15/musetalk.json",
                 "musetalk/utils/face_detection/detection/sfd/s3fd.pth"],
    "pcavs": ["inference.py", *(f"checkpoints/demo/latest_net_{n}.pth" for n in ("G", "A_sync", "E", "V"))],
    "latentsync": ["scripts/__init__.py", "scripts/inference.py", "configs/unet/stage2_512.yaml",
                   "checkpoints/latentsync_unet.pt", "checkpoints/whisper/tiny.pt"],
}  # fmt: skip
ENTRY = {"wav2lip_official": "inference.py", "dinet": "inference.py", "iplap": "inference_single.py", "talklip": "inf_demo.py",
         "musetalk": "scripts/inference.py", "pcavs": "inference.py", "latentsync": "scripts/inference.py"}  # fmt: skip


def test_adapters_are_discovered_with_their_defaults():
    assert ADAPTERS == sorted(CHECKOUT_FILES)
    assert METHODS.get("latentsync").Options().timeout_s == 3600 and METHODS.get("dinet").Options().timeout_s == 1800


def make_checkout(root: Path, method: str) -> Path:
    """A fake checkout of `method` under root, and root/torch_home holding the torch hub files the adapters need."""
    hub = root / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    for name, _ in METHODS.get(method).hub_files:
        (hub / name).write_bytes(name.encode())
    repo = root / method
    for rel in CHECKOUT_FILES[method]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(b"")
    stub = (
        "import os, runpy, sys\n"
        "os.environ['FAKE_ARGV0'] = sys.argv[0]\n"
        f"os.environ['FAKE_METHOD'] = {method!r}\n"
        f"os.environ['FAKE_CHECKOUT'] = {str(repo)!r}\n"
        f"runpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
    )
    (repo / ENTRY[method]).write_text(stub)
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / ".git" / "refs" / "heads" / "main").write_text("0123456789abcdef0123456789abcdef01234567\n")
    return repo


def expected_args(method: str, repo: Path) -> list[str]:
    """Each method's documented CLI (spec/baselines.md and the methods' READMEs), run in the job folder: its inputs and
    outputs by relative names."""
    t, a = "template.mp4", "audio.wav"
    return {
        "wav2lip_official": ["--checkpoint_path", f"{repo}/checkpoints/wav2lip.pth", "--face", t, "--audio", a,
                             "--outfile", "result.mp4", "--pads", "0", "10", "0", "0", "--wav2lip_batch_size", "128"],
        "dinet": ["--mouth_region_size", "256", "--source_video_path", t, "--source_openface_landmark_path", "template.csv",
                  "--driving_audio_path", a, "--pretrained_clip_DINet_path", f"{repo}/asserts/clip_training_DINet_256mouth.pth",
                  "--deepspeech_model_path", f"{repo}/asserts/output_graph.pb", "--res_video_dir", "out"],
        "iplap": ["--input", t, "--audio", a, "--output_dir", "out",
                  "--landmark_gen_checkpoint_path", f"{repo}/test/checkpoints/landmarkgenerator_checkpoint.pth",
                  "--renderer_checkpoint_path", f"{repo}/test/checkpoints/renderer_checkpoint.pth"],
        "talklip": ["--video_path", t, "--wav_path", a, "--ckpt_path", f"{repo}/ckpt/talklip.pt",
                    "--avhubert_root", f"{repo}/av_hubert", "--save_path", "result"],
        "musetalk": ["--inference_config", "task.yaml", "--result_dir", "out",
                     "--unet_model_path", f"{repo}/models/musetalkV15/unet.pth", "--unet_config", f"{repo}/models/musetalkV15/musetalk.json",
                     "--version", "v15", "--output_vid_name", "result.mp4"],
        "pcavs": ["--name", "demo", "--checkpoints_dir", f"{repo}/checkpoints", "--meta_path_vox", "meta.csv",
                  "--dataset_mode", "voxtest", "--netG", "modulate", "--netA", "resseaudio", "--netA_sync", "ressesync",
                  "--netD", "multiscale", "--netV", "resnext", "--netE", "fan", "--model", "av",
                  "--clip_len", "1", "--batchSize", "16", "--style_dim", "2560", "--nThreads", "4", "--input_id_feature",
                  "--generate_interval", "1", "--style_feature_loss", "--use_audio", "1", "--noise_pose", "--driving_pose",
                  "--gen_video", "--generate_from_audio_only", "--gpu_ids", "0"],
        "latentsync": ["--unet_config_path", f"{repo}/configs/unet/stage2_512.yaml", "--inference_ckpt_path", f"{repo}/checkpoints/latentsync_unet.pt",
                       "--inference_steps", "20", "--guidance_scale", "1.5", "--video_path", t, "--audio_path", a,
                       "--video_out_path", "result.mp4", "--seed", "1247", "--temp_dir", "tmp", "--enable_deepcache"],
    }[method]  # fmt: skip


def options(method: str, repo: Path, **extra) -> dict:
    env = {"TORCH_HOME": str(repo.parent / "torch_home"), **extra.pop("env", {})}
    opts = {"repo": str(repo), "python": sys.executable, "env": env, **extra}
    if method == "talklip":
        opts.update(checkpoint="ckpt/talklip.pt", avhubert_root="av_hubert")
    return opts


def calls(repo: Path) -> list[dict]:
    path = repo / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.parametrize("method", sorted(ADAPTERS))
def test_adapter_runs_documented_cli_and_normalises(method, tmp_path, demo_sample):
    repo = make_checkout(tmp_path / "src", method)
    run_dir = tmp_path / "run"
    m = build_method(method, options(method, repo), MethodEnv("cpu", {}, run_dir))
    gen = m.generate(demo_sample)

    (call,) = calls(repo)
    job = m.job_dir(demo_sample)
    assert call["argv"][1:] == expected_args(method, repo)
    assert call["argv"][0].endswith(ENTRY[method]) and Path(call["cwd"]) == job and call["python"] == sys.executable
    assert m.version == f"{method}@0123456789ab"

    n, h, w = demo_sample.frames.shape[:3]
    assert gen.frames.shape == (n, h, w, 3) and gen.audio is demo_sample.audio
    assert not job.exists() and m.kept_path(demo_sample).is_file()
    upper = slice(0, h // 2 - 8)
    if method == "pcavs":
        assert "PC-AVS crop pasted back" in gen.note and "16 frames -> 20" in gen.note
        x0 = int(demo_sample.boxes[:, 0].min() - demo_sample.boxes[:, 2].max() / 2) - 2
        assert x0 > 0 and np.array_equal(gen.frames[:16, :, :x0], demo_sample.frames[:16, :, :x0])
        assert not (repo / "results").exists(), "PC-AVS writes results/ in its working directory, the job folder"
    else:
        diff = np.abs(gen.frames[:, upper].astype(int) - demo_sample.frames[:, upper]).mean()
        assert diff < 8, "the upper half passes through (only H.264 loss)"
        inverted = np.abs(gen.frames[:17, h // 2 + 8 :].astype(int) - (255 - demo_sample.frames[:17, h // 2 + 8 :].astype(int))).mean()
        assert inverted < 8, "the method's lower half is what comes back"
    if method == "wav2lip_official":
        assert gen.note == "faces: Wav2Lip's S3FD; 17 frames -> 20" and np.array_equal(gen.frames[17], gen.frames[16])
    if method == "iplap":
        assert "right half of IP-LAP's side-by-side output" in gen.note
    if method == "dinet":
        assert "not deterministic" in gen.note

    again = build_method(method, options(method, repo), MethodEnv("cpu", {}, run_dir)).generate(demo_sample)
    assert len(calls(repo)) == 1, "a resumed run reuses the kept output"
    assert np.array_equal(again.frames, gen.frames)


def test_failure_timeout_and_silent_exit_become_clip_errors(tmp_path, demo_sample):
    repo = make_checkout(tmp_path / "src", "dinet")
    env = MethodEnv("cpu", {}, tmp_path / "run")
    failing = build_method("dinet", options("dinet", repo, env={"FAKE_MODE": "fail"}), env)
    with pytest.raises(ClipError, match=r"demo_00: dinet exited with 3: RuntimeError: CUDA out of memory \(log .*stderr.log\)"):
        failing.generate(demo_sample)
    hanging = build_method("dinet", options("dinet", repo, env={"FAKE_MODE": "sleep"}, timeout_s=2), env)
    with pytest.raises(ClipError, match="dinet timed out after 2 s"):
        hanging.generate(demo_sample)
    musetalk = make_checkout(tmp_path / "src", "musetalk")
    silent = build_method("musetalk", options("musetalk", musetalk, env={"FAKE_MODE": "silent"}), env)
    with pytest.raises(ClipError, match=r"musetalk wrote no .*/out/v15/result.mp4"):
        silent.generate(demo_sample)
    keep = build_method("dinet", options("dinet", repo, env={"FAKE_MODE": "fail"}, keep_work=True), env)
    with pytest.raises(ClipError):
        keep.generate(demo_sample)
    assert (keep.job_dir(demo_sample) / "stderr.log").is_file() and (keep.job_dir(demo_sample) / "template.csv").is_file()


def test_missing_settings_are_config_errors_naming_the_setting(tmp_path):
    repo = make_checkout(tmp_path / "src", "dinet")
    with pytest.raises(ConfigError, match=r"dinet.repo is not set: the path of a DINet checkout \(https://github.com/MRzzm/DINet\)"):
        build_method("dinet", {"python": sys.executable})
    with pytest.raises(ConfigError, match="dinet.repo=/nonexistent: no such folder"):
        build_method("dinet", {"repo": "/nonexistent", "python": sys.executable})
    with pytest.raises(ConfigError, match="dinet.python is not set"):
        build_method("dinet", {"repo": str(repo)})
    with pytest.raises(ConfigError, match="dinet.python=/no/python: not an executable"):
        build_method("dinet", {"repo": str(repo), "python": "/no/python"})
    with pytest.raises(ConfigError, match=r"dinet.deepspeech=asserts/missing.pb: no such file or folder"):
        build_method("dinet", {"repo": str(repo), "python": sys.executable, "deepspeech": "asserts/missing.pb"})
    with pytest.raises(ConfigError, match="talklip.checkpoint is not set"):
        build_method("talklip", {"repo": str(make_checkout(tmp_path / "src", "talklip")), "python": sys.executable})
    w2l = make_checkout(tmp_path / "src", "wav2lip_official")
    (w2l / "face_detection/detection/sfd/s3fd.pth").unlink()
    with pytest.raises(ConfigError, match=r"no face_detection/detection/sfd/s3fd.pth \(nor .*s3fd-619a316812.pth\): Wav2Lip's face "
                       r"detector loads the first, else downloads the second at run time"):  # fmt: skip
        build_method("wav2lip_official", options("wav2lip_official", w2l))
    hub = tmp_path / "src" / "torch_home" / "hub" / "checkpoints" / "s3fd-619a316812.pth"
    hub.write_bytes(b"s3fd")
    assert build_method("wav2lip_official", options("wav2lip_official", w2l)).loaded_files()[-1] == hub
    pcavs = make_checkout(tmp_path / "src", "pcavs")
    (pcavs / "checkpoints/demo/latest_net_E.pth").unlink()
    with pytest.raises(ConfigError, match=r"pcavs.experiment=demo: no latest_net_E.pth in .*checkpoints/demo"):
        build_method("pcavs", options("pcavs", pcavs))
    with pytest.raises(ConfigError, match=r"dinet.env must be a mapping, got 'x'"):
        build_method("dinet", options("dinet", repo) | {"env": "x"})
    with pytest.raises(ConfigError, match=r"unknown setting dinet.timeout; did you mean 'timeout_s'"):
        build_method("dinet", {"repo": str(repo), "python": sys.executable, "timeout": 3})


def test_cli_run_rows_notes_and_failures(tmp_path, cache_dir):
    """Two adapters through `stsa-bench run`: ok rows carry the normalisation note and the checkout
    commit; a failing method gets failed rows with the stderr reason and the run goes on."""
    iplap, talk = make_checkout(tmp_path / "src", "iplap"), make_checkout(tmp_path / "src", "talklip")
    out = tmp_path / "out"
    rc = main(["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache_dir}", "runtime.progress=false",
               "--methods", "gt,iplap,talklip", "--metrics", "psnr",
               f"iplap.repo={iplap}", f"iplap.python={sys.executable}", f"+iplap.env.TORCH_HOME={tmp_path / 'src' / 'torch_home'}",
               f"talklip.repo={talk}", f"talklip.python={sys.executable}", "talklip.checkpoint=ckpt/talklip.pt",
               "talklip.avhubert_root=av_hubert", "+talklip.env.FAKE_MODE=fail"])  # fmt: skip
    assert rc == 0
    rows = {(r.clip, r.method): r for r in read_rows(out / "results.jsonl")}
    for clip in ("demo_00", "demo_01", "demo_02"):
        ok = rows[(clip, "iplap")]
        assert ok.status == "ok" and "right half" in ok.note and ok.method_version == "iplap@0123456789ab"
        assert ok.value < rows[(clip, "gt")].value
        bad = rows[(clip, "talklip")]
        assert bad.status == "failed" and "talklip exited with 3: RuntimeError: CUDA out of memory" in bad.error
    assert len(list((out / "generated" / "iplap").glob("*.mp4"))) == 3


def test_openface_csv_layout(tmp_path):
    rng = np.random.default_rng(0)
    lm = rng.random((4, 478, 3)).astype(np.float32)
    lm[1] = np.nan
    pts = landmarks68(lm, 200, 100)
    assert pts.shape == (4, 68, 2) and np.allclose(pts[1], (pts[0] + pts[2]) / 2)
    assert np.allclose(pts[0, :, 0], lm[0, DLIB68_FROM_FACEMESH, 0] * 200)
    write_openface_csv(tmp_path / "x.csv", pts, np.array([True, False, True, True]), 25)
    lines = (tmp_path / "x.csv").read_text().splitlines()
    header = lines[0].split(", ")
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"] and header[5] == "x_0" and header[73] == "y_0"
    row = lines[2].split(", ")
    assert row[0] == "2" and row[4] == "0" and len(row) == 141 and float(row[73]) == pytest.approx(pts[1, 0, 1], abs=0.05)
    assert len(set(DLIB68_FROM_FACEMESH)) == 68


def test_stderr_tail_prefers_the_exception_line(tmp_path):
    log = tmp_path / "e.log"
    log.write_text(
        "step 1\r 20%|##   |\r 90%|#### |\nTraceback (most recent call last):\n  File x\nValueError: bad face\nwarning: cleanup\n"
    )
    assert stderr_tail(log) == "ValueError: bad face"
    log.write_text("just a message\n\n")
    assert stderr_tail(log) == "just a message"
    log.write_text("")
    assert stderr_tail(log) == "no stderr"


@pytest.mark.slow
def test_musetalk_runs_every_clip_in_one_process_and_falls_back_per_clip(tmp_path, cache_dir):
    """Batch mode (issue 13): one MuseTalk process for all three demo clips (one task YAML, outputs named by
    `result_name`); the task the batch lost (FAKE_FAIL_TASKS) is run again alone and scored like the others;
    `musetalk.batch=false` runs one process per clip."""
    repo = make_checkout(tmp_path / "src", "musetalk")
    common = ["run", "--suite", "demo", f"cache_dir={cache_dir}", "runtime.progress=false", "--methods", "gt,musetalk",
              "--metrics", "psnr", f"musetalk.repo={repo}", f"musetalk.python={sys.executable}"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "batch"), "+musetalk.env.FAKE_FAIL_TASKS=task_1"]) == 0
    made = calls(repo)
    assert len(made) == 2, "one batch process, then the lost clip alone"
    batch_yaml = made[0]["argv"][made[0]["argv"].index("--inference_config") + 1]
    assert batch_yaml == "tasks.yaml" and "--output_vid_name" not in made[0]["argv"]
    assert "--output_vid_name" in made[1]["argv"]
    rows = {(r.clip, r.method): r for r in read_rows(tmp_path / "batch" / "results.jsonl")}
    for clip in ("demo_00", "demo_01", "demo_02"):
        assert rows[(clip, "musetalk")].status == "ok" and rows[(clip, "musetalk")].value < rows[(clip, "gt")].value
    work = tmp_path / "batch" / "work" / "musetalk"
    assert not work.exists() or not any(work.iterdir()), "job and batch folders are removed"
    (repo / "calls.jsonl").unlink()
    assert main([*common, "--out", str(tmp_path / "single"), "musetalk.batch=false"]) == 0
    assert len(calls(repo)) == 3
    single = {(r.clip, r.method): r.value for r in read_rows(tmp_path / "single" / "results.jsonl")}
    assert single.keys() == rows.keys()
    for key, value in single.items():  # the stand-in's H.264 output is not bit-reproducible (PSNR moves by ~5e-5)
        assert value == pytest.approx(rows[key].value, rel=2e-4), key


@pytest.mark.slow
def test_pcavs_batch_is_one_meta_file_with_a_line_per_clip(tmp_path, cache_dir):
    """PC-AVS loops over the lines of its meta file with the model loaded once: one process for the three demo
    clips, each output found under its own results folder and scored."""
    repo = make_checkout(tmp_path / "src", "pcavs")
    out = tmp_path / "out"
    assert main(["run", "--suite", "demo", f"cache_dir={cache_dir}", "runtime.progress=false", "--methods", "pcavs",
                 "--metrics", "psnr", "--out", str(out), f"pcavs.repo={repo}", f"pcavs.python={sys.executable}",
                 f"+pcavs.env.TORCH_HOME={tmp_path / 'src' / 'torch_home'}"]) == 0  # fmt: skip
    made = calls(repo)
    assert len(made) == 1
    meta = made[0]["argv"][made[0]["argv"].index("--meta_path_vox") + 1]
    assert meta == "meta.csv" and "/batch-" in made[0]["cwd"]
    assert [r.status for r in read_rows(out / "results.jsonl")] == ["ok"] * 3
    assert not (repo / "results").exists(), "PC-AVS writes results/ in the batch folder"


@pytest.mark.slow
def test_a_batched_method_decodes_a_clip_only_for_what_it_still_has_to_generate(tmp_path, monkeypatch):
    """Batch staging reads the frames of a cold cache's preparation (each clip decoded once for it and once for
    scoring); a metric added to the run later decodes each clip only for scoring, and starts no process."""
    from stsa_bench.core import media

    opened = []
    frames = media.VideoChunks._frames
    record = lambda path: None if (tmp_path / "out") in Path(path).parents else opened.append(Path(path).name)  # noqa: E731
    monkeypatch.setattr(media.VideoChunks, "_frames", lambda self: (record(self.path), frames(self))[1])
    repo = make_checkout(tmp_path / "src", "musetalk")
    common = ["run", "--suite", "demo", f"cache_dir={tmp_path / 'cache'}", "suite.n_clips=2", "runtime.progress=false",
              "--methods", "musetalk", "--out", str(tmp_path / "out"), f"musetalk.repo={repo}", f"musetalk.python={sys.executable}"]  # fmt: skip
    assert main([*common, "--metrics", "psnr"]) == 0
    assert len(calls(repo)) == 1
    clips = sorted(set(opened))
    assert len(clips) == 2 and sorted(opened) == sorted(clips * 2), opened
    opened.clear()
    assert main([*common, "--metrics", "psnr,ssim"]) == 0
    assert len(calls(repo)) == 1, "the kept outputs are scored: no new process"
    assert sorted(opened) == clips, "one decode per clip, for scoring"
    rows = read_rows(tmp_path / "out" / "results.jsonl")
    assert sorted((r.metric.split("[")[0], r.status) for r in rows) == [("psnr", "ok")] * 2 + [("ssim", "ok")] * 2


def test_a_clip_whose_frames_do_not_decode_is_left_out_of_the_batch(tmp_path, demo_sample):
    """Staging reads the frames; one that fails leaves no job folder and no output (the per-clip `generate`
    reports it), and the other clips still run in one process."""
    from dataclasses import replace

    from stsa_bench.core.frames import Frames

    class Unreadable(Frames):
        def chunks(self, size, start=0, stop=None):
            raise ClipError("bad.mp4: frame 3 does not decode")

    repo = make_checkout(tmp_path / "src", "musetalk")
    m = build_method("musetalk", options("musetalk", repo), MethodEnv("cpu", {}, tmp_path / "run"))
    good = [replace(demo_sample, clip_id=f"ok{i}", sha256=f"{i}" * 64) for i in range(2)]
    bad = replace(demo_sample, clip_id="bad", sha256="b" * 64, frames=Unreadable(*demo_sample.frames.shape[:3]))
    m.generate_batch([good[0], bad, good[1]])
    assert len(calls(repo)) == 1
    assert all(m.kept_path(s).is_file() for s in good) and not m.kept_path(bad).exists() and not m.job_dir(bad).exists()


@pytest.mark.slow
def test_a_failing_batch_leaves_every_clip_to_the_per_clip_loop(tmp_path, cache_dir, monkeypatch, capsys):
    """An adapter's batch that raises (here a bug in building its arguments) costs the run one line and a traceback
    in errors.log; every clip is then generated alone and scored. A batch process that exits with an error says
    so too (no traceback: it is the method's), and the clips' own processes give their failed rows."""
    from baselines.external import musetalk

    repo = make_checkout(tmp_path / "src", "musetalk")
    args = ["run", "--suite", "demo", f"cache_dir={cache_dir}", "suite.n_clips=2", "runtime.progress=false", "--methods",
            "musetalk", "--metrics", "psnr", f"musetalk.repo={repo}", f"musetalk.python={sys.executable}"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "exits"), "+musetalk.env.FAKE_MODE=fail"]) == 0
    err = capsys.readouterr().err
    assert "musetalk: its batch failed (2 clips in one musetalk process: musetalk exited with 3: RuntimeError: CUDA out of memory" in err
    assert not (tmp_path / "exits" / "errors.log").exists() and len(calls(repo)) == 3
    rows = read_rows(tmp_path / "exits" / "results.jsonl")
    assert [r.status for r in rows] == ["failed"] * 2 and all("musetalk exited with 3" in r.error for r in rows)

    def broken(self, folder, jobs):
        raise KeyError("task_0")

    monkeypatch.setattr(musetalk.MuseTalk, "batch_argv", broken)
    (repo / "calls.jsonl").unlink()
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 0
    assert "musetalk: its batch failed (KeyError: 'task_0'); each clip without an output is generated alone" in capsys.readouterr().err
    assert "--- batch of musetalk" in (out / "errors.log").read_text()
    assert len(calls(repo)) == 2 and [r.status for r in read_rows(out / "results.jsonl")] == ["ok", "ok"]
