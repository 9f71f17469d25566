"""Figures for a run's report, built from result rows and strip PNGs only.

Every figure is written as PNG and SVG into an output folder; the same input gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from stsa_bench.core.layout import GT_STRIP
from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import ResultRow, metric_directions, metric_name, printable

UNITS = {"psnr": "dB", "dme": "px", "dme_dis": "px"}
"""Units of the metrics that have one; the others are unitless."""
OFFSET_METRICS = ("lse_c", "lse_d")
RC = {
    "svg.hashsalt": "stsa-bench",
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
DPI = 150
HEATMAP_ANNOTATE_MAX = 80
"""Annotate heat-map cells with their value when the grid has at most this many cells."""

_OFFSET_RE = re.compile(r"offset\s*([+-]?\d+)")



def arrow(hib: bool | None) -> str:
    return "" if hib is None else (" ↑" if hib else " ↓")


def axis_label(name: str) -> str:
    unit = UNITS.get(name)
    return f"{name} ({unit})" if unit else name


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _method_colors(methods: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(methods)}


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    with matplotlib.rc_context(RC):
        fig.savefig(paths[0], dpi=DPI, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return paths


def _fmt(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _jitter(n: int, seed: int, width: float = 0.22) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, n)


def bars_figure(rows: list[ResultRow]) -> Figure | None:
    """The figure of `metric_bars`, or None without rows."""
    if not rows:
        return None
    methods = _ordered(r.method for r in rows)
    metrics = _ordered(r.metric for r in rows)
    names = [metric_name(m) for m in metrics]
    dup = {n for n in names if names.count(n) > 1}
    colors = _method_colors(methods)
    cells: dict[tuple[str, str], list[ResultRow]] = defaultdict(list)
    for r in rows:
        cells[(r.metric, r.method)].append(r)

    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    panel_w = max(2.6, 0.55 * len(methods) + 1.2)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(panel_w * ncols, 3.0 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for k, (metric, name) in enumerate(zip(metrics, names)):
            ax = axes[k]
            pooled_metric = False
            tops = []
            for i, method in enumerate(methods):
                group = cells.get((metric, method), [])
                pooled = [r for r in group if r.clip == POOLED]
                per_clip = [r for r in group if r.clip != POOLED]
                ok = [r.value for r in per_clip if r.status == "ok"]
                n_fail = sum(r.status == "failed" for r in per_clip)
                if pooled:
                    pooled_metric = True
                    bar = pooled[0].value if pooled[0].status == "ok" else None
                else:
                    bar = float(np.mean(ok)) if ok else None
                if not group:
                    ax.text(i, 0.03, "n/a", transform=ax.get_xaxis_transform(), rotation=90,
                            ha="center", va="bottom", color="0.5", fontsize=8)
                    continue
                if bar is None:
                    ax.text(i, 0.03, "failed", transform=ax.get_xaxis_transform(), rotation=90,
                            ha="center", va="bottom", color="#b00020", fontsize=8, fontweight="bold")
                else:
                    ax.bar(i, bar, width=0.7, color=colors[method], alpha=0.55, edgecolor=colors[method], linewidth=1)
                    label_y = max([bar] + ok)
                    ax.annotate(_fmt(bar), (i, label_y), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=7)
                    tops.append(label_y)
                if ok:
                    ax.scatter(i + _jitter(len(ok), seed=1000 * k + i), ok, s=10, color=colors[method],
                               edgecolor="black", linewidth=0.4, zorder=3)
                    tops.extend(ok)
                if n_fail and bar is not None:
                    ax.text(i, 0.02, f"{n_fail} failed", transform=ax.get_xaxis_transform(),
                            ha="center", va="bottom", color="#b00020", fontsize=7, fontweight="bold")
            title = f"{name}{arrow(metric_directions(rows).get(name))}"
            if name in dup:
                title += f"\n[{metric.split('[', 1)[1]}"
            if pooled_metric:
                title += " (pooled)"
            ax.set_title(title)
            ax.set_ylabel(axis_label(name))
            ax.set_xticks(range(len(methods)), methods, rotation=30 if len(methods) > 3 else 0,
                          ha="right" if len(methods) > 3 else "center")
            ax.set_xlim(-0.6, len(methods) - 0.4)
            if tops and max(tops) > 0:
                ax.set_ylim(min(0.0, min(tops) * 1.1), max(tops) * 1.15)
            ax.axhline(0, color="black", linewidth=0.6)
        for ax in axes[len(metrics):]:
            ax.set_visible(False)
        fig.suptitle("Per-method results (bar: mean over clips or pooled value; dots: clips)", fontsize=10)
    return fig


def metric_bars(rows: list[ResultRow], out_dir: Path) -> list[Path]:
    """One panel per metric: bars of the per-method mean (or pooled value), dots for clips, "failed" where none."""
    fig = bars_figure(rows)
    return [] if fig is None else _save(fig, out_dir, "metric_bars")


def heatmap_figure(rows: list[ResultRow], name: str) -> Figure | None:
    """The figure of `clip_heatmap`, or None when the metric has no per-clip rows."""
    sel = [r for r in rows if metric_name(r.metric) == name and r.clip != POOLED]
    if not sel:
        return None
    methods = _ordered(r.method for r in sel)
    clips = sorted(_ordered(r.clip for r in sel))
    ci, mi = {c: i for i, c in enumerate(clips)}, {m: j for j, m in enumerate(methods)}
    values = np.full((len(clips), len(methods)), np.nan)
    failed = np.zeros_like(values, dtype=bool)
    for r in sel:
        if r.status == "ok" and r.value is not None:
            values[ci[r.clip], mi[r.method]] = r.value
        else:
            failed[ci[r.clip], mi[r.method]] = True
    hib = metric_directions(rows).get(name)
    cmap = matplotlib.colormaps["viridis" if hib is not False else "viridis_r"].with_extremes(bad="white")
    n_cells = values.size
    annotate = n_cells <= HEATMAP_ANNOTATE_MAX
    h = min(20.0, 1.6 + 0.32 * len(clips))
    w = min(16.0, 2.8 + (0.9 if annotate else 0.5) * len(methods))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w, h), layout="constrained")
        ax = fig.subplots()
        finite = values[np.isfinite(values)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                       interpolation="nearest")
        for i, j in zip(*np.nonzero(failed)):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.78", edgecolor="0.45", hatch="///",
                                   linewidth=0.5))
            ax.text(j, i, "×", ha="center", va="center", fontsize=11, color="#b00020", fontweight="bold")
        if annotate:
            for i, j in zip(*np.nonzero(np.isfinite(values))):
                lum = np.dot(cmap(im.norm(values[i, j]))[:3], (0.299, 0.587, 0.114))
                ax.text(j, i, _fmt(values[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if lum > 0.5 else "white")
        ax.set_xticks(range(len(methods)), methods, rotation=30 if len(methods) > 3 else 0,
                      ha="right" if len(methods) > 3 else "center")
        step = max(1, math.ceil(len(clips) / 60))
        ax.set_yticks(range(0, len(clips), step), [printable(c) for c in clips[::step]], fontsize=7 if len(clips) > 20 else 8)
        ax.set_xlabel("method")
        ax.set_ylabel("clip")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        direction = "" if hib is None else ("  (brighter = better)")
        fig.colorbar(im, ax=ax, shrink=0.9, label=f"{axis_label(name)}{arrow(hib)}{direction}")
        n_fail = int(failed.sum())
        ax.set_title(f"{name}{arrow(hib)} per clip" + (f"  (× = failed, {n_fail})" if n_fail else ""))
    return fig


def clip_heatmap(rows: list[ResultRow], metric_name: str, out_dir: Path) -> list[Path]:
    """Clips x methods heat-map of one metric's per-clip values; failed cells hatched grey with "×"."""
    fig = heatmap_figure(rows, metric_name)
    return [] if fig is None else _save(fig, out_dir, f"heatmap_{metric_name}")


