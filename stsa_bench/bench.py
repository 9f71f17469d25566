"""`stsa-bench bench`: frames/s and peak memory of every component on this machine.

Networks are randomly initialised (speed does not depend on weight values): no weights file is read
and nothing is downloaded. A time is the median over rounds after warm-up runs, with
torch.cuda.synchronize around each timed region on CUDA. Peak memory: torch.cuda.max_memory_allocated
on CUDA (reset per component); on CPU the process's max RSS (getrusage), reset per component through
/proc/self/clear_refs where the kernel allows it, else the high-water mark of the whole run.
A component that fails is recorded as {"error": ...}, one whose package is missing as {"skipped": ...}.
Standalone entry (no Hydra needed): python -m stsa_bench.bench --device cuda --out DIR [--quick]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

T = 5
PAPER_METRICS = ("psnr", "ssim", "fid", "lpips", "lse", "dme")


class Skip(Exception):
    """A component that cannot run here (a package is missing); the message is the reason."""


@dataclass(frozen=True)
class Plan:
    device: str
    quick: bool
    rounds: int
    warmup: int
    frames: int
    stsa_batch: int
    w2l_batch: int
    loop_frames: int
    method_frames: int
    frame_size: int = 160


def make_plan(device: str, quick: bool) -> Plan:
    """Sizes per mode: quick = tiny inputs, one round; full = the batch sizes the harness uses."""
    cuda = device.startswith("cuda")
    if quick:
        return Plan(device, True, 1, 1, 8, 8 if cuda else 2, 16 if cuda else 4, 2, 8 if cuda else 6)
    return Plan(device, False, 3, 1, 128 if cuda else 32, 32 if cuda else 4, 128 if cuda else 16, 8 if cuda else 4, 64 if cuda else 12)


def need(module: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    except Exception as exc:
        raise Skip(f"{module} is not importable ({type(exc).__name__})") from exc


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: torch.device) -> str:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        return "cuda max allocated"
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return "process max RSS"
    except OSError:
        return "process max RSS, whole run"


def _peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def measure(plan: Plan, fn, frames: int, batch: int, device: str | None = None, precision: str = "fp32", **extra) -> dict:
    """Median seconds of fn() over plan.rounds after plan.warmup calls -> a record with frames/s."""
    dev = torch.device(device or plan.device)
    _sync(dev)
    kind = _reset_peak(dev)
    for _ in range(plan.warmup):
        fn()
    _sync(dev)
    times = []
    for _ in range(plan.rounds):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"frames_per_s": round(frames / s, 2), "seconds": round(s, 5), "frames": frames, "batch_size": batch,
            "device": str(dev), "precision": precision, "rounds": len(times), "warmup": plan.warmup,
            "peak_memory_mb": round(_peak_mb(dev), 1), "peak_memory_kind": kind, **extra}  # fmt: skip


def moving_frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a smooth random texture shifted 1 px per frame (flow has motion)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (size + n, size + n, 3)).astype(np.float32), (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack([base[i : i + size, i // 2 : i // 2 + size] for i in range(n)])


# ------------------------------------------------------------------------------------------ components


def bench_decode(plan: Plan) -> dict:
    need("av")
    from stsa_bench.core.media import decode_video, write_video

    n = 50 if plan.quick else 250
    frames = moving_frames(n, plan.frame_size)
    with tempfile.TemporaryDirectory() as tmp:
        path, codec = Path(tmp) / "clip.mp4", "h264"
        try:
            write_video(path, frames, 25, None, lossless=False)
        except Exception:
            path, codec = Path(tmp) / "clip.mkv", "ffv1"
            write_video(path, frames, 25, None, lossless=True)
        return measure(plan, lambda: decode_video(path), n, n, "cpu", codec=codec, frame_size=plan.frame_size)


def bench_facemesh(plan: Plan) -> dict:
    need("mediapipe")
    from stsa_bench.core.faces import FaceMeshDetector

    n = 4 if plan.quick else 32
    try:
        from stsa_bench.core.demo import make_clip

        frames, source = make_clip(0, n / 25, 224)[0][:n], "demo astronaut"
    except Exception:
        frames, source = moving_frames(n, 224), "synthetic texture"
    with FaceMeshDetector() as det:
        found = int(det(frames)[1].sum())
        return measure(plan, lambda: det(frames), n, 1, "cpu", frames_source=source, faces_found=found)


def _metric_inputs(plan: Plan):
    crops = moving_frames(plan.frames + 1, 128)
    return crops[1:], crops[:-1]


def bench_psnr(plan: Plan) -> dict:
    from metrics.base import to_nchw
    from metrics.psnr import psnr

    pred, gt = _metric_inputs(plan)
    fn = lambda: psnr(to_nchw(pred, plan.device), to_nchw(gt, plan.device)).cpu()  # noqa: E731
    return measure(plan, fn, len(pred), len(pred))


def bench_ssim(plan: Plan) -> dict:
    from metrics.base import to_nchw
    from metrics.ssim import ssim, ssim_numpy

    pred, gt = _metric_inputs(plan)
    if plan.device == "cpu":
        return measure(plan, lambda: ssim_numpy(pred, gt), len(pred), len(pred), precision="fp64", note="numpy path (as on CPU)")
    fn = lambda: ssim(to_nchw(pred, plan.device), to_nchw(gt, plan.device)).cpu()  # noqa: E731
    return measure(plan, fn, len(pred), len(pred), precision="fp64")


def bench_lpips(plan: Plan) -> dict:
    lpips = need("lpips")
    from metrics.base import to_nchw

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval().to(plan.device)
    pred, gt = _metric_inputs(plan)

    @torch.inference_mode()
    def fn():
        return model(to_nchw(pred, plan.device), to_nchw(gt, plan.device), normalize=True).cpu()

    return measure(plan, fn, len(pred), len(pred), net="alex")


def bench_fid(plan: Plan) -> dict:
    inception = need("pytorch_fid.inception")
    from torchvision.models import inception_v3

    from metrics.fid import inception_features

    state = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *a, **k: state
    try:
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    finally:
        inception.load_state_dict_from_url = original
    model = model.eval().to(plan.device)
    pred, _ = _metric_inputs(plan)
    note = "pool3 features of the generated crops (ground-truth features are cached; Frechet distance once per set)"
    return measure(plan, lambda: inception_features(model, pred, plan.device), len(pred), 50, note=note)


def bench_lse(plan: Plan) -> dict:
    need("python_speech_features")
    from metrics.lse import CPU_BATCH, bgr224, evaluate
    from metrics.syncnet import FastSyncNet, SyncNetS

    net = FastSyncNet(SyncNetS().eval().to(plan.device))
    pred, _ = _metric_inputs(plan)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, len(pred) * 640).astype(np.float32)
    batch = CPU_BATCH if plan.device == "cpu" else len(pred)
    fn = lambda: evaluate(net, bgr224(pred), audio, 15, batch, plan.device)  # noqa: E731
    return measure(plan, fn, len(pred), batch, note="whole frames resized to 224, MFCC, 31 offsets")


def bench_dme_dis(plan: Plan) -> dict:
    import cv2

    from metrics.dme import dis_flow, dme_terms

    pred, gt = _metric_inputs(plan)
    dis = cv2.DISOpticalFlow_create(2)
    fn = lambda: dme_terms(dis_flow(gt, dis=dis), dis_flow(pred, dis=dis), gt[:-1], pred[:-1])  # noqa: E731
    return measure(plan, fn, len(pred), 1, "cpu", note="DIS medium, both flows per frame")


def bench_dme(plan: Plan) -> dict:
    from torchvision.models.optical_flow import raft_large

    from metrics.dme import RAFT_ITERS, dme_terms, raft_flow

    model = raft_large(weights=None, progress=False).eval().to(plan.device)
    pred, gt = _metric_inputs(plan)
    p = len(gt) - 1

    def fn():
        flow = raft_flow(model, np.concatenate([gt[:-1], pred[:-1]]), np.concatenate([gt[1:], pred[1:]]), plan.device)
        return dme_terms(flow[:p], flow[p:], gt[:-1], pred[:-1])

    return measure(plan, fn, len(pred), 2 * p, note=f"RAFT large, {RAFT_ITERS} updates, both flows per frame")


def paper_metrics(results: dict) -> dict:
    """Frames/s of psnr+ssim+fid+lpips+lse+dme(RAFT) together: 1 / sum of their per-frame times."""
    recs = {m: results.get(f"metric.{m}", {}) for m in PAPER_METRICS}
    have = {m: r["frames_per_s"] for m, r in recs.items() if r.get("frames_per_s")}
    missing = [m for m in PAPER_METRICS if m not in have]
    if not have:
        return {"skipped": "no paper metric was measured"}
    out = {"frames_per_s": round(1.0 / sum(1.0 / v for v in have.values()), 2), "included": sorted(have),
           "device": ",".join(sorted({recs[m]["device"] for m in have})),
           "note": "sum of per-frame times; LipLMD excluded (it needs FaceMesh on the generated frames)"}  # fmt: skip
    if missing:
        out["partial"] = f"without {', '.join(missing)}"
    return out


def bench_wav2lip(plan: Plan) -> dict:
    from baselines.wav2lip_model import Wav2Lip

    b, g = plan.w2l_batch, torch.Generator().manual_seed(0)
    model = Wav2Lip().eval().to(plan.device)
    mel, face = torch.randn(b, 1, 80, 16, generator=g).to(plan.device), torch.rand(b, 6, 96, 96, generator=g).to(plan.device)
    return measure(plan, torch.inference_mode()(lambda: model(mel, face)), b, b)


def network_inputs(b: int, device: str):
    """Random inputs for b frames: audio windows, pose and reference heatmaps, face, references."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, T, 768, 10, generator=g)
    pose, refs = torch.rand(b, T, 1, 128, 128, generator=g), torch.rand(b, 5, 1, 128, 128, generator=g)
    face, ref_imgs, ref_h = (torch.rand(b, n, 3, 128, 128, generator=g) for n in (1, 5, 5))
    return tuple(x.to(device) for x in (audio, pose, refs, face, ref_imgs, ref_h))


