"""Training loop for the STSA tasks: devices, torch.distributed (launched by torchrun), gradient
accumulation, autocast, clipping, EMA, atomic resumable checkpoints, CSV/TensorBoard logs.

Data parallel runs use the standard environment of `torchrun` (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT): backend nccl on CUDA, gloo on CPU. Sample indices depend only on
(step, slot) (`data.step_indices`), so W processes x A accumulation steps see the same global batch
as one process with W*A accumulation steps. BatchNorm statistics stay per micro-batch unless
`sync_bn` (CUDA only) is set.

Checkpoint `last.pt` (rank 0, written to a temporary file then renamed) holds the step, every
model, optimiser, scheduler, grad scaler and EMA state and the options; `rng-rank<r>.pt` holds each
rank's torch RNG states. Everything is read back with torch.load(weights_only=True). Random draws
inside a step are seeded per micro-batch (`micro_seed`), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from ..precision import emulation_warning
from .data import StepBatchSampler
from .options import TrainOptions
from .tasks import Nets


def dist_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) from the torchrun environment."""
    env = os.environ
    return int(env.get("WORLD_SIZE", 1)), int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0))


def pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def lr_factor(step: int, opts: TrainOptions) -> float:
    """Linear warm-up to 1, then constant or cosine decay to 0 at `steps`."""
    if opts.warmup and step < opts.warmup:
        return (step + 1) / opts.warmup
    if opts.schedule == "cosine":
        span = max(1, opts.steps - opts.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - opts.warmup) / span)))
    return 1.0


def micro_seed(seed: int, step: int, slot: int, phase: int) -> int:
    """Seed of every random draw (dropout, MINE shuffles) in one micro-batch of one phase: a function of
    (seed, step, slot, phase) only, so accumulation, data parallelism and resuming draw the same numbers."""
    return int(np.random.SeedSequence((seed, step, slot, phase)).generate_state(1, dtype=np.uint64)[0]) >> 1


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


