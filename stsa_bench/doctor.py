"""`stsa-bench doctor [RUN-FLAGS]`: can this run go on this machine? Versions (warned when they differ from the
lock), devices, the data, the weights the run needs (verified), optional tools, the cache and free disk. Exit 0 when the run can go,
1 with one line per missing piece otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MIN_FREE_GB = 5.0
"""Less free disk than this under the cache is a missing piece (a 40-clip suite's cache is a few GB)."""


def environment() -> list[tuple[str, str]]:
    """(what, version or state) for the software and machine the harness runs on (core.environment, what run.json records)."""
    import torch

    from .core.environment import FFMPEG_LIBS, capture
    from .core.process import ALLOCATOR_ENV, huge_page_mode

    env = capture()
    cuda = f"{env['torch_cuda']}, cuDNN {env['cudnn']}, {torch.cuda.device_count()} device(s): {env['gpu']}" if torch.cuda.is_available() \
        else f"not available (runs on the CPU; torch built for CUDA {env['torch_cuda']})"  # fmt: skip
    return [
        ("python", f"{env['python']} ({sys.executable})"),
        ("CPU", f"{env['cpu']}, {os.cpu_count()} cores"),
        ("torch", f"{env['torch']}, {torch.get_num_threads()} CPU threads; torchvision {env['torchvision']}"),
        ("CPU memory", f"huge pages {huge_page_mode()}; " + ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ALLOCATOR_ENV)),
        ("cuda", cuda),
        ("PyAV / FFmpeg", f"{env['av']} / " + ", ".join(f"{lib} {env[lib]}" for lib in FFMPEG_LIBS)),
        *((k, env[k]) for k in ("mediapipe", "opencv", "numpy", "scipy", "lpips", "pytorch-fid", "transformers")),
    ]


def lock_state() -> tuple[str, list[str]]:
    """(what the installed packages are against the runtime lock CI tested, each difference); a difference is a
    warning, never a missing piece: values may still differ from CI's in their last digits."""
    from .core.environment import LOCK, lock_differences, read_lock

    if not LOCK.is_file():
        return f"no lock beside the package ({LOCK}; installed from a wheel?): versions not compared", []
    differ = lock_differences(read_lock(LOCK))
    return (f"{LOCK}: {len(differ)} installed versions differ" if differ else f"{LOCK}: every installed version matches"), differ


def optional_tools() -> list[tuple[str, str]]:
    """Tools the report uses when present (never a missing piece)."""
    latex = shutil.which("pdflatex")
    booktabs = ""
    if latex:
        found = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True, timeout=30).stdout.strip()
        booktabs = ", booktabs present" if found else ", booktabs MISSING (apt-get install texlive-latex-recommended)"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return [
        ("pdflatex", (latex + booktabs) if latex else "not found (the .tex table is written anyway; no compile check)"),
        ("chromium", chromium or "not found (report.html is written anyway; no render check)"),
    ]


def cache_state(cache: Path) -> tuple[str, str | None]:
    """(location, size and free disk; a missing piece or None)."""
    size = 0
    if cache.is_dir():
        for root, _, files in os.walk(cache):
            for f in files:
                try:
                    size += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    continue
    probe = cache if cache.exists() else next((p for p in cache.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free / 1e9
    text = f"{cache}: {size / 1e9:.2f} GB used, {free:.1f} GB free"
    return text, (f"only {free:.1f} GB free under {cache} (want {MIN_FREE_GB:g} GB)" if free < MIN_FREE_GB else None)


def external_methods(cfg, missing: list[str]) -> list[str]:
    """One line per external method of the run: what its jobs will use, or why it cannot run (added to `missing`)."""
    from baselines.base import MethodEnv, build_method
    from baselines.external.base import ExternalMethod

    from .core.errors import ConfigError
    from .core.registry import METHODS

    lines = []
    for label in cfg.methods:
        name = cfg.method_of(label)
        if not issubclass(METHODS.get(name), ExternalMethod):
            continue
        try:
            m = build_method(name, cfg.options_for(label), MethodEnv(weights=cfg.weights), label=label)
        except Exception as exc:  # noqa: BLE001 - doctor reports what stops the run, whatever it is
            why = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            missing.append(why)
            lines.append(f"{label:15} cannot run: {why}")
            continue
        programs = [f"{p} {where}" for p, where in m.programs_found.items()]
        found = [m.version, f"python {m.python}", f"weights sha256 {m.weights_sha or 'none'}", *programs]
        lines.append(f"{label:15} " + "; ".join(found))
    return lines


def diagnose(cfg, log=print) -> int:
    """Print the report for the run `cfg`; return 0 when it can go, 1 otherwise."""
    from .core.devices import resolve_device
    from .core.errors import ConfigError
    from .core.registry import METHODS
    from .core.suites import load_suite
    from .core.weights_store import status
    from .runner import suite_context
    from .weights_cmd import needed

    missing: list[str] = []
    log("environment:")
    for what, state in environment():
        log(f"  {what:15} {state}")
    try:
        log(f"  {'run device':15} {resolve_device(cfg.runtime.device)} (runtime.device={cfg.runtime.device})")
    except ConfigError as exc:
        log(f"  {'run device':15} {exc}")
        missing.append(f"runtime.device={cfg.runtime.device}: {exc}")
    log(f"data ({cfg.suite}):")
    try:
        clips = load_suite(suite_context(cfg))
        bad = [c for c in clips if c.error]
        log(
            f"  {len(clips) - len(bad)} of {len(clips)} clips readable"
            + (f"; unavailable (they get failed rows): {', '.join(c.id for c in bad[:5])}" if bad else "")
        )
    except ConfigError as exc:
        log(f"  {exc}")
        missing.append(str(exc))
    methods = ",".join(cfg.method_of(m) for m in cfg.methods)
    log(f"weights for --methods {','.join(cfg.methods)} --metrics {','.join(cfg.metrics)}:")
    specs = needed(methods, ",".join(cfg.metrics))
    given = dict(cfg.weights)
    for m in cfg.methods:
        given.update({k: v for k, v in METHODS.get(cfg.method_of(m)).weights_settings(cfg.options_for(m)).items() if v})
    for spec in specs:
        st = status(spec, given.get(spec.name))
        log(f"  {spec.name:15} {st.verdict}" + (f"  {st.path}" if st.path else ""))
        if st.path is None:
            missing.append(f"{spec.name} weights missing: {spec.how_to_get()} (or weights.{spec.name}=PATH)")
        elif not st.ok:
            missing.append(f"{spec.name} weights at {st.path}: {st.verdict}")
    if not specs:
        log("  none needed")
    external = external_methods(cfg, missing)
    if external:
        log("external methods (checkout, interpreter, checkpoints, programs):")
        for line in external:
            log(f"  {line}")
    text, differ = lock_state()
    log(f"lock (the tested set):\n  {text}")
    for line in differ:
        log(f"  warning: {line}")
    log("optional tools:")
    for what, state in optional_tools():
        log(f"  {what:15} {state}")
    text, problem = cache_state(cfg.cache_dir)
    log(f"cache:\n  {text}")
    if problem:
        missing.append(problem)
    if missing:
        log(f"\nthe run cannot go yet ({len(missing)} missing):")
        for line in missing:
            log(f"  - {line}")
        return 1
    log("\nthe run can go.")
    return 0
