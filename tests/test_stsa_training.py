"""STSA training (issue 7): stages, resume, data parallelism, export, `stsa-bench train` and `ablate`.

The tiny configuration (configs/size/tiny.yaml: renderer channels / 8, batch 1) keeps these on CPU.
VGG-19 and the lip-sync expert have no real weights here: the perceptual loss runs with random VGG
weights (`random_vgg=true`) and the expert is the Wav2Lip SyncNet_color with golden-formula weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stsa.training.data import ClipArrays, WindowDataset, step_indices
from stsa.training.engine import Engine, TrainOptions
from stsa.training.tasks import TaskSpec, build_task
from stsa_bench.cli import compose
from stsa_bench.core.errors import ConfigError
from stsa_bench.train import load_clip_arrays, run_training, train_config_from_dict

TWO_CLIPS = "suite.include=[smeetrs__deep_avsr__0000*]"
QUIET = ["train.progress=false", "train.tensorboard=false"]


def tiny(*overrides: str, cache: Path | None = None) -> list[str]:
    base = ["size=tiny", "wav2vec2=tiny", "random_vgg=true", *QUIET]
    return base + ([f"cache_dir={cache}"] if cache else []) + list(overrides)


def synthetic_clip(n: int = 12, seed: int = 0) -> ClipArrays:
    """Random arrays of the right shapes and ranges (no media needed)."""
    rng = np.random.default_rng(seed)
    return ClipArrays(
        f"synthetic{seed}",
        rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
        rng.uniform(0.05, 0.95, (n, 131, 2)).astype(np.float32),
        rng.uniform(0.05, 0.95, (n, 2, 57)).astype(np.float32),
        rng.standard_normal((2 * n + 8, 768)).astype(np.float32),
        rng.standard_normal((n, 80, 16)).astype(np.float32),
    )


def synthetic_task(stage: str, seed: int = 0, slim: int = 8):
    from baselines.wav2lip_model import SyncNetColor

    torch.manual_seed(seed)
    expert = SyncNetColor() if stage != "guidance" else None
    return build_task(TaskSpec(stage, slim=slim, disc_width=16 if slim > 1 else 64), expert)


def narrow_vgg19(weights=None):
    """VGG-19's feature stack with its layer layout (the perceptual loss's layer indices) at 1/16 of the
    channels: the perceptual loss's code path at a fraction of the cost. Tests train with random VGG
    weights anyway; on this 2-core CPU (no avx512_bf16, so bf16 convolutions are emulated) one bf16
    perceptual loss of 5 frames took 151 s at full width, 2.5 s in fp32."""
    from types import SimpleNamespace

    from torchvision.models.vgg import cfgs, make_layers

    return SimpleNamespace(features=make_layers([c if c == "M" else c // 16 for c in cfgs["E"]]))


@pytest.fixture
def narrow_vgg(monkeypatch):
    import torchvision.models

    monkeypatch.setattr(torchvision.models, "vgg19", narrow_vgg19)


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path):
    """Training checkpoints are large (a guidance last.pt is about 580 MB): remove them after each test."""
    yield
    for path in tmp_path.rglob("*.pt*"):
        path.unlink()


@pytest.fixture(scope="module")
def expert_path(shared, make_weights, tmp_path_factory) -> Path:
    """Wav2Lip SyncNet_color with golden-formula weights, saved like lipsync_expert.pth."""
    state = make_weights.golden_state_dict_from_manifest(str(shared / "golden" / "wav2lip_syncnet_color" / "manifest.json"))
    path = tmp_path_factory.mktemp("expert") / "lipsync_expert.pth"
    torch.save({"state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def two_clips(shared, cache_dir):
    cfg = train_config_from_dict(compose(tiny(f"data.root={shared / 'clips'}", TWO_CLIPS, cache=cache_dir), "train"))
    arrays, failed = load_clip_arrays(cfg, lambda m: None)
    assert [a.clip_id for a in arrays] == ["smeetrs__deep_avsr__00001", "smeetrs__deep_avsr__00004"] and not failed
    return arrays


# ---------------------------------------------------------------------------------------------- data


def test_windows_depend_only_on_the_index_and_cover_the_clip():
    ds = WindowDataset([synthetic_clip(12, 0), synthetic_clip(9, 1)], T=5, n_refs=5, seed=3)
    a, b = ds[17], ds[17]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["faces"].shape == (5, 3, 128, 128) and a["ref_imgs"].shape == (5, 3, 128, 128)
    assert a["audio"].shape == (5, 768, 10) and a["mel"].shape == (1, 80, 16)
    assert 0 <= a["faces"].min() and a["faces"].max() <= 1
    assert not torch.equal(ds[17]["faces"], ds[18]["faces"])
    long = WindowDataset([synthetic_clip(40, 2)], seed=0)
    labels = [float(long[i]["sync_label"]) for i in range(200)]
    assert 0.35 < np.mean(labels) < 0.65
    short = WindowDataset([synthetic_clip(9, 3)], seed=0)
    assert all(float(short[i]["sync_label"]) == 1 for i in range(20)), "no window 5 frames away: positives only"


def test_step_indices_are_the_same_for_accumulation_and_data_parallel_ranks():
    one_process = [step_indices(4, micro, 2, 2) for micro in range(2)]
    two_ranks = [step_indices(4, rank, 2, 2) for rank in range(2)]
    assert one_process == two_ranks == [[16, 17], [18, 19]]


def test_content_heatmap_target_is_lips_plus_jaw(lrs2_sample):
    from stsa import pipeline as P
    from stsa.training.data import JAW_ROWS, LIP_ROWS, clip_arrays
    from stsa_bench.core.faces import fill_missing_frames

    n = 6
    lm = fill_missing_frames(lrs2_sample.landmarks[:n])
    feats = np.random.default_rng(0).standard_normal((20, 768)).astype(np.float32)
    c = clip_arrays("x", lrs2_sample.frames[:n, ..., ::-1], lm, feats)
    assert c.crops.shape == (n, 128, 128, 3) and c.content_points.shape == (n, 2, 57)
    assert 0 <= c.content_points.min() and c.content_points.max() <= 1
    h = c.content_heatmaps(slice(0, n))
    pts = c.content_points.transpose(0, 2, 1)
    assert np.array_equal(h, P.draw_heatmaps(pts, LIP_ROWS) + P.draw_heatmaps(pts, JAW_ROWS))
    assert len(LIP_ROWS) == 40 and len(JAW_ROWS) == 16, "lip contours and the jaw line"
    assert h.max() <= 2 and (h == 1).sum() > 100
    assert h[:, 64:].sum() / h.sum() > 0.6, "lip and jaw sketches lie in the lower half of the crop"
    assert np.array_equal(c.audio(slice(2, 5)), P.audio_windows(feats, n)[2:5])
    assert np.array_equal(c.pose_heatmaps([1]), P.pose_heatmaps(c.full_points[[1], :76]))


# ------------------------------------------------------------------------------------------- losses


def test_mine_estimate_rises_when_the_features_are_dependent():
    from stsa.renderer import MINE
    from stsa.training.renderer_losses import mine_loss

    def estimate(dependent: bool) -> float:
        torch.manual_seed(0)
        mine = MINE(16, 32)
        opt = torch.optim.Adam(mine.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(1)
        for _ in range(300):
            x = torch.randn(64, 8, generator=g)
            y = x + 0.3 * torch.randn(64, 8, generator=g) if dependent else torch.randn(64, 8, generator=g)
            loss = mine_loss(mine, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x = torch.randn(4096, 8, generator=g)
        y = x + 0.3 * torch.randn(4096, 8, generator=g) if dependent else torch.randn(4096, 8, generator=g)
        with torch.no_grad():
            return float(-mine_loss(mine, x, y))

    independent, dependent = estimate(False), estimate(True)
    assert abs(independent) < 0.1
    assert dependent > 1.0 > independent + 0.5


def test_sync_loss_is_the_wav2lip_expert_bce():
    from baselines.wav2lip_model import SyncNetColor
    from stsa.training.losses import expert_faces, sync_loss

    torch.manual_seed(0)
    expert = SyncNetColor().eval()
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 5, 3, 128, 128)
    x = expert_faces(faces)
    assert x.shape == (2, 15, 48, 96)
    a, v = expert(mel, x)
    p = torch.nn.functional.cosine_similarity(a, v)
    expected = torch.nn.functional.binary_cross_entropy(p, torch.ones(2))
    assert torch.allclose(sync_loss(expert, mel, faces), expected, atol=1e-6)


# ------------------------------------------------------------------------------------------- stages

# stage -> (steps, {logged loss: required fall}, extra overrides); training cycles over 4 fixed windows of
# the two clips. A fall f means: mean over the last 3 steps < (1 - f) x mean over the first 3.
# Measured on the development machine (2-core CPU): guidance 0.31x, synthesis perc 0.73x,
# finetune perc 0.80x and heatmap loss 0.65x, syncnet 0.03x.
OVERFIT = {
    "guidance": (20, {"total": 0.5}, []),
    "synthesis": (12, {"perc": 0.15}, []),
    "finetune": (8, {"perc": 0.1, "g_total": 0.2}, []),
    "syncnet": (20, {"sync_bce": 0.5}, ["train.batch_size=4", "train.lr=1e-4"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(OVERFIT))
def test_each_stage_overfits_two_shared_clips(stage, two_clips, expert_path, tmp_path, narrow_vgg):
    from stsa_bench.train import sync_expert

    steps, falls, extra = OVERFIT[stage]
    overrides = tiny(f"stage={stage}", f"train.steps={steps}", f"sync_expert={expert_path}", *extra)
    cfg = train_config_from_dict(compose(overrides, "train"))
    torch.manual_seed(0)
    task = build_task(TaskSpec(stage, cfg.model.slim, cfg.weights, cfg.ablation, cfg.model.disc_width), sync_expert(cfg))
    engine = Engine(task, WindowDataset(two_clips, seed=0, pool=4), cfg.options, tmp_path, log=lambda m: None)
    history = engine.fit()
    assert len(history) == steps
    for key, fall in falls.items():
        losses = [h[key] for h in history]
        assert all(np.isfinite(losses))
        first, last = np.mean(losses[:3]), np.mean(losses[-3:])
        assert last < (1 - fall) * first, f"{stage}: {key} {first:.4f} -> {last:.4f} ({losses})"


# ------------------------------------------------------------------------------------------- resume


def _params(models) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": t.detach().clone() for k, m in models.items() for n, t in m.state_dict().items()}


def test_synthesis_resume_continues_bit_identically(tmp_path, narrow_vgg):
    """Generator + discriminator + sync expert: 4 steps straight == 2 steps, a new process state, 2 more."""
    opts = TrainOptions(steps=4, batch_size=1, lr=1e-3, lr_disc=1e-3, ckpt_every=2, progress=False, tensorboard=False)
    data = WindowDataset([synthetic_clip(10, 0), synthetic_clip(8, 1)], seed=0)
    straight = Engine(synthetic_task("synthesis", slim=32), data, opts, tmp_path / "a", log=lambda m: None)
    full = straight.fit()
    first = Engine(synthetic_task("synthesis", slim=32), data, opts, tmp_path / "b", log=lambda m: None)
    assert len(first.fit(stop_at=2)) == 2
    task = synthetic_task("synthesis", slim=32)  # the same expert file; trained weights come from the checkpoint:
    with torch.no_grad():
        for m in task.models.values():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
    torch.manual_seed(1234)  # whatever the global RNG holds when the new run starts
    resumed = Engine(task, data, opts, tmp_path / "b", log=lambda m: None)
    assert resumed.step == 2
    rest = resumed.fit()
    assert [h["step"] for h in rest] == [3, 4]
    for a, b in zip(full[2:], rest):
        assert {k: v for k, v in a.items() if k != "samples_per_s"} == {k: v for k, v in b.items() if k != "samples_per_s"}
    pa, pb = _params(straight.models), _params(resumed.models)
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.slow
def test_killed_training_resumes_with_identical_losses(two_clips, shared, cache_dir, tmp_path):
    """`stsa-bench train` killed (SIGKILL) after a checkpoint, then run again, logs the same losses as an uninterrupted run."""
    common = tiny(f"data.root={shared / 'clips'}", TWO_CLIPS, "stage=guidance", "train.steps=8", "train.ckpt_every=2",
                  cache=cache_dir)
    ref = run_training(train_config_from_dict(compose(common + [f"out={tmp_path / 'ref'}"], "train")), log=lambda m: None)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "stsa_bench.cli", "train", *common, f"out={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
    try:
        deadline = time.time() + 300
        while not (out / "last.pt").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    step_at_kill = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 2 <= step_at_kill < 8
    resumed = run_training(train_config_from_dict(compose(common + [f"out={out}"], "train")), log=lambda m: None)
    assert resumed.step == 8 and resumed.history[0]["step"] == step_at_kill + 1
    by_step = {h["step"]: h for h in ref.history}
    for h in resumed.history:
        assert h["total"] == by_step[h["step"]]["total"] and h["heatmap"] == by_step[h["step"]]["heatmap"]
    import csv

    with (out / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert [float(r["total"]) for r in rows] == [h["total"] for h in ref.history]


def test_resuming_with_other_settings_is_refused(tmp_path):
    from stsa_bench.train import save_config

    cfg = train_config_from_dict(compose(tiny(f"out={tmp_path}"), "train"))
    save_config(cfg)
    save_config(train_config_from_dict(compose(tiny(f"out={tmp_path}", "train.steps=7", "stop_at=3"), "train")))
    with pytest.raises(ConfigError, match="another config"):
        save_config(train_config_from_dict(compose(tiny(f"out={tmp_path}", "train.lr=0.5"), "train")))


# ---------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, port: int, stage: str, out: str) -> None:
    import torchvision.models

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torchvision.models.vgg19 = narrow_vgg19  # as the narrow_vgg fixture in the parent process
    opts = TrainOptions(steps=3, batch_size=1, accumulate=1, lr=1e-4, lr_disc=1e-4, progress=False, tensorboard=False, device="cpu")
    data = WindowDataset([synthetic_clip(10, 0), synthetic_clip(8, 1)], seed=0)
    engine = Engine(synthetic_task(stage, slim=32), data, opts, Path(out) / "ddp", log=lambda m: None)
    history = engine.fit()
    if rank == 0:
        (Path(out) / "ddp.json").write_text(json.dumps(history))
        torch.save(_params(engine.models), Path(out) / "ddp_params.pt")
    import torch.distributed as dist

    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["guidance", "synthesis"])
def test_ddp_two_gloo_processes_match_one_process(stage, tmp_path, narrow_vgg):
    """2 processes x 1 window == 1 process accumulating 2 windows (same global batch; per-window BatchNorm)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, stage, str(tmp_path)), nprocs=2, join=True)
    ddp = json.loads((tmp_path / "ddp.json").read_text())

    opts = TrainOptions(steps=3, batch_size=1, accumulate=2, lr=1e-4, lr_disc=1e-4, progress=False, tensorboard=False, device="cpu")
    data = WindowDataset([synthetic_clip(10, 0), synthetic_clip(8, 1)], seed=0)
    single = Engine(synthetic_task(stage, slim=32), data, opts, tmp_path / "single", log=lambda m: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers: the same kernels
    try:
        one = single.fit()
    finally:
        torch.set_num_threads(threads)
    keys = [k for k in one[0] if k not in ("samples_per_s", "step", "lr") and not k.endswith("grad_norm")]
    for a, b in zip(one, ddp):
        for k in keys:
            assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(a[k])), (stage, a["step"], k, a[k], b[k])
    pa, pb = _params(single.models), torch.load(tmp_path / "ddp_params.pt", weights_only=True)
    trainable = {f"{k}.{n}" for k, m in single.models.items() for n, p in m.named_parameters() if p.requires_grad}
    worst = max(float((pa[k] - pb[k]).abs().max()) for k in trainable)
    assert worst < 1e-4, worst


