"""Pooled metrics (FID, DME) recomputed over any list of clips from the per-clip partials a run saved:
the `PooledSource` the reports use for common-clip tables and bootstrap intervals."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        """{clip id: partial file} over all run folders (listed once)."""
        if (method, metric) in self._listed:
            return self._listed[(method, metric)]
        out = self._listed[(method, metric)] = {}
        for p in self.paths:
            folder = Partials(p).folder(method, metric)
            if folder.is_dir():
                for f in sorted(folder.glob("*.npz")):
                    clip = self.clip_of.get(f.stem)
                    if clip is not None:
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
