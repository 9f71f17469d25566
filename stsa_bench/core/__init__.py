"""The harness core: everything plugins and orchestration share (errors, paths and cache keys,
weights, media, faces, result rows, registries, provenance, config, devices, preprocessing, suites).

Imports nothing from the plugins (`metrics`, `baselines`, `reports`) or orchestration
(`stsa_bench.cli`, `runner`, `train`, `ablate`); `tests/test_layout.py` enforces it.
"""
