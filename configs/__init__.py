"""Hydra configuration groups of stsa-bench (YAML files shipped with the package)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
