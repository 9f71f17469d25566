"""Model weights: declared by each extractor, resolved locally, verified by sha256.

Resolution order: explicit path (`weights.<name>=PATH`) > the weights folder (`$STSA_BENCH_WEIGHTS`,
else `<cache>/weights`) > torch hub cache (`$TORCH_HOME/hub/checkpoints/<file>`) > download of the
official file (only with `weights.download=true` or `stsa-bench weights fetch`; never in tests). A missing file is a `WeightsMissing`
whose one-line message says where to put it, the official URL and its hash.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import ClipError
from .paths import sha256_file

WEIGHTS_ENV = "STSA_BENCH_WEIGHTS"
M = TypeVar("M")


@dataclass(frozen=True)
class WeightsSpec:
    """An official weights file. `sha256` is the full hash when published, else the
    8-hex prefix that the file name carries (torchvision / pytorch-fid convention), or ""
    when no official hash exists (then any file is accepted and its sha256 recorded).
    `direct` is False when `url` is a page to download from by hand (no automatic download)."""

    name: str
    filename: str
    url: str
    sha256: str
    direct: bool = True
    licence: str = ""
    used_by: str = ""
    torchscript: bool = False
    """The official file is a TorchScript archive (loading one runs code stored in it)."""
    hf_repo: str = ""
    """A Hugging Face model repository: `filename` is then a folder holding `hf_files` at `hf_revision`."""
    hf_revision: str = ""
    hf_files: tuple[str, ...] = ()

    def matches(self, digest: str) -> bool:
        if not self.sha256:
            return True
        return digest.startswith(self.sha256) if len(self.sha256) < 64 else digest == self.sha256

    def how_to_get(self) -> str:
        """The command that gets this file: a fetch, or the page to download from and the add command."""
        if self.direct:
            return f"stsa-bench weights fetch {self.name}"
        return f"download from {self.url}, then stsa-bench weights add {self.name} PATH"

    def where(self) -> str:
        return f"{self.how_to_get()}; or put {self.filename} in {weights_dir()} or {torch_hub_dir()}, or pass weights.{self.name}=PATH"


class WeightsMissing(ClipError):
    """Weights not found locally (and not downloaded)."""


def torch_hub_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$TORCH_HOME/hub/checkpoints` (TORCH_HOME defaults to `$XDG_CACHE_HOME/torch`, that to `~/.cache/torch`), `~`
    expanded as torch does, in `env` (this process's environment by default; an external job's its own)."""
    env = os.environ if env is None else env
    home = env.get("TORCH_HOME") or os.path.join(env.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


_CACHE: list[Path] = []
"""The cache folder of this process's command (`cache_dir=`), set once by the command line."""


def use_cache(cache_dir: str | os.PathLike | None) -> None:
    """Make `cache_dir` (the run's `cache_dir=`, else $STSA_BENCH_CACHE or the default) the folder whose `weights/` holds
    the weights folder, for run, prepare, doctor, ls and every weights subcommand alike."""
    _CACHE[:] = [Path(cache_dir)] if cache_dir else []


def weights_dir() -> Path:
    """Where weights live and `stsa-bench weights fetch|add` put them: `$STSA_BENCH_WEIGHTS`, else `<cache>/weights` with
    the command's `cache_dir=` (`use_cache`), else $STSA_BENCH_CACHE, else ~/.cache/stsa-bench."""
    from .paths import cache_root

    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    return cache_root(_CACHE[0] if _CACHE else None) / "weights"


def candidates(spec: WeightsSpec, explicit: str | os.PathLike | None) -> list[Path]:
    out = [Path(explicit).expanduser()] if explicit else []
    out.append(weights_dir() / spec.filename)
    out.append(torch_hub_dir() / spec.filename)
    return out


def resolve(spec: WeightsSpec, explicit: str | os.PathLike | None = None, download: bool = False, check: bool = True) -> tuple[Path, str]:
    """(path, sha256) of the weights file; downloads only when allowed. Raises WeightsMissing."""
    if explicit and not Path(explicit).expanduser().is_file():
        raise WeightsMissing(f"weights.{spec.name}={explicit}: no such file ({spec.name} official: {spec.url}, sha256 {spec.sha256})")
    for path in candidates(spec, explicit):
        if path.is_file():
            digest = sha256_file(path)
            if check and not explicit and not spec.matches(digest):
                raise WeightsMissing(f"{path}: sha256 {digest[:16]}… does not match the official {spec.name} file ({spec.sha256})")
            from .weights_store import pin

            pin(spec, path, digest)
            return path, digest
    if download and spec.direct:
        from .weights_store import fetch

        return fetch(spec, progress=False)
    how = "or set weights.download=true" if spec.direct else "no direct download: fetch it by hand from that page"
    raise WeightsMissing(
        f"{spec.name} weights missing: {spec.where()} (official: {spec.url}, sha256 {spec.sha256 or 'not published'}; {how})"
    )


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save): a zip with `constants.pkl` and a `code/` folder."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


