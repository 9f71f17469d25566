"""`stsa-bench train`: STSA training on the clips of a suite, from the harness's preprocessing cache.

One idea per module:
  config  the typed `TrainRunConfig` from the composed Hydra config (configs/train.yaml on top of the
          dataclass defaults, registered with Hydra here as `train_defaults`)
  data    per-clip training arrays, built once from the preprocessing cache (`load_clip_arrays`)
  init    the networks' starting weights: lip-sync expert, VGG-19, fine-tuning init (`initialise`)
  run     config.json / resume check, the training run, summary.json (`run_training`, `describe`)
"""

from .config import (
    DEFAULTS_CONFIG,
    InitConfig,
    ModelConfig,
    TrainRunConfig,
    dataclass_defaults,
    register_defaults,
    train_config_from_dict,
)
from .data import (
    ARRAY_FIELDS,
    CLIP_ARRAYS_VERSION,
    CachedClip,
    load_clip_arrays,
    model_fingerprint,
    tiny_wav2vec2_dir,
    wav2vec2_model,
)
from .init import VGG19_FILE, VGG19_WEIGHTS, initialise, input_hashes, sync_expert, vgg19_file
from .run import RESUME_FREE_KEYS, TrainOutcome, describe, run_training, save_config

__all__ = [
    "ARRAY_FIELDS",
    "CLIP_ARRAYS_VERSION",
    "DEFAULTS_CONFIG",
    "RESUME_FREE_KEYS",
    "VGG19_FILE",
    "VGG19_WEIGHTS",
    "CachedClip",
    "InitConfig",
    "ModelConfig",
    "TrainOutcome",
    "TrainRunConfig",
    "dataclass_defaults",
    "describe",
    "initialise",
    "input_hashes",
    "load_clip_arrays",
    "model_fingerprint",
    "register_defaults",
    "run_training",
    "save_config",
    "sync_expert",
    "tiny_wav2vec2_dir",
    "train_config_from_dict",
    "vgg19_file",
    "wav2vec2_model",
]