def offset_counts(rows: list[ResultRow]) -> dict[str, Counter]:
    """Per method, a Counter of the LSE AV offsets (frames) parsed from lse_c notes, else from lse_d notes."""
    for source in OFFSET_METRICS:
        out: dict[str, Counter] = {}
        for r in rows:
            if metric_name(r.metric) != source or r.clip == POOLED or r.status != "ok" or not r.note:
                continue
            m = _OFFSET_RE.search(r.note)
            if m:
                out.setdefault(r.method, Counter())[int(m.group(1))] += 1
        if out:
            return out
    return {}


def offset_figure(rows: list[ResultRow]) -> Figure | None:
    """The figure of `offset_histogram`: one panel per method, bars = clips per integer offset; None without offsets."""
    counts = offset_counts(rows)
    if not counts:
        return None
    methods = [m for m in _ordered(r.method for r in rows) if m in counts]
    colors = _method_colors(_ordered(r.method for r in rows))
    lo = min(min(c) for c in counts.values())
    hi = max(max(c) for c in counts.values())
    lo, hi = min(lo, -1), max(hi, 1)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(5.0, 0.22 * (hi - lo + 1) + 2.0), 0.4 + 1.5 * len(methods)), layout="constrained")
        axes = fig.subplots(len(methods), 1, sharex=True, squeeze=False).ravel()
        for ax, method in zip(axes, methods):
            c = counts[method]
            xs = sorted(c)
            ax.bar(xs, [c[x] for x in xs], width=0.85, color=colors[method], edgecolor="black", linewidth=0.4)
            ax.axvline(0, color="0.3", linestyle="--", linewidth=0.8)
            ax.set_ylabel("clips")
            ax.set_ylim(0, max(c.values()) * 1.2)
            ax.yaxis.get_major_locator().set_params(integer=True)
            n = sum(c.values())
            in_sync = c.get(0, 0)
            ax.set_title(f"{method}: {n} clips, median {np.median(list(c.elements())):+g}, {in_sync} at 0",
                         fontsize=9, loc="left")
        axes[-1].set_xlim(lo - 1, hi + 1)
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].set_xlabel("AV offset (frames; negative = audio lags video)")
        fig.suptitle("LSE audio-video offset per clip (0 = in sync)", fontsize=10)
    return fig


