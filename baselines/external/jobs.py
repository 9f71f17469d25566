"""Where and how an external job runs: its own working directory under plain ASCII paths, the checkout linked
into it, the programs its code shells out to on PATH, and the hashes of the checkpoints it loaded.

Official codes write scratch files relative to their working directory (Wav2Lip's `temp/result.avi`) and build
shell strings from file names (`ffmpeg -i {audio} ... {outfile}`): a job run in the checkout collides with
every other job there, and a path with a space or `$` breaks or is interpreted by the shell. So each job gets
a folder of its own whose name is plain ASCII (under the run folder when its path is plain, else under the
system's temporary folder), holding the staged inputs, symlinks to every top-level entry of the checkout (its
code, configs and checkpoints resolve as in the checkout) and empty folders for the names the code writes to;
the command runs there with relative input and output names.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from stsa_bench.core.errors import ConfigError
from stsa_bench.core.paths import sha256_file

PLAIN = re.compile(r"[A-Za-z0-9._/+-]+")
"""A path no shell splits or expands."""

WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".pb", ".onnx", ".pkl", ".tar", ".npy", ".npz", ".zip", ".model")
"""What counts as a checkpoint inside a checkpoint folder (PC-AVS's experiment folder, TalkLip's av_hubert root)."""


def ascii_slug(text: str, limit: int = 40) -> str:
    """`text` with every run of characters outside [A-Za-z0-9._-] replaced by `_`, at most `limit` long."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:limit].strip("._")
    return slug or "clip"


def job_name(clip_id: str, sha256: str) -> str:
    """`<slug>-<sha8>`, plus 6 hex of the id when the slug changed it (two ids of one slug stay apart)."""
    slug = ascii_slug(clip_id.replace("/", "__"))
    tail = "" if slug == clip_id else "-" + hashlib.sha256(clip_id.encode()).hexdigest()[:6]
    return f"{slug}-{sha256[:8]}{tail}"


def work_root(run_dir: Path, method: str) -> Path:
    """`<run>/work/<method>` when that absolute path is plain, else `<tmp>/stsa-bench-work/<sha8 of it>/<method>`."""
    root = Path(run_dir).absolute() / "work"
    if not PLAIN.fullmatch(str(root)):
        key = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        root = Path(tempfile.gettempdir()).absolute() / "stsa-bench-work" / key
        if not PLAIN.fullmatch(str(root)):
            raise ConfigError(f"--out {run_dir} and the temporary folder {tempfile.gettempdir()} both hold characters a shell splits "
                              f"or expands: external methods need one of them plain (set TMPDIR)")  # fmt: skip
    return root / method


def link_checkout(repo: Path, folder: Path, writes: Iterable[str], reserved: Iterable[str] = ()) -> None:
    """Symlink every top-level entry of `repo` into `folder` (not `.git`, nor a name `folder` already holds or
    `reserved` names); the names in `writes` become empty folders of the job's own."""
    writes, skip = set(writes), {".git", *reserved}
    for name in writes:
        (folder / name).mkdir(exist_ok=True)
    for entry in sorted(repo.iterdir()):
        if entry.name in skip or entry.name in writes or os.path.lexists(folder / entry.name):
            continue
        (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


_BIN: dict[str, Path] = {}


def program_dir(name: str, executable: str) -> Path:
    """A plain-path folder holding `name` -> `executable` (for a job's PATH); one per process, removed at exit."""
    if executable not in _BIN:
        folder = Path(tempfile.mkdtemp(prefix="stsa-bench-bin-"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / name).symlink_to(executable)
        _BIN[executable] = folder
    return _BIN[executable]


def find_ffmpeg(setting: str, path: str | None) -> tuple[str | None, str]:
    """(the ffmpeg executable, where it came from) for `<method>.ffmpeg`: `auto` looks on PATH, then for
    imageio-ffmpeg's binary; anything else is the path of an executable. (None, why) when none is found."""
    if setting != "auto":
        found = shutil.which(os.path.expanduser(setting))
        return (str(Path(found).absolute()), "ffmpeg setting") if found else (None, f"ffmpeg={setting} is not an executable")
    found = shutil.which("ffmpeg", path=path)
    if found:
        return found, "PATH"
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"
    except (ImportError, RuntimeError):
        return None, "no ffmpeg on PATH and imageio-ffmpeg is not installed"


_SHA: dict[tuple[str, int, int], str] = {}


def file_sha(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) for the process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(path)
    return _SHA[key]


def weights_sha(paths: Iterable[Path]) -> str | None:
    """The sha256 of the checkpoint a job loads; of several, their 16-hex prefixes joined by `+` in the given
    order. A folder counts as the sha256 over its checkpoint files' relative paths and hashes (WEIGHT_SUFFIXES)."""
    shas = []
    for path in paths:
        if path.is_file():
            shas.append(file_sha(path))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
            if files:
                listing = "".join(f"{p.relative_to(path).as_posix()}\0{file_sha(p)}\n" for p in files)
                shas.append(hashlib.sha256(listing.encode()).hexdigest())
    if not shas:
        return None
    return shas[0] if len(shas) == 1 else "+".join(s[:16] for s in shas)
