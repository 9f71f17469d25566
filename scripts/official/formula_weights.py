#!/usr/bin/env python3
"""Formula weights for an official checkout, where its real checkpoints cannot be had (docs/methods.md, "The real
official codes run here"). Run with the method's own interpreter; it imports the method's model classes from the
checkout and fills every state-dict entry by ../shared/golden/make_weights.py (golden_state_dict, aliases included),
then saves each file where and how the official loader reads it.

    python formula_weights.py wav2lip  --checkout ~/src/Wav2Lip
    python formula_weights.py iplap    --checkout ~/src/IP_LAP --torch-home ~/th --wav2lip-checkout ~/src/Wav2Lip
    python formula_weights.py pcavs    --checkout ~/src/Talking-Face_PC-AVS --torch-home ~/th

wav2lip  checkpoints/wav2lip_formula.pth ({"state_dict": {"module." + key: tensor}}, keys checked against
         ../shared/golden/wav2lip/manifest.json) and face_detection/detection/sfd/s3fd.pth (a plain state dict; the
         code reads it from there only)
iplap    test/checkpoints/{landmarkgenerator,renderer}_formula.pth ({"state_dict": ...}) and, in the torch hub cache,
         vgg19-dcbb9e9d.pth (torchvision), s3fd-619a316812.pth (face_alignment) and 2DFAN4-cd938726ad.zip, a traced FAN(4)
         (face_alignment 1.3.x loads only a TorchScript FAN; the architecture is Wav2Lip's face_detection/models.py)
pcavs    checkpoints/formula/latest_net_{G,A_sync,E,V}.pth (plain state dicts; the networks of experiments/demo_vox.sh;
         run it with pcavs.experiment=formula) and vgg19-dcbb9e9d.pth in the torch hub cache

The torch hub folder must be named (a scratch one: torch loads cached files unchecked, so formula files there
would replace real ones for every tool), and no existing file is replaced without --force.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def shared() -> Path:
    root = Path(os.environ.get("STSA_BENCH_SHARED") or Path(__file__).resolve().parents[3] / "shared")
    sys.path.insert(0, str(root / "golden"))
    return root


FORCE = False


def save(obj, path: Path, script: bool = False) -> None:
    """torch.save (or a traced module's save) to `path`, refusing to replace a file unless --force."""
    import torch

    if path.exists() and not FORCE:
        raise SystemExit(f"{path} exists: formula weights never replace a file unless --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    if script:
        obj.save(str(path))
    else:
        torch.save(obj, path)


def formula(model):
    """The formula state dict of `model`, loaded into it (strict)."""
    from make_weights import find_aliases, golden_state_dict

    entries = [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]
    sd = golden_state_dict(entries, find_aliases(model))
    model.load_state_dict(sd, strict=True)
    return sd


def wav2lip(args) -> None:
    import json

    sys.path.insert(0, str(args.checkout))
    from face_detection.detection.sfd.net_s3fd import s3fd
    from models import Wav2Lip

    sd = formula(Wav2Lip())
    manifest = json.loads((shared() / "golden" / "wav2lip" / "manifest.json").read_text())
    assert [e[0] for e in manifest["state_dict"]] == list(sd), "the checkout's Wav2Lip keys differ from the golden manifest"
    save({"state_dict": {"module." + k: v for k, v in sd.items()}}, args.checkout / "checkpoints" / "wav2lip_formula.pth")
    save(formula(s3fd()), args.checkout / "face_detection" / "detection" / "sfd" / "s3fd.pth")


def hub(args) -> Path:
    folder = Path(args.torch_home).expanduser() / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def vgg19(args) -> None:
    import torchvision

    save(formula(torchvision.models.vgg19()), hub(args) / "vgg19-dcbb9e9d.pth")


def iplap(args) -> None:
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    vgg19(args)
    save(formula(s3fd()), hub(args) / "s3fd-619a316812.pth")
    sys.path.insert(0, str(args.wav2lip_checkout))
    from face_detection.models import FAN

    sys.path.pop(0)
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        del sys.modules[name]

    class LastHeatmap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fan = FAN(4)

        def forward(self, x):
            return self.fan(x)[-1]

    fan = LastHeatmap().eval()
    formula(fan)
    with torch.no_grad():
        save(torch.jit.trace(fan, torch.rand(1, 3, 256, 256)), hub(args) / "2DFAN4-cd938726ad.zip", script=True)
    sys.path.insert(0, str(args.checkout))
    from models import Landmark_generator, Renderer

    out = args.checkout / "test" / "checkpoints"
    generator = Landmark_generator(T=5, d_model=512, nlayers=4, nhead=4, dim_feedforward=1024, dropout=0.1)
    save({"state_dict": formula(generator)}, out / "landmarkgenerator_formula.pth")
    save({"state_dict": formula(Renderer())}, out / "renderer_formula.pth")


def pcavs(args) -> None:
    vgg19(args)
    os.environ["TORCH_HOME"] = str(Path(args.torch_home).expanduser())
    sys.path.insert(0, str(args.checkout))
    flags = ["--name", "demo", "--checkpoints_dir", str(args.checkout / "checkpoints"), "--meta_path_vox", "x", "--dataset_mode",
             "voxtest", "--netG", "modulate", "--netA", "resseaudio", "--netA_sync", "ressesync", "--netD", "multiscale", "--netV",
             "resnext", "--netE", "fan", "--model", "av", "--gpu_ids", "-1", "--clip_len", "1", "--batchSize", "16", "--style_dim",
             "2560", "--input_id_feature", "--generate_interval", "1", "--style_feature_loss", "--use_audio", "1", "--noise_pose",
             "--driving_pose", "--gen_video", "--generate_from_audio_only"]  # fmt: skip
    sys.argv = [sys.argv[0], *flags]
    import models.networks as networks
    from options.test_options import TestOptions

    opt = TestOptions().parse()
    opt.isTrain = False
    out = args.checkout / "checkpoints" / "formula"
    for label, build in {"G": networks.define_G, "A_sync": networks.define_A_sync, "E": networks.define_E, "V": networks.define_V}.items():
        save(formula(build(opt)), out / f"latest_net_{label}.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=["wav2lip", "iplap", "pcavs"])
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--torch-home", help="iplap, pcavs: a scratch TORCH_HOME for the hub files (never your own)")
    parser.add_argument("--wav2lip-checkout", type=Path, help="iplap: a Wav2Lip checkout (its FAN architecture)")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    args = parser.parse_args()
    if args.method != "wav2lip" and not args.torch_home:
        parser.error(f"{args.method} needs --torch-home (a scratch folder)")
    global FORCE
    FORCE = args.force
    args.checkout = args.checkout.expanduser().resolve()
    shared()
    {"wav2lip": wav2lip, "iplap": iplap, "pcavs": pcavs}[args.method](args)
    print(f"{args.method}: formula weights written")


if __name__ == "__main__":
    main()
