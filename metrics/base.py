"""The metric contract (torchmetrics-style: update_pair / compute / reset).

The runner hands every metric one `EvalPair` per (clip, method) through `update_pair`, the one
entry point all metrics implement; `update(pred, target)` is the same call for face crops only.
Per-clip metrics give one value per clip (`compute` after each clip). Pooled metrics
(`pooled = True`, e.g. FID) keep per-clip partial state (`state` / `merge`) and give one value
for the whole set.

A metric declares, once: its direction and display group (they travel in every row), its options
dataclass (`Options`, the single home of its defaults), its weights files (`WEIGHTS`, loaded on
first use through `lazy_weights`) and its protocol parameters (`protocol_fields`), from which
the id is rendered: `name[frames,field,...]`, where `frames` names the frames it reads with their
decode and preprocessing settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from stsa_bench.core.config import PreprocessConfig, typed
from stsa_bench.core.devices import resolve_device
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.frames import Frames, as_frames, map_chunks
from stsa_bench.core.media import DECODE_VERSION
from stsa_bench.core.registry import METRICS
from stsa_bench.core.weights import LazyWeights, WeightsSpec

M = TypeVar("M")


def num(x: float) -> str:
    """A protocol number as written in ids: `1e-8`, `1.5`, `15`."""
    return f"{x:g}".replace("e-0", "e-").replace("e+0", "e+")

def to_nchw(x: Any, device: str):
    """uint8/float (N, H, W, 3) array or tensor in [0, 255] -> float32 (N, 3, H, W) tensor in [0, 1]."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    return t.to(device=device).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


def frame_digest(frame: np.ndarray) -> bytes:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()


