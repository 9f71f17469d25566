"""stsa-bench: benchmark and evaluation harness for audio-driven visual dubbing."""

__version__ = "0.1.0"
