"""Typed configuration objects, built once at the CLI edge from the composed Hydra config.

Everything below the CLI takes these frozen dataclasses as explicit arguments; nothing
inward reads Hydra or the environment for settings.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .paths import cache_key, cache_root
from .registry import did_you_mean

T = TypeVar("T")

PREP_VERSION = 2
"""Bump when preprocessing output changes for the same parameters (invalidates the cache)."""

RESUME_FREE_KEYS = ("out", "cache_dir", "runtime", "data", "weights")
"""Top-level keys that cannot change a result value: left out of the config hash, free to change on resume
(the training config's `RESUME_FREE_KEYS` are the same idea for `train.*`)."""

GROWING_KEYS = ("methods", "metrics")
"""Keys a run folder may grow by: adding a method or a metric to an existing `--out` computes only the new
rows. Each method's options are hashed per method (`RunConfig.method_config_hash`); metric ids carry
their protocol."""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            return _coerce(value, arg, where)
    if hint is Any:
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    if hint is Path:
        return Path(str(value)).expanduser()
    return value


def require(section: str, options: Any, checks: tuple[tuple[str, bool, str], ...]) -> None:
    """The first (key, holds, what is wanted) that does not hold is a ConfigError: `<section>.<key> must be <what
    is wanted>, got <value>`."""
    for key, holds, want in checks:
        if not holds:
            raise ConfigError(f"{section}.{key} must be {want}, got {getattr(options, key)}")


def typed(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from a plain mapping; unknown keys and wrong types are ConfigErrors."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown setting {where}.{key}{did_you_mean(key, names)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()})


MAX_FPS = 240
"""preprocess.fps above this is refused (100000 fps once made 4.6 GB of temporary frames)."""


@dataclass(frozen=True)
class PreprocessConfig:
    """The paper's protocol: 25 fps, 16 kHz mono, MediaPipe FaceMesh, 128x128 face crops."""

    fps: int = 25
    fps_mode: str = "ffmpeg_cfr"
    """ffmpeg_cfr: frame for frame `ffmpeg -r 25` (official LSE route) | nearest: nearest timestamp."""
    sample_rate: int = 16000
    crop_size: int = 128
    box_scale: float = 1.2
    """Box side = box_scale x the larger landmark extent."""
    smooth_sigma: float = 2.0
    """Gaussian smoothing of the box over time, in frames."""
    min_frames: int = 5
    """Shorter clips fail."""
    min_face_ratio: float = 0.5
    """Clips with a face in fewer frames fail; gaps are interpolated."""
    max_av_mismatch_s: float = 0.5
    """Larger audio/video length differences fail."""
    static_image_mode: bool = True
    refine_landmarks: bool = True
    min_detection_confidence: float = 0.5

    def __post_init__(self) -> None:
        from .media import FPS_MODES

        if self.fps_mode not in FPS_MODES:
            raise ConfigError(f"preprocess.fps_mode={self.fps_mode!r}{did_you_mean(self.fps_mode, list(FPS_MODES))}")
        require("preprocess", self, (
            ("fps", 1 <= self.fps <= MAX_FPS, f"from 1 to {MAX_FPS}"),
            ("sample_rate", self.sample_rate >= 1000, "at least 1000"),
            ("crop_size", self.crop_size >= 16, "at least 16"),
            ("box_scale", self.box_scale > 0, "above 0"),
            ("smooth_sigma", self.smooth_sigma >= 0, "at least 0"),
            ("min_frames", self.min_frames >= 1, "at least 1"),
            ("min_face_ratio", 0 <= self.min_face_ratio <= 1, "from 0 to 1"),
            ("max_av_mismatch_s", self.max_av_mismatch_s >= 0, "at least 0"),
            ("min_detection_confidence", 0 <= self.min_detection_confidence <= 1, "from 0 to 1"),
        ))  # fmt: skip

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return cache_key("preprocess", params=self.params(), version=PREP_VERSION)

    def decode_tag(self) -> str:
        """Decode identity for metrics that read whole frames, e.g. `25fps/ffmpeg_cfr/16kHz`."""
        return f"{self.fps}fps/{self.fps_mode}/{self.sample_rate // 1000 if self.sample_rate % 1000 == 0 else self.sample_rate}{'kHz' if self.sample_rate % 1000 == 0 else 'Hz'}"

    def crop_tag(self) -> str:
        """Crop identity for metric ids, e.g. `face128@25fps/pp=1a2b3c4d`."""
        return f"face{self.crop_size}@{self.fps}fps/pp={self.key()[:8]}"


@dataclass(frozen=True)
class DataConfig:
    root: Path | None = None
    """Dataset root (lrs2: else $STSA_BENCH_LRS2_ROOT; cmlr: else $STSA_BENCH_CMLR_ROOT)."""
    audio_root: Path | None = None
    """A separate audio tree, if not under root."""


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    progress: bool = True
    batch_size: int = 64
    """Frames per metric update."""
    retry_failed: bool = False
    """On resume, try failed rows again."""
    save_videos: bool = False
    """Write each method's output to <out>/videos/<method>/<clip>.mp4."""
    refreeze: bool = False
    """Accept changed suite files and freeze their new hashes."""
    chunk_frames: int = 32
    """Frames decoded, generated and scored at a time."""
    prefetch_chunks: int = 2
    """Chunks decoded (and generated) ahead by a background thread while the current one is scored; 0: none."""
    frames_in_memory_mb: float = 256
    """A clip whose decoded frames fit in this many MB is decoded once and kept in memory; a longer one is
    read again from its file by each pass, a chunk at a time (memory bounded by the chunk, not the clip).
    A clip's face crops or flows larger than this are mapped from files (the cache's, or unlinked temporary
    ones under `<cache>/tmp`) instead of being held in memory."""
    allow_env_change: bool = False
    """Extend a run folder made in another value-deciding environment (FFmpeg libraries, mediapipe, torch major.minor,
    numpy major: `core.environment.VALUE_DECIDING`); the invocation records the differences."""

    def __post_init__(self) -> None:
        require("runtime", self, (
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("chunk_frames", self.chunk_frames >= 1, "at least 1"),
            ("prefetch_chunks", self.prefetch_chunks >= 0, "at least 0"),
            ("frames_in_memory_mb", self.frames_in_memory_mb >= 0, "at least 0"),
        ))  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, resolved and typed."""

    suite: str
    suite_options: Mapping[str, Any]
    data: DataConfig
    methods: tuple[str, ...]
    """Row names; `label:method` entries run registered `method` under the row name `label`."""
    metrics: tuple[str, ...]
    out: Path
    cache_dir: Path
    seed: int
    preprocess: PreprocessConfig
    runtime: RuntimeConfig
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    weights: Mapping[str, Any] = field(default_factory=dict)
    method_specs: Mapping[str, str] = field(default_factory=dict)
    resolved: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def config_hash(self) -> str:
        return config_hash(self.resolved)

    def options_for(self, name: str) -> Mapping[str, Any]:
        return self.options.get(name) or {}

    def method_entry(self, name: str) -> dict[str, Any]:
        """What a method row's values depend on besides the run: the registered method and its options."""
        return {"method": self.method_of(name), "options": dict(self.options_for(name))}

    def method_config_hash(self, name: str) -> str:
        """sha256 of `method_entry(name)` (12 hex), carried by every row of that method."""
        return cache_key("method-config", params=self.method_entry(name))[:12]

    def method_of(self, name: str) -> str:
        """The registered method behind a row name."""
        return self.method_specs.get(name, name)


TOP_LEVEL = ("suite", "data", "methods", "metrics", "out", "cache_dir", "seed", "preprocess", "runtime", "weights")
"""The run config's own keys; every other top-level key is a component's options (a method row or metric)."""

BASE_SECTIONS = {"data": DataConfig, "runtime": RuntimeConfig, "preprocess": PreprocessConfig}
"""Sections of the run config whose defaults are these dataclasses (nowhere in YAML)."""


def plain_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's defaults as plain YAML values (tuples -> lists, paths -> strings)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    out = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = plain(f.default_factory())
        else:
            out[f.name] = None
    return out


def hashed_part(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """What every row of a run folder depends on: suite, preprocessing, seed. Not the free keys, not the
    methods and metrics a folder may grow by, not the per-component option blocks (hashed per method,
    or part of the metric id)."""
    return {k: v for k, v in resolved.items() if k in TOP_LEVEL and k not in RESUME_FREE_KEYS + GROWING_KEYS}


def config_hash(resolved: Mapping[str, Any]) -> str:
    """sha256 of `hashed_part(resolved)` (12 hex)."""
    return cache_key("config", params=hashed_part(resolved))[:12]


def run_config_from_dict(resolved: Mapping[str, Any]) -> RunConfig:
    """Validate the resolved (plain-dict) Hydra config and turn it into a RunConfig."""
    resolved = dict(resolved)
    suite = dict(resolved.get("suite") or {})
    if "name" not in suite:
        raise ConfigError("the suite config has no 'name'")
    specs = method_specs(_coerce(resolved.get("methods") or [], tuple[str, ...], "methods"))
    metrics = _coerce(resolved.get("metrics") or [], tuple[str, ...], "metrics")
    from .registry import expand_metric_sets

    metrics = expand_metric_sets(metrics)
    options = {}
    for key, value in resolved.items():
        if key in TOP_LEVEL:
            continue
        if key not in specs and not is_component(key):
            known = list(TOP_LEVEL) + sorted(set(specs) | set(_component_names()))
            raise ConfigError(f"unknown setting {key!r}{did_you_mean(key, known)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key} must be a mapping of options, got {value!r}")
        options[key] = dict(value)
    cfg = RunConfig(
        suite=str(suite.pop("name")),
        suite_options=suite,
        data=typed(DataConfig, resolved.get("data"), "data"),
        methods=tuple(specs),
        method_specs={k: v for k, v in specs.items() if k != v},
        metrics=metrics,
        out=Path(str(resolved.get("out") or "results")).expanduser(),
        cache_dir=cache_root(resolved.get("cache_dir")),
        seed=_coerce(resolved.get("seed", 0), int, "seed"),
        preprocess=typed(PreprocessConfig, resolved.get("preprocess"), "preprocess"),
        runtime=typed(RuntimeConfig, resolved.get("runtime"), "runtime"),
        options=options,
        weights=dict(resolved.get("weights") or {}),
        resolved=resolved,
    )
    if not cfg.methods:
        raise ConfigError("no methods given (--methods a,b)")
    if not cfg.metrics:
        raise ConfigError("no metrics given (--metrics x,y)")
    return cfg


def method_specs(entries: tuple[str, ...]) -> dict[str, str]:
    """{row name: registered method} from `name` or `label:name` entries (labels are new names)."""
    from .registry import METHODS

    specs: dict[str, str] = {}
    for entry in entries:
        label, _, name = entry.rpartition(":")
        label = label or name
        METHODS.check([name])
        if label != name and (is_component(label) or label in TOP_LEVEL):
            raise ConfigError(f"method label {label!r} in {entry!r} is already a setting name; choose another")
        if label in specs:
            raise ConfigError(f"method {label!r} is listed twice")
        specs[label] = name
    return specs


def _component_names() -> list[str]:
    from .registry import METHODS, METRICS

    return METHODS.names() + METRICS.names()


def is_component(key: str) -> bool:
    """A method, a metric, or a metric option group shared by several metrics (lse_c and lse_d read `lse`)."""
    from .registry import METRICS

    return key in _component_names() or key in METRICS.option_groups()


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Sorted dotted keys whose values differ between two nested mappings (a key missing on one side differs)."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