def distinct_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the first copy of each distinct frame, inverse map): frames[first][inverse] == frames."""
    seen: dict[bytes, int] = {}
    inverse = np.empty(len(frames), dtype=np.int64)
    first = []
    for i, f in enumerate(frames):
        h = frame_digest(f)
        if h not in seen:
            seen[h] = len(first)
            first.append(i)
        inverse[i] = seen[h]
    return np.asarray(first, dtype=np.int64), inverse


def match_frames(frames: np.ndarray, known: np.ndarray) -> np.ndarray:
    """For each frame the index of a byte-identical frame in `known`, or -1."""
    index = {frame_digest(f): i for i, f in enumerate(known)}
    return np.array([index.get(frame_digest(f), -1) for f in frames], dtype=np.int64)


@dataclass
class EvalPair:
    """One clip x method, at the harness protocol (25 fps, 16 kHz mono float32, RGB uint8).

    pred_* is the method's output, gt_* the ground truth. Crops of both are cut with the
    ground-truth boxes. `audio_valid` is the number of decoded driving-audio samples before
    padding to n_frames * 640. Landmarks are FaceMesh (N, 478, 3), image-normalised, NaN where
    no face; `pred_landmarks` is computed on first use. Full frames are `Frames`, read in chunks:
    what a metric needs from the generated ones it asks with `pred_feature` (the runner computes
    every metric's `frame_features` in one pass over them). `memo` lets metrics share work on this pair
    (e.g. lse_c and lse_d share one SyncNet pass); `gt_memo` is shared by the pairs of every method on
    the clip, for work that depends only on the ground truth (`ground_truth`). Whole-clip arrays a metric
    builds come from `empty` (the runner maps long clips' from files: `runtime.frames_in_memory_mb`).
    """

    clip_id: str
    video: Path
    method: str
    fps: int
    sample_rate: int
    pred_frames: Frames
    gt_frames: Frames
    pred_audio: np.ndarray
    gt_audio: np.ndarray
    audio_valid: int
    pred_crops: np.ndarray
    gt_crops: np.ndarray
    boxes: np.ndarray
    gt_landmarks: np.ndarray
    gt_has_face: np.ndarray
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    clip_sha256: str = ""
    fps_mode: str = "ffmpeg_cfr"
    batch_size: int = 64
    chunk_frames: int = 64
    memo: dict = field(default_factory=dict)
    gt_memo: dict = field(default_factory=dict)
    features: dict = field(default_factory=dict)
    spill: Callable[[tuple, Any], np.ndarray] | None = None
    memory_bytes: float = 0.0
    """Size up to which a whole-clip array stays in memory (`runtime.frames_in_memory_mb`; 0 outside a run):
    beyond it `empty` maps from a file, and ground-truth work is not kept for the other pairs."""
    pred_video: Path | None = None
    """The file the method's output was read from (results, external checkouts): errors about the output name it."""

    def __post_init__(self) -> None:
        """Arrays given as frames become `Frames` (the same object for both sides when they were the same array)."""
        same = self.pred_frames is self.gt_frames
        self.gt_frames = as_frames(self.gt_frames)
        self.pred_frames = self.gt_frames if same else as_frames(self.pred_frames)

    @classmethod
    def of_crops(cls, pred: np.ndarray, gt: np.ndarray, **fields: Any) -> EvalPair:
        """A pair made of face crops only (the crops are also the frames): for crop metrics and tests."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"generated crops {pred.shape} vs ground truth {gt.shape}")
        n = len(gt)
        silence = np.zeros(n * 640, dtype=np.float32)
        base = dict(
            clip_id="crops", video=Path("crops"), method="crops", fps=25, sample_rate=16000,
            pred_frames=pred, gt_frames=gt, pred_audio=silence, gt_audio=silence, audio_valid=0,
            pred_crops=pred, gt_crops=gt, boxes=np.zeros((n, 3), np.float32),
            gt_landmarks=np.full((n, 478, 3), np.nan, np.float32), gt_has_face=np.zeros(n, bool),
        )  # fmt: skip
        return cls(**{**base, **fields})

    @property
    def n_frames(self) -> int:
        return len(self.pred_frames)

    @property
    def pred_is_gt(self) -> bool:
        """The method returned the ground-truth frames themselves (the `gt` row)."""
        return self.pred_crops is self.gt_crops

    def empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        """An uninitialised whole-clip array to fill (e.g. the generated crops, the ground truth's flows)."""
        return np.empty(shape, dtype) if self.spill is None else self.spill(tuple(shape), dtype)

    def ground_truth(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per clip for every method's pair: `key` must name the metric id and the quantity."""
        if key not in self.gt_memo:
            self.gt_memo[key] = compute()
        return self.gt_memo[key]

    def crops_on(self, device: str) -> tuple[Any, Any]:
        """(generated, ground-truth) face crops for metrics running on `device`: the arrays themselves on the CPU;
        elsewhere uint8 (N, H, W, 3) tensors moved there once, the ground truth once per clip (shared by every
        method's pair), the generated side once per pair (shared by the metrics)."""
        if device == "cpu":
            return self.pred_crops, self.gt_crops

        def move(x: np.ndarray):
            import torch

            return torch.from_numpy(np.ascontiguousarray(x)).to(device)

        gt = self.ground_truth(f"crops@{device}", lambda: move(self.gt_crops))
        if self.pred_is_gt:
            return gt, gt
        key = f"crops@{device}"
        if key not in self.memo:
            self.memo[key] = move(self.pred_crops)
        return self.memo[key], gt

    def pred_feature(self, key: Any, fn: Callable[[np.ndarray, int], Any]) -> Any:
        """`fn(chunk, start)` over the generated frames, chunks concatenated (tuples element-wise); computed
        once per pair (by the runner's pass when a metric declared it in `frame_features`)."""
        if key not in self.features:
            self.features[key] = map_chunks(self.pred_frames, self.chunk_frames, fn)
        return self.features[key]

    def landmark_feature(self) -> dict[str, Callable[[np.ndarray, int], Any]]:
        """The `frame_features` entry of the generated frames' FaceMesh landmarks (none for the ground truth itself,
        or when given in `memo["pred_landmarks"]`)."""
        if self.pred_frames is self.gt_frames or "pred_landmarks" in self.memo:
            return {}
        if self.detect is None:
            raise RuntimeError("no landmark detector given")
        detect = self.detect
        return {"pred_landmarks": lambda chunk, start: detect(chunk)}

    def pred_landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """FaceMesh landmarks of the generated frames: (N, 478, 3), found mask."""
        if self.pred_frames is self.gt_frames:
            return self.gt_landmarks, self.gt_has_face
        if "pred_landmarks" in self.memo:
            return self.memo["pred_landmarks"]
        (key, fn), = self.landmark_feature().items()
        return self.pred_feature(key, fn)


class Metric:
    """One metric: feed a clip with `update_pair`, read its value with `compute`."""

    name: ClassVar[str]
    """Set by `METRICS.register(name)`."""
    higher_is_better: ClassVar[bool]
    group: ClassVar[str] = "Other"
    """Display group of the tables (the paper's: Visual Quality, Lip-Sync, Stability)."""
    pooled: ClassVar[bool] = False
    Options: ClassVar[type | None] = None
    options_key: ClassVar[str | None] = None
    """Config key of the options when several metrics share them (lse_c and lse_d read `lse`)."""
    WEIGHTS: ClassVar[tuple[WeightsSpec, ...]] = ()

    def __init__(
        self,
        crop_tag: str,
        device: str = "cpu",
        weights: Mapping[str, Any] | None = None,
        cache_dir: Path | None = None,
        decode_tag: str | None = None,
        **options: Any,
    ):
        self.crop_tag = crop_tag
        self.decode_tag = decode_tag or PreprocessConfig().decode_tag()
        self.device = resolve_device(device)
        self.weights = dict(weights or {})
        self.cache_dir = cache_dir
        key = self.options_key or self.name
        if self.Options is not None:
            self.opts = typed(self.Options, options, key)
        elif options:
            raise ConfigError(f"metric {self.name} takes no options (got {', '.join(sorted(options))})")
        else:
            self.opts = None
        self._lazy: dict[str, LazyWeights] = {}
        self.reset()

    @classmethod
    def weights_specs(cls) -> list[WeightsSpec]:
        """The weights files this metric needs."""
        return list(cls.WEIGHTS)

    def lazy_weights(self, spec: WeightsSpec, build: Callable[[Path], M]) -> M:
        """The model built from `spec`'s file on first use (`weights.<spec.name>`); its sha256 goes into the rows."""
        lazy = self._lazy.setdefault(spec.name, LazyWeights(spec, self.weights, build))
        lazy.build = lazy.build or build
        return lazy.get()

    def resolve_weights(self, spec: WeightsSpec) -> tuple[Path, str]:
        """(path, sha256) of `spec`'s file without building the model."""
        return self._lazy.setdefault(spec.name, LazyWeights(spec, self.weights, None)).resolve()

    @property
    def weights_sha256(self) -> str | None:
        shas = [w.sha256 for w in self._lazy.values() if w.sha256]
        return ",".join(shas) if shas else None

    def cached_ground_truth(self, pair: EvalPair, kind: str, compute: Callable[[], np.ndarray] | None) -> np.ndarray | None:
        """`compute()` of the ground-truth side, kept for the clip's other pairs (`pair.gt_memo`) and cached on disk
        by clip content + protocol + weights + decode version (`<cache>/features/`, atomic; not without a cache folder or a clip
        hash). With `compute=None`: what is already there, else None."""
        from stsa_bench.core.paths import atomic_write_bytes, cache_key, entry_dir

        params = {"protocol": self.protocol(), "decode": DECODE_VERSION}
        key = cache_key(kind, content=[pair.clip_sha256, self.weights_sha256 or ""], params=params)
        if key in pair.gt_memo:
            return pair.gt_memo[key]
        path = None
        if self.cache_dir is not None and pair.clip_sha256:
            path = entry_dir(Path(self.cache_dir), "features", key).with_suffix(".npy")
            if path.is_file():
                pair.gt_memo[key] = np.load(path)
                return pair.gt_memo[key]
        if compute is None:
            return None
        value = pair.gt_memo[key] = compute()
        if path is not None:
            import io

            buf = io.BytesIO()
            np.save(buf, value)
            atomic_write_bytes(path, buf.getvalue())
        return value

    def frames_tag(self) -> str:
        """Which frames the metric reads, with their decode and preprocessing settings (default: the face crops)."""
        return self.crop_tag

    def protocol_fields(self) -> tuple[str, ...]:
        """The metric's own protocol parameters, rendered from its constants and options."""
        return ()

    def protocol(self) -> str:
        return ",".join((self.frames_tag(), *self.protocol_fields()))

    @property
    def id(self) -> str:
        return f"{self.name}[{self.protocol()}]"

    def frame_features(self, pair: EvalPair) -> dict[Any, Callable[[np.ndarray, int], Any]]:
        """What this metric reads from the generated full frames, as {key: fn(chunk, start)} for
        `pair.pred_feature(key, fn)`; keys are shared by metrics that read the same thing. Default: nothing
        (the face crops are cut by the runner)."""
        return {}

    def reset(self) -> None:
        """Clear accumulated state (subclasses with more state extend this and call super)."""
        self.total = 0.0
        self.count = 0
        self.note: str | None = None

    def update_pair(self, pair: EvalPair) -> None:
        """Default: per-frame values of the generated vs ground-truth face crops, `pair.batch_size` at a time."""
        step = max(1, pair.batch_size)
        pred, gt = pair.crops_on(self.device)
        for i in range(0, pair.n_frames, step):
            self.add_frames(pred[i : i + step], gt[i : i + step])

    def update(self, pred: Any, target: Any) -> None:
        """`update_pair` for generated and ground-truth face crops (N, H, W, 3) alone."""
        self.update_pair(EvalPair.of_crops(pred, target))

    def add_frames(self, pred: Any, target: Any) -> None:
        values = self.per_frame(to_nchw(pred, self.device), to_nchw(target, self.device))
        self.total += float(values.double().sum())
        self.count += int(values.numel())

    def per_frame(self, pred, target):
        """Per-frame values of (N, 3, H, W) float tensors in [0, 1]."""
        raise NotImplementedError(f"{self.name} has no per-frame definition")

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError(f"{self.name}: no frames were given")
        return self.total / self.count

    def state(self) -> dict[str, np.ndarray]:
        """Pooled metrics: the partial state of the clips fed since `reset` (saved per clip)."""
        raise NotImplementedError

    def merge(self, state: Mapping[str, np.ndarray]) -> None:
        """Pooled metrics: add a saved partial state."""
        raise NotImplementedError

    def exchange(self, a: list[Mapping[str, np.ndarray]], b: list[Mapping[str, np.ndarray]]):
        """Pooled metrics: a fast `swapped(mask) -> value(A') - value(B')` for a paired exchange test over the clips of
        the two methods' partial states (A' takes b's partial where mask is True, B' the other); None: the caller
        merges states for every draw."""
        return None


class PooledFeatures(Metric):
    """A pooled metric over feature rows of both sides (FID's frames, FVD's windows): the per-clip partial state is
    the generated (`pred`) and ground-truth (`target`) rows, merged by concatenation."""

    pooled = True

    def reset(self) -> None:
        super().reset()
        self.pred: list[np.ndarray] = []
        self.target: list[np.ndarray] = []

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        self.pred.append(pred)
        self.target.append(target)
        self.count += len(pred)

    def state(self) -> dict[str, np.ndarray]:
        return {"pred": np.concatenate(self.pred), "target": np.concatenate(self.target)}

    def merge(self, state: Mapping[str, np.ndarray]) -> None:
        self.add(np.asarray(state["pred"]), np.asarray(state["target"]))


def build_metric(
    name: str,
    crop_tag: str,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
    weights: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    decode_tag: str | None = None,
) -> Metric:
    cls = METRICS.get(name)
    return cls(crop_tag=crop_tag, device=device, weights=weights, cache_dir=cache_dir, decode_tag=decode_tag, **dict(options or {}))


def options_key(name: str) -> str:
    """The config key holding a metric's options (lse_c and lse_d share `lse`)."""
    return METRICS.get(name).options_key or name
