"""The training stages as tasks: trainable modules, optimiser groups and per-phase losses.

A task exposes `models` (name -> module, all saved in checkpoints), `phases` (one optimiser each:
its name, the models it updates and a loss function) and `export` (official-format state dicts).
The engine runs every phase once per optimiser step, over all micro-batches, and handles devices,
data parallelism, precision, clipping and checkpoints.

Stages (spec/stsa.md "Training"):
  guidance   L_heatmap = ||H_g - H_p||^2 + ||P_g - K(H_p)||^2 + ||P_g - P_p||^2 + L_temporal, plus the
             fit of the keypoint extractor K on ground-truth heatmaps.
  synthesis  ground-truth content heatmaps; L_face = 4 perc + 0.25 gan + 1 feat + 0.1 sync + 0.01 mi.
  finetune   guidance + renderer end to end on predicted heatmaps; L_face + L_heatmap.
  syncnet    a Wav2Lip-style lip-sync expert on the same data (BCE on cos(a, v), in/out-of-sync pairs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..guidance import GuidanceNet
from ..renderer import RENDERER_INFO_KEY, FlatBatch
from . import losses as L
from .options import STAGES, Ablation, LossWeights
from .renderer_losses import FaceRendererTrainer, mine_loss


@dataclass
class Phase:
    name: str
    models: tuple[str, ...]
    loss: Callable  # (nets, batch, ctx) -> (loss tensor, {name: float})


class Nets(dict):
    """name -> module as called (possibly DDP/compiled); `raw(name)` is the bare module."""

    def __init__(self, called: dict, raw: dict):
        super().__init__(called)
        self._raw = raw

    def raw(self, name: str) -> nn.Module:
        return self._raw[name]


def _ft(x: torch.Tensor) -> float:
    return float(x.detach().float())


# ------------------------------------------------------------------------------------------ guidance


class GuidanceStage(nn.Module):
    """GuidanceNet + keypoint extractor K; forward(batch) -> dict of loss terms (scalars)."""

    def __init__(self, weights: LossWeights = LossWeights()):
        super().__init__()
        self.net = GuidanceNet()
        self.net.heatmap_decoder.message_j2l.requires_grad_(False)  # in the official layout, never applied
        self.keypoints = L.KeypointExtractor()
        self.w = weights

    def predict(self, batch):
        return self.net(batch["audio"], batch["pose"], batch["ref_guidance"])

    def forward(self, batch):
        heat, points = self.predict(batch)
        b, t = batch["audio"].shape[:2]
        gt_heat, gt_pts = batch["content_heatmap"].flatten(0, 1), batch["points"].flatten(0, 1)
        k_pred = L.frozen_call(self.keypoints, heat)
        terms = {
            "heatmap": F.mse_loss(heat, gt_heat),
            "keypoint": F.mse_loss(k_pred, gt_pts),
            "landmark": F.mse_loss(points, gt_pts),
            "temporal": L.temporal_loss(k_pred.reshape(b, t, -1), gt_pts.reshape(b, t, -1))
            + L.temporal_loss(points.reshape(b, t, -1), gt_pts.reshape(b, t, -1)),
            "extractor": F.mse_loss(self.keypoints(gt_heat), gt_pts),
        }
        terms["total"] = sum(getattr(self.w, k) * v for k, v in terms.items())
        return terms, heat


class GuidanceTask:
    def __init__(self, weights: LossWeights = LossWeights()):
        self.models = {"guidance": GuidanceStage(weights)}
        self.phases = [Phase("guidance", ("guidance",), self.loss)]

    @staticmethod
    def loss(nets, batch, ctx):
        terms, _ = nets["guidance"](batch)
        return terms["total"], {k: _ft(v) for k, v in terms.items()}

    def export(self, models) -> dict[str, dict]:
        """heatmap_weight.pth (official format) and the keypoint extractor K (fine-tuning starts from both)."""
        stage = models["guidance"]
        return {
            "heatmap_weight.pth": {"state_dict": stage.net.state_dict()},
            "keypoint_extractor.pth": {"state_dict": stage.keypoints.state_dict()},
        }


# ----------------------------------------------------------------------------------------- synthesis


class SynthesisNet(nn.Module):
    """Renderer (+ guidance for fine-tuning); forward(batch) -> fake/real faces and non-adversarial terms."""

    def __init__(self, slim: int = 1, ablation: Ablation = Ablation(), weights: LossWeights = LossWeights(),
                 finetune: bool = False):
        super().__init__()
        self.renderer = FaceRendererTrainer(slim=slim)
        self.renderer.use_spatial, self.renderer.use_temporal = ablation.spatial_path, ablation.temporal_path
        self.guidance = GuidanceStage(weights) if finetune else None
        self.cil = ablation.cil and ablation.spatial_path and ablation.temporal_path
        if not ablation.spatial_path:
            for name in ("spatial_module", "ref_imgs_encoder", "heatmap_encoder_ref", "heatmap_encoder_tar"):
                getattr(self.renderer, name).requires_grad_(False)
        if not ablation.temporal_path:
            self.renderer.temporal_module.requires_grad_(False)
        if not self.cil:
            self.renderer.align_layers.requires_grad_(False)
            self.renderer.mine.requires_grad_(False)
        self.renderer.source_img_encoder.requires_grad_(False)  # in the official layout, never used

    def forward(self, batch):
        b, t = batch["faces"].shape[:2]
        terms = {}
        if self.guidance is not None:
            g_terms, heat = self.guidance(batch)
            terms.update({f"g_{k}": v for k, v in g_terms.items()})
            target = heat.view(b, t, 1, *heat.shape[-2:]).clamp(max=1.0).expand(-1, -1, 3, -1, -1)
        else:
            target = batch["content_heatmap"].clamp(max=1.0).expand(-1, -1, 3, -1, -1)
        r = self.renderer
        flat = FlatBatch(batch["faces"], target, batch["ref_imgs"], batch["ref_heatmaps"], batch["audio"])
        face, spatial, temporal = r.deform_and_generate(flat)
        terms["perc"] = r.perceptual(face, flat.face)
        if self.cil:
            pool = lambda feats: [F.adaptive_avg_pool2d(a(f), 1).flatten(1) for a, f in zip(r.align_layers, feats)]  # noqa: E731
            terms["mi"] = sum(mine_loss(r.mine, x, y) for x, y in zip(pool(spatial), pool(temporal))) / 3
        return face, flat.face, flat.unflatten(face).transpose(1, 2), terms


class SynthesisTask:
    """Stage 2 (ground-truth heatmaps) or, with `finetune`, stage 3 (predicted heatmaps, guidance trained too)."""

    def __init__(self, slim: int = 1, ablation: Ablation = Ablation(), weights: LossWeights = LossWeights(),
                 finetune: bool = False, sync_expert: nn.Module | None = None, disc_width: int = 64):
        self.w, self.ablation, self.finetune = weights, ablation, finetune
        self.models = {
            "generator": SynthesisNet(slim, ablation, weights, finetune),
            "disc": L.PatchDiscriminator(width=disc_width),
        }
        self.expert = None
        if ablation.sync_loss and weights.sync > 0:
            if sync_expert is None:
                raise ValueError("the sync loss needs a lip-sync expert (or ablation.sync_loss=false)")
            self.expert = sync_expert.eval().requires_grad_(False)
        self.phases = [Phase("generator", ("generator",), self.loss_g), Phase("disc", ("disc",), self.loss_d)]

    def to(self, device):
        if self.expert is not None:
            self.expert.to(device)
        return self

    def loss_g(self, nets, batch, ctx):
        fake, real, fake_bt, terms = nets["generator"](batch)
        ctx["fake"], ctx["real"] = fake.detach(), real
        disc = nets.raw("disc")
        fake_out = disc(fake)
        with torch.no_grad():
            real_out = disc(real)
        terms["gan"] = L.gan_generator_loss(fake_out[-1])
        terms["feat"] = L.feature_matching_loss(fake_out, real_out)
        if self.expert is not None:
            if fake_bt.size(1) != 5:
                raise ValueError(f"the lip-sync expert needs T=5 frame windows, got T={fake_bt.size(1)}")
            terms["sync"] = L.sync_loss(self.expert, batch["mel"], fake_bt)
        w = self.w
        total = sum(getattr(w, k) * terms[k] for k in ("perc", "gan", "feat", "sync", "mi") if k in terms)
        if self.finetune:
            total = total + w.guidance * terms["g_total"]
        terms["total"] = total
        return total, {k: _ft(v) for k, v in terms.items()}

    @staticmethod
    def loss_d(nets, batch, ctx):
        logits = nets["disc"](torch.cat([ctx["real"], ctx["fake"]]))[-1]
        real, fake = logits.chunk(2)
        loss = L.gan_discriminator_loss(real, fake)
        return loss, {"disc": _ft(loss)}

    def export(self, models) -> dict[str, dict]:
        gen = models["generator"]
        r = gen.renderer
        info = {"slim": r.slim, "use_spatial": r.use_spatial, "use_temporal": r.use_temporal}
        out = {"face_weight.pth": {"state_dict": r.state_dict(), RENDERER_INFO_KEY: info}}
        if gen.guidance is not None:
            out["heatmap_weight.pth"] = {"state_dict": gen.guidance.net.state_dict()}
        return out


# ------------------------------------------------------------------------------------------- syncnet


class SyncNetTask:
    """Lip-sync expert on the training data: BCE(cos(a, v), in-sync label), Wav2Lip's expert objective."""

    def __init__(self, expert: nn.Module):
        self.models = {"syncnet": expert}
        self.phases = [Phase("syncnet", ("syncnet",), self.loss)]

    @staticmethod
    def loss(nets, batch, ctx):
        loss = L.sync_loss(nets["syncnet"], batch["sync_mel"], batch["faces"], batch["sync_label"])
        return loss, {"sync_bce": _ft(loss)}

    def export(self, models) -> dict[str, dict]:
        return {"lipsync_expert.pth": {"state_dict": models["syncnet"].state_dict()}}


@dataclass(frozen=True)
class TaskSpec:
    """What to build for a stage; the expert factory comes from the caller (stsa never imports the harness)."""

    stage: str
    slim: int = 1
    weights: LossWeights = field(default_factory=LossWeights)
    ablation: Ablation = field(default_factory=Ablation)
    disc_width: int = 64


def build_task(spec: TaskSpec, expert: nn.Module | None = None):
    if spec.stage == "guidance":
        return GuidanceTask(spec.weights)
    if spec.stage in ("synthesis", "finetune"):
        return SynthesisTask(spec.slim, spec.ablation, spec.weights, spec.stage == "finetune", expert, spec.disc_width)
    if spec.stage == "syncnet":
        if expert is None:
            raise ValueError("stage syncnet needs an expert network to train")
        return SyncNetTask(expert)
    raise ValueError(f"unknown stage {spec.stage!r}: one of {', '.join(STAGES)}")
