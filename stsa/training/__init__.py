"""STSA training (no official training code exists; built from the paper and spec/stsa.md)."""
