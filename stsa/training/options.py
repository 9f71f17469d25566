"""Settings of STSA training, with their defaults: the one home of every default (no torch import).

`stsa-bench train` composes configs/train.yaml on top of these dataclasses (sections `train`, `loss`,
`ablation`), so the YAML files hold only deliberate overrides (a stage's learning rate, a size's
widths and batch); `stsa-bench train --print-config` shows the merged result.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..precision import PRECISIONS, check_precision  # noqa: F401 - re-exported

STAGES = ("guidance", "synthesis", "finetune", "syncnet")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings shared by every stage (batch_size is per process and micro-batch)."""

    steps: int = 100000  # optimiser steps (the paper's schedule for guidance and synthesis)
    batch_size: int = 4  # windows per process and micro-batch
    accumulate: int = 1  # micro-batches per optimiser step
    lr: float = 1e-4
    lr_disc: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0: off
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    ema_decay: float = 0.0  # >0: keep an EMA of the trained network (exported instead of the raw weights)
    schedule: str = "constant"  # constant | cosine
    warmup: int = 0  # linear warm-up steps
    seed: int = 0
    log_every: int = 10  # TensorBoard scalars, and the progress line when stderr is not a terminal, every this many steps (train_log.csv gets every step)
    ckpt_every: int = 1000  # write last.pt every this many steps (and at the last one)
    keep_every: int = 0  # >0: also keep step-NNNNNNNN.pt every this many steps
    workers: int = 0  # DataLoader worker processes (0: load in the training process)
    compile: bool = False  # torch.compile the networks
    sync_bn: bool = False  # SyncBatchNorm across processes (CUDA only)
    progress: bool = True  # progress bar
    tensorboard: bool = True  # TensorBoard logs under <out>/tensorboard
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun: cuda:LOCAL_RANK)

    def __post_init__(self):
        check_precision(self.precision)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: constant or cosine")


@dataclass(frozen=True)
class LossWeights:
    """Weights of every loss term; the synthesis defaults are the paper's (4, 0.25, 1, 0.1, 0.01)."""

    heatmap: float = 1.0
    keypoint: float = 1.0
    landmark: float = 1.0
    temporal: float = 1.0
    extractor: float = 1.0
    perc: float = 4.0
    gan: float = 0.25
    feat: float = 1.0
    sync: float = 0.1
    mi: float = 0.01
    guidance: float = 1.0  # finetune: weight of L_heatmap beside L_face


@dataclass(frozen=True)
class Ablation:
    """Table III switches. `cil`: MINE loss; `sync_loss`; the two deformation paths; `finetune` (stage 3:
    `stsa-bench ablate` gives the variant a fine-tuning run; `stsa-bench train` runs the stage named)."""

    cil: bool = True
    sync_loss: bool = True
    spatial_path: bool = True
    temporal_path: bool = True
    finetune: bool = True
