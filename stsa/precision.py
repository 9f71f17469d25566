"""The autocast precisions STSA inference and training accept."""

from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS (autocast dtypes), else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: one of {', '.join(PRECISIONS)}")
    return precision
