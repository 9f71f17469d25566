"""Where a result came from: harness version and git sha."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from stsa_bench import __version__


@functools.cache
def git_sha() -> str:
    """HEAD of the checkout the harness runs from (`+dirty` with uncommitted changes), else `unknown`."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def harness_version() -> str:
    return __version__