class Engine:
    """Runs a task's phases for `opts.steps` optimiser steps, resuming from `out/last.pt` if present."""

    def __init__(self, task, dataset, opts: TrainOptions, out: str | os.PathLike, log=print):
        self.task, self.dataset, self.opts, self.out, self.log = task, dataset, opts, Path(out), log
        self.world, self.rank, self.local_rank = dist_info()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and opts.device != "cpu" else "gloo")
        self.device = pick_device(opts.device, self.local_rank)
        warning = emulation_warning(opts.precision, self.device.type)
        if warning and self.rank == 0:
            self.log(f"warning: {warning}")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.models = {k: m.to(self.device) for k, m in task.models.items()}
        if hasattr(task, "to"):
            task.to(self.device)
        if opts.sync_bn and self.world > 1 and self.device.type == "cuda":
            self.models = {k: nn.SyncBatchNorm.convert_sync_batchnorm(m) for k, m in self.models.items()}
            task.models = self.models
        self.optimizers = {}
        for ph in task.phases:
            params = [p for name in ph.models for p in self.models[name].parameters() if p.requires_grad]
            lr = opts.lr_disc if ph.name == "disc" else opts.lr
            self.optimizers[ph.name] = torch.optim.Adam(params, lr=lr, betas=opts.betas, weight_decay=opts.weight_decay)
        self.schedulers = {
            k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: lr_factor(s, self.opts)) for k, o in self.optimizers.items()
        }
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=opts.precision == "fp16")
        self.ema = None
        if opts.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            main = next(iter(self.models))
            self.ema = (main, AveragedModel(self.models[main], multi_avg_fn=get_ema_multi_avg_fn(opts.ema_decay), use_buffers=True))
        self.step = 0
        self._csv_fields = None
        self._resume()
        called, self.ddp = {}, {}
        for k, m in self.models.items():
            if self.world > 1 and any(p.requires_grad for p in m.parameters()):
                m = self.ddp[k] = DDP(m, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            called[k] = torch.compile(m) if opts.compile else m
        self.nets = Nets(called, self.models)

    # ------------------------------------------------------------------------------ checkpoints

    def state(self) -> dict:
        return {
            "step": self.step,
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema[1].state_dict() if self.ema else None,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.opts).items()},
        }

    def save(self) -> None:
        rng = {"step": self.step, "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        atomic_save(rng, self.out / f"rng-rank{self.rank}.pt")
        if self.world > 1:
            dist.barrier()
        if self.rank == 0:
            state = self.state()
            atomic_save(state, self.out / "last.pt")
            if self.opts.keep_every and self.step % self.opts.keep_every == 0:
                atomic_save(state, self.out / f"step-{self.step:08d}.pt")

    def _resume(self) -> None:
        path = self.out / "last.pt"
        torch.manual_seed(self.opts.seed + self.rank)
        if not path.is_file():
            return
        ck = torch.load(path, map_location=self.device, weights_only=True)
        for k, m in self.models.items():
            m.load_state_dict(ck["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ck["schedulers"][k])
        self.scaler.load_state_dict(ck["scaler"])
        if self.ema and ck.get("ema") is not None:
            self.ema[1].load_state_dict(ck["ema"])
        self.step = int(ck["step"])
        rng_path = self.out / f"rng-rank{self.rank}.pt"
        if rng_path.is_file():
            rng = torch.load(rng_path, map_location="cpu", weights_only=True)
            if int(rng["step"]) == self.step:
                torch.set_rng_state(rng["torch"])
                if "cuda" in rng and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(rng["cuda"])
        self.log(f"resumed from {path} at step {self.step}")

    # ---------------------------------------------------------------------------------- steps

    def _autocast(self):
        p = self.opts.precision
        if p == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)

    def _set_trainable(self, names: tuple[str, ...]) -> dict:
        """Freeze every model not in `names`; returns the previous flags to restore."""
        saved = {}
        for k, m in self.models.items():
            if k not in names:
                for p in m.parameters():
                    saved[p] = p.requires_grad
                    p.requires_grad_(False)
        return saved

    def train_step(self, micro_batches: list[dict]) -> dict[str, float]:
        logs: dict[str, float] = {}
        ctxs = [{} for _ in micro_batches]
        n = len(micro_batches)
        for p_index, ph in enumerate(self.task.phases):
            saved = self._set_trainable(ph.models)
            opt = self.optimizers[ph.name]
            opt.zero_grad(set_to_none=True)
            for i, (batch, ctx) in enumerate(zip(micro_batches, ctxs)):
                torch.manual_seed(micro_seed(self.opts.seed, self.step, i * self.world + self.rank, p_index))
                sync = i == n - 1
                with contextlib.ExitStack() as stack:
                    if not sync:
                        for name in ph.models:
                            if name in self.ddp:
                                stack.enter_context(self.ddp[name].no_sync())
                    with self._autocast():
                        loss, terms = ph.loss(self.nets, batch, ctx)
                    self.scaler.scale(loss / n).backward()
                for k, v in terms.items():
                    logs[k] = logs.get(k, 0.0) + v / n
            if self.opts.grad_clip > 0:
                self.scaler.unscale_(opt)
                params = [p for g in opt.param_groups for p in g["params"]]
                logs[f"{ph.name}_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.opts.grad_clip))
            self.scaler.step(opt)
            self.schedulers[ph.name].step()
            for p, flag in saved.items():
                p.requires_grad_(flag)
        self.scaler.update()
        if self.ema:
            self.ema[1].update_parameters(self.models[self.ema[0]])
        if self.world > 1:
            keys = sorted(logs)
            t = torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            logs = dict(zip(keys, (t / self.world).tolist()))
        return logs

    def loader(self, stop: int) -> DataLoader:
        sampler = StepBatchSampler(self.step, stop, self.opts.batch_size, self.opts.accumulate, self.world, self.rank)
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.opts.workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    # ------------------------------------------------------------------------------------ run

    def fit(self, stop_at: int | None = None) -> list[dict]:
        """Train up to `opts.steps` (or `stop_at`, to pause) steps; returns this run's per-step logs."""
        stop = min(self.opts.steps, stop_at or self.opts.steps)
        history: list[dict] = []
        if self.step >= stop:
            return history
        for m in self.models.values():
            m.train()
        main = self.rank == 0
        writer = self._tensorboard() if main else None
        bar = None
        if main and self.opts.progress and sys.stderr.isatty():
            from tqdm.auto import tqdm

            bar = tqdm(total=self.opts.steps, initial=self.step, desc=type(self.task).__name__, unit="step", dynamic_ncols=True)
        per_step = self.opts.batch_size * self.opts.accumulate * self.world
        micro, t0 = [], time.perf_counter()
        try:
            for batch in self.loader(stop):
                micro.append(_to(batch, self.device))
                if len(micro) < self.opts.accumulate:
                    continue
                logs = self.train_step(micro)
                micro = []
                self.step += 1
                dt, t0 = time.perf_counter() - t0, time.perf_counter()
                logs.update(step=self.step, samples_per_s=per_step / dt, lr=self.schedulers[self.task.phases[0].name].get_last_lr()[0])
                history.append(logs)
                if main:
                    self._log_row(logs, writer)
                    shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("total", "disc", "sync_bce", "samples_per_s")}
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(shown)
                    elif self.opts.progress and (self.step % max(1, self.opts.log_every) == 0 or self.step == stop):
                        self.log(f"{type(self.task).__name__} step {self.step}/{self.opts.steps}: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
                if self.step % self.opts.ckpt_every == 0 or self.step == stop:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        return history

    def _tensorboard(self):
        if not self.opts.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("tensorboard is not installed: logging to train_log.csv only (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)

    def _log_row(self, logs: dict, writer) -> None:
        """Append a row to train_log.csv (columns fixed by the first row of the file)."""
        path = self.out / "train_log.csv"
        self.out.mkdir(parents=True, exist_ok=True)
        if self._csv_fields is None:
            rows = []
            if path.is_file():
                with path.open(newline="") as f:
                    rows = [r for r in csv.DictReader(f) if int(r["step"]) < logs["step"]]
            self._csv_fields = list(rows[0]) if rows else ["step"] + sorted(set(logs) - {"step"})
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
        with path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._csv_fields, extrasaction="ignore").writerow(logs)
        if writer is not None and logs["step"] % max(1, self.opts.log_every) == 0:
            for k, v in logs.items():
                if k != "step":
                    writer.add_scalar(k, v, logs["step"])

    def export(self, folder: str | os.PathLike | None = None) -> dict[str, Path]:
        """Write the task's official-format checkpoints ({"state_dict": ...}); EMA weights when kept."""
        folder = Path(folder or self.out / "export")
        models = dict(self.models)
        if self.ema:
            models[self.ema[0]] = self.ema[1].module
        written = {}
        if self.rank == 0:
            for name, obj in self.task.export(models).items():
                atomic_save(obj, folder / name)
                written[name] = folder / name
        return written