def offset_histogram(rows: list[ResultRow], out_dir: Path) -> list[Path]:
    """Histogram of LSE AV offsets per method; [] when no row carries one."""
    fig = offset_figure(rows)
    return [] if fig is None else _save(fig, out_dir, "lse_offsets")


def _run_methods(run_dir: Path, strips: Path) -> list[str]:
    order: list[str] = []
    results = run_dir / "results.jsonl"
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            try:
                order.append(json.loads(line)["method"])
            except (ValueError, KeyError, TypeError):
                continue
    dirs = sorted(p.name for p in strips.iterdir() if p.is_dir() and p.name != GT_STRIP)
    return [m for m in _ordered(order) if m in dirs] + [m for m in dirs if m not in order]


def _read_png(path: Path) -> np.ndarray | None:
    try:
        return mpimg.imread(path, format="png")
    except Exception:
        return None


def strip_figure(run_dir: Path, methods: list[str] | None = None, max_clips: int = 3) -> Figure | None:
    """The figure of `frame_strip`, or None when no strip exists."""
    strips = Path(run_dir) / "strips"
    if not strips.is_dir():
        return None
    methods = list(methods) if methods is not None else _run_methods(Path(run_dir), strips)
    sources = [(GT_STRIP, "ground truth")] + [(m, m) for m in methods]
    stems = _ordered(sorted(p.stem for d, _ in sources if (strips / d).is_dir() for p in (strips / d).glob("*.png")))
    gt_stems = {p.stem for p in (strips / GT_STRIP).glob("*.png")} if (strips / GT_STRIP).is_dir() else set()
    stems = [s for s in stems if s in gt_stems] + [s for s in stems if s not in gt_stems]
    groups = []
    for stem in stems:
        tiles = [(label, img) for d, label in sources if (img := _read_png(strips / d / f"{stem}.png")) is not None]
        if tiles:
            groups.append((stem.replace("__", "/"), tiles))
        if len(groups) >= max_clips:
            break
    if not groups:
        return None
    px_w = max(img.shape[1] for _, t in groups for _, img in t)
    left, width, gap, title_h, top, bottom = 1.2, 7.0, 0.05, 0.26, 0.4, 0.05
    heights = [[width * img.shape[0] / px_w for _, img in t] for _, t in groups]
    fig_h = top + bottom + sum(title_h + sum(h) + gap * len(h) for h in heights)
    fig_w = left + width + 0.05
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(fig_w, fig_h))
        y = fig_h - top
        for (clip, tiles), hs in zip(groups, heights):
            y -= title_h
            for r, ((label, img), h) in enumerate(zip(tiles, hs)):
                w = width * img.shape[1] / px_w
                ax = fig.add_axes((left / fig_w, (y - h) / fig_h, w / fig_w, h / fig_h))
                ax.imshow(img, interpolation="nearest", aspect="auto")
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
                if r == 0:
                    ax.set_title(f"clip {printable(clip)}", loc="left", fontsize=9, fontweight="bold", pad=3)
                y -= h + gap
        fig.suptitle("Mouth region of evenly spaced frames (time runs left to right)", fontsize=10,
                     y=1 - 0.12 / fig_h, va="top")
    return fig


def frame_strip(run_dir: Path, out_dir: Path, methods: list[str] | None = None, max_clips: int = 3) -> list[Path]:
    """A grid of mouth strips: per clip, the ground truth and each method's output; missing strips are left out."""
    fig = strip_figure(run_dir, methods, max_clips)
    return [] if fig is None else _save(fig, out_dir, "frame_strips")


def heatmap_metric(rows: list[ResultRow]) -> str | None:
    """psnr when it has per-clip rows, else the first metric that does."""
    names = _ordered(metric_name(r.metric) for r in rows if r.clip != POOLED and r.status == "ok")
    names = names or _ordered(metric_name(r.metric) for r in rows if r.clip != POOLED)
    if not names:
        return None
    return "psnr" if "psnr" in names else names[0]


def make_plots(rows: list[ResultRow], run_dir: Path, out_dir: Path) -> list[Path]:
    """All figures for one run: metric bars, one heat-map, LSE offsets (if any) and frame strips."""
    paths = metric_bars(rows, out_dir)
    name = heatmap_metric(rows)
    if name is not None:
        paths += clip_heatmap(rows, name, out_dir)
    paths += offset_histogram(rows, out_dir)
    paths += frame_strip(run_dir, out_dir)
    return paths
