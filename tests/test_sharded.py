"""Sharded runs under a real torchrun (2 gloo ranks on the CPU): same rows as one process, each clip
scored once, one summary, resumable after a rank is killed; and the clip assignment itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stsa_bench.core.ranks import Rank, shard
from stsa_bench.core.results import POOLED_CLIP, read_rows

METHODS = ["--methods", "gt,static,mouth_blur", "--metrics", "psnr,ssim,fid,lse_c,lse_d,lipmd,dme_dis"]


def cli(*args: str, nproc: int = 1) -> list[str]:
    head = [sys.executable, "-m", "stsa_bench.cli"]
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "stsa_bench.cli"]
    return [*head, *args]


@pytest.mark.parametrize("visible, expected", [(8, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]), (1, ["cuda:0"] * 4), (2, ["cuda:0", "cuda:1"] * 2)])
def test_each_rank_takes_a_visible_gpu(monkeypatch, visible, expected):
    """runtime.device=auto under torchrun: cuda:LOCAL_RANK; a launcher that shows each process only its own GPU
    (cuda:0) or fewer GPUs than ranks gets them in turn instead of a device index that does not exist."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    assert [Rank(r, 4, r).device("auto") for r in range(4)] == expected
    assert Rank(0, 1, 0).device("auto") == "cuda" and Rank(1, 4, 1).device("cpu") == "cpu"


def test_a_rank_that_cannot_start_stops_every_rank(monkeypatch):
    """agree(): the failed rank raises its own error, the others one naming it (not a wait at the next barrier)."""
    from stsa_bench.core.errors import ConfigError
    from stsa_bench.core.ranks import agree

    monkeypatch.setattr(Rank, "gather", lambda self, obj: [None, "run folder x is in use"] if obj is None else [None, obj])
    with pytest.raises(ConfigError, match="rank 1 could not start: run folder x is in use"):
        agree(Rank(0, 2, 0), None)
    with pytest.raises(ValueError, match="own"):
        agree(Rank(1, 2, 1), ValueError("own"))
    monkeypatch.setattr(Rank, "gather", lambda self, obj: [None, None])
    agree(Rank(0, 2, 0), None)
    agree(Rank(), None)


