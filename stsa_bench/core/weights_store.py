"""The weights folder: downloads that resume and verify, a lock file that pins unpublished hashes, and the
checks behind `stsa-bench weights list|fetch|verify|add`.

Downloads go to `<weights_dir>/<file>.part` first (kept across attempts and invocations, so an
interrupted download resumes with an HTTP Range request), are hashed, and are moved in atomically.
Files whose catalogue entry has no published hash are pinned on first use in
`<weights_dir>/weights.lock.json` (sha256, size, date); a later change is reported by `verify`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .paths import atomic_write_text, file_lock, sha256_file
from .weights import WeightsMissing, WeightsSpec, candidates, torch_hub_dir, weights_dir

LOCK_NAME = "weights.lock.json"
MIRROR_ENV = "STSA_BENCH_WEIGHTS_MIRROR"
RETRIES, BACKOFF_S, TIMEOUT_S = 4, 1.0, 60
CHUNK = 1 << 20


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def source_url(spec: WeightsSpec, mirror: str | None = None) -> str:
    """The official URL, or `<mirror>/<file>` when a mirror is configured (`--mirror` / $STSA_BENCH_WEIGHTS_MIRROR): an
    https base URL, an http one on this machine (loopback), or a local folder (`/path` or `file:///path`). Anything
    else is refused at once: plain http can be altered on the way, and ftp:, javascript: and the like are no mirrors."""
    mirror = mirror or os.environ.get(MIRROR_ENV)
    if not mirror:
        return spec.url
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme in ("", "file"):
        folder = Path(urllib.parse.unquote(parts.path) if parts.scheme else mirror).expanduser()
        if not folder.is_dir():
            raise WeightsMissing(f"--mirror {mirror}: not a folder (a mirror is an https URL or a local folder holding the files by name)")
        return (folder.resolve() / spec.filename).as_uri()
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return f"{mirror.rstrip('/')}/{spec.filename}"
    why = "plain http can be altered on the way; use https" if parts.scheme == "http" else f"{parts.scheme}: is not a mirror"
    raise WeightsMissing(f"--mirror {mirror}: refused ({why}, or a local folder holding the files by name)")


def loads_as_expected(spec: WeightsSpec, path: Path) -> None:
    """The file loads as the entry expects (WeightsMissing otherwise): a model folder with its files, a TorchScript
    archive where the entry is one, else a state dict of tensors by safe loading (no code runs; the layout is checked
    when a run builds the model). `add` and `fetch` check every file so before pinning it."""
    from .weights import is_torchscript, load_state_dict

    path = Path(path)
    if spec.hf_files:
        missing = [f for f in spec.hf_files if not (path / f).is_file()]
        if missing and not (path / "model.safetensors").is_file():
            raise WeightsMissing(f"{path}: not a {spec.hf_repo} folder (lacks {', '.join(missing)})")
        return
    if spec.torchscript:
        if not is_torchscript(path):
            raise WeightsMissing(f"{path}: not a TorchScript archive (the {spec.name} file is one)")
        return
    if not load_state_dict(path):
        raise WeightsMissing(f"{path}: holds no tensors")


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Redirects stay on https (http only from and to this machine): a mirror or official https URL cannot be
    redirected to plain http, ftp or a file."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = urllib.parse.urlsplit(newurl)
        if not (new.scheme == "https" or (new.scheme == "http" and new.hostname in LOOPBACK)):
            raise WeightsMissing(f"{req.full_url}: redirected to {newurl}, which is not https; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


def download(url: str, dest: Path, retries: int = RETRIES, backoff_s: float = BACKOFF_S, progress: bool = True) -> Path:
    """`url` into `dest.part`, resuming what a previous attempt left (HTTP Range), with `retries` retries and
    exponential back-off on network errors; returns the part file (complete). HTTP 4xx errors are not retried."""
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with _OPENER.open(request, timeout=TIMEOUT_S) as r:  # noqa: S310 - catalogue or checked mirror URL
                if have and r.status != 206:
                    have = 0
                length = r.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                _copy(r, part, append=bool(have), total=total, progress=progress, name=dest.name)
            if total is not None and part.stat().st_size < total:
                raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")
            return part
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                return part
            if 400 <= exc.code < 500:
                raise WeightsMissing(f"{url}: HTTP {exc.code} {exc.reason}") from None
            last = exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = exc
    raise WeightsMissing(f"{url}: download failed after {retries + 1} attempts ({last}); run the same command again to resume")


def _copy(response, part: Path, append: bool, total: int | None, progress: bool, name: str) -> None:
    from tqdm import tqdm

    done = part.stat().st_size if append and part.is_file() else 0
    with open(part, "ab" if append else "wb") as f, tqdm(
        total=total, initial=done, unit="B", unit_scale=True, desc=name, disable=None if progress else True
    ) as bar:
        while chunk := response.read(CHUNK):
            f.write(chunk)
            bar.update(len(chunk))


def fetch(
    spec: WeightsSpec, mirror: str | None = None, progress: bool = True, retries: int = RETRIES, check: Callable[[Path], object] | None = None
) -> tuple[Path, str]:
    """Download the official file (or from the mirror) into weights_dir(), verify it (its sha256, and `check`, by default
    `loads_as_expected`, before a hash is pinned), move it in atomically, and pin its hash when none is published. A
    Hugging Face entry is fetched through huggingface_hub at its pinned revision. An entry without a direct link
    raises WeightsMissing with the manual step."""
    dest = weights_dir() / spec.filename
    if not spec.direct:
        raise WeightsMissing(
            f"{spec.name}: no direct download; get {spec.filename} from {spec.url} by hand, then "
            f"`stsa-bench weights add {spec.name} PATH` (or put it at {dest})"
        )
    if spec.hf_repo:
        return _fetch_hf(spec, dest)
    url = source_url(spec, mirror)
    check = check or (lambda path: loads_as_expected(spec, path))
    with file_lock(dest):
        part = download(url, dest, retries=retries, progress=progress)
        digest = sha256_file(part)
        if not spec.matches(digest):
            part.unlink()
            raise WeightsMissing(f"{url}: sha256 {digest[:16]}… is not the official {spec.name} file ({spec.sha256}); deleted")
        try:
            check(part)
        except WeightsMissing as exc:
            part.unlink()
            raise WeightsMissing(f"{url}: {str(exc).split(': ', 1)[-1]}; deleted, nothing pinned") from None
        os.replace(part, dest)
    pin(spec, dest, digest)
    return dest, digest


def _fetch_hf(spec: WeightsSpec, dest: Path) -> tuple[Path, str]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise WeightsMissing(f"{spec.name}: needs huggingface_hub (pip install huggingface_hub)") from None
    try:
        snapshot_download(spec.hf_repo, revision=spec.hf_revision, allow_patterns=list(spec.hf_files), local_dir=str(dest))
    except Exception as exc:  # noqa: BLE001 - network and hub errors of every kind become one line
        raise WeightsMissing(f"{spec.name}: {spec.hf_repo}@{spec.hf_revision[:12]} could not be fetched ({type(exc).__name__}: {exc})") from None
    digest = folder_digest(dest)
    pin(spec, dest, digest)
    return dest, digest


def digest_of(path: Path) -> str:
    """sha256 of a weights file, or folder_digest of a model folder."""
    return folder_digest(path) if Path(path).is_dir() else sha256_file(path)


def folder_digest(folder: Path) -> str:
    """sha256 over a model folder's files (relative name and content; hidden paths such as the hub's
    `.cache/` are left out), for Hugging Face entries."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(folder).parts)):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()


