"""Training data of `stsa-bench train`: per-clip arrays built once from the harness's preprocessing
cache (crops, landmarks, wav2vec2 features, Wav2Lip mel windows) and kept as .npy files.

Clips are decoded and landmarked by the harness's `Preprocessor` (cached), turned into
`stsa.training.data.ClipArrays` and stored under the cache's `stsa_train/` entries, keyed by the
clip's content, the preprocessing and the wav2vec2 weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..core.errors import ClipError, ConfigError
from ..core.paths import canonical_json
from .config import TrainRunConfig

Log = Callable[[str], None]

CLIP_ARRAYS_VERSION = 1
"""Bump when `stsa.training.data.clip_arrays` changes its output for the same inputs."""
ARRAY_FIELDS = ("crops", "full_points", "content_points", "features", "mel")


def wav2vec2_model(source: str | None):
    """wav2vec2 from a folder / the Hugging Face cache, or the random tiny config ("tiny", tests only)."""
    from stsa.audio import load_wav2vec2, tiny_wav2vec2

    if source == "tiny":
        return tiny_wav2vec2()
    try:
        return load_wav2vec2(source)
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc} (setting wav2vec2)") from exc


def tiny_wav2vec2_dir(cache_dir: Path) -> Path:
    """The tiny random wav2vec2 saved once as a folder (so inference can load it by path)."""
    from stsa.audio import tiny_wav2vec2

    from ..core.paths import build_dir_atomically, cache_key, entry_dir

    folder = entry_dir(cache_dir, "wav2vec2", cache_key("wav2vec2-tiny", params={"seed": 0}))
    if not (folder / "config.json").is_file():
        build_dir_atomically(folder, lambda tmp: tiny_wav2vec2().save_pretrained(tmp))
    return folder


class CachedClip:
    """A clip's training arrays in the cache (.npy files), opened memory-mapped on each call."""

    def __init__(self, folder: Path, clip_id: str):
        self.folder, self.clip_id = folder, clip_id

    def __len__(self) -> int:
        """Frames of the clip (read from the crops' .npy header only)."""
        import numpy as np

        return len(np.load(self.folder / "crops.npy", mmap_mode="r"))

    def __call__(self):
        import numpy as np

        from stsa.training.data import ClipArrays

        arrays = {k: np.load(self.folder / f"{k}.npy", mmap_mode="r") for k in ARRAY_FIELDS if (self.folder / f"{k}.npy").is_file()}
        return ClipArrays(self.clip_id, mel=arrays.pop("mel", None), **arrays)


def model_fingerprint(model) -> str:
    """sha256 of a model's config and state dict bytes: the identity of its features in cache keys."""
    import hashlib

    h = hashlib.sha256(canonical_json(model.config.to_dict()).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_clip_arrays(cfg: TrainRunConfig, log: Log) -> tuple[list[CachedClip], list[str]]:
    """(the cached training arrays of every usable clip, one-line reasons for the clips left out).

    Arrays are built once per (clip content, preprocessing, wav2vec2 weights) and kept under the
    cache's `stsa_train/` entries; a dataset of many clips then costs little memory.
    """
    import numpy as np

    from stsa.audio import wav2vec2_features
    from stsa.training.data import clip_arrays

    from ..core.faces import fill_missing_frames
    from ..core.mel import mel_windows, wav2lip_mel
    from ..core.paths import build_dir_atomically, cache_key, entry_dir
    from ..core.preprocess import Preprocessor, prep_key
    from ..core.suites import SuiteContext, load_suite

    clips = load_suite(SuiteContext(cfg.suite, cfg.suite_options, cfg.data, cfg.cache_dir))
    prep = Preprocessor(cfg.preprocess, cfg.cache_dir)
    w2v = wav2vec2_model(cfg.wav2vec2)
    w2v_id = model_fingerprint(w2v)
    cached, failed = [], []

    def build(clip, tmp: Path) -> None:
        p = prep.prepare(clip)
        if p.n_frames < cfg.model.T:
            raise ClipError(f"{clip.video}: {p.n_frames} frames, a training window needs {cfg.model.T}")
        frames = prep.frames(clip)[: p.n_frames]
        mel = mel_windows(wav2lip_mel(p.audio), p.n_frames, cfg.preprocess.fps)
        arrays = clip_arrays(clip.id, frames[..., ::-1], fill_missing_frames(p.landmarks), wav2vec2_features(w2v, p.audio), mel)
        for k in ARRAY_FIELDS:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(getattr(arrays, k)))

    try:
        for clip in clips:
            try:
                if clip.error:
                    raise ClipError(clip.error)
                key = cache_key("stsa_train", content=[clip.sha256, prep_key(clip, cfg.preprocess), w2v_id],
                                params={"T": cfg.model.T}, version=CLIP_ARRAYS_VERSION)
                folder = entry_dir(cfg.cache_dir, "stsa_train", key)
                if not (folder / "crops.npy").is_file():
                    build_dir_atomically(folder, lambda tmp, clip=clip: build(clip, tmp))
                cached.append(CachedClip(folder, clip.id))
            except (ClipError, ValueError) as exc:
                reason = str(exc) if str(clip.video) in str(exc) else f"{clip.video}: {exc}"
                failed.append(reason.splitlines()[0])
                log(f"left out: {failed[-1]}")
    finally:
        prep.close()
    return cached, failed
