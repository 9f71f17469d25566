"""What the command line sets for its whole process before any work: the terminal's encoding, PyTorch's CPU allocator, OpenMP's waiting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ALLOCATOR_ENV = {"THP_MEM_ALLOC_ENABLE": "1", "GOMP_SPINCOUNT": "10000"}
"""Defaults for variables read once, when torch is loaded or first allocates (a value already set is kept):
PyTorch's CPU tensors of 2 MB and more in transparent huge pages, and OpenMP threads that stop spinning
sooner when they wait (the run decodes the next chunk in a thread beside torch's)."""


def setup_process() -> None:
    """Clip ids from file names that are not UTF-8 print with backslash escapes; `ALLOCATOR_ENV` is set before
    torch is imported. Measured on 2 CPU cores, LSE-C of a 64 s 720p clip: 68 s and 5.2 M page faults, with huge
    pages 55 s and 0.62 M, with both 47.6 s, at the same peak memory (docs/performance.md, "Per-frame state")."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    allocator_defaults()


def allocator_defaults() -> None:
    """`ALLOCATOR_ENV` into the environment where it has no value (before torch is imported to take effect)."""
    for key, value in ALLOCATOR_ENV.items():
        os.environ.setdefault(key, value)


def huge_page_mode() -> str:
    """The kernel's transparent huge page mode (`always`, `madvise`: used when asked, as torch does with
    THP_MEM_ALLOC_ENABLE=1, `never`), or `absent`."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    try:
        text = path.read_text()
    except OSError:
        return "absent"
    return text.split("[")[1].split("]")[0] if "[" in text else "absent"