# ------------------------------------------------------------------------------------ export, configs


@pytest.mark.slow
def test_cli_train_writes_logs_checkpoint_and_export(shared, cache_dir, tmp_path):
    from stsa_bench.cli import main

    out = tmp_path / "run"
    args = ["train", "stage=guidance", *tiny(f"data.root={shared / 'clips'}", TWO_CLIPS, "train.steps=2", cache=cache_dir)]
    args = [a for a in args if a != "train.tensorboard=false"] + [f"out={out}"]
    assert main(args) == 0
    assert (out / "last.pt").is_file() and (out / "config.json").is_file()
    assert (out / "export" / "heatmap_weight.pth").is_file() and (out / "export" / "keypoint_extractor.pth").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and summary["samples_per_s"] > 0 and summary["clips"] == 2
    assert (out / "train_log.csv").read_text().splitlines()[0].startswith("step,")
    assert list((out / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard event file"


@pytest.mark.slow
def test_ablate_trains_every_variant_and_writes_table3(shared, cache_dir, expert_path, tmp_path, narrow_vgg):
    from stsa_bench.cli import main

    out = tmp_path / "ablate"
    args = ["ablate", "--suite", "demo", "suite=folder", *tiny(f"data.root={shared / 'clips'}", TWO_CLIPS, cache=cache_dir),
            f"sync_expert={expert_path}", "steps.guidance=1", "steps.synthesis=1", "steps.finetune=1",
            "evaluation.suite_options={n_clips: 1, seconds: 0.4, size: 128}", "evaluation.metrics=[psnr,ssim]", f"out={out}"]
    assert main(args) == 0
    md = (out / "table3.md").read_text()
    for v in ("wo_cil", "wo_sync", "wo_spatial", "wo_temporal", "wo_ft", "w_ft"):
        assert (out / "train" / v / "export" / "face_weight.pth").is_file()
        assert f"| {v} |" in md
    assert "| w_ft | PSNR |" in md and "31.73" in md, "the paper's Table III beside ours"
    assert "\\begin{table" in (out / "table3.tex").read_text() and "wo_temporal" in (out / "table3.csv").read_text()
    rows = [json.loads(line) for line in (out / "eval" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    face = torch.load(out / "train" / "wo_spatial" / "export" / "face_weight.pth", weights_only=True)
    assert face["stsa_bench"]["use_spatial"] is False
    assert main(args) == 0, "a second run resumes: nothing left to train or evaluate"

    given = out / "given"
    ckpt = {v: (out / "train" / v / "export") for v in ("wo_cil", "w_ft")}
    spec = ", ".join(f"{v}: {{heatmap: '{d / 'heatmap_weight.pth' if v == 'w_ft' else out / 'train' / 'guidance' / 'export' / 'heatmap_weight.pth'}', "
                     f"renderer: '{d / 'face_weight.pth'}'}}" for v, d in ckpt.items())
    args2 = [a for a in args if not a.startswith("out=")] + [f"out={given}", "variants=[wo_cil,w_ft]", f"checkpoints={{{spec}}}"]
    assert main(args2) == 0
    assert not (given / "train").exists(), "given checkpoints are evaluated, not trained"
    rows = [json.loads(line) for line in (given / "eval" / "results.jsonl").read_text().splitlines()]
    ours = {(r["method"], r["metric"]): r["value"] for r in rows}
    before = {(r["method"], r["metric"]): r["value"] for r in (json.loads(x) for x in (out / "eval" / "results.jsonl").read_text().splitlines())}
    assert ours == {k: v for k, v in before.items() if k[0] in ("wo_cil", "w_ft")}, "the same weights give the same numbers"


STAGE_LOSSES = {
    "guidance": {"heatmap", "keypoint", "landmark", "temporal", "extractor", "total"},
    "synthesis": {"perc", "gan", "feat", "sync", "mi", "disc", "total"},
    "finetune": {"perc", "gan", "feat", "sync", "mi", "disc", "g_total", "total"},
    "syncnet": {"sync_bce"},
}


@pytest.mark.parametrize("precision,stage", [("bf16", s) for s in ("guidance", "synthesis", "finetune", "syncnet")] + [("fp16", "guidance")])
def test_mixed_precision_steps_run(precision, stage, tmp_path, narrow_vgg):
    """Autocast through every loss of each stage, here on CPU; fp16 also runs the grad scaler (on the guidance
    stage: CPU float16 kernels are emulated, and a synthesis step took 90 s here). Without avx512_bf16 a CPU
    runs bf16 convolutions in torch's slow reference kernel (a synthesis step at channels / 8 took 120 s
    here), so the renderer is at channels / 32 and VGG narrow."""
    opts = TrainOptions(steps=1, batch_size=4 if stage == "syncnet" else 1, progress=False, tensorboard=False, precision=precision)
    engine = Engine(synthetic_task(stage, slim=32), WindowDataset([synthetic_clip(8, 0)], seed=0), opts, tmp_path, log=lambda m: None)
    (logs,) = engine.fit()
    losses = {k: v for k, v in logs.items() if not k.endswith("grad_norm")}  # fp16: the scaler may skip a step (inf norm)
    assert all(np.isfinite(v) for v in losses.values())
    assert STAGE_LOSSES[stage] <= set(losses), (stage, sorted(losses))
    assert engine.scaler.is_enabled() == (precision == "fp16")


def test_progress_in_a_log_that_is_not_a_terminal_is_one_line_per_log_every(tmp_path, narrow_vgg, capsys):
    """Issue 30: training's bar wrote its carriage-return updates into logs that are not a terminal (a CI or Slurm log
    got one line of 20 KB for 100 steps); without a terminal there is no bar, and a line every log_every steps."""
    lines: list[str] = []
    opts = TrainOptions(steps=4, batch_size=1, lr=1e-3, lr_disc=1e-3, ckpt_every=4, progress=True, tensorboard=False, log_every=2)
    data = WindowDataset([synthetic_clip(10, 0), synthetic_clip(8, 1)], seed=0)
    Engine(synthetic_task("synthesis", slim=32), data, opts, tmp_path / "a", log=lines.append).fit()
    assert "\r" not in capsys.readouterr().err
    progress = [line for line in lines if " step " in line]
    assert [line.split(":")[0] for line in progress] == ["SynthesisTask step 2/4", "SynthesisTask step 4/4"]
