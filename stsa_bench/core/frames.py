"""A clip's frames as a source read in chunks, so that a long clip is never whole in memory.

`Frames` is what methods get (`Sample.frames`) and may return (`Generated.frames`), and what
metrics read full frames from (`EvalPair.pred_frames`). Stream it with `chunks(k)`; it also
behaves like the (N, H, W, 3) uint8 array for code that needs the whole clip: `np.asarray(frames)`,
`frames[i]`, `frames[a:b]`, `len(frames)`, `frames.shape` (reading it all costs the memory of it all).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
Chunk = tuple[int, np.ndarray]
"""(index of the chunk's first frame, frames (k, H, W, 3))."""
STREAM_CHUNK = 16
"""Frames per chunk where code that reads a whole clip streams it (`read`, iteration, `write_video`): 100 MB at 1080p."""


class Frames:
    """RGB uint8 frames (N, H, W, 3) read chunk by chunk."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, n: int, height: int, width: int):
        self.n, self.height, self.width = int(n), int(height), int(width)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.height, self.width, 3)

    @property
    def nbytes(self) -> int:
        return self.n * self.height * self.width * 3

    def __len__(self) -> int:
        return self.n

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        """Frames start..stop in chunks of at most `size`."""
        raise NotImplementedError

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames start..stop as one array."""
        stop = self.n if stop is None else min(stop, self.n)
        out = np.empty((max(0, stop - start), self.height, self.width, 3), dtype=np.uint8)
        for i, chunk in self.chunks(STREAM_CHUNK, start, stop):
            out[i - start : i - start + len(chunk)] = chunk
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, chunk in self.chunks(STREAM_CHUNK):
            yield from chunk

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.read()
        return a if dtype is None else a.astype(dtype)

    def copy(self) -> np.ndarray:
        return np.array(self.read(), copy=True)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self.n if key < 0 else 0)
            if not 0 <= i < self.n:
                raise IndexError(f"frame {key} of {self.n}")
            return self.read(i, i + 1)[0]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.n)
            return self.read(start, max(start, stop))
        return self.read()[key]

    def map(self, fn: Callable[[np.ndarray, int], np.ndarray]) -> Frames:
        """Frames whose chunk at `start` is `fn(chunk, start)` (same shape), computed when read."""
        return MappedFrames(self, fn)


class ArrayFrames(Frames):
    """Frames held in memory (a short clip, or a method's whole-clip output)."""

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array)
        if self.array.ndim != 4 or self.array.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3), got {self.array.shape}")
        super().__init__(*self.array.shape[:3])

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        stop = self.n if stop is None else min(stop, self.n)
        for i in range(start, stop, max(1, size)):
            yield i, self.array[i : min(i + size, stop)]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.array[start:stop]


class VideoFrames(Frames):
    """A video file decoded again at every read (25 fps etc. as the preprocessing decoded it): memory holds
    one chunk. Frames beyond the file's are its last frame repeated; extra ones are dropped (`n` rules)."""

    def __init__(self, path: Path, fps: int, fps_mode: str, n: int, height: int, width: int, matrix: str = "tagged"):
        super().__init__(n, height, width)
        self.path, self.fps, self.fps_mode, self.matrix = Path(path), fps, fps_mode, matrix

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        stop = self.n if stop is None else min(stop, self.n)
        size = max(1, size)
        if start % size == 0:
            for i, chunk in self._chunks(size, stop):
                if i >= start:
                    yield i, chunk
            return
        pending: list[np.ndarray] = []
        for i, chunk in self._chunks(size, stop):
            for j, frame in enumerate(chunk, i):
                if j >= start:
                    pending.append(frame)
                if len(pending) == size:
                    yield j + 1 - size, np.stack(pending)
                    pending = []
        if pending:
            yield stop - len(pending), np.stack(pending)

    def _chunks(self, size: int, stop: int) -> Iterator[Chunk]:
        """Chunks of frames 0..stop: the file's, then its last frame repeated."""
        from .media import VideoChunks

        pos, last = 0, None
        for chunk in VideoChunks(self.path, self.fps, self.fps_mode, size, self.matrix):
            yield pos, chunk[: stop - pos]
            pos += len(chunk)
            last = chunk[-1:]
            if pos >= stop:
                return
        for i in range(pos, stop, size):
            yield i, np.repeat(last, min(size, stop - i), axis=0)


class RepeatFrames(Frames):
    """One frame shown `n` times."""

    def __init__(self, frame: np.ndarray, n: int):
        self.frame = np.asarray(frame)
        super().__init__(n, *self.frame.shape[:2])

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        stop = self.n if stop is None else min(stop, self.n)
        for i in range(start, stop, max(1, size)):
            yield i, np.broadcast_to(self.frame, (min(size, stop - i), *self.frame.shape))


class MappedFrames(Frames):
    """`fn(chunk, start)` applied to every chunk of a source."""

    def __init__(self, source: Frames, fn: Callable[[np.ndarray, int], np.ndarray]):
        super().__init__(*source.shape[:3])
        self.source, self.fn = source, fn

    def chunks(self, size: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
        for i, chunk in self.source.chunks(size, start, stop):
            yield i, self.fn(chunk, i)


def as_frames(x: Any) -> Frames:
    """`x` as Frames (arrays are wrapped, not copied)."""
    return x if isinstance(x, Frames) else ArrayFrames(x)


def concatenate(parts: list) -> Any:
    """Per-chunk results joined along the first axis (tuples element-wise)."""
    if not parts:
        raise ValueError("no frames")
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate(p) for p in zip(*parts))
    return np.concatenate(parts)


def map_chunks(frames: Frames, size: int, fn: Callable[[np.ndarray, int], Any]) -> Any:
    """`fn(chunk, start)` over every chunk, the results concatenated."""
    return concatenate([fn(chunk, i) for i, chunk in frames.chunks(size)])


_MALLOC_SET = False


def one_malloc_arena() -> None:
    """glibc only: every thread allocates from the main arena (M_ARENA_MAX = 1). Frame arrays made in the
    prefetch thread otherwise fill a per-thread arena that is not trimmed, and a long clip's run grew with
    its length (720p, 32 s: 2.44 GB peak against 1.67 GB without the thread; 1.68 GB with this, same speed)."""
    global _MALLOC_SET
    if _MALLOC_SET:
        return
    _MALLOC_SET = True
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items` produced by a background thread up to `depth` ahead of the consumer (decode and generation overlap
    the consumer's scoring; PyAV, OpenCV and torch release the GIL in their native code). The producer's
    exceptions are raised here, in order; stopping early stops the producer."""
    if depth < 1:
        yield from items
        return
    one_malloc_arena()
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
                    return
            q.put((end, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put((end, exc))

    worker = threading.Thread(target=produce, name="stsa-bench-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if item is end:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()
