"""`stsa-bench report` (tables, plots and the HTML page from run folders' rows) and `stsa-bench check` (a run's rows
against a golden rows file)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .core.errors import ConfigError
from .core.registry import did_you_mean

TABLE_FLAGS = ("clips", "baseline", "test", "resamples", "pooled_resamples", "family", "min_clips", "group", "seed")
"""`report` flags that map onto reports.aggregate.TableOptions fields (defaults live there)."""


def add_parsers(sub) -> None:
    rp = sub.add_parser("report", help="paper-ready tables (md, tex, csv, json) and an HTML page with plots from a results dir")
    rp.add_argument("results", nargs="+", help="run output directories (hold results.jsonl); several = one merged table")
    rp.add_argument("--format", default="md,tex,csv,json,html", help="comma-separated: md,tex,csv,json,html (default all)")
    rp.add_argument("--out", help="where to write (default FIRST-RESULTS/report)")
    rp.add_argument("--reference", help="published numbers to compare with: stsa_lrs2, stsa_cmlr or a YAML path")
    rp.add_argument("--clips", choices=("common", "own"), help="common (default): all methods on the clips every method scored; own: each method's clips")
    rp.add_argument("--baseline", metavar="METHOD", help="paired test of every other method against this one (Holm-corrected)")
    rp.add_argument("--test", help="paired test for per-clip metrics: permutation (default: sign flips), ttest or wilcoxon")
    rp.add_argument("--resamples", type=int, help="Monte Carlo sign flips of the permutation test beyond 20 clips (default 9999)")
    rp.add_argument("--pooled-resamples", type=int, help="exchange draws of pooled metrics' tests (default: enough for Holm over the family)")
    rp.add_argument("--family", help="Holm's family: metric (default: the comparisons of one metric) or table (all of them)")
    rp.add_argument("--min-clips", type=int, help="no interval and no test on fewer clips (default 10)")
    rp.add_argument("--group", action="store_true", help="resample by the suite's clip groups (speaker or source video) instead of by clip")
    rp.add_argument("--seed", type=int, help="seed of the Monte Carlo draws (default 0)")
    rp.add_argument("--allow-mixed", action="store_true", help="merge folders whose config or method options differ, as separate rows named by folder")
    rp.add_argument("--skip-bad-rows", action="store_true", help="skip lines of results.jsonl that are not rows (counted in the table) instead of stopping")
    rp.set_defaults(func=cmd_report)

    ck = sub.add_parser("check", help="compare a run's rows with a golden rows file; exit 1 on drift")
    ck.add_argument("results", help="a run's output directory (holds results.jsonl)")
    ck.add_argument("--golden", required=True, help="golden rows file (JSON)")
    ck.add_argument("--tolerance", action="append", metavar="METRIC=ABS|REL%", help="e.g. psnr=0.01 or fid=1%%; repeatable")
    ck.add_argument("--update", action="store_true", help="rewrite the golden file from this run (deliberately)")
    ck.set_defaults(func=cmd_check)


def cmd_report(args: argparse.Namespace) -> int:
    """Tables (md, tex, csv, json), per-clip tables, optional reference comparison, plots and an HTML page,
    from one run folder or several of the same suite manifest."""
    from reports import tables
    from reports.build import REPORT_FORMATS, default_spec, write_report

    from .pooled import SavedPartials

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown:
        raise ConfigError(f"unknown report format {unknown[0]!r}{did_you_mean(unknown[0], list(REPORT_FORMATS))}")
    paths = [Path(p) for p in args.results]
    run = tables.Run.load(paths, pooled=SavedPartials(paths), skip_bad_rows=args.skip_bad_rows, allow_mixed=args.allow_mixed)
    given = {k: getattr(args, k) for k in TABLE_FLAGS if getattr(args, k) not in (None, False)}
    table = tables.aggregate(run, tables.TableOptions(**given))
    reference = None
    if args.reference:
        try:
            reference = tables.load_reference(args.reference)
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from exc
    md, written = write_report(table, Path(args.out) if args.out else run.path / "report", formats, default_spec(table, reference))
    print(md)
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 1 with a diff table when the run drifted from the golden rows; --update rewrites them."""
    from reports.check import (
        compare,
        diff_table,
        environment_note,
        load_golden,
        parse_tolerances,
        run_environment,
        write_golden,
    )

    from .core.provenance import git_sha
    from .core.results import read_rows

    rows = read_rows(Path(args.results) / "results.jsonl")
    if not rows:
        raise ConfigError(f"{Path(args.results) / 'results.jsonl'}: no result rows")
    golden_path = Path(args.golden)
    if args.update:
        write_golden(golden_path, rows, git_sha(), run_environment(args.results))
        print(f"wrote {len(rows)} golden rows to {golden_path} (git {git_sha()})")
        return 0
    if not golden_path.is_file():
        raise ConfigError(f"{golden_path}: no golden file (create it deliberately with --update)")
    try:
        tolerances = parse_tolerances(args.tolerance or [])
        golden = load_golden(golden_path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    problems = compare(rows, golden, tolerances)
    if problems:
        print(f"check FAILED: {len(problems)} differences from {golden_path} (golden from git {golden.get('git_sha')}):\n")
        print(diff_table(problems))
        print(environment_note(golden, run_environment(args.results)))
        return 1
    print(f"check passed: {len(golden['rows'])} golden rows match (golden from git {golden.get('git_sha')})")
    return 0
