"""Suites: fixed lists of clips (id, video, audio, content sha256).

A suite's manifest (id -> sha256) is frozen in the cache on first use; later uses compare
every file against it, and a changed file is reported by name instead of silently
evaluated. Missing files become clips with an `error`, so the run reports them and goes on.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import DataConfig, require, typed
from .errors import ClipError, ConfigError
from .paths import atomic_write_text, cache_key, entry_dir, file_lock, sha256_bytes, sha256_file
from .registry import SUITES

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v", ".flv")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")


@dataclass(frozen=True)
class Clip:
    """One test video. `error` is set (and `sha256` empty) when it cannot be used."""

    id: str
    video: Path
    audio: Path | None = None
    sha256: str = ""
    error: str | None = None
    group: str | None = None
    """Clips of one group are correlated (one speaker, one source video): `report --group` resamples groups."""


@dataclass(frozen=True)
class SuiteContext:
    name: str
    options: Mapping[str, Any]
    data: DataConfig
    cache_dir: Path
    refreeze: bool = False


def hash_clip(clip_id: str, video: Path, audio: Path | None = None) -> Clip:
    """Clip with sha256 over its video (and separate audio) bytes, or with the reason it is unusable."""
    parts = []
    for path in (video, audio):
        if path is None:
            continue
        try:
            parts.append(sha256_file(path))
        except FileNotFoundError:
            return Clip(clip_id, video, audio, error=f"{path}: missing (clip {clip_id})")
        except (IsADirectoryError, PermissionError, OSError) as exc:
            return Clip(clip_id, video, audio, error=f"{path}: unreadable ({exc.strerror or exc})")
    return Clip(clip_id, video, audio, sha256=parts[0] if len(parts) == 1 else sha256_bytes("".join(parts).encode()))


def distinct_stems(clips: list[Clip], raw_names: dict[str, str]) -> list[Clip]:
    """Clips whose ids share a file stem (layout.file_stem: `x/y` and a clip named `x__y`) each get `~` + 8 hex of their
    file's relative path, so their strips and saved videos stay apart; other ids are unchanged."""
    from .layout import file_stem

    stems = Counter(file_stem(c.id) for c in clips)
    return [replace(c, id=f"{c.id}~{sha256_bytes(os.fsencode(raw_names[c.id]))[:8]}") if stems[file_stem(c.id)] > 1 else c for c in clips]


def with_groups(clips: list[Clip]) -> list[Clip]:
    """Each clip's group: the first part of its id (`a/b`: `a`); none for an id without a folder part."""
    return [replace(c, group=c.id.split("/", 1)[0]) if "/" in c.id else c for c in clips]


def manifest_hash(clips: list[Clip]) -> str:
    return cache_key("suite-manifest", params=sorted((c.id, c.sha256) for c in clips))


def freeze_manifest(ctx: SuiteContext, identity: Mapping[str, Any], clips: list[Clip]) -> list[Clip]:
    """Compare clips with the manifest frozen on first use; changed files get an error."""
    key = cache_key("manifest", params={"suite": ctx.name, **identity})
    path = entry_dir(ctx.cache_dir, "manifests", key).with_suffix(".json")
    with file_lock(path):
        frozen = json.loads(path.read_text()) if path.is_file() and not ctx.refreeze else None
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        if frozen is None:
            frozen = {"suite": ctx.name, "identity": dict(identity), "frozen_at": now, "clips": {}}
        out = []
        changed = False
        for clip in clips:
            if clip.error:
                out.append(clip)
                continue
            old = frozen["clips"].get(clip.id)
            if old is None:
                frozen["clips"][clip.id] = clip.sha256
                changed = True
            elif old != clip.sha256:
                clip = replace(
                    clip,
                    error=(
                        f"{clip.video}: content changed since the {ctx.name} manifest was frozen on {frozen['frozen_at']} "
                        f"(sha256 {old[:12]} -> {clip.sha256[:12]}); pass runtime.refreeze=true to accept it"
                    ),
                )
            out.append(clip)
        if changed:
            atomic_write_text(path, json.dumps(frozen, indent=1, sort_keys=True))
    return out


def resolve_root(ctx: SuiteContext, env: str | None, layout: str) -> Path:
    root = ctx.data.root or (Path(os.environ[env]) if env and os.environ.get(env) else None)
    if root is None:
        how = f"set {env}=/path/to/{ctx.name} or pass data.root=/path" if env else "pass data.root=/path/to/videos"
        raise ConfigError(f"suite {ctx.name!r} needs its data root: {how} (layout: {layout})")
    root = Path(root).expanduser()
    if not root.is_dir():
        src = "data.root" if ctx.data.root else env
        raise ConfigError(f"suite {ctx.name!r}: data root {root} (from {src}) is not a directory (layout: {layout})")
    return root.resolve()


class Suite:
    """Base of the suite kinds: `Options` (a frozen dataclass) is built from the suite's config node."""

    Options: type

    def __init__(self, ctx: SuiteContext):
        self.ctx = ctx
        self.opts = typed(self.Options, ctx.options, "suite")


@dataclass(frozen=True)
class SplitOptions:
    root_env: str | None = None
    video_dir: str = "."
    video_ext: str = ".mp4"
    audio_dir: str | None = None
    audio_ext: str = ".wav"
    ids: tuple[str, ...] = ()
    ids_file: str | None = None
    description: str = ""