TORCHSCRIPT_SETTING = "weights.allow_torchscript"


def load_state_dict(path: Path, allow_torchscript: bool = False):
    """A checkpoint's state dict, never unpickling arbitrary objects; unwraps `state_dict` and `module.`.

    Pickles are read with torch.load(weights_only=True). A TorchScript archive runs code stored in the
    file when it is loaded, so it is refused unless `allow_torchscript` (its catalogue entry is a
    TorchScript model, or the user set weights.allow_torchscript=true); then its parameters and
    buffers are read through torch.jit.load.
    """
    import pickle

    import torch

    from stsa.checkpoints import load_checkpoint, state_dict_of

    path = Path(path)
    if is_torchscript(path):
        if not allow_torchscript:
            raise WeightsMissing(
                f"{path}: a TorchScript archive, which runs code stored in the file when loaded; refused. "
                f"Give the plain state dict (torch.save(model.state_dict())) or, if you trust the file, "
                f"set {TORCHSCRIPT_SETTING}=true"
            )
        checkpoint = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        try:
            checkpoint = load_checkpoint(str(path))
        except pickle.UnpicklingError as exc:
            found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL ([\w.]+)", str(exc))
            what = f"it names {found.group(1)}" if found else "or it is not a checkpoint"
            raise WeightsMissing(f"{path}: holds objects other than tensors and plain containers ({what}); refused") from None
        except Exception as exc:  # noqa: BLE001 - torch's unpickler fails on arbitrary bytes in many ways (IndexError, ValueError, ...)
            raise WeightsMissing(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    try:
        return state_dict_of(checkpoint)
    except TypeError:
        raise WeightsMissing(f"{path}: not a state dict") from None


def load_torchscript_model(path: Path, spec: WeightsSpec, settings: Mapping[str, Any], device: str = "cpu"):
    """A TorchScript model (torch.jit.load runs code stored in the file): only for a catalogue entry that is
    TorchScript, and only when the user opted in with weights.allow_torchscript=true."""
    import torch

    path = Path(path)
    if not spec.torchscript:
        raise WeightsMissing(f"{path}: the {spec.name} weights are not a TorchScript model in the catalogue; refused")
    if not settings.get("allow_torchscript", False):
        raise WeightsMissing(
            f"{path}: {spec.name} is a TorchScript model, which runs code stored in the file when loaded; "
            f"if you trust the file, set {TORCHSCRIPT_SETTING}=true"
        )
    if not is_torchscript(path):
        raise WeightsMissing(f"{path}: not a TorchScript archive (the {spec.name} detector is one)")
    return torch.jit.load(str(path), map_location=device).eval()


class LazyWeights(Generic[M]):
    """A model built from one weights file on first use: the file is resolved (setting, then
    $STSA_BENCH_WEIGHTS, then the torch hub cache, then a download only when `weights.download`
    is true) and checked, then `build(path)` makes the model. `sha256` is the file's hash."""

    def __init__(self, spec: WeightsSpec, settings: Mapping[str, Any], build: Callable[[Path], M] | None):
        self.spec = spec
        self.settings = settings
        self.build = build
        self.path: Path | None = None
        self.sha256: str | None = None
        self._model: M | None = None

    def resolve(self) -> tuple[Path, str]:
        """(path, sha256) without building; raises WeightsMissing naming the file and the setting."""
        if self.path is None:
            self.path, self.sha256 = resolve(self.spec, self.settings.get(self.spec.name), bool(self.settings.get("download", False)))
        return self.path, self.sha256

    def get(self) -> M:
        if self._model is None:
            if self.build is None:
                raise RuntimeError(f"no model builder given for the {self.spec.name} weights")
            self._model = self.build(self.resolve()[0])
        return self._model
