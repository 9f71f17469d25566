"""STSA (Spatial-Temporal Semantic Alignment for Visual Dubbing, ICME 2025), in-tree.

This package never imports `stsa_bench`; `baselines/stsa.py` adapts it to the harness.
The networks, inference pipeline and training arrive with their own issues.
"""