class SplitSuite(Suite):
    """A fixed id list under a dataset's own layout (LRS2: main/<id>.mp4; CMLR: video/ + audio/). A clip's group is
    the first part of its id: LRS2's source video, CMLR's speaker."""

    Options = SplitOptions

    def __init__(self, ctx: SuiteContext):
        super().__init__(ctx)
        if not self.opts.ids and not self.opts.ids_file:
            raise ConfigError(f"suite {ctx.name!r} lists no ids (ids or ids_file)")

    @property
    def layout(self) -> str:
        o = self.opts
        s = f"<root>/{o.video_dir}/<id>{o.video_ext}"
        return s + (f" and <root>/{o.audio_dir}/<id>{o.audio_ext}" if o.audio_dir else "")

    def clips(self) -> list[Clip]:
        o = self.opts
        root = resolve_root(self.ctx, o.root_env, self.layout)
        audio_root = Path(self.ctx.data.audio_root).expanduser() if self.ctx.data.audio_root else root
        ids = list(o.ids) or self._ids_from_file(root)
        clips = [
            hash_clip(
                i,
                root / o.video_dir / f"{i}{o.video_ext}",
                audio_root / o.audio_dir / f"{i}{o.audio_ext}" if o.audio_dir else None,
            )
            for i in ids
        ]
        return with_groups(freeze_manifest(self.ctx, {"root": str(root), "ids": ids}, clips))

    def _ids_from_file(self, root: Path) -> list[str]:
        """Ids listed one per line (first field) in `ids_file`, relative to the data root (LRS2: train.txt)."""
        path = root / str(self.opts.ids_file)
        if not path.is_file():
            raise ConfigError(f"suite {self.ctx.name!r}: id list {path} not found (suite.ids_file, relative to the data root)")
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


SUITES.register("lrs2")(SplitSuite)
SUITES.register("cmlr")(SplitSuite)


@dataclass(frozen=True)
class FolderOptions:
    recursive: bool = False
    """Also the videos in sub-folders (the clip id is then the relative path without the extension)."""
    include: tuple[str, ...] = ()
    """Glob patterns on clip ids (file stems); empty: every video."""
    description: str = ""


@SUITES.register("folder")
class FolderSuite(Suite):
    """Every video file in `data.root`; audio from a same-named file in `data.audio_root` (or root) if present. With
    `recursive`, a clip's group is its first folder (e.g. one folder per speaker)."""

    Options = FolderOptions

    def clips(self) -> list[Clip]:
        root = resolve_root(self.ctx, None, "any directory of videos, optionally with same-named audio files")
        audio_root = Path(self.ctx.data.audio_root).expanduser() if self.ctx.data.audio_root else root
        pattern = "**/*" if self.opts.recursive else "*"
        videos = sorted(p for p in root.glob(pattern) if p.suffix.lower() in VIDEO_EXTS)
        if self.opts.include:
            videos = [v for v in videos if any(fnmatch.fnmatch(v.relative_to(root).stem, pat) for pat in self.opts.include)]
        if not videos:
            raise ConfigError(f"suite 'folder': no video files ({', '.join(VIDEO_EXTS)}) in {root}")
        nfc = lambda p: unicodedata.normalize("NFC", str(p))  # noqa: E731
        stems = Counter(nfc(v.relative_to(root).with_suffix("")) for v in videos)
        names = Counter(nfc(v.relative_to(root)) for v in videos)
        clips, raw_names = [], {}
        for video in videos:
            rel = video.relative_to(root).with_suffix("")
            clip_id = nfc(rel) if stems[nfc(rel)] == 1 else nfc(video.relative_to(root))
            if names[nfc(video.relative_to(root))] > 1:
                clip_id += "~" + sha256_bytes(os.fsencode(video.relative_to(root)))[:8]
            audio = next((a for a in (audio_root / rel.with_suffix(e) for e in AUDIO_EXTS) if a.exists()), None)
            clips.append(hash_clip(clip_id, video, audio))
            raw_names[clip_id] = str(video.relative_to(root))
        clips = distinct_stems(clips, raw_names)
        identity = {"root": str(root), "audio_root": str(audio_root), "include": list(self.opts.include)}
        return with_groups(freeze_manifest(self.ctx, identity, clips))


@dataclass(frozen=True)
class DemoOptions:
    n_clips: int = 3
    seconds: float = 2.4
    size: int = 224
    """Frame side in pixels."""
    seed: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        require("suite", self, (
            ("n_clips", self.n_clips >= 1, "at least 1"),
            ("seconds", self.seconds >= 0.4, "at least 0.4"),
            ("size", self.size >= 64, "at least 64"),
        ))  # fmt: skip


@SUITES.register("demo")
class DemoSuite(Suite):
    """Clips generated deterministically from skimage's astronaut portrait (a smoke suite)."""

    Options = DemoOptions

    def clips(self) -> list[Clip]:
        from . import demo

        o = self.opts
        params = {"n_clips": o.n_clips, "seconds": o.seconds, "size": o.size, "seed": o.seed}
        folder = entry_dir(self.ctx.cache_dir, "demo", cache_key("demo", params=params, version=demo.DEMO_VERSION))
        demo.ensure_demo_clips(folder, o.n_clips, o.seconds, o.size, o.seed)
        clips = [hash_clip(p.stem, p) for p in sorted(folder.glob("*.mkv"))]
        return freeze_manifest(self.ctx, {"demo": params, "version": demo.DEMO_VERSION}, clips)


def load_suite(ctx: SuiteContext) -> list[Clip]:
    """The suite's clips (missing/changed ones carry an error). ConfigError when it cannot start."""
    options = dict(ctx.options)
    cls = SUITES.get(options.pop("kind", ctx.name))
    try:
        clips = cls(replace(ctx, options=options)).clips()
    except ClipError as exc:
        raise ConfigError(str(exc)) from exc
    if not clips:
        raise ConfigError(f"suite {ctx.name!r} has no clips (check its options, e.g. suite.n_clips or suite.ids)")
    return clips
