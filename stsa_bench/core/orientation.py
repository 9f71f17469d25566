"""Frames as a player shows them: the stream's display matrix applied the way `ffmpeg -i IN` does by default."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ClipError


def upright(frame) -> tuple[Callable[[np.ndarray], np.ndarray] | None, str]:
    """(function that turns a decoded (H, W, 3) array upright, what it does; None and "" when nothing is to be done)
    from a frame's display matrix (phones store portrait video sideways, with the rotation that shows it). The
    choice is ffmpeg's autorotate (fftools): theta = -round(av_display_rotation_get(matrix)) clockwise, and the
    matrix's signs tell a flip. A rotation that is not a multiple of 90° fails the clip. The entry is looked up by
    its type: iterating `frame.side_data` yields the entries up to av 18.1.0 and their types from 18.1.1 on."""
    from av.sidedata.sidedata import Type

    entry = frame.side_data.get(Type.DISPLAYMATRIX)
    if entry is None:
        return None, ""
    matrix = bytes(entry)
    m = np.frombuffer(matrix[:36], dtype=np.int32)
    scale = np.hypot(m[1], m[4]), np.hypot(m[0], m[3])
    if not (scale[0] and scale[1]):
        raise ClipError("its display matrix is singular")
    theta = float(np.round(np.degrees(np.arctan2(m[1] / scale[0], m[0] / scale[1]))))
    theta -= 360 * np.floor(theta / 360 + 0.9 / 360)
    quarter = int(round(theta / 90)) % 4
    if abs(theta - 90 * round(theta / 90)) >= 1.0:
        raise ClipError(f"display matrix rotates the video by {theta:.1f}°; only multiples of 90° are supported")
    if quarter == 1:
        return (_transpose, "rotated 90° counter-clockwise and flipped upside down") if m[3] > 0 else (_clockwise, "rotated 90° clockwise")
    if quarter == 3:
        return (_antitranspose, "rotated 90° clockwise and flipped upside down") if m[3] < 0 else (np.rot90, "rotated 90° counter-clockwise")
    h, v = quarter == 2 and m[0] < 0, m[4] < 0
    if not (h or v):
        return None, ""
    what = {(True, True): "rotated 180°", (True, False): "flipped left-right", (False, True): "flipped upside down"}[(h, v)]
    return (lambda a: a[:: -1 if v else 1, :: -1 if h else 1]), what


def _clockwise(a: np.ndarray) -> np.ndarray:
    """ffmpeg's transpose=clock."""
    return np.rot90(a, -1)


def _transpose(a: np.ndarray) -> np.ndarray:
    """ffmpeg's transpose=cclock_flip: rows become columns."""
    return a.transpose(1, 0, 2)


def _antitranspose(a: np.ndarray) -> np.ndarray:
    """ffmpeg's transpose=clock_flip."""
    return a[::-1, ::-1].transpose(1, 0, 2)
