"""`stsa-bench` command line: flags become Hydra overrides; the composed config becomes a RunConfig.

    stsa-bench run --suite lrs2 --methods gt,static --metrics psnr,ssim --out DIR [key=value ...]
    stsa-bench prepare --suite folder data.root=DIR
    stsa-bench ls [suites|methods|metrics]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from .configure import compose, run_overrides, suite_names
from .core.errors import ConfigError
from .core.registry import METHODS, METRICS, SUITES, did_you_mean

EPILOG = """\
Trailing key=value arguments are Hydra overrides of configs/config.yaml, e.g.
  shift.frames=3  runtime.device=cpu  data.root=/data/lrs2  preprocess.crop_size=96
Data roots: lrs2 reads $STSA_BENCH_LRS2_ROOT, cmlr $STSA_BENCH_CMLR_ROOT (or data.root=...).
Cache: $STSA_BENCH_CACHE (default ~/.cache/stsa-bench)."""


def to_overrides(args: argparse.Namespace) -> list[str]:
    """Flags -> Hydra overrides (`--suite x` is `suite=x`, `--methods a,b` is `methods=[a,b]`)."""
    return run_overrides(
        getattr(args, "suite", None), getattr(args, "methods", None), getattr(args, "metrics", None), getattr(args, "out", None), list(args.overrides)
    )


def load_config(args: argparse.Namespace):
    """The run's config; its `cache_dir` also locates the weights folder (core.weights.use_cache)."""
    from .core.config import run_config_from_dict
    from .core.paths import cache_root
    from .core.weights import use_cache

    cfg = run_config_from_dict(compose(to_overrides(args)))
    use_cache(cfg.cache_dir if Path(cfg.cache_dir) != cache_root(None) else None)
    return cfg


def print_resolved(resolved) -> int:
    """--print-config: the resolved config as YAML."""
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(OmegaConf.create(dict(resolved))), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if args.print_config:
        return print_resolved(cfg.resolved)
    from .runner import run

    t0 = time.time()
    outcome = run(cfg)
    if not outcome.summary:
        return 0  # a rank other than 0 of a sharded run: rank 0 reports
    print(outcome.summary)
    print(
        f"{len(outcome.rows)} rows ({outcome.n_new} new, {outcome.n_failed} failed) in {time.time() - t0:.1f} s -> "
        f"{outcome.out / 'results.jsonl'}"
    )
    if outcome.timing:
        print(f"{outcome.timing['line']} ({outcome.out / 'timing.json'})")
    return 1 if args.strict and outcome.n_failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import diagnose

    return diagnose(load_config(args))


