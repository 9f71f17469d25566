"""Wall-clock seconds per stage of a run (`<out>/timing.json` and the summary's one-line breakdown).

Stages are named `setup` (the suite's clips, methods and metrics built, the run folder read), `decode`,
`landmarks`, `crop`, `generate/<method>`, `metric/<name>`, `pooled/<name>` and `io` (rows, partials,
strips, videos); `total` is the whole run. Stages do not nest, so their sum
is at most `total` and the rest (`other`) is the loop's own overhead.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Sums perf_counter seconds and calls per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: Counter = Counter()
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def report(self, **fields) -> dict:
        """{"total_s", "stages": {name: {"s", "calls", "share"}}, "other_s", **fields} (shares of total)."""
        total = time.perf_counter() - self._t0
        stages = {
            k: {"s": round(v, 4), "calls": self.calls[k], "share": round(v / total, 4) if total > 0 else 0.0}
            for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }
        return {**fields, "total_s": round(total, 4), "stages": stages, "other_s": round(max(0.0, total - sum(self.seconds.values())), 4)}


def breakdown_line(report: dict, top: int = 6) -> str:
    """`time 12.3 s: metric/fid 52% · decode 20% · ...` from `report()`'s output."""
    parts = [f"{k} {100 * v['share']:.0f}%" for k, v in list(report["stages"].items())[:top]]
    return f"time {report['total_s']:.1f} s: " + " · ".join(parts) if parts else f"time {report['total_s']:.1f} s"


class NullTimer(StageTimer):
    """A timer that records nothing (the default outside a run)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield
