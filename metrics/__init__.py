"""Metrics: pure functions for the math, small accumulating classes registered by name."""

from stsa_bench.core.registry import METRICS

from .base import Metric, build_metric

__all__ = ["METRICS", "Metric", "build_metric"]
