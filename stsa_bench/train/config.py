"""The typed config of `stsa-bench train`, and the dataclass defaults under configs/train.yaml.

Every default lives in a dataclass: `TrainOptions`, `LossWeights`, `Ablation` (stsa.training.options),
`ModelConfig`, `InitConfig` and the defaulted fields of `TrainRunConfig` (here), `DataConfig` and
`PreprocessConfig` (core), and each suite kind's `Options`. `register_defaults` stores them in Hydra's
ConfigStore: `train_defaults` (first in configs/train.yaml's defaults list) and one `suite_defaults/<suite>`
per suite, picked by the suite choice (`suite_defaults: ${suite}`, before the suite file). The YAML
files (train.yaml, stage/*, size/*, suite/*) then only override, any key can be overridden on the
command line, and the composed config (`--print-config`, <out>/config.json) is complete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stsa.training.options import STAGES, Ablation, LossWeights, TrainOptions

from ..core.config import DataConfig, PreprocessConfig, plain_defaults, typed
from ..core.errors import ConfigError
from ..core.paths import cache_root

DEFAULTS_CONFIG = "train_defaults"
"""Name of the dataclass defaults in Hydra's ConfigStore (configs/train.yaml lists it first)."""
SUITE_DEFAULTS_GROUP = "suite_defaults"
"""ConfigStore group with each suite's Options defaults (package `suite`), named like the suite."""


@dataclass(frozen=True)
class ModelConfig:
    slim: int = 1  # channel divisor of the renderer (1 = the official network)
    T: int = 5  # frames per window (the lip-sync expert needs 5)
    n_refs: int = 5  # reference frames (the official network takes 5)
    disc_width: int = 64  # patch discriminator base width


@dataclass(frozen=True)
class InitConfig:
    heatmap: str | None = None  # finetune: guidance weights (heatmap_weight.pth, official or exported)
    renderer: str | None = None  # finetune: renderer weights (face_weight.pth, official or exported)


@dataclass(frozen=True)
class TrainRunConfig:
    """Everything `stsa-bench train` needs, typed."""

    stage: str
    suite: str
    suite_options: Mapping[str, Any]
    preprocess: PreprocessConfig
    cache_dir: Path
    out: Path
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    options: TrainOptions = TrainOptions()
    weights: LossWeights = LossWeights()
    ablation: Ablation = Ablation()
    init: InitConfig = InitConfig()
    wav2vec2: str | None = None
    """Folder with facebook/wav2vec2-base-960h; None: the local Hugging Face cache; "tiny": random tiny config (tests only)."""
    vgg19: str | None = None
    """torchvision vgg19-dcbb9e9d.pth for the perceptual loss; None: $STSA_BENCH_WEIGHTS / the torch hub cache."""
    random_vgg: bool = False
    """True: random VGG-19 weights (tests only; the perceptual loss is then not ImageNet VGG)."""
    sync_expert: str | None = None
    """Lip-sync expert for L_sync: Wav2Lip lipsync_expert.pth or <out>/export/lipsync_expert.pth of stage=syncnet."""
    stop_at: int | None = None
    """Stop (with a checkpoint) after this step; run again to continue."""
    samples: int | None = None
    """None: a fresh random window per sample; N: cycle over N fixed windows (overfitting checks)."""
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False)


SECTIONS: dict[str, tuple[str, type]] = {
    "data": ("data", DataConfig),
    "preprocess": ("preprocess", PreprocessConfig),
    "init": ("init", InitConfig),
    "model": ("model", ModelConfig),
    "ablation": ("ablation", Ablation),
    "loss": ("weights", LossWeights),
    "train": ("options", TrainOptions),
}
"""Config section -> (TrainRunConfig field, its dataclass)."""
SETTINGS = ("wav2vec2", "vgg19", "random_vgg", "sync_expert", "stop_at", "samples")
"""Top-level config keys with a TrainRunConfig default."""


def dataclass_defaults() -> dict[str, Any]:
    """The defaults of every defaulted setting, as a config dict (sections and top-level keys)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainRunConfig)}
    return {key: defaults[key] for key in SETTINGS} | {key: plain_defaults(cls) for key, (_, cls) in SECTIONS.items()}


def register_defaults() -> None:
    """Store `dataclass_defaults()` and every suite's Options defaults in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR

    from ..configure import suite_defaults, suite_names

    store = ConfigStore.instance()
    store.store(name=DEFAULTS_CONFIG, node=dataclass_defaults())
    for name in suite_names():
        path = CONFIG_DIR / "suite" / f"{name}.yaml"
        node = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {"name": name}
        store.store(group=SUITE_DEFAULTS_GROUP, name=name, node=suite_defaults(node), package="suite")


def with_defaults(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """`resolved` on top of the dataclass defaults (a no-op for a composed config, which has them all)."""
    r = dict(resolved)
    for key, value in dataclass_defaults().items():
        if key not in r:
            r[key] = value
        elif isinstance(value, dict) and isinstance(r[key], Mapping):
            r[key] = value | dict(r[key])
    return r


def train_config_from_dict(resolved: Mapping[str, Any]) -> TrainRunConfig:
    r = with_defaults(resolved)
    stage = str(r.get("stage"))
    if stage not in STAGES:
        raise ConfigError(f"stage={stage!r}: one of {', '.join(STAGES)}")
    suite = dict(r.get("suite") or {})
    sections = {}
    for key, (attr, cls) in SECTIONS.items():
        try:
            sections[attr] = typed(cls, r.get(key), key)
        except ValueError as exc:  # a __post_init__ check (train.precision, train.schedule)
            raise ConfigError(f"{key}: {exc}") from exc
    return TrainRunConfig(
        stage=stage,
        suite=str(suite.pop("name")),
        suite_options=suite,
        cache_dir=cache_root(r.get("cache_dir")),
        out=Path(str(r.get("out"))).expanduser(),
        **sections,
        wav2vec2=r.get("wav2vec2"),
        vgg19=r.get("vgg19"),
        random_vgg=bool(r.get("random_vgg")),
        sync_expert=r.get("sync_expert"),
        stop_at=r.get("stop_at"),
        samples=r.get("samples"),
        resolved=r,
    )


register_defaults()
