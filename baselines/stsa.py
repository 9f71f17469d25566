"""Method `stsa`: the in-tree STSA model (package `stsa/`) on the harness's frames, landmarks and audio.

Settings: `stsa.heatmap_ckpt` (official heatmap_weight.pth), `stsa.renderer_ckpt` (face_weight.pth),
`stsa.wav2vec2` (a local folder with facebook/wav2vec2-base-960h; null: the local Hugging Face
cache), `stsa.batch_size`, `stsa.precision` (fp32 | bf16 | fp16, autocast on CUDA only),
`stsa.official_compat` (reproduce the official per-reference heatmap defect). The 68 points of the
blending mask come from FaceMesh (stsa_bench.core.faces.DLIB68_FROM_FACEMESH) instead of face_alignment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stsa.precision import check_precision
from stsa_bench.core import catalogue
from stsa_bench.core.errors import ClipError, ConfigError
from stsa_bench.core.registry import METHODS

from .base import Generated, Method, Sample


@dataclass(frozen=True)
class STSAMethodOptions:
    heatmap_ckpt: str | None = None
    renderer_ckpt: str | None = None
    wav2vec2: str | None = None
    batch_size: int = 32
    precision: str = "fp32"
    official_compat: bool = False


def _registered_wav2vec2() -> str | None:
    """The wav2vec2 folder in the weights folder (`stsa-bench weights fetch wav2vec2`), else None (the HF cache)."""
    from stsa_bench.core.weights import weights_dir

    folder = weights_dir() / catalogue.WAV2VEC2.filename
    return str(folder) if (folder / "config.json").is_file() else None


@METHODS.register("stsa")
class STSAMethod(Method):
    """STSA (ICME 2025) in-tree: guidance prediction + dual-path face synthesis, batched over frames."""

    version = "in-tree"
    Options = STSAMethodOptions
    WEIGHTS = (catalogue.STSA_HEATMAP, catalogue.STSA_RENDERER, catalogue.WAV2VEC2)

    @classmethod
    def weights_settings(cls, options) -> dict:
        """{catalogue name: the path the options give} (the checkpoints are method options, not weights.<name>)."""
        return {"stsa_heatmap": options.get("heatmap_ckpt"), "stsa_renderer": options.get("renderer_ckpt"), "wav2vec2": options.get("wav2vec2")}

    def __init__(self, env=None, /, **options):
        super().__init__(env, **options)
        from stsa_bench.core.weights import WeightsMissing, resolve

        paths = {}
        for key, spec in (("heatmap_ckpt", catalogue.STSA_HEATMAP), ("renderer_ckpt", catalogue.STSA_RENDERER)):
            value = getattr(self.opts, key)
            if not value:
                try:
                    value = str(resolve(spec, self.env.weights.get(spec.name), check=False)[0])
                except WeightsMissing:
                    raise ConfigError(
                        f"{self.name}.{key} is not set: the path of the official {spec.filename} (SCAILab-USTC/STSA); "
                        f"or register it once with `stsa-bench weights add {spec.name} PATH`"
                    ) from None
            if not Path(value).expanduser().is_file():
                raise ConfigError(f"{self.name}.{key}={value}: no such file")
            paths[key] = value
        self.opts = dataclasses.replace(self.opts, **paths, wav2vec2=self.opts.wav2vec2 or _registered_wav2vec2())
        try:
            check_precision(self.opts.precision)
        except ValueError as exc:
            raise ConfigError(f"{self.name}.{exc}") from None
        self._generator = None

    def generator(self):
        if self._generator is None:
            from stsa.audio import load_wav2vec2
            from stsa.guidance import load_guidance
            from stsa.inference import STSAGenerator, STSAOptions
            from stsa.renderer import load_renderer
            from stsa_bench.core.devices import resolve_device
            from stsa_bench.core.paths import sha256_file

            device = resolve_device(self.env.device)
            heat, rend = (Path(p).expanduser() for p in (self.opts.heatmap_ckpt, self.opts.renderer_ckpt))
            try:
                w2v = load_wav2vec2(self.opts.wav2vec2)
            except FileNotFoundError as exc:
                raise ClipError(f"{exc} (setting {self.name}.wav2vec2)") from exc
            opts = STSAOptions(self.opts.batch_size, 5, self.opts.official_compat, self.opts.precision)
            self._generator = STSAGenerator(load_guidance(heat), load_renderer(rend), w2v, device, opts)
            self.weights_sha = f"{sha256_file(heat)[:16]}+{sha256_file(rend)[:16]}"
        return self._generator

    def generate(self, sample: Sample) -> Generated:
        import numpy as np

        from stsa.inference import ClipInputs
        from stsa_bench.core.faces import fill_missing_frames, landmarks68

        h, w = sample.frames.shape[1:3]
        try:
            lm, lm68 = fill_missing_frames(sample.landmarks), landmarks68(sample.landmarks, w, h)
        except ValueError as exc:
            raise ClipError(f"{sample.clip_id}: stsa: {exc}") from exc
        clip = ClipInputs(np.asarray(sample.frames)[..., ::-1], lm, lm68, sample.audio)
        out = self.generator()(clip, n_frames=len(sample.frames))
        return Generated(out[..., ::-1].copy(), sample.audio)

