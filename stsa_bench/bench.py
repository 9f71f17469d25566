"""`stsa-bench bench`: frames/s and peak memory of every component on this machine.

Networks are randomly initialised (speed does not depend on weight values): no weights file is read,
nothing is downloaded. Times are medians over rounds after warm-up calls, synchronised on CUDA. Peak
memory: CUDA max allocated, or on CPU the process's max RSS, reset per component via /proc/self/clear_refs
where allowed. Failures are recorded as {"error": ...}, components that cannot run as {"skipped": ...}.
Standalone (no Hydra needed): python -m stsa_bench.bench --device cuda --out DIR [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .bench_measure import Plan, Skip, cpu_flags, make_plan, measure, moving_frames, need

T = 5
PAPER_METRICS = ("psnr", "ssim", "fid", "lpips", "lse", "dme")


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
        return measure(plan, lambda: decode_video(path), n, n, "cpu", codec=codec, frame_size=f"{plan.frame_size}px")


def bench_facemesh(plan: Plan) -> dict:
    need("mediapipe")
    from stsa_bench.core.faces import FaceMeshDetector
    n = 4 if plan.quick else 32
    try:
        from stsa_bench.core.demo import make_clip
        frames, source = make_clip(0, n / 25, 224)[0][:n], "demo clip (astronaut portrait)"
    except Exception:
        frames, source = moving_frames(n, 224), "synthetic texture (no face)"
    with FaceMeshDetector() as det:
        found = int(det(frames)[1].sum())
        return measure(plan, lambda: det(frames), n, 1, "cpu", note=f"224px, {source}, faces found {found}/{n}")


def random_inception(device: str):
    """pytorch-fid's FID InceptionV3 (pool3) with random weights: its URL loader is given a fresh state dict."""
    inception = need("pytorch_fid.inception")
    from torchvision.models import inception_v3
    state = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    original = inception.load_state_dict_from_url
    inception.load_state_dict_from_url = lambda *a, **k: state
    try:
        model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    finally:
        inception.load_state_dict_from_url = original
    return model.eval().to(device)


