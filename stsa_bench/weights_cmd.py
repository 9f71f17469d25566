"""`stsa-bench weights list|fetch|verify|add`: what a table needs, what this machine has, whether it is
the right file, and one command to get it (core.weights_store does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .core.catalogue import CATALOGUE
from .core.errors import ConfigError
from .core.registry import METHODS, METRICS, did_you_mean
from .core.weights import WeightsMissing, WeightsSpec


def add_parser(sub) -> None:
    wp = sub.add_parser("weights", help="list, fetch (resumable, sha256-verified), verify and add weights files; trailing "
                        "key=value are the run's overrides (cache_dir=DIR: its weights/ folder)")
    ws = wp.add_subparsers(dest="action", required=True)
    for name, helptext in (("list", "every catalogue entry (or those a run needs): present, where, verified"),
                           ("fetch", "download official files into the weights folder"),
                           ("verify", "hash every present file; exit 1 on a mismatch or a changed pinned file")):  # fmt: skip
        p = ws.add_parser(name, help=helptext)
        if name == "fetch":
            p.add_argument("names", nargs="*", help=f"entries ({', '.join(CATALOGUE)})")
            p.add_argument("--all", action="store_true", help="every entry with a direct download")
            p.add_argument("--mirror", help="base URL serving the files by name (default: the official URLs)")
        if name != "verify":
            p.add_argument("--methods", help="the run's --methods: only the entries they need")
            p.add_argument("--metrics", help="the run's --metrics: only the entries they need (all = the paper's)")
        p.set_defaults(func=run, overrides=[])
    a = ws.add_parser("add", help="register a local file under a catalogue name after checking that it loads")
    a.add_argument("name", help=f"catalogue entry ({', '.join(CATALOGUE)})")
    a.add_argument("path", help="the file (or, for wav2vec2, the model folder)")
    a.add_argument("--link", action="store_true", help="symlink instead of copying")
    a.set_defaults(func=run, overrides=[])


def needed(methods: str | None, metrics: str | None) -> list[WeightsSpec]:
    """Catalogue entries the given methods and metrics load (in catalogue order); all entries when neither is given."""
    if not methods and not metrics:
        return list(CATALOGUE.values())
    from .core.registry import expand_metric_sets

    names = [m.rpartition(":")[2] for m in (methods or "").split(",") if m]
    metric_names = list(expand_metric_sets([x for x in (metrics or "").split(",") if x]))
    METHODS.check(names)
    METRICS.check(metric_names)
    specs = [s for n in names for s in METHODS.get(n).weights_specs()] + [s for n in metric_names for s in METRICS.get(n).weights_specs()]
    wanted = {s.name for s in specs}
    return [s for s in CATALOGUE.values() if s.name in wanted]


def run(args: argparse.Namespace) -> int:
    from .cli import load_config
    from .core import weights_store as store

    given = list(args.overrides) + [n for n in getattr(args, "names", []) if "=" in n]
    if getattr(args, "names", None):
        args.names = [n for n in args.names if "=" not in n]
    load_config(argparse.Namespace(overrides=given, methods=getattr(args, "methods", None), metrics=getattr(args, "metrics", None)))
    if args.action == "add":
        spec = _spec(args.name)
        if "://" in args.path:
            raise ConfigError(f"weights add takes a local file, not {args.path}; to download, `stsa-bench weights fetch {spec.name}` (--mirror https://...)")
        try:
            dest = store.add(spec, Path(args.path), lambda p: store.loads_as_expected(spec, p), link=args.link)
        except WeightsMissing as exc:
            raise ConfigError(str(exc)) from None
        print(f"{spec.name}: {args.path} -> {dest} ({store.status(spec).verdict})")
        return 0
    if args.action == "verify":
        statuses = [store.status(s) for s in CATALOGUE.values()]
        present = [st for st in statuses if st.path is not None]
        for st in present:
            print(f"{st.spec.name:15} {st.verdict}  {st.path}")
        bad = [st for st in present if not st.ok]
        print(f"{len(present)} present, {len(bad)} with a problem (lock file: {store.lock_path()})")
        return 1 if bad else 0
    specs = needed(args.methods, args.metrics)
    if args.action == "list":
        print(f"weights folder: {store.weights_dir()} (cache_dir=DIR puts it in DIR/weights; $STSA_BENCH_WEIGHTS moves it anywhere)")
        for spec in specs:
            st = store.status(spec)
            where = str(st.path) if st.path else spec.how_to_get()
            print(f"{spec.name:15} {st.verdict:40.40} {where}  [{spec.used_by}; {spec.licence}]")
        return 0
    chosen = [_spec(n) for n in args.names] if args.names else [s for s in specs if s.direct] if (args.all or args.methods or args.metrics) else []
    if not chosen:
        raise ConfigError("name the entries to fetch, or pass --all / --methods / --metrics")
    try:
        store.source_url(chosen[0], args.mirror)
    except WeightsMissing as exc:
        raise ConfigError(str(exc)) from None
    failed = 0
    for spec in chosen:
        st = store.status(spec, hash_files=False)
        if st.path is not None and store.status(spec).ok:
            print(f"{spec.name}: already present at {st.path}")
            continue
        try:
            path, digest = store.fetch(spec, mirror=args.mirror)
            print(f"{spec.name}: {path} (sha256 {digest[:16]}…, {store.status(spec).verdict})")
        except WeightsMissing as exc:
            failed += 1
            print(f"{spec.name}: {exc}")
    return 1 if failed else 0


def _spec(name: str) -> WeightsSpec:
    if name not in CATALOGUE:
        raise ConfigError(f"no weights entry {name!r}{did_you_mean(name, list(CATALOGUE))}")
    return CATALOGUE[name]
