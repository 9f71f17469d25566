"""One decorator registry per kind (suites, methods, metrics) with lazy imports.

A registry knows, without importing anything, which module defines each built-in name;
`get(name)` imports that module on first use. Plugins register with the decorator.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} (known: {', '.join(sorted(choices))})"


class Registry(Generic[T]):
    def __init__(self, kind: str, lazy: dict[str, str]):
        self.kind = kind
        self._lazy = dict(lazy)
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(set(self._lazy) | set(self._items))

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")
        return self._items[name]

    def check(self, names: list[str] | tuple[str, ...]) -> None:
        """Fail early, before any heavy import, on a name no module defines."""
        for name in names:
            if name not in self._lazy and name not in self._items:
                raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")


SUITES: Registry = Registry(
    "suite",
    {
        "demo": "stsa_bench.suites",
        "folder": "stsa_bench.suites",
        "lrs2": "stsa_bench.suites",
        "cmlr": "stsa_bench.suites",
    },
)
METHODS: Registry = Registry(
    "method",
    {
        "gt": "baselines.sanity",
        "static": "baselines.sanity",
        "shift": "baselines.sanity",
        "mouth_blur": "baselines.sanity",
        "results": "baselines.results",
        "wav2lip": "baselines.wav2lip",
        "wav2lip_gan": "baselines.wav2lip",
        "wav2lip_official": "baselines.external",
        "dinet": "baselines.external",
        "iplap": "baselines.external",
        "talklip": "baselines.external",
        "musetalk": "baselines.external",
        "pcavs": "baselines.external",
        "latentsync": "baselines.external",
        "difftalk": "baselines.results",
        "stsa": "baselines.stsa",
    },
)
METRICS: Registry = Registry(
    "metric",
    {
        "psnr": "metrics.psnr",
        "ssim": "metrics.ssim",
        "ssim_skimage": "metrics.ssim",
        "fid": "metrics.fid",
        "lpips": "metrics.lpips",
        "lpips_vgg": "metrics.lpips",
        "lipmd": "metrics.lipmd",
        "lipmd_l2": "metrics.lipmd",
        "lipmd_iod": "metrics.lipmd",
        "lse_c": "metrics.lse",
        "lse_d": "metrics.lse",
        "dme": "metrics.dme",
        "dme_dis": "metrics.dme",
    },
)
PAPER_METRICS = ("psnr", "ssim", "fid", "lpips", "lipmd", "lse_d", "lse_c", "dme")
"""`--metrics all`: the eight metrics of the STSA paper's tables, in its column order."""
