"""pytest-benchmark: STSA training steps on this machine's device (CPU here).

One optimiser step per round (all phases: generator and discriminator for synthesis/finetune) on
synthetic arrays of the real shapes (T=5 frame windows, 5 references), batch 1 window (syncnet: 4),
float32, torch.compile off. Sizes: tiny (renderer channels / 8, discriminator width 16) always; paper
(the official renderer, discriminator width 64) when STSA_BENCH_PAPER_SIZE=1, since a paper-size
synthesis step takes about half a minute on a 2-core CPU. The guidance network has one size."""

from __future__ import annotations

import os

import pytest

from stsa.training.data import WindowDataset
from stsa.training.engine import Engine, TrainOptions, peak_memory_mb

from .test_stsa_training import synthetic_clip, synthetic_task

PAPER_SIZE = os.environ.get("STSA_BENCH_PAPER_SIZE") == "1"


@pytest.mark.slow
@pytest.mark.parametrize("size", ["tiny", "paper"])
@pytest.mark.parametrize("stage", ["guidance", "synthesis", "finetune", "syncnet"])
def test_bench_training_step(benchmark, stage, size, tmp_path):
    if size == "paper" and stage in ("guidance", "syncnet"):
        pytest.skip(f"{stage} has one size (no renderer): see the tiny case")
    if size == "paper" and not PAPER_SIZE:
        pytest.skip("paper-size training steps take ~30 s each on a CPU: set STSA_BENCH_PAPER_SIZE=1 to run them")
    batch = 4 if stage == "syncnet" else 1
    opts = TrainOptions(steps=10**6, batch_size=batch, progress=False, tensorboard=False)
    task = synthetic_task(stage, slim=8 if size == "tiny" else 1)
    engine = Engine(task, WindowDataset([synthetic_clip(16, 0)], seed=0), opts, tmp_path, log=lambda m: None)
    batches = [{k: v.to(engine.device) for k, v in b.items()} for b in engine.loader(2)]
    for m in engine.models.values():
        m.train()

    def step():
        return engine.train_step(batches[:1])

    logs = benchmark.pedantic(step, rounds=2, iterations=1, warmup_rounds=1)
    mean = benchmark.stats.stats.mean if getattr(benchmark, "stats", None) else None
    benchmark.extra_info.update(
        device=str(engine.device), stage=stage, size=size, batch_windows=batch, precision="fp32", compile=False,
        samples_per_s=round(batch / mean, 3) if mean else None, peak_memory_mb=round(peak_memory_mb(engine.device)),
    )
    assert all(v == v for v in logs.values())