def bench_metric(plan: Plan, name: str) -> dict:
    """One metric on generated vs ground-truth 128x128 crops; frames/s = generated frames scored per second."""
    from metrics.base import to_nchw
    dev, crops = plan.device, moving_frames((plan.heavy_frames if name in ("fid", "dme") else plan.frames) + 1, 128)
    pred, gt = crops[1:], crops[:-1]
    n, batch, extra = len(pred), len(pred), {}
    pair = lambda: (to_nchw(pred, dev), to_nchw(gt, dev))  # noqa: E731
    if name == "psnr":
        from metrics.psnr import psnr
        fn = lambda: psnr(*pair()).cpu()  # noqa: E731
    elif name == "ssim":
        from metrics.ssim import ssim, ssim_numpy
        fn = (lambda: ssim_numpy(pred, gt)) if dev == "cpu" else (lambda: ssim(*pair()).cpu())
        extra = {"precision": "fp64", "note": "numpy path on CPU, torch on CUDA (as the metric does)"}
    elif name == "lpips":
        lpips = need("lpips")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval().to(dev)
        fn = torch.inference_mode()(lambda: model(*pair(), normalize=True).cpu())
        extra = {"note": "AlexNet backbone, random weights"}
    elif name == "fid":
        from metrics.fid import inception_features
        model, batch = random_inception(dev), 50
        fn = lambda: inception_features(model, pred, dev, batch)  # noqa: E731
        extra = {"note": "pool3 features of the generated crops; ground-truth features are cached, the distance is once per set"}
    elif name == "lse":
        need("python_speech_features")
        from metrics.lse import CPU_BATCH, bgr224, evaluate
        from metrics.syncnet import FastSyncNet, SyncNetS
        net, batch = FastSyncNet(SyncNetS().eval().to(dev)), CPU_BATCH if dev == "cpu" else n
        audio = np.random.default_rng(0).uniform(-0.3, 0.3, n * 640).astype(np.float32)
        fn = lambda: evaluate(net, bgr224(pred), audio, 15, batch, dev)  # noqa: E731
        extra = {"note": f"frames resized to 224, MFCC, 31 offsets; {n - T} window(s)"}
    elif name == "fvd":
        from metrics.fvd import WINDOW, FVDOptions, run_i3d, window_logits
        from metrics.i3d import InceptionI3d
        model = InceptionI3d(400, in_channels=3).eval().to(dev, memory_format=torch.channels_last_3d)
        frames = moving_frames(max(WINDOW, n - n % WINDOW), 128)
        n, batch = len(frames), FVDOptions().batch_windows
        fn = lambda: window_logits(frames, lambda w: run_i3d(model, w), 64, batch, dev)  # noqa: E731
        extra = {"note": f"I3D logits of {n // WINDOW} 16-frame window(s) of face crops, random weights"}
    elif name == "csim":
        from metrics.arcface import IResNet100
        from metrics.csim import CSIMOptions, arcface_embeddings, cosine, fullframe_crops
        model, batch = IResNet100().eval().to(dev, memory_format=torch.channels_last), CSIMOptions().batch_size

        def embed(frames: np.ndarray) -> np.ndarray:
            return arcface_embeddings(model, fullframe_crops(frames), batch, dev)

        target = embed(gt)
        fn = lambda: cosine(embed(pred), target)  # noqa: E731
        extra = {"note": "ArcFace iresnet100 on full-frame 112 crops, random weights; ground-truth embeddings cached"}
    elif name == "dme_dis":
        import cv2

        from metrics.dme import dis_flow, dme_terms
        dis, dev = cv2.DISOpticalFlow_create(2), "cpu"
        fn = lambda: dme_terms(dis_flow(gt, dis=dis), dis_flow(pred, dis=dis), gt[:-1], pred[:-1])  # noqa: E731
        batch, extra = 1, {"note": "OpenCV DIS medium, two flows per frame"}
    else:
        from torchvision.models.optical_flow import raft_large

        from metrics.dme import RAFT_ITERS, dme_terms, raft_flow
        model, p = raft_large(weights=None, progress=False).eval().to(dev), n - 1

        def fn():
            flow = raft_flow(model, np.concatenate([gt[:-1], pred[:-1]]), np.concatenate([gt[1:], pred[1:]]), dev)
            return dme_terms(flow[:p], flow[p:], gt[:-1], pred[:-1])

        batch, extra = 2 * p, {"note": f"RAFT large, {RAFT_ITERS} updates, two flows per frame"}
    return measure(plan, fn, n, batch, dev, **extra)


def paper_metrics(results: dict) -> dict:
    """Frames/s of psnr+ssim+fid+lpips+lse+dme(RAFT) together: 1 / the sum of their per-frame times."""
    recs = {m: results.get(f"metric.{m}", {}) for m in PAPER_METRICS}
    have = {m: r["frames_per_s"] for m, r in recs.items() if r.get("frames_per_s")}
    if not have:
        return {"skipped": "no paper metric was measured"}
    missing = [m for m in PAPER_METRICS if m not in have]
    return {"frames_per_s": round(1.0 / sum(1.0 / v for v in have.values()), 3), "included": sorted(have), "missing": missing,
            "device": ",".join(sorted({recs[m]["device"] for m in have})),
            "note": "sum of per-frame times; LipLMD excluded (it needs FaceMesh on the generated frames)"}  # fmt: skip


def bench_wav2lip(plan: Plan) -> dict:
    from baselines.wav2lip_model import Wav2Lip
    b, g = plan.w2l_batch, torch.Generator().manual_seed(0)
    model = Wav2Lip().eval().to(plan.device)
    mel, face = torch.randn(b, 1, 80, 16, generator=g).to(plan.device), torch.rand(b, 6, 96, 96, generator=g).to(plan.device)
    return measure(plan, torch.inference_mode()(lambda: model(mel, face)), b, b, note="in-tree generator, 96x96 faces")


def network_inputs(b: int, device: str):
    """Random inputs for b frames: audio windows, pose and reference heatmaps, face, references."""
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(b, T, 768, 10, generator=g)
    pose, refs = torch.rand(b, T, 1, 128, 128, generator=g), torch.rand(b, 5, 1, 128, 128, generator=g)
    face, ref_imgs, ref_h = (torch.rand(b, n, 3, 128, 128, generator=g) for n in (1, 5, 5))
    return tuple(x.to(device) for x in (audio, pose, refs, face, ref_imgs, ref_h))


