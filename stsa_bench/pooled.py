"""Pooled metrics (FID, DME) recomputed over any list of clips from the per-clip partials a run saved:
the `PooledSource` the reports use for common-clip tables and bootstrap intervals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core.errors import ConfigError
from .core.results import metric_name
from .run_files import Partials


class SavedPartials:
    """`reports.runs.PooledSource` over one or more run folders of the same manifest.

    A partial is `<run>/partials/<method>/<metric key>/<clip sha256>.npz` (run_files.Partials); clip ids
    come from the manifest. The metric that merges them is rebuilt from a config the run saved (run.json)
    whose metric id is the row's; partial states are read once and kept."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = [Path(p) for p in paths]
        self.clip_of: dict[str, str] = {}
        self.configs: list[dict] = []
        for p in self.paths:
            manifest = p / "manifest.json"
            if manifest.is_file():
                for clip, entry in json.loads(manifest.read_text()).get("clips", {}).items():
                    if entry.get("sha256"):
                        self.clip_of[entry["sha256"]] = clip
            info = p / "run.json"
            if info.is_file():
                doc = json.loads(info.read_text())
                self.configs += [doc["config"]] + [x["config"] for x in doc.get("invocations", []) if "config" in x]
        self._metrics: dict[str, Any] = {}
        self._listed: dict[tuple[str, str], dict[str, Path]] = {}
        self._states: dict[tuple[str, str, str], dict] = {}
        self._values: dict[tuple, float] = {}

    def _files(self, method: str, metric: str) -> dict[str, Path]:
        """{clip id: partial file} over all run folders (listed once; `method@folder` looks in that folder only).
        Two folders holding different partials of one clip are a ConfigError naming both, as conflicting rows are."""
        from reports.runs import MIXED_SEP, folder_labels

        if (method, metric) in self._listed:
            return self._listed[(method, metric)]
        out = self._listed[(method, metric)] = {}
        base, _, only = method.partition(MIXED_SEP)
        for p, label in zip(self.paths, folder_labels(self.paths)):
            folder = Partials(p).folder(base, metric)
            if (only and only != label) or not folder.is_dir():
                continue
            for f in sorted(folder.glob("*.npz")):
                clip = self.clip_of.get(f.stem)
                if clip is None:
                    continue
                if clip in out and not _same_state(out[clip], f):
                    raise ConfigError(f"{out[clip]} and {f} hold different {metric_name(metric)} partials of {method} for clip {clip!r}; "
                                      f"merge only folders that agree")  # fmt: skip
                out.setdefault(clip, f)
        return out

    def clips(self, method: str, metric: str) -> set[str] | None:
        files = self._files(method, metric)
        if not files or self._metric(metric) is None:
            return None
        return set(files)

    def value(self, method: str, metric: str, clips: Sequence[str]) -> float:
        key = (method, metric, tuple(sorted(clips)))
        if key not in self._values:
            m = self._metric(metric)
            if m is None:
                raise ValueError(f"{metric}: no saved config rebuilds this metric id")
            m.reset()
            for clip in clips:
                m.merge(self._state(method, metric, clip))
            self._values[key] = m.compute()
        return self._values[key]

    def exchange(self, method: str, baseline: str, metric: str, clips: Sequence[str]):
        """`swapped(mask) -> value(A') - value(B')` over `clips`, A' taking the baseline's partial where mask is True and B'
        the method's: the metric's fast engine when it has one (Frechet metrics), else states merged per draw."""
        m = self._metric(metric)
        if m is None:
            raise ValueError(f"{metric}: no saved config rebuilds this metric id")
        a = [self._state(method, metric, c) for c in clips]
        b = [self._state(baseline, metric, c) for c in clips]
        fast = m.exchange(a, b)
        if fast is not None:
            return fast

        def swapped(mask) -> float:
            values = []
            for first, second in ((a, b), (b, a)):
                m.reset()
                for x, y, flip in zip(first, second, mask):
                    m.merge(y if flip else x)
                values.append(m.compute())
            return values[0] - values[1]

        return swapped

    def _state(self, method: str, metric: str, clip: str) -> dict:
        key = (method, metric, clip)
        if key not in self._states:
            files = self._files(method, metric)
            if clip not in files:
                raise ValueError(f"no {metric_name(metric)} partial of {method} for clip {clip}")
            import numpy as np

            with np.load(files[clip]) as z:
                self._states[key] = {k: z[k] for k in z.files}
        return self._states[key]

    def _metric(self, metric_id: str):
        """A metric instance whose id is `metric_id`, built from a saved run config (None when none is)."""
        if metric_id in self._metrics:
            return self._metrics[metric_id]
        from metrics import build_metric
        from metrics.base import options_key

        from .core.config import run_config_from_dict

        name, found = metric_name(metric_id), None
        for resolved in self.configs:
            try:
                cfg = run_config_from_dict({**resolved, "metrics": [name]})
                pp = cfg.preprocess
                m = build_metric(name, pp.crop_tag(), "cpu", cfg.options_for(options_key(name)), cfg.weights, None, pp.decode_tag())
            except Exception:  # noqa: BLE001, S112 - a config of another harness version: try the next
                continue
            if m.id == metric_id:
                found = m
                break
        self._metrics[metric_id] = found
        return found


def _same_state(a: Path, b: Path) -> bool:
    """Two saved partial states hold the same arrays (the files' bytes differ by their zip timestamps)."""
    import numpy as np

    with np.load(a) as x, np.load(b) as y:
        return sorted(x.files) == sorted(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