@pytest.mark.slow
def test_a_busy_run_folder_stops_both_ranks_at_once(tmp_path):
    """Rank 0 finds the run folder held by another process: both ranks exit (2) at once with one line each,
    instead of rank 1 waiting at the first barrier (72 h)."""
    from stsa_bench.core.paths import owner_lock

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with owner_lock(out / ".run.lock", f"run folder {out}"):  # a hang (rank 1 at a barrier) fails by the timeout
        proc = subprocess.run(cli("run", "--suite", "demo", "--out", str(out), "suite.n_clips=2", "runtime.progress=false",
                                  "--methods", "gt", "--metrics", "psnr", nproc=2),
                              capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode != 0
    assert f"run folder {out} is in use by another stsa-bench process" in proc.stderr
    assert "rank 0 could not start: run folder" in proc.stderr
    assert "stsa_bench/" not in proc.stderr, "one line per rank; the only traceback is torchrun's own failure report"


def test_shard_balances_frames_and_is_deterministic():
    frames = {"a": 120, "b": 75, "c": 75, "d": 75, "e": 10, "f": 0}
    parts = shard(list(frames), 2, frames.get, str)
    assert parts == shard(list(frames), 2, frames.get, str)
    assert sorted(x for p in parts for x in p) == sorted(frames), "every item exactly once"
    loads = [sum(frames[x] for x in p) for p in parts]
    assert max(loads) - min(loads) <= 75 and parts[0][0] == "a"
    assert all(p == sorted(p) for p in parts), "each rank keeps the input order"
    assert shard(["x"], 3, lambda _: 1, str) == [["x"], [], []]


def test_rank_device_and_single_process_defaults(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    from stsa_bench.core.ranks import current_rank

    assert current_rank() == Rank() and not Rank().sharded and Rank().gather(3) == [3]
    assert Rank(1, 2, 1).device("cpu") == "cpu"


def test_every_command_leaves_the_process_group(monkeypatch, tmp_path):
    """The CLI leaves torch.distributed's group on every exit path (a rank that returned early and never left it
    aborted at interpreter exit, which failed the torchrun job), and release() is a no-op outside torchrun."""
    import stsa_bench.core.ranks as ranks
    from stsa_bench.cli import main

    calls = []
    monkeypatch.setattr(ranks, "release", lambda: calls.append(1))
    assert main(["ls", "metrics"]) == 0
    assert main(["run", "--suite", "no_such_suite", "--out", str(tmp_path)]) == 2
    assert len(calls) == 2
    monkeypatch.undo()
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ranks.release()


@pytest.mark.slow
def test_two_ranks_give_the_rows_of_one_process(shared, golden_path, cache_dir, tmp_path):
    """The demo suite's talking clips (2 x 30 frames: on 2 CPU cores two LipNet clips made this test take
    3 minutes, nearly all of it in FID's and LSE's forward passes, with one thread per process)."""
    common = ["run", "--suite", "demo", "suite.n_clips=2", "suite.seconds=1.2", f"cache_dir={cache_dir}",
              f"weights.syncnet={golden_path}", f"weights.fid={shared / 'weights' / 'pt_inception-2015-12-05_convonly.pth'}",
              "runtime.progress=false", *METHODS]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per process in both runs: the same float kernels
    one = subprocess.run(cli(*common, "--out", str(tmp_path / "one")), capture_output=True, text=True, env=env, timeout=900)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(cli(*common, "--out", str(tmp_path / "two"), nproc=2), capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("# stsa-bench: demo") == 1, "one summary, from rank 0"

    lines = (tmp_path / "two" / "results.jsonl").read_text().splitlines()
    rows_two = [json.loads(x) for x in lines]
    keys = [(r["clip"], r["method"], r["metric"]) for r in rows_two]
    assert len(keys) == len(set(keys)) == 2 * 3 * 5 + 3 * 2, "each (clip, method, metric) exactly once"
    a = {r.key: r for r in read_rows(tmp_path / "one" / "results.jsonl")}
    b = {r.key: r for r in read_rows(tmp_path / "two" / "results.jsonl")}
    assert a.keys() == b.keys() and all(r.status == "ok" for r in b.values()), [r.error for r in b.values() if r.error]
    for k, r in a.items():
        if k[1] == POOLED_CLIP:
            assert b[k].value == pytest.approx(r.value, rel=1e-9, abs=1e-12) and b[k].n_frames == r.n_frames, k
        else:
            assert b[k].value == r.value and b[k].n_frames == r.n_frames, k
    timing = json.loads((tmp_path / "two" / "timing.json").read_text())
    assert timing["world_size"] == 2 and [x["rank"] for x in timing["ranks"]] == [0, 1]
    assert all(x["stages"]["decode"]["calls"] >= 1 for x in timing["ranks"]), "both ranks scored clips"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the rank processes through /proc (Linux)")
def test_a_killed_rank_resumes_without_duplicates(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--suite", "demo", "--out", str(out), f"cache_dir={cache}", "suite.n_clips=4", "runtime.progress=false",
            "--methods", "gt,static,shift", "--metrics", "psnr,ssim,dme_dis"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    prep = subprocess.run(cli("prepare", "--suite", "demo", f"cache_dir={cache}", "suite.n_clips=4", nproc=2), env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert prep.returncode == 0 and "4 clips, 240 frames, 0 cache hits, 0 failed" in prep.stdout, prep.stdout + prep.stderr[-2000:]
    assert sorted(line.split()[0] for line in prep.stdout.splitlines() if line.startswith("demo_")) == [f"demo_0{i}" for i in range(4)]
    proc = subprocess.Popen(cli(*args, nproc=2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results, deadline = out / "results.jsonl", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert proc.poll() is None and len(workers) == 2, "the job finished before a rank could be killed"
    os.kill(workers[-1], signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    first = {r.key: r for r in read_rows(results)}
    assert 0 < len(first) < 4 * 3 * 2 + 3
    res = subprocess.run(cli(*args, nproc=2), capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(x) for x in results.read_text().splitlines() if x.startswith("{") and x.endswith("}")]
    final = {r.key: r for r in read_rows(results)}
    assert len(final) == 4 * 3 * 2 + 3
    per_clip = [(x["clip"], x["method"], x["metric"]) for x in lines]
    assert len(per_clip) == len(set(per_clip)), "nothing scored twice"
    assert all(final[k] == r for k, r in first.items() if k[1] != POOLED_CLIP)
