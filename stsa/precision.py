"""The autocast precisions STSA inference and training accept."""

from __future__ import annotations

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS (autocast dtypes), else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: one of {', '.join(PRECISIONS)}")
    return precision


def emulation_warning(precision: str, device_type: str) -> str | None:
    """A one-line warning when `precision` would run in torch's slow reference kernels: on a CPU whose
    oneDNN has no native kernels for it (bf16 needs avx512_bf16/AMX; fp16 AVX512-FP16/AMX), autocast
    convolutions fall back to `_slow_conv2d` (measured: a bf16 training step about 50x slower than fp32)."""
    if precision == "fp32" or device_type != "cpu":
        return None
    import torch

    native = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported, "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}[precision]
    if torch.backends.mkldnn.is_available() and native():
        return None
    return (f"precision={precision} on this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native {precision} "
            "kernels: convolutions run emulated, far slower than fp32")
