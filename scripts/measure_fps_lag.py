"""How far each decode mode moves content in time when a video at another frame rate is read at 25 fps
(docs/protocol.md, "Frame rates"). One source of known timestamps: frame i of a copy at rate r shows time i / r
(the index is written into its pixels), so every decoded 25 fps frame k tells which instant it shows; its lag is
k / 25 - i / r, in 25 fps frames (positive: the content is late).

    python scripts/measure_fps_lag.py          # the table of docs/protocol.md (a few seconds)
"""

from __future__ import annotations

import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stsa_bench.core.media import FPS_MODES, decode_video  # noqa: E402

RATES = {"24": Fraction(24), "29.97": Fraction(30000, 1001), "30": Fraction(30), "50": Fraction(50), "60": Fraction(60)}
SECONDS = 2.48


def numbered(n: int, h: int = 16, w: int = 16) -> np.ndarray:
    """Frame i holds i in its red (low byte) and green (high byte) channels."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    frames[..., 0] = (np.arange(n) % 256)[:, None, None]
    frames[..., 1] = (np.arange(n) // 256)[:, None, None]
    return frames


def write(path: Path, rate: Fraction, n: int) -> None:
    """Lossless FFV1 at `rate`, frame i at time i / rate exactly."""
    import av

    with av.open(str(path), mode="w") as c:
        v = c.add_stream("ffv1", rate=rate)
        v.pix_fmt, v.width, v.height = "bgr0", 16, 16
        v.time_base = 1 / rate
        for i, img in enumerate(numbered(n)):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, 1 / rate
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)


def lags(path: Path, rate: Fraction, mode: str) -> tuple[np.ndarray, int]:
    frames, _ = decode_video(path, 25, mode)
    index = frames[:, 0, 0, 0].astype(int) + 256 * frames[:, 0, 0, 1].astype(int)
    return (np.arange(len(frames)) - index * 25 / float(rate)), len(frames)


def main() -> None:
    expected = round(SECONDS * 25)
    lines = [f"Copies of one {SECONDS} s source ({expected} frames at 25 fps) read at 25 fps: lag of the content in 25 fps frames",
             "(mean, and the largest early / late), and the frames decoded.", "",
             "| source fps | mode | mean lag | most early | most late | frames |", "|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for label, rate in RATES.items():
            path = Path(tmp) / f"{label}.mkv"
            write(path, rate, int(round(SECONDS * rate)))
            for mode in FPS_MODES:
                lag, n = lags(path, rate, mode)
                lines.append(f"| {label} | {mode} | {lag.mean():+.2f} | {lag.min():+.2f} | {lag.max():+.2f} | {n} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