def lock_path() -> Path:
    return weights_dir() / LOCK_NAME


def read_lock() -> dict:
    path = lock_path()
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def pin(spec: WeightsSpec, path: Path, digest: str) -> None:
    """Record (sha256, size, date) of a file in the weights folder whose entry publishes no full hash."""
    if len(spec.sha256) == 64 or Path(path).parent.resolve() != weights_dir().resolve():
        return
    with file_lock(lock_path()):
        lock = read_lock()
        if spec.filename in lock:
            return
        size = _size(path)
        lock[spec.filename] = {"name": spec.name, "sha256": digest, "size": size, "pinned": _dt.date.today().isoformat()}
        atomic_write_text(lock_path(), json.dumps(lock, indent=1, sort_keys=True) + "\n")


def _size(path: Path) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@dataclass(frozen=True)
class Status:
    """One catalogue entry on this machine."""

    spec: WeightsSpec
    path: Path | None
    verdict: str
    """missing | official (hash matches) | pinned (matches the lock) | pinned now | MISMATCH ... | CHANGED ..."""

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.verdict.startswith(("MISMATCH", "CHANGED"))


def status(spec: WeightsSpec, explicit: str | os.PathLike | None = None, hash_files: bool = True) -> Status:
    """Where the entry's file is found (setting, weights folder, torch hub) and whether it is the right file."""
    if explicit and not Path(explicit).expanduser().exists():
        return Status(spec, None, f"missing (the setting names {explicit}, which does not exist)")
    found = next((p for p in candidates(spec, explicit) if p.exists()), None)
    if found is None:
        return Status(spec, None, "missing")
    if not hash_files:
        return Status(spec, found, "present")
    digest = digest_of(found)
    if explicit:
        same = "the official file" if spec.sha256 and spec.matches(digest) else "recorded in every row"
        return Status(spec, found, f"given by a setting (sha256 {digest[:16]}…, {same})")
    if spec.sha256:
        if spec.matches(digest):
            return Status(spec, found, f"official ({'sha256' if len(spec.sha256) == 64 else 'sha256 prefix'} {spec.sha256[:16]})")
        return Status(spec, found, f"MISMATCH: sha256 {digest[:16]}…, official {spec.sha256}")
    entry = read_lock().get(spec.filename)
    if found.parent.resolve() != weights_dir().resolve():
        return Status(spec, found, f"no published hash; sha256 {digest[:16]}… (recorded in every row)")
    if entry is None:
        pin(spec, found, digest)
        return Status(spec, found, f"pinned now (sha256 {digest[:16]}…)")
    if entry["sha256"] != digest:
        return Status(spec, found, f"CHANGED since pinned {entry['pinned']}: sha256 {digest[:16]}…, pinned {entry['sha256'][:16]}…")
    return Status(spec, found, f"pinned {entry['pinned']} (sha256 {digest[:16]}…)")


def add(spec: WeightsSpec, source: Path, check: Callable[[Path], object] | None, link: bool = False) -> Path:
    """Register a local file: `check(source)` must load it, then it is copied (or symlinked) into the weights
    folder under the catalogue's file name and pinned."""
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise WeightsMissing(f"{source}: no such file")
    if check is not None:
        check(source)
    if spec.sha256 and source.is_file() and not spec.matches(digest := sha256_file(source)):
        raise WeightsMissing(f"{source}: sha256 {digest[:16]}… is not the official {spec.name} file ({spec.sha256})")
    dest = weights_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name[:32]}.{os.getpid()}.tmp")
    if link:
        tmp.symlink_to(source)
    elif source.is_dir():
        shutil.copytree(source, tmp)
    else:
        shutil.copy2(source, tmp)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    digest = digest_of(dest)
    with file_lock(lock_path()):
        lock = read_lock()
        lock.pop(spec.filename, None)
        atomic_write_text(lock_path(), json.dumps(lock, indent=1, sort_keys=True) + "\n")
    pin(spec, dest, digest)
    return dest


__all__ = ["add", "download", "fetch", "pin", "read_lock", "source_url", "status", "torch_hub_dir", "weights_dir"]
