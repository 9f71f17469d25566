"""Where a run folder keeps the files reports read besides the rows: mouth strips and saved videos."""

from __future__ import annotations

from pathlib import Path

GT_STRIP = "_ground_truth"
"""The strips folder of the ground truth's crops."""


MAX_STEM_BYTES = 160
"""Longer derived names are shortened (room for suffixes and temp-file prefixes under the usual 255-byte limit)."""


def file_stem(clip_id: str) -> str:
    """A clip id as one path component: `/` of nested folder ids becomes `__`; a name longer than
    MAX_STEM_BYTES keeps its first bytes and ends with `~` + 16 hex of its sha256, so two long ids never share a file.
    Two ids of one suite with one stem (`x/y` and `x__y`) are told apart by the suite (suites.distinct_stems)."""
    import hashlib

    stem = clip_id.replace("/", "__")
    raw = stem.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    head = raw[: MAX_STEM_BYTES - 17].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:16]}"


def strip_path(out: Path, method: str, clip_id: str) -> Path:
    """`<out>/strips/<method>/<clip>.png`: STRIP_FRAMES mouth crops of the method's output side by side."""
    return Path(out) / "strips" / method / (file_stem(clip_id) + ".png")


def video_path(out: Path, method: str, clip_id: str) -> Path:
    """`<out>/videos/<method>/<clip>.mp4` (written when runtime.save_videos=true)."""
    return Path(out) / "videos" / method / (file_stem(clip_id) + ".mp4")
