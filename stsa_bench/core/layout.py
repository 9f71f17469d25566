"""Where a run folder keeps the files reports read besides the rows: mouth strips and saved videos."""

from __future__ import annotations

from pathlib import Path

GT_STRIP = "_ground_truth"
"""The strips folder of the ground truth's crops."""


MAX_STEM_BYTES = 160
"""Longer derived names are shortened (room for suffixes and temp-file prefixes under the usual 255-byte limit)."""


def file_stem(clip_id: str) -> str:
    """A clip id as one path component, one to one: `/` of nested folder ids becomes `__`, and such an id (or one holding
    `~`, or longer than MAX_STEM_BYTES, cut to its first bytes) ends with `~` + 16 hex of the id's sha256, so `x/y` and
    a clip named `x__y` never share a file. Other ids are their own stem."""
    import hashlib

    stem = clip_id.replace("/", "__")
    raw = stem.encode("utf-8", "surrogateescape")
    if "/" not in clip_id and "~" not in clip_id and len(raw) <= MAX_STEM_BYTES:
        return stem
    head = raw[: MAX_STEM_BYTES - 17].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(clip_id.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def strip_path(out: Path, method: str, clip_id: str) -> Path:
    """`<out>/strips/<method>/<clip>.png`: STRIP_FRAMES mouth crops of the method's output side by side."""
    return Path(out) / "strips" / method / (file_stem(clip_id) + ".png")


def video_path(out: Path, method: str, clip_id: str) -> Path:
    """`<out>/videos/<method>/<clip>.mp4` (written when runtime.save_videos=true)."""
    return Path(out) / "videos" / method / (file_stem(clip_id) + ".mp4")
