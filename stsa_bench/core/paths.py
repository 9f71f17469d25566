"""The one module that owns paths, content hashes and cache keys.

Every cache key is built by `cache_key` from content hashes and canonical parameters, never
from file names. Writes are atomic (temporary sibling, then rename) and guarded by a lock
file, so two processes preparing the same item do the work once and never see half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

CACHE_ENV = "STSA_BENCH_CACHE"
SHARED_ENV = "STSA_BENCH_SHARED"


def cache_root(configured: str | os.PathLike | None = None) -> Path:
    """`cache_dir` from the config, else `$STSA_BENCH_CACHE`, else `~/.cache/stsa-bench`."""
    if configured:
        return Path(configured).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stsa-bench"


def shared_root() -> Path | None:
    """The project's shared material: `$STSA_BENCH_SHARED`, else `../shared` next to the checkout."""
    env = os.environ.get(SHARED_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared")
    for c in candidates:
        if (c / "README.md").is_file():
            return c.resolve()
    return None


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(kind: str, *, content: list[str] | tuple[str, ...] = (), params: Any = None, version: int | str = 1) -> str:
    """sha256 of (kind, version, content hashes, canonical params): the only key builder."""
    return sha256_bytes(canonical_json({"kind": kind, "v": version, "content": list(content), "params": params}).encode())


def short(key: str, n: int = 8) -> str:
    return key[:n]


def entry_dir(root: Path, kind: str, key: str) -> Path:
    """Where a cache entry of `kind` with `key` lives: `<root>/<kind>/<key[:2]>/<key>`."""
    return root / kind / key[:2] / key


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock held on `<path>.lock` for the duration of the block."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def owner_lock(path: Path, what: str) -> Iterator[None]:
    """Hold `path` exclusively for one process, or raise ConfigError at once naming the holder's pid and
    start time (`what` says what is held, e.g. the run folder)."""
    from .errors import ConfigError

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(f"{what} is in use by another stsa-bench process ({holder}); wait for it to finish or use another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8; a byte of a file name that is not UTF-8 (a lone surrogate in `text`) is written as `\\udcXX`."""
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def sweep_stale_temps(root: Path, older_than_s: float = 6 * 3600) -> int:
    """Remove the temp files and dirs (`.<name>.<random>.tmp`) that a killed writer left under `root` and
    that are older than `older_than_s` (younger ones may belong to a live writer). Returns how many."""
    now, removed = time.time(), 0
    root = Path(root)
    if not root.is_dir():
        return 0
    for path in root.rglob(".*.tmp"):
        try:
            if now - path.lstat().st_mtime < older_than_s:
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def build_dir_atomically(final: Path, build: Callable[[Path], None]) -> Path:
    """Fill `final` once: `build(tmpdir)` writes into a sibling temp dir that is renamed in.

    A lock serialises concurrent builders; whoever comes second finds the finished
    directory and returns at once. A crash (kill -9) leaves only a stray temp dir, never a partial
    entry; the next builder of the same entry removes it (it holds the lock, so no one else is writing it).
    """
    if final.is_dir():
        return final
    with file_lock(final):
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{glob.escape(final.name[:32])}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name[:32]}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            build(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
