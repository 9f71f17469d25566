#!/usr/bin/env bash
# GPU check for a bare CUDA machine (python3 with torch/torchvision/transformers/numpy/scipy/opencv, no network).
# Installs the wheels in .whl/ (if any) into /tmp/site, prints the environment, runs the full bench on
# cuda and the tests marked `gpu`. Everything goes to "$OUT/gpu_check.log"; OUT defaults to ./gpu_out.
# Exit status: the bench's, or pytest's when the bench passed (pytest's 5, "no tests collected", counts as 0).
# BENCH_DEVICE (default cuda) and BENCH_QUICK=1 (adds --quick) exist for dry runs elsewhere.
set -u

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 GLOG_minloglevel=2 TF_CPP_MIN_LOG_LEVEL=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export STSA_BENCH_CACHE="${STSA_BENCH_CACHE:-/tmp/stsa_bench_cache}"

log() { echo "$@" | tee -a "$LOG"; }
run() { # run CMD... with a time limit in seconds (first argument), output appended to the log
    local limit="$1"
    shift
    log "+ $*"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

log "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT, output in $OUT"
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    run 45 python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
else
    log "no .whl/ folder: optional packages (av, mediapipe, lpips, pytorch-fid, python_speech_features) come from the system if at all"
fi

log "== environment"
if command -v nvidia-smi > /dev/null 2>&1; then
    run 15 nvidia-smi
else
    log "nvidia-smi: not found"
fi
run 45 python3 - << 'EOF'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("torch", "torchvision", "transformers", "numpy", "scipy", "cv2", "av", "mediapipe", "lpips", "pytorch_fid", "python_speech_features", "pytest"):
    try:
        print(f"{name:24s}", getattr(importlib.import_module(name), "__version__", "installed"))
    except Exception as exc:
        print(f"{name:24s} missing ({type(exc).__name__})")
import torch
print("cuda available", torch.cuda.is_available(), "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
EOF

BENCH_DEVICE="${BENCH_DEVICE:-cuda}"
quick=""
[ "${BENCH_QUICK:-0}" = "1" ] && quick="--quick"
log "== bench on $BENCH_DEVICE ${quick:-(full mode)}"
# shellcheck disable=SC2086
run 280 python3 -m stsa_bench.bench --device "$BENCH_DEVICE" --out "$OUT" $quick
bench_rc=$?
log "bench exit status: $bench_rc"

log "== pytest -m gpu"
test_rc=0
# only the files that mention the marker: the others may import Hydra, which this machine lacks
gpu_files="$(grep -l -E 'mark\.gpu' tests/test_*.py 2> /dev/null | tr '\n' ' ')"
extra=""
python3 -c "import pytest_benchmark" > /dev/null 2>&1 || extra="-o addopts="
if ! python3 -c "import pytest" > /dev/null 2>&1; then
    log "pytest is not installed: tests skipped"
elif [ -z "$gpu_files" ]; then
    log "no test file uses the gpu marker: nothing to run (fine)"
else
    # shellcheck disable=SC2086
    run 60 python3 -m pytest -q -m gpu -p no:cacheprovider $extra $gpu_files
    test_rc=$?
    if [ "$test_rc" -eq 5 ]; then
        log "no tests marked gpu were collected: fine"
        test_rc=0
    fi
fi
log "pytest exit status: $test_rc"

log "== done: bench $bench_rc, tests $test_rc; files in $OUT"
[ "$bench_rc" -ne 0 ] && exit "$bench_rc"
exit "$test_rc"
