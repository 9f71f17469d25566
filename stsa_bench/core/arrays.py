"""Whole-clip arrays that need not be held in memory: filled in place from a mapped file (`spill_array`),
or written row by row into an .npy file (`NpyRows`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def spill_array(shape: tuple[int, ...], dtype: Any, budget_bytes: float, folder: Path | None) -> np.ndarray:
    """An uninitialised array to fill in place: in memory when it takes at most `budget_bytes` (or without a
    `folder`), else mapped from a temporary file in `folder`, unlinked at once (nothing is left behind, even by
    a killed run). The mapped pages belong to the page cache: clean ones are dropped under memory pressure,
    so a long clip's crops or flows do not have to fit in RAM."""
    import os
    import tempfile

    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if folder is None or nbytes == 0 or nbytes <= budget_bytes:
        return np.empty(shape, dtype)
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".spill.", suffix=".tmp")
    try:
        os.ftruncate(fd, nbytes)
        return np.memmap(name, dtype=dtype, mode="r+", shape=tuple(shape))
    finally:
        os.close(fd)
        os.unlink(name)


class NpyRows:
    """An (n, *row_shape) .npy file written row by row, at any index, before n is known (the header goes in
    last): a clip's crops reach the cache without being held in memory. The file is byte-identical to
    `np.save` of the same array."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: Any):
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.offset = len(self._header(10**12))
        self.path.write_bytes(b"")

    def _header(self, n: int) -> bytes:
        import io

        buf = io.BytesIO()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n, *self.row_shape)}
        np.lib.format.write_array_header_1_0(buf, header)
        return buf.getvalue()

    def write(self, index: Any, rows: np.ndarray) -> None:
        """Rows at their indices (no file stays open between calls: a clip that fails leaves nothing open)."""
        with open(self.path, "r+b") as f:
            for i, row in zip(index, rows):
                f.seek(self.offset + int(i) * self.row_bytes)
                f.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())

    def close(self, n: int) -> None:
        """Rows 0..n-1 are the array: its header is written and the file ends after row n - 1."""
        header = self._header(n)
        if len(header) != self.offset:
            raise RuntimeError(f"{self.path}: .npy header of {len(header)} bytes, {self.offset} reserved")
        with open(self.path, "r+b") as f:
            f.truncate(self.offset + n * self.row_bytes)
            f.write(header)