def _autocast(device: str, precision: str):
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dt, enabled=dt is not None)


def stsa_networks(cache: dict, device: str):
    """Guidance net and inference renderer (random init, eval), built once per run."""
    if "nets" not in cache:
        from stsa.guidance import GuidanceNet
        from stsa.renderer import FaceRenderer

        torch.manual_seed(0)
        cache["nets"] = GuidanceNet().eval().to(device), FaceRenderer().eval().to(device)
    return cache["nets"]


def bench_stsa_networks(plan: Plan, cache: dict, precision: str) -> dict:
    if precision == "fp16" and plan.device == "cpu":
        raise Skip("fp16 autocast is measured on CUDA only")
    guidance, renderer = stsa_networks(cache, plan.device)
    b = plan.stsa_batch
    audio, pose, refs, face, ref_imgs, ref_h = network_inputs(b, plan.device)

    @torch.inference_mode()
    def step():
        with _autocast(plan.device, precision):
            heat, _ = guidance(audio, pose, refs)
            target = heat.reshape(b, T, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
            return renderer(face, target.float(), ref_imgs, ref_h, audio[:, 2:3])

    return measure(plan, step, b, b, precision=precision, note="guidance + renderer, inputs on the device")


def bench_one_frame_loop(plan: Plan, cache: dict) -> dict:
    from stsa.renderer import FaceRendererTrainer

    guidance, _ = stsa_networks(cache, plan.device)
    official = FaceRendererTrainer().eval().to(plan.device)
    n = plan.loop_frames
    audio, pose, refs, face, ref_imgs, ref_h = network_inputs(n, plan.device)

    @torch.no_grad()
    def loop():
        for i in range(n):
            s = slice(i, i + 1)
            heat, _ = guidance(audio[s], pose[s], refs[s])
            target = heat.reshape(1, T, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
            official(face[s], target, ref_imgs[s], ref_h[s], audio[s, 2:3])

    return measure(plan, loop, n, 1, note="official way: batch 1, renderer forward with its losses (VGG-19 perceptual + MINE)")


def synthetic_clip_inputs(n: int, size: int, seed: int = 0):
    """ClipInputs of n frames: moving texture, face-like random FaceMesh points, 68 points, noise audio."""
    from stsa.inference import ClipInputs
    from stsa_bench.core.faces import landmarks68

    rng = np.random.default_rng(seed)
    base = np.c_[rng.uniform(0.25, 0.75, 478), rng.uniform(0.2, 0.85, 478), np.zeros(478)]
    lm = (base[None] + rng.normal(0, 0.002, (n, 478, 3)) * [1, 1, 0]).astype(np.float32)
    frames = moving_frames(n, size, seed)[..., ::-1].copy()
    wav = rng.uniform(-0.3, 0.3, n * 640).astype(np.float32)
    return ClipInputs(frames, lm, landmarks68(lm, size, size), wav)


def bench_method(plan: Plan, cache: dict, precision: str = "fp32") -> dict:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from stsa import pipeline as P
    from stsa.inference import STSAGenerator, STSAOptions

    guidance, renderer = stsa_networks(cache, plan.device)
    if "w2v" not in cache:
        torch.manual_seed(0)
        cache["w2v"] = Wav2Vec2Model(Wav2Vec2Config()).eval()
    gen = STSAGenerator(guidance, renderer, cache["w2v"], plan.device, STSAOptions(batch_size=plan.stsa_batch, precision=precision))
    n = plan.method_frames
    clip = synthetic_clip_inputs(n, plan.frame_size)
    parts = {}

    def paste(faces, prep):
        out = np.empty((n,) + clip.frames.shape[1:], np.uint8)
        for i, (face, tpl) in enumerate(zip(faces, prep["slots"][:, 2])):
            out[i] = P.paste_back(clip.frames[tpl], face, prep["boxes"][tpl], P.soft_mask(clip.landmarks68[tpl], clip.frames.shape[1:]))
        return out

    def run():
        t0 = time.perf_counter()
        prep = gen.prepare(clip, n)
        _sync(gen.device)
        t1 = time.perf_counter()
        faces = gen.faces(prep)
        t2 = time.perf_counter()
        paste(faces, prep)
        t3 = time.perf_counter()
        for k, v in zip(("prepare", "networks", "paste_back"), (t1 - t0, t2 - t1, t3 - t2)):
            parts.setdefault(k, []).append(v)

    rec = measure(plan, run, n, plan.stsa_batch, precision=precision, frame_size=f"{plan.frame_size}x{plan.frame_size}",
                  note="wav2vec2 base (random), heatmaps, crops, both networks, soft-mask paste-back")  # fmt: skip
    med = {k: statistics.median(v[plan.warmup :]) for k, v in parts.items()}
    total = sum(med.values())
    rec.update({f"{k}_share": round(v / total, 3) for k, v in med.items()})
    rec["paste_back_frames_per_s"] = round(n / med["paste_back"], 2)
    return rec


def bench_train(plan: Plan, stage: str, slim: int) -> dict:
    from baselines.wav2lip_model import SyncNetColor
    from stsa.training.data import ClipArrays, WindowDataset
    from stsa.training.engine import Engine, TrainOptions
    from stsa.training.tasks import TaskSpec, build_task

    rng, n = np.random.default_rng(0), 16
    clip = ClipArrays("synthetic", rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8),
                      rng.uniform(0.05, 0.95, (n, 131, 2)).astype(np.float32), rng.uniform(0.05, 0.95, (n, 2, 57)).astype(np.float32),
                      rng.standard_normal((2 * n + 8, 768)).astype(np.float32), rng.standard_normal((n, 80, 16)).astype(np.float32))  # fmt: skip
    torch.manual_seed(0)
    task = build_task(TaskSpec(stage, slim=slim, disc_width=16 if slim > 1 else 64), SyncNetColor() if stage != "guidance" else None)
    batch = 4 if stage == "syncnet" else 1
    opts = TrainOptions(steps=10**6, batch_size=batch, progress=False, tensorboard=False, device=plan.device)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(task, WindowDataset([clip], seed=0), opts, tmp, log=lambda m: None)
        batches = [{k: v.to(engine.device) for k, v in b.items()} for b in engine.loader(1)]
        for m in engine.models.values():
            m.train()
        size = "tiny (renderer channels / 8, discriminator width 16)" if slim > 1 else "paper"
        if stage in ("guidance", "syncnet"):
            size = "one size"
        return measure(plan, lambda: engine.train_step(batches), batch * T, batch, kind="Engine.train_step (all phases, optimiser step)",
                       size=size, windows=batch, note=f"{batch} window(s) of {T} frames; frames/s = window frames per second")  # fmt: skip


# ---------------------------------------------------------------------------------------------- driver


def components(plan: Plan, cache: dict) -> list:
    """(name, thunk) in run order."""
    out = [("decode", bench_decode), ("facemesh", bench_facemesh), ("metric.psnr", bench_psnr), ("metric.ssim", bench_ssim),
           ("metric.lpips", bench_lpips), ("metric.fid", bench_fid), ("metric.lse", bench_lse), ("metric.dme_dis", bench_dme_dis),
           ("metric.dme", bench_dme), ("wav2lip", bench_wav2lip)]  # fmt: skip
    out = [(name, lambda fn=fn: fn(plan)) for name, fn in out]
    out += [(f"stsa.networks.{p}", lambda p=p: bench_stsa_networks(plan, cache, p)) for p in ("fp32", "bf16", "fp16")]
    out += [("stsa.one_frame_loop", lambda: bench_one_frame_loop(plan, cache)), ("stsa.method.fp32", lambda: bench_method(plan, cache))]
    if plan.device.startswith("cuda") and not plan.quick:
        out.append(("stsa.method.bf16", lambda: bench_method(plan, cache, "bf16")))
    out += [(f"train.{s}", lambda s=s: bench_train(plan, s, 8)) for s in ("guidance", "synthesis", "finetune", "syncnet")]
    if plan.device.startswith("cuda") and not plan.quick:
        out += [(f"train.{s}.paper", lambda s=s: bench_train(plan, s, 1)) for s in ("synthesis", "finetune")]
    return out


def machine_info(device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    info["device_name"] = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else platform.processor() or "cpu"
    packages = {}
    for pkg in ("numpy", "torchvision", "transformers", "opencv-python", "opencv-python-headless", "av", "mediapipe", "lpips", "pytorch-fid", "python_speech_features"):
        try:
            packages[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {**info, "packages": packages}


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def run_bench(device: str, quick: bool, out: Path | None, log=print) -> dict:
    """Run every component on `device` ("auto" allowed); write `<out>/bench.json` when out is given."""
    from stsa_bench.core.devices import resolve_device

    device = resolve_device(device)
    if device == "cuda":
        device = "cuda:0"
    plan, cache, results, t0 = make_plan(device, quick), {}, {}, time.perf_counter()
    for name, thunk in components(plan, cache):
        t = time.perf_counter()
        try:
            rec = thunk()
        except Skip as exc:
            rec = {"skipped": str(exc)}
        except Exception as exc:
            rec = {"error": one_line(exc)}
        rec["wall_s"] = round(time.perf_counter() - t, 2)
        results[name] = rec
        log(f"bench {name}: " + (f"{rec['frames_per_s']} frames/s" if "frames_per_s" in rec else rec.get("skipped") or rec.get("error")))
        gc.collect()
        if plan.device.startswith("cuda"):
            torch.cuda.empty_cache()
    results["paper_metrics"] = paper_metrics(results)
    loop, bf16, fp32 = (results.get(k, {}).get("frames_per_s") for k in ("stsa.one_frame_loop", "stsa.networks.bf16", "stsa.networks.fp32"))
    if loop:
        results["stsa.one_frame_loop"]["speedup_networks_bf16"] = round(bf16 / loop, 2) if bf16 else None
        results["stsa.one_frame_loop"]["speedup_networks_fp32"] = round(fp32 / loop, 2) if fp32 else None
    report = {"schema": 1, "machine": machine_info(plan.device), "plan": asdict(plan), "components": results,
              "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    log(bench_table(report))
    return report


def _note(name: str, r: dict) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"error: {r['error']}"
    bits = [r["note"]] if r.get("note") else []
    if "paste_back_share" in r:
        bits.append(f"paste-back {100 * r['paste_back_share']:.0f}% of the time, prepare {100 * r['prepare_share']:.0f}%")
    if r.get("speedup_networks_bf16") or r.get("speedup_networks_fp32"):
        bits.append(f"speed-up of batched networks: bf16 x{r.get('speedup_networks_bf16')}, fp32 x{r.get('speedup_networks_fp32')}")
    if "included" in r:
        bits.append(f"{'+'.join(r['included'])}" + (f" ({r['partial']})" if r.get("partial") else ""))
    if r.get("size"):
        bits.append(r["size"])
    return "; ".join(bits)


def bench_table(results: dict) -> str:
    """Markdown table of a run_bench result (or of its "components" mapping)."""
    comps = results.get("components", results)
    rows = ["| component | frames/s | batch | device | precision | peak MiB | notes |", "|---|---:|---:|---|---|---:|---|"]
    for name, r in comps.items():
        cells = [name, str(r.get("frames_per_s", "-")), str(r.get("batch_size", "-")), r.get("device", "-"),
                 r.get("precision", "-"), str(r.get("peak_memory_mb", "-")), _note(name, r).replace("|", "/")]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    m = results.get("machine")
    if m:
        rows.append(f"\n{m['device_name']}, torch {m['torch']}, {m['cpu_count']} CPUs; total {results.get('wall_s')} s")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench.json")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one round (under a minute on a CPU)")


def main(args: argparse.Namespace) -> int:
    run_bench(args.device, args.quick, args.out, print)
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m stsa_bench.bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    sys.exit(main(ap.parse_args()))
