"""Real-clip smoke run: `stsa-bench run --suite folder` over real talking-face clips of ../shared/clips (manifest:
real_or_generated == real), methods gt,static x metrics psnr,ssim,lse_c, with --strict (exit 1 on any failed row).

SyncNet's weights come from the shared golden formula (shared/golden/make_weights.py): LSE's values are not the
official model's, but every stage a real clip goes through (decode, side data, resampling, landmarks, crops,
SyncNet windows) runs. Nothing is downloaded.

    python scripts/smoke_real.py                  # two clips: an MPEG-1 one (side data) and an x264 one (SEI)
    python scripts/smoke_real.py --clips all      # every real clip
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT = ("rizkiarm__LipNet__bbaf2n.mpg", "Hangz-nju-cuhk__Talking-Face_PC-AVS__00010.mp4")
AUDIO = (".wav", ".flac", ".mp3")


def shared_root() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from stsa_bench.core.paths import shared_root as find

    root = find()
    if root is None:
        sys.exit("smoke_real: needs ../shared (or STSA_BENCH_SHARED)")
    return root


def real_clips(clips: Path) -> list[str]:
    with open(clips / "manifest.csv", newline="") as f:
        return [r["file"] for r in csv.DictReader(f) if r["real_or_generated"] == "real" and not r["file"].endswith(AUDIO)]


def syncnet_weights(shared: Path, path: Path) -> Path:
    import torch

    spec = importlib.util.spec_from_file_location("golden_make_weights", shared / "golden" / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.golden_state_dict_from_manifest(str(shared / "golden" / "syncnet_S" / "manifest.json")), path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="two", help="'two' (default) or 'all' real clips")
    ap.add_argument("--out", help="run folder (default: a temporary one)")
    ap.add_argument("--cache", help="cache_dir (default: the harness's)")
    args = ap.parse_args()
    shared = shared_root()
    files = real_clips(shared / "clips") if args.clips == "all" else list(DEFAULT)
    with tempfile.TemporaryDirectory(prefix="smoke_real_") as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for name in files:
            (folder / name).symlink_to(shared / "clips" / name)
            for ext in AUDIO:
                beside = (shared / "clips" / name).with_suffix(ext)
                if beside.is_file():
                    (folder / beside.name).symlink_to(beside)
        weights = syncnet_weights(shared, Path(tmp) / "syncnet_golden.pt")
        out = Path(args.out) if args.out else Path(tmp) / "run"
        cmd = [sys.executable, "-m", "stsa_bench.cli", "run", "--suite", "folder", f"data.root={folder}", "--out", str(out),
               "--methods", "gt,static", "--metrics", "psnr,ssim,lse_c", f"weights.syncnet={weights}", "--strict",
               "runtime.progress=false", *([f"cache_dir={args.cache}"] if args.cache else [])]  # fmt: skip
        print(f"smoke_real: {len(files)} real clips: {', '.join(files)}", flush=True)
        return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
