"""Dubbing methods run by the harness: sanity rows, in-tree models and adapters."""

from stsa_bench.core.registry import METHODS

from .base import DubbingMethod, Generated, Sample, build_method

__all__ = ["METHODS", "DubbingMethod", "Generated", "Sample", "build_method"]
