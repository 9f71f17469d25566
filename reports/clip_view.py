"""The report page's per-clip sections: every clip with the ground truth and each method side by side
(synchronised videos when the run saved them, mouth strips otherwise) and that clip's values; a sortable
per-clip table; the worst clips per metric for each method."""

from __future__ import annotations

import base64
import html
import os
import urllib.parse
from pathlib import Path

from stsa_bench.core.layout import GT_STRIP, strip_path, video_path
from stsa_bench.core.results import POOLED_CLIP as POOLED
from stsa_bench.core.results import metric_name

from .runs import GT_METHODS, Run

WORST = 3
"""Worst clips listed per metric and method."""
BROWSER_VIDEO = (".mp4", ".m4v", ".webm")
"""Source videos the page links for the ground truth (others, e.g. FFV1 in Matroska, show the strip)."""

CSS = """
.clip { border-top: 1px solid #ddd; padding-top: .4em; }
.media { display: flex; flex-wrap: wrap; gap: .6em; }
.media figure { margin: 0; max-width: 320px; }
.media video, .media img { width: 100%; max-width: 320px; border: 1px solid #eee; }
.media figcaption { font-size: .8em; color: #333; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th.asc::after { content: " ▲"; } table.sortable th.desc::after { content: " ▼"; }
""".strip()

SCRIPT = """
document.querySelectorAll('.clip').forEach(function (section) {
  var vids = Array.prototype.slice.call(section.querySelectorAll('video'));
  var busy = false;
  function follow(src, act) { if (busy) return; busy = true;
    vids.forEach(function (v) { if (v !== src) act(v); }); busy = false; }
  vids.forEach(function (v) {
    v.addEventListener('play', function () { follow(v, function (o) { o.currentTime = v.currentTime; o.play(); }); });
    v.addEventListener('pause', function () { follow(v, function (o) { o.pause(); }); });
    v.addEventListener('seeked', function () { follow(v, function (o) { o.currentTime = v.currentTime; }); });
  });
});
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v !== undefined ? a.cells[col].dataset.v : a.cells[col].textContent;
        var y = b.cells[col].dataset.v !== undefined ? b.cells[col].dataset.v : b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
""".strip()


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _anchor(i: int) -> str:
    return f"clip-{i}"


class ClipView:
    """Per-clip HTML for a run (or merged runs); media paths are relative to the page's folder."""

    def __init__(self, run: Run, page_dir: Path):
        self.run = run
        self.page_dir = Path(page_dir)
        self.values = {(r.clip, r.method, r.metric): r for r in run.rows if r.clip != POOLED}
        self.metrics = [m for m in run.metrics if any(k[2] == m for k in self.values)]
        self.anchor = {clip: _anchor(i) for i, clip in enumerate(run.clips)}

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.page_dir)).as_posix()

    def _find(self, make) -> Path | None:
        return next((p for base in self.run.paths or [self.run.path] if (p := make(base)).is_file()), None)

    def _media(self, method: str, clip: str) -> tuple[str, str | None]:
        """(HTML of the video or strip, the relative video path or None)."""
        video = self._find(lambda base: video_path(base, method, clip))
        if video is None and method in (GT_STRIP, *GT_METHODS):
            source = Path((self.run.manifest.get("clips") or {}).get(clip, {}).get("video") or "")
            playable = source.suffix.lower() in BROWSER_VIDEO and source.is_file()
            video = self._find(lambda base: video_path(base, "gt", clip)) or (source if playable else None)
        if video is not None:
            rel = self._rel(video)
            return f'<video controls preload="metadata" muted src="{_esc(urllib.parse.quote(rel))}"></video>', rel
        strip = self._find(lambda base: strip_path(base, GT_STRIP if method in GT_METHODS else method, clip))
        if strip is None:
            return "<p><em>no strip saved</em></p>", None
        uri = "data:image/png;base64," + base64.b64encode(strip.read_bytes()).decode("ascii")
        return f'<img src="{uri}" alt="{_esc(method)} {_esc(clip)}">', None

    def _caption(self, method: str, clip: str) -> str:
        parts = []
        for metric in self.metrics:
            r = self.values.get((clip, method, metric))
            if r is not None:
                parts.append(f"{metric_name(metric)} {r.value:.4g}" if r.status == "ok" else f"{metric_name(metric)} failed")
        return "; ".join(parts)

    def clips_section(self) -> str:
        """One block per clip: the ground truth, then every method, each with this clip's values."""
        methods = [m for m in self.run.methods if m not in GT_METHODS]
        out = []
        for clip in self.run.clips:
            figures = []
            gt_media, _ = self._media(GT_STRIP, clip)
            gt_values = self._caption("gt", clip) if "gt" in self.run.methods else ""
            figures.append(f'<figure data-method="ground truth">{gt_media}<figcaption><strong>ground truth</strong> {_esc(gt_values)}</figcaption></figure>')
            for m in methods:
                media, _ = self._media(m, clip)
                figures.append(f'<figure data-method="{_esc(m)}">{media}<figcaption><strong>{_esc(m)}</strong> {_esc(self._caption(m, clip))}</figcaption></figure>')
            out.append(
                f'<div class="clip" id="{self.anchor[clip]}" data-clip="{_esc(clip)}"><h3>{_esc(clip)}</h3>'
                f'<div class="media">{"".join(figures)}</div></div>'
            )
        return "\n".join(out)

    def table_section(self) -> str:
        """A sortable table: one row per (clip, method), one column per per-clip metric."""
        head = "".join(f"<th>{_esc(metric_name(m))}</th>" for m in self.metrics)
        rows = []
        for clip in self.run.clips:
            for method in self.run.methods:
                cells = []
                for metric in self.metrics:
                    r = self.values.get((clip, method, metric))
                    if r is None:
                        cells.append("<td></td>")
                    elif r.status == "ok":
                        cells.append(f'<td data-v="{r.value!r}">{r.value:.4f}</td>')
                    else:
                        cells.append(f'<td title="{_esc(r.error or "")}">failed</td>')
                if any(c != "<td></td>" for c in cells):
                    link = f'<a href="#{self.anchor[clip]}">{_esc(clip)}</a>'
                    rows.append(f"<tr><td>{link}</td><td>{_esc(method)}</td>{''.join(cells)}</tr>")
        return f'<table class="sortable"><thead><tr><th>clip</th><th>method</th>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"

    def worst_section(self) -> str:
        """Per metric with a direction, each method's WORST worst clips (linked to their block)."""
        items = []
        for metric in self.metrics:
            hib = self.run.higher_is_better(metric_name(metric))
            if hib is None:
                continue
            for method in (m for m in self.run.methods if m not in GT_METHODS):
                ok = [(r.value, clip) for clip in self.run.clips if (r := self.values.get((clip, method, metric))) and r.status == "ok"]
                worst = sorted(ok, reverse=not hib)[:WORST]
                if worst:
                    links = ", ".join(f'<a href="#{self.anchor[c]}">{_esc(c)}</a> ({v:.4g})' for v, c in worst)
                    items.append(f"<li><code>{_esc(metric_name(metric))}</code> · {_esc(method)}: {links}</li>")
        return "<ul>\n" + "\n".join(items) + "\n</ul>" if items else "<p>No per-clip metric with a direction.</p>"

    def sections(self) -> list[tuple[str, str]]:
        return [
            ("Worst clips per metric", self.worst_section()),
            ("Per-clip values (click a column to sort)", self.table_section()),
            ("Clips side by side", self.clips_section()),
        ]