def stsa_networks(plan: Plan, cache: dict):
    """Guidance net and inference renderer (random init, eval, renderer channels / plan.slim), built once per run."""
    from stsa.guidance import GuidanceNet
    from stsa.renderer import FaceRenderer
    torch.manual_seed(0)
    cache["nets"] = cache.get("nets") or (GuidanceNet().eval().to(plan.device), FaceRenderer(slim=plan.slim).eval().to(plan.device))
    cache["size"] = "paper size" if plan.slim == 1 else f"renderer channels / {plan.slim} (quick mode on CPU)"
    return cache["nets"]


def bench_stsa_networks(plan: Plan, cache: dict, precision: str) -> dict:
    """Batched guidance + renderer under autocast, or with precision "loop" the official one-frame loop."""
    if precision == "fp16" and plan.device == "cpu":
        raise Skip("fp16 autocast is measured on CUDA only")
    if precision == "bf16" and plan.device == "cpu" and plan.quick and not cpu_flags()[1]:
        raise Skip("quick mode: no avx512_bf16/AMX on this CPU, emulated bf16 is ~25x slower than fp32; see full mode")
    from stsa.renderer import FaceRendererTrainer
    guidance, renderer = stsa_networks(plan, cache)
    loop = precision == "loop"
    b, renderer = (plan.loop_frames, FaceRendererTrainer(slim=plan.slim).eval().to(plan.device)) if loop else (plan.stsa_batch, renderer)
    audio, pose, refs, face, ref_imgs, ref_h = network_inputs(b, plan.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step(s: slice):
        with torch.autocast(torch.device(plan.device).type, dtype=dtype, enabled=dtype is not None):
            heat, _ = guidance(audio[s], pose[s], refs[s])
            target = heat.reshape(-1, T, 1, 128, 128)[:, 2].clamp(max=1).repeat(1, 3, 1, 1)[:, None]
            return renderer(face[s], target.float(), ref_imgs[s], ref_h[s], audio[s, 2:3])

    if loop:
        note = "official way: batch 1, fp32, renderer forward computing its losses (VGG-19 perceptual + MINE)"
        return measure(plan, torch.no_grad()(lambda: [step(slice(i, i + 1)) for i in range(b)]), b, 1, size=cache["size"], note=note)
    fn = torch.inference_mode()(lambda: step(slice(None)))
    return measure(plan, fn, b, b, precision=precision, size=cache["size"], note="guidance + renderer (autocast for bf16/fp16), inputs on the device")


def bench_method(plan: Plan, cache: dict, precision: str = "fp32") -> dict:
    """STSAGenerator on a synthetic clip: moving texture, random FaceMesh points in the frame's middle, noise audio."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from stsa import blend as B
    from stsa.inference import ClipInputs, STSAGenerator, STSAOptions
    from stsa_bench.core.faces import landmarks68
    guidance, renderer = stsa_networks(plan, cache)
    if "w2v" not in cache:
        torch.manual_seed(0)
        cache["w2v"] = Wav2Vec2Model(Wav2Vec2Config()).eval()
    n, batch = plan.method_frames, plan.method_frames if plan.quick else plan.stsa_batch
    gen = STSAGenerator(guidance, renderer, cache["w2v"], plan.device, STSAOptions(batch_size=batch, precision=precision))
    rng, size, parts = np.random.default_rng(0), plan.frame_size, {}
    lm = (np.c_[rng.uniform(0.25, 0.75, 478), rng.uniform(0.2, 0.85, 478), np.zeros(478)] + rng.normal(0, 0.002, (n, 478, 3)) * [1, 1, 0]).astype(np.float32)
    clip = ClipInputs(moving_frames(n, size)[..., ::-1].copy(), lm, landmarks68(lm, size, size), rng.uniform(-0.3, 0.3, n * 640).astype(np.float32))

    def run():
        t0 = time.perf_counter()
        prep = gen.prepare(clip, n)
        t1 = time.perf_counter()
        faces = gen.faces(prep)
        t2 = time.perf_counter()
        for face, tpl in zip(faces, prep["slots"][:, 2]):
            mask, window = B.soft_mask_window(clip.landmarks68[tpl], clip.frames.shape[1:])
            B.paste_back_window(clip.frames[tpl], face, prep["boxes"][tpl], mask, window)
        for k, v in zip(("prepare", "networks", "paste_back"), (t1 - t0, t2 - t1, time.perf_counter() - t2)):
            parts.setdefault(k, []).append(v)

    note = "STSAGenerator: wav2vec2 base (random), heatmaps, crops, both networks, soft-mask paste-back per frame (on the face's window)"
    rec = measure(plan, run, n, batch, precision=precision, size=cache["size"], frame_size=f"{plan.frame_size}px", note=note)
    med = {k: statistics.median(v[rec["warmup"] :]) for k, v in parts.items()}
    rec.update({f"{k}_share": round(v / sum(med.values()), 3) for k, v in med.items()})
    rec["paste_back_frames_per_s"] = round(n / med["paste_back"], 2)
    return rec


def bench_train(plan: Plan, stage: str, slim: int) -> dict:
    """One Engine.train_step (every phase, optimiser steps included) on synthetic arrays of the real shapes."""
    from baselines.wav2lip_model import SyncNetColor
    from stsa.training.data import ClipArrays, WindowDataset
    from stsa.training.engine import Engine, TrainOptions
    from stsa.training.tasks import TaskSpec, build_task
    rng, n, f32 = np.random.default_rng(0), 16, np.float32
    clip = ClipArrays("synthetic", rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8), rng.uniform(0.05, 0.95, (n, 131, 2)).astype(f32),
                      rng.uniform(0.05, 0.95, (n, 2, 57)).astype(f32), rng.standard_normal((2 * n + 8, 768)).astype(f32),
                      rng.standard_normal((n, 80, 16)).astype(f32))  # fmt: skip
    torch.manual_seed(0)
    task = build_task(TaskSpec(stage, slim=slim, disc_width=16 if slim > 1 else 64), SyncNetColor() if stage != "guidance" else None)
    batch = 4 if stage == "syncnet" else 1
    opts = TrainOptions(steps=10**6, batch_size=batch, progress=False, tensorboard=False, device=plan.device)
    size = "one size" if stage in ("guidance", "syncnet") else "paper" if slim == 1 else "tiny (renderer channels / 8, discriminator width 16)"
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(task, WindowDataset([clip], seed=0), opts, tmp, log=lambda m: None)
        batches = [{k: v.to(engine.device) for k, v in b.items()} for b in engine.loader(1)]
        for m in engine.models.values():
            m.train()
        return measure(plan, lambda: engine.train_step(batches), batch * T, batch, warmup=0 if plan.quick and plan.device == "cpu" else None,
                       measured="Engine.train_step", size=size, note=f"{batch} window(s) of {T} frames per step")  # fmt: skip


def components(plan: Plan, cache: dict) -> list:
    """(name, thunk) in run order."""
    paper_gpu = plan.device.startswith("cuda") and not plan.quick
    out = [("decode", lambda: bench_decode(plan)), ("facemesh", lambda: bench_facemesh(plan))]
    out += [(f"metric.{m}", lambda m=m: bench_metric(plan, m)) for m in ("psnr", "ssim", "lpips", "fid", "lse", "dme_dis", "dme", "fvd", "csim")]
    out += [("wav2lip", lambda: bench_wav2lip(plan))]
    out += [(f"stsa.networks.{p}", lambda p=p: bench_stsa_networks(plan, cache, p)) for p in ("fp32", "bf16", "fp16")]
    out += [("stsa.one_frame_loop", lambda: bench_stsa_networks(plan, cache, "loop")), ("stsa.method.fp32", lambda: bench_method(plan, cache))]
    out += [("stsa.method.bf16", lambda: bench_method(plan, cache, "bf16"))] if paper_gpu else []
    out += [(f"train.{s}", lambda s=s: bench_train(plan, s, 8)) for s in ("guidance", "synthesis", "finetune", "syncnet")]
    out += [(f"train.{s}.paper", lambda s=s: bench_train(plan, s, 1)) for s in ("synthesis", "finetune")] if paper_gpu else []
    return out


def machine_info(device: str) -> dict:
    """Versions, device and CPU facts, and the load average when the bench starts (other work skews CPU figures)."""
    from importlib.metadata import distributions
    cpu, bf16 = cpu_flags()
    wanted = {"numpy", "torchvision", "transformers", "opencv-python", "opencv-python-headless", "av", "mediapipe", "lpips", "pytorch-fid", "python_speech_features"}
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(), "platform": platform.platform(),
            "device_name": torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else cpu, "cpu_model": cpu,
            "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": bf16,
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "packages": {d.metadata["Name"]: d.version for d in distributions() if d.metadata["Name"] in wanted}}  # fmt: skip


def run_bench(device: str, quick: bool, out: Path | None, log=print) -> dict:
    """Run every component on `device` ("auto" allowed). With `out`, `<out>/bench.json` is rewritten after
    each component ("complete": false until the end), so a run cut short keeps what it measured."""
    from stsa_bench.core.devices import resolve_device
    device = {"cuda": "cuda:0"}.get(resolve_device(device), resolve_device(device))
    plan, cache, results, t0 = make_plan(device, quick), {}, {}, time.perf_counter()
    report = {"schema": 1, "complete": False, "machine": machine_info(plan.device), "plan": asdict(plan), "components": results}

    def save():
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "bench.json").write_text(json.dumps(report, indent=2) + "\n")

    for name, thunk in components(plan, cache):
        t = time.perf_counter()
        try:
            rec = thunk()
        except Skip as exc:
            rec = {"skipped": str(exc)}
        except Exception as exc:
            rec = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]}
        results[name] = {**rec, "wall_s": round(time.perf_counter() - t, 2)}
        log(f"bench {name}: " + (f"{rec['frames_per_s']} frames/s" if "frames_per_s" in rec else rec.get("skipped") or rec.get("error")))
        gc.collect()
        if plan.device.startswith("cuda"):
            torch.cuda.empty_cache()
        save()
    results["paper_metrics"] = paper_metrics(results)
    loop = results["stsa.one_frame_loop"].get("frames_per_s")
    for p in ("bf16", "fp32") if loop else ():
        fps = results[f"stsa.networks.{p}"].get("frames_per_s")
        results["stsa.one_frame_loop"][f"speedup_networks_{p}"] = round(fps / loop, 2) if fps else None
    report.update(complete=True, wall_s=round(time.perf_counter() - t0, 1))
    save()
    log(bench_table(report))
    return report


def _note(r: dict) -> str:
    if "skipped" in r or "error" in r:
        return f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r['error']}"
    bits = [r[k] for k in ("note", "size") if r.get(k)]
    if "paste_back_share" in r:
        bits.append(f"paste-back {100 * r['paste_back_share']:.1f}% of the time, prepare {100 * r['prepare_share']:.1f}%")
    ups = [f"{p} x{r[f'speedup_networks_{p}']}" for p in ("bf16", "fp32") if r.get(f"speedup_networks_{p}")]
    bits += [f"speed-up of the batched networks over this: {', '.join(ups)}"] if ups else []
    if "included" in r:
        bits.append("+".join(r["included"]) + (f", without {'+'.join(r['missing'])}" if r["missing"] else ""))
    return "; ".join(bits)


def bench_table(results: dict) -> str:
    """Markdown table of a run_bench report (or of its "components" mapping)."""
    comps = results.get("components", results)
    rows = ["| component | frames/s | batch | device | precision | peak MiB | notes |", "|---|---:|---:|---|---|---:|---|"]
    for name, r in comps.items():
        cells = [name, *(str(r.get(k, "-")) for k in ("frames_per_s", "batch_size", "device", "precision", "peak_memory_mb")), _note(r)]
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    m = results.get("machine")
    if m:
        rows.append(f"\n{m['device_name']}, torch {m['torch']}, {m['cpu_count']} CPUs, load {m.get('load_avg_at_start')}; {results.get('wall_s')} s")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench.json")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one round (under a minute on a 2-core CPU)")


def main(args: argparse.Namespace) -> int:
    run_bench(args.device, args.quick, args.out, print)
    return 0


if __name__ == "__main__":
    add_arguments(_parser := argparse.ArgumentParser(prog="python -m stsa_bench.bench", description=__doc__.splitlines()[0]))
    sys.exit(main(_parser.parse_args()))