def cmd_train(args: argparse.Namespace) -> int:
    from .train import describe, run_training, train_config_from_dict

    overrides = [f"suite={args.suite}"] if args.suite else []
    cfg = train_config_from_dict(compose(overrides + list(args.overrides), "train"))
    if args.print_config:
        return print_resolved(cfg.resolved)
    from stsa.training.engine import dist_info

    main_process = dist_info()[1] == 0
    outcome = run_training(cfg, log=lambda m: print(m, file=sys.stderr) if main_process else None)
    if main_process:
        print(describe(outcome))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import ablate_config_from_dict, run_ablation

    overrides = ([f"evaluation.suite={args.suite}"] if args.suite else []) + list(args.overrides)
    acfg = ablate_config_from_dict(compose(overrides, "ablate"), overrides)
    if args.print_config:
        return print_resolved(acfg.resolved)
    suite = str(acfg.evaluation["suite"])
    if suite not in suite_names():
        raise ConfigError(f"unknown suite {suite!r}{did_you_mean(suite, suite_names())}")
    try:
        written = run_ablation(acfg, log=lambda m: print(m, file=sys.stderr), compose=compose)
    except ConfigError as exc:
        if "needs its data root" not in str(exc) or f"suite {suite!r}" in str(exc):
            raise
        raise ConfigError(f"training clips: {exc}. --suite sets the evaluation suite ({suite}); the training suite is suite= "
                          f"(default lrs2_train). To try the whole ablation on the demo clips: --suite demo suite=demo") from None  # fmt: skip
    print(written[0].read_text())
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .core.ranks import current_rank
    from .core.suites import load_suite
    from .runner import my_clips, preprocessor, report_unavailable, suite_context

    cfg = load_config(args)
    rank = current_rank()
    clips = load_suite(suite_context(cfg))
    if rank.is_main:
        report_unavailable(cfg.suite, clips, lambda m: print(m, file=sys.stderr))
    prep = preprocessor(cfg)
    rows, hits, failed = [], 0, 0
    t0 = time.time()
    show = cfg.runtime.progress and rank.is_main
    try:
        for clip in tqdm(my_clips(clips, rank, cfg.preprocess.fps), desc=f"prepare {cfg.suite}", unit="clip", disable=None if show else True):
            hit = not clip.error and prep.is_cached(clip)
            try:
                p = prep.prepare(clip)
                rows.append((clip.id, str(p.n_frames), str(p.n_face), "cached" if hit else "prepared"))
                hits += hit
            except Exception as exc:  # noqa: BLE001 - reported per clip
                from .core.errors import one_line

                failed += 1
                rows.append((clip.id, "-", "-", f"failed: {one_line(exc)}"))
    finally:
        prep.close()
    gathered = rank.gather((rows, hits, failed))
    if not rank.is_main:
        return 0
    order = {c.id: i for i, c in enumerate(clips)}
    rows = sorted((r for g in gathered for r in g[0]), key=lambda r: order[r[0]])
    hits, failed = sum(g[1] for g in gathered), sum(g[2] for g in gathered)
    width = max(len(r[0]) for r in rows) if rows else 4
    print(f"{'clip':<{width}}  frames  with face  status")
    for cid, n, nf, status in rows:
        print(f"{cid:<{width}}  {n:>6}  {nf:>9}  {status}")
    frames = sum(int(r[1]) for r in rows if r[1] != "-")
    print(
        f"{len(clips)} clips, {frames} frames, {hits} cache hits, {failed} failed in {time.time() - t0:.1f} s "
        f"(cache: {cfg.cache_dir})"
    )
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    what = args.what or "all"
    if what in ("suites", "all"):
        from omegaconf import OmegaConf

        from configs import CONFIG_DIR

        print("suites:")
        for name in suite_names():
            path = CONFIG_DIR / "suite" / f"{name}.yaml"
            if path.is_file():
                desc = OmegaConf.load(path).get("description", "")
            else:
                desc = ((SUITES.get(name).__doc__ or "").strip().splitlines() or [""])[0] + " (plugin)"
            print(f"  {name:<10} {desc}")
    if what in ("methods", "all"):
        print("methods:")
        from .core.weights_store import status

        for name in METHODS.names():
            doc = " ".join((METHODS.get(name).__doc__ or "").strip().split("\n\n")[0].split())
            print(f"  {name:<17} {doc}")
            for spec in METHODS.get(name).weights_specs():
                st = status(spec, hash_files=False)
                state = f"present: {st.path}" if st.path else f"MISSING: {spec.where()} (official {spec.url})"
                print(f"                    weights {spec.name}: {state}")
    if what in ("metrics", "all"):
        from .core.config import PreprocessConfig
        from .core.weights import WeightsMissing, resolve

        weights = {}
        if args.overrides:
            weights = load_config(args).weights
        print("metrics (id = name[protocol]; ↑ higher is better, ↓ lower; * in --metrics all, + in --metrics extended):")
        tag = PreprocessConfig().crop_tag()
        from .core.registry import METRIC_SETS, PAPER_METRICS

        for name in METRICS.names():
            cls = METRICS.get(name)
            m = cls(crop_tag=tag, device="cpu")
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            star = "*" if name in PAPER_METRICS else "+" if name in METRIC_SETS["extended"] else " "
            print(f" {star}{name:<13} {'↑' if cls.higher_is_better else '↓'} {m.id}\n                 {doc}")
            for spec in cls.weights_specs():
                try:
                    path, _ = resolve(spec, weights.get(spec.name), download=False)
                    state = f"present: {path}"
                except WeightsMissing:
                    state = f"MISSING: {spec.where()} (official {spec.url})"
                print(f"                 weights {spec.name}: {state}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stsa-bench",
        description="Benchmark harness for audio-driven visual dubbing (lip-sync).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_common(sp: argparse.ArgumentParser, suite_help: str = "") -> argparse.ArgumentParser:
        sp.add_argument("--suite", help=suite_help or f"suite to use ({', '.join(suite_names())}); default demo")
        sp.add_argument("overrides", nargs="*", metavar="key=value", help="Hydra overrides, e.g. data.root=DIR shift.frames=3")
        return sp

    r = with_common(
        sub.add_parser(
            "run",
            help="generate with each method and score every clip; writes results.jsonl and summary.md",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    r.add_argument("--methods", help=f"comma-separated ({', '.join(METHODS.names())})")
    r.add_argument("--metrics", help=f"comma-separated ({', '.join(METRICS.names())}), or a set: all, extended")
    r.add_argument("--out", help="results directory (default results/<suite>); rerun with the same config to resume")
    r.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    r.add_argument("--strict", action="store_true", help="exit 1 when the run finished with failed rows")
    r.set_defaults(func=cmd_run)

    dr = with_common(
        sub.add_parser("doctor", help="can this run go here? versions, devices, data, the weights it needs (verified), tools, disk; exit 1 if not")
    )
    dr.add_argument("--methods", help="the run's --methods")
    dr.add_argument("--metrics", help="the run's --metrics")
    dr.set_defaults(func=cmd_doctor)

    pr = with_common(
        sub.add_parser(
            "prepare",
            help="decode, find landmarks and cut face crops of a suite into the cache",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    pr.set_defaults(func=cmd_prepare)

    tr = with_common(
        sub.add_parser(
            "train",
            help="train STSA: stage=guidance|synthesis|finetune|syncnet (configs/train.yaml); resumable",
            epilog="Trailing key=value arguments are Hydra overrides of configs/train.yaml, e.g.\n"
            "  stage=synthesis data.root=DIR sync_expert=lipsync_expert.pth size=tiny train.steps=100\n"
            "Data parallel: torchrun --nproc_per_node=N -m stsa_bench.cli train ...",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    tr.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    tr.set_defaults(func=cmd_train)

    ab = with_common(
        sub.add_parser(
            "ablate",
            help="Table III: train each STSA variant (or use given checkpoints), evaluate on --suite, write the table",
            epilog="Trailing key=value arguments are Hydra overrides of configs/ablate.yaml (training settings as in\n"
            "configs/train.yaml; suite/data.root there are the training clips), e.g.\n"
            "  data.root=/data/lrs2 evaluation.data.root=/data/lrs2 sync_expert=lipsync_expert.pth vgg19=vgg19.pth",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        ),
        "the EVALUATION suite (default lrs2); the training clips are suite= (default lrs2_train, needs its data.root); "
        "the whole ablation on the demo clips: --suite demo suite=demo",
    )
    ab.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    ab.set_defaults(func=cmd_ablate)

    from .report_cmd import add_parsers as add_report_parsers

    add_report_parsers(sub)

    be = sub.add_parser("bench", help="frames/s and peak memory of each component on this machine (random weights, offline)")
    be.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    be.add_argument("--out", type=Path, default=None, help="folder for bench.json")
    be.add_argument("--quick", action="store_true", help="tiny inputs, one round")
    be.set_defaults(func=cmd_bench)

    from .weights_cmd import add_parser as add_weights_parser

    add_weights_parser(sub)

    ls = sub.add_parser("ls", help="list suites, methods and metrics (with whether their weights are present)")
    ls.add_argument("what", nargs="?", choices=["suites", "methods", "metrics"])
    ls.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. weights.fid=PATH")
    ls.set_defaults(func=cmd_ls)
    return p


def main(argv: list[str] | None = None) -> int:
    from .core.process import setup_process

    setup_process()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    import signal

    def terminated(signum, frame):
        raise Terminated()

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if on_main else None
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"stsa-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"stsa-bench: {what}; every row written so far is kept: run the same command again to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"stsa-bench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in errors.log
        log = internal_error_log(exc)
        print(f"stsa-bench: internal error: {type(exc).__name__}: {exc} (traceback in {log}; please report it)", file=sys.stderr)
        return 2
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
        from .core.ranks import release

        release()


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a cluster preempting the job): stop like Ctrl-C."""


def internal_error_log(exc: BaseException) -> Path:
    """Append the traceback of an unexpected error to `<cache>/errors.log` (the terminal gets one line)."""
    import traceback

    from .core.paths import cache_root

    path = cache_root(None) / "errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(sys.argv)}\n")
            f.write("".join(traceback.format_exception(exc)))
    except OSError:
        return Path("(unwritable)")
    return path


if __name__ == "__main__":
    sys.exit(main())
