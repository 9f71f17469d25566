"""The networks' starting weights for `stsa-bench train`: the lip-sync expert for L_sync, ImageNet
VGG-19 for the perceptual loss, and the trained guidance and renderer weights stage=finetune starts from.

The expert is the Wav2Lip `SyncNet_color` architecture (`baselines.wav2lip_model.SyncNetColor`): the
official lipsync_expert.pth, or one trained here with stage=syncnet. Given files are read through
`stsa.checkpoints` (weights_only, `state_dict` unwrapped, DataParallel prefixes stripped) and their
sha256 goes into summary.json (`input_hashes`).
"""

from __future__ import annotations

from pathlib import Path

from ..core import catalogue
from ..core.errors import ConfigError
from .config import TrainRunConfig

VGG19_WEIGHTS = catalogue.VGG19
"""ImageNet VGG-19 for the perceptual loss (torchvision; the file name carries its sha256 prefix)."""
VGG19_FILE = VGG19_WEIGHTS.filename


def vgg19_file(cfg: TrainRunConfig) -> tuple[Path, str] | None:
    """(path, sha256) of the ImageNet VGG-19 the perceptual loss loads: `vgg19`, or $STSA_BENCH_WEIGHTS /
    the torch hub cache (sha256-prefix checked there). None when the stage takes none (guidance,
    syncnet; finetune without `vgg19`, whose VGG comes with init.renderer) or none is found. Never downloads."""
    from ..core.weights import WeightsMissing, resolve

    if cfg.stage not in ("synthesis", "finetune") or (cfg.stage == "finetune" and not cfg.vgg19):
        return None
    try:
        return resolve(VGG19_WEIGHTS, cfg.vgg19)
    except WeightsMissing as exc:
        if cfg.vgg19:
            raise ConfigError(str(exc)) from exc
        return None


def sync_expert(cfg: TrainRunConfig):
    """The Wav2Lip-architecture lip-sync expert: fresh for stage=syncnet, else loaded from `sync_expert`."""
    from baselines.wav2lip_model import SyncNetColor, load_wav2lip

    if cfg.stage == "syncnet":
        return SyncNetColor()
    if cfg.stage == "guidance" or not cfg.ablation.sync_loss or cfg.weights.sync == 0:
        return None
    if not cfg.sync_expert:
        raise ConfigError(
            "sync_expert is not set: the lip-sync expert for L_sync (Wav2Lip lipsync_expert.pth, or "
            "<out>/export/lipsync_expert.pth of stage=syncnet); or ablation.sync_loss=false"
        )
    if not Path(cfg.sync_expert).expanduser().is_file():
        raise ConfigError(f"sync_expert={cfg.sync_expert}: no such file")
    return load_wav2lip(Path(cfg.sync_expert).expanduser(), model=SyncNetColor())


def input_hashes(cfg: TrainRunConfig, vgg: tuple[Path, str] | None) -> dict[str, str]:
    """sha256 of every weights file the run reads (expert, VGG-19, fine-tuning init)."""
    from ..core.paths import sha256_file

    given = {"sync_expert": cfg.sync_expert, "init.heatmap": cfg.init.heatmap, "init.renderer": cfg.init.renderer}
    hashes = {k: sha256_file(Path(v).expanduser()) for k, v in given.items() if v and Path(v).expanduser().is_file()}
    return hashes | ({"vgg19": vgg[1]} if vgg else {})


def initialise(task, cfg: TrainRunConfig, vgg: tuple[Path, str] | None) -> None:
    """Load VGG-19 (`vgg19_file`) for the synthesis stages and, for finetune, the guidance and renderer weights."""
    from stsa.checkpoints import load_state_dict
    from stsa.renderer import split_official_state_dict

    if cfg.stage not in ("synthesis", "finetune"):
        return
    gen = task.models["generator"]
    if cfg.stage == "finetune":
        for key in ("heatmap", "renderer"):
            if not getattr(cfg.init, key):
                raise ConfigError(f"init.{key} is not set: stage=finetune starts from trained guidance and renderer weights")
        gen.guidance.net.load_state_dict(load_state_dict(Path(cfg.init.heatmap).expanduser()))
        keypoints = Path(cfg.init.heatmap).expanduser().with_name("keypoint_extractor.pth")
        if keypoints.is_file():
            gen.guidance.keypoints.load_state_dict(load_state_dict(keypoints))
        rend, perceptual = split_official_state_dict(load_state_dict(Path(cfg.init.renderer).expanduser()))
        gen.renderer.load_state_dict({**rend, **perceptual}, strict=True)
        if cfg.vgg19 is None:
            return
    if vgg is None and not cfg.random_vgg:
        raise ConfigError(
            f"no VGG-19 weights for the perceptual loss: set vgg19=PATH (torchvision {VGG19_FILE}), or "
            f"{VGG19_WEIGHTS.where().replace('weights.vgg19', 'vgg19')}; random_vgg=true trains with random VGG weights (tests only)"
        )
    if vgg is not None:
        state = load_state_dict(vgg[0])
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        gen.renderer.perceptual.model.network.load_state_dict(features)
