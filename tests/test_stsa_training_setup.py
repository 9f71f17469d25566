"""STSA training setup: the train and ablate configs compose from the stage and size groups onto the dataclass
defaults (each stated once), print resolved, reject unknown values and name missing inputs; the perceptual loss's
VGG19 comes from the given file; the export loads into inference, which never imports the training code."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs import CONFIG_DIR
from stsa.training.data import WindowDataset
from stsa.training.engine import Engine, TrainOptions
from stsa.training.tasks import Ablation, TaskSpec, build_task
from stsa_bench.cli import compose
from stsa_bench.core.errors import ConfigError
from stsa_bench.train import train_config_from_dict

from .test_stsa_training import synthetic_clip, synthetic_task


@pytest.mark.parametrize("stage", ["guidance", "synthesis", "finetune", "syncnet"])
@pytest.mark.parametrize("size", ["paper", "tiny"])
def test_train_config_composes_for_every_stage_and_size(stage, size):
    cfg = train_config_from_dict(compose([f"stage={stage}", f"size={size}"], "train"))
    assert cfg.stage == stage and cfg.out == Path(f"runs/stsa-{stage}")
    assert cfg.model.slim == (8 if size == "tiny" else 1)
    assert (cfg.weights.perc, cfg.weights.gan, cfg.weights.feat, cfg.weights.sync, cfg.weights.mi) == (4, 0.25, 1, 0.1, 0.01)
    if size == "tiny":
        assert cfg.options.lr == 1e-3 and cfg.options.batch_size == 1
    elif stage == "finetune":
        assert cfg.options.lr == 2e-5


def _yaml(path: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path)) or {}


TRAIN_GROUP_FILES = sorted([*(CONFIG_DIR / "stage").glob("*.yaml"), *(CONFIG_DIR / "size").glob("*.yaml")])


def test_no_training_default_is_stated_twice():
    """Every default of the train config lives in a dataclass: configs/train.yaml and configs/ablate.yaml
    state none of them, and a stage or size file sets only values that differ from the default."""
    from stsa_bench.configure import defaults_restated
    from stsa_bench.train.config import SECTIONS, SETTINGS, dataclass_defaults

    defaults = dataclass_defaults()
    for name in ("train.yaml", "ablate.yaml"):
        assert [k for k in _yaml(CONFIG_DIR / name) if k in defaults] == [], name
    restated = {}
    for path in TRAIN_GROUP_FILES:
        node = _yaml(path)
        assert set(node) <= set(defaults) | {"stage"}, path
        keys = [f"{k}.{x}" for k, (_, cls) in SECTIONS.items() if isinstance(node.get(k), dict) for x in defaults_restated(node[k], cls)]
        restated[path.name] = keys + [k for k in SETTINGS if k in node and node[k] == defaults[k]]
    assert {k: v for k, v in restated.items() if v} == {}


@pytest.mark.parametrize("stage", ["guidance", "synthesis", "finetune", "syncnet"])
@pytest.mark.parametrize("size", sorted(p.stem for p in (CONFIG_DIR / "size").glob("*.yaml")))
def test_train_groups_compose_to_the_dataclass_defaults_and_their_overrides(stage, size):
    """stage x size resolves to the dataclass defaults with the stage file's and then the size file's values."""
    from stsa_bench.train.config import dataclass_defaults

    expected = dataclass_defaults()
    for path in (CONFIG_DIR / "stage" / f"{stage}.yaml", CONFIG_DIR / "size" / f"{size}.yaml"):
        for key, value in _yaml(path).items():
            expected[key] = {**expected[key], **value} if isinstance(value, dict) else value
    resolved = compose([f"stage={stage}", f"size={size}"], "train")
    assert {k: resolved[k] for k in expected} == expected
    assert train_config_from_dict(resolved).resolved == resolved


def test_print_config_shows_the_complete_resolved_config(capsys):
    from omegaconf import OmegaConf

    from stsa_bench.cli import main
    from stsa_bench.core.config import flatten
    from stsa_bench.train.config import dataclass_defaults

    assert main(["train", "--print-config", "stage=finetune", "size=tiny", "train.steps=7"]) == 0
    printed = OmegaConf.to_container(OmegaConf.create(capsys.readouterr().out))
    assert set(flatten(dataclass_defaults())) <= set(flatten(printed))
    assert printed["stage"] == "finetune" and printed["train"]["steps"] == 7 and printed["train"]["lr"] == 1e-3
    assert printed["train"]["workers"] == TrainOptions().workers and printed["suite"]["recursive"] is False


def test_ablate_trains_each_stage_with_its_stage_file(monkeypatch, tmp_path):
    """The fine-tuning run of `stsa-bench ablate` gets configs/stage/finetune.yaml's learning rates, as
    `stsa-bench train stage=finetune` would (checked on the configs ablate trains with; nothing trains)."""
    from types import SimpleNamespace

    import stsa_bench.train
    from stsa_bench.ablate import ablate_config_from_dict, train_variants

    finetune = _yaml(CONFIG_DIR / "stage" / "finetune.yaml")["train"]
    assert finetune["lr"] != TrainOptions().lr, "the stage file overrides the default"
    overrides = [f"out={tmp_path}", "variants=[w_ft]", "steps.finetune=7"]
    acfg = ablate_config_from_dict(compose(overrides, "ablate"), overrides)
    runs = []

    def fake_run(cfg, log):
        runs.append(cfg)
        return SimpleNamespace(exported={"face_weight.pth": cfg.out / "export"}, step=cfg.options.steps)

    monkeypatch.setattr(stsa_bench.train, "run_training", fake_run)
    weights = train_variants(acfg, lambda m: None)
    assert [(c.stage, c.out) for c in runs] == [(s, tmp_path / "train" / n) for s, n in
                                                (("guidance", "guidance"), ("synthesis", "wo_ft"), ("finetune", "w_ft"))]
    ft = runs[-1]
    assert (ft.options.lr, ft.options.lr_disc) == (finetune["lr"], finetune["lr_disc"])
    alone = train_config_from_dict(compose(["stage=finetune", "suite=lrs2_train"], "train"))
    assert ft.options == dataclasses.replace(alone.options, steps=7)
    assert ft.init.renderer == str(tmp_path / "train" / "wo_ft" / "export" / "face_weight.pth")
    assert weights["w_ft"]["renderer"] == str(tmp_path / "train" / "w_ft" / "export" / "face_weight.pth")
    assert [c.options.lr for c in runs[:2]] == [TrainOptions().lr] * 2


def test_train_and_ablate_configs_reject_unknown_values():
    from stsa_bench.ablate import ablate_config_from_dict

    with pytest.raises(ConfigError, match="precision"):
        train_config_from_dict(compose(["train.precision=fp8"], "train"))
    with pytest.raises(ConfigError, match="did you mean 'wo_cil'"):
        ablate_config_from_dict(compose(["variants=[wo_cill]"], "ablate"))
    acfg = ablate_config_from_dict(compose([], "ablate"))
    assert acfg.variants == ("wo_cil", "wo_sync", "wo_spatial", "wo_temporal", "wo_ft", "w_ft")
    assert acfg.resolved["suite"]["name"] == "lrs2_train" and acfg.evaluation["suite"] == "lrs2"


def test_lrs2_train_suite_reads_the_users_train_list(tmp_path):
    from stsa_bench.core.config import DataConfig
    from stsa_bench.core.suites import SuiteContext, load_suite

    suite = dict(compose(["suite=lrs2_train"])["suite"])
    name = suite.pop("name")
    (tmp_path / "main" / "111").mkdir(parents=True)
    (tmp_path / "train.txt").write_text("111/00001\n111/00002 extra\n")
    (tmp_path / "main" / "111" / "00001.mp4").write_bytes(b"not a video")
    clips = load_suite(SuiteContext(name, suite, DataConfig(root=tmp_path), tmp_path / "cache"))
    assert [c.id for c in clips] == ["111/00001", "111/00002"]
    assert clips[0].error is None and "00002.mp4" in clips[1].error


def test_missing_training_inputs_name_their_setting(tmp_path, monkeypatch):
    from stsa_bench.train import initialise, sync_expert, vgg19_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = train_config_from_dict(compose(["stage=synthesis", "size=tiny"], "train"))
    with pytest.raises(ConfigError, match="sync_expert is not set"):
        sync_expert(cfg)
    task = build_task(TaskSpec("synthesis", slim=8, disc_width=16, ablation=Ablation(sync_loss=False)))
    with pytest.raises(ConfigError, match="vgg19=PATH"):
        initialise(task, cfg, vgg19_file(cfg))
    ft = train_config_from_dict(compose(["stage=finetune", "size=tiny"], "train"))
    with pytest.raises(ConfigError, match="init.heatmap is not set"):
        initialise(build_task(TaskSpec("finetune", slim=8, disc_width=16, ablation=Ablation(sync_loss=False))), ft, vgg19_file(ft))


# ---------------------------------------------------------------------------------------------- CLI


def test_vgg19_for_the_perceptual_loss_comes_from_the_given_file(tmp_path):
    from torchvision.models import vgg19

    from stsa_bench.core.paths import sha256_file
    from stsa_bench.train import initialise, input_hashes, vgg19_file

    torch.manual_seed(3)
    features = {f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}
    torch.save(features, tmp_path / "vgg19.pth")
    cfg = train_config_from_dict(compose(["stage=synthesis", "size=tiny", f"vgg19={tmp_path / 'vgg19.pth'}"], "train"))
    task = build_task(TaskSpec("synthesis", slim=8, disc_width=16, ablation=Ablation(sync_loss=False)))
    vgg = vgg19_file(cfg)
    initialise(task, cfg, vgg)
    loaded = task.models["generator"].renderer.perceptual.model.network.state_dict()
    assert all(torch.equal(loaded[k[len("features."):]], v) for k, v in features.items())
    assert input_hashes(cfg, vgg) == {"vgg19": sha256_file(tmp_path / "vgg19.pth")}
    with pytest.raises(ConfigError, match="no such file"):
        vgg19_file(train_config_from_dict(compose(["stage=synthesis", f"vgg19={tmp_path / 'nope.pth'}"], "train")))


def test_export_has_the_official_keys_and_loads_into_inference(tmp_path):
    from stsa.guidance import GuidanceNet, load_guidance
    from stsa.renderer import load_renderer
    from stsa.training.renderer_losses import FaceRendererTrainer

    opts = TrainOptions(steps=1, batch_size=1, progress=False, tensorboard=False, ema_decay=0.9)
    data = WindowDataset([synthetic_clip(8, 0)], seed=0)
    task = build_task(TaskSpec("finetune", slim=8, disc_width=16, ablation=Ablation(temporal_path=False)), synthetic_task("synthesis").expert)
    engine = Engine(task, data, opts, tmp_path, log=lambda m: None)
    engine.fit()
    files = engine.export()
    assert set(files) == {"heatmap_weight.pth", "face_weight.pth"}
    face = torch.load(files["face_weight.pth"], weights_only=True)
    assert list(face["state_dict"]) == list(FaceRendererTrainer().state_dict())
    assert face["stsa_bench"] == {"slim": 8, "use_spatial": True, "use_temporal": False}
    heat = torch.load(files["heatmap_weight.pth"], weights_only=True)
    assert list(heat["state_dict"]) == list(GuidanceNet().state_dict())
    ema = engine.ema[1].module.renderer.state_dict()
    assert all(torch.equal(face["state_dict"][k], ema[k]) for k in ema), "the EMA weights are exported"
    renderer, guidance = load_renderer(files["face_weight.pth"]), load_guidance(files["heatmap_weight.pth"])
    assert renderer.slim == 8 and renderer.use_temporal is False and not renderer.training
    x = torch.rand(1, 1, 3, 128, 128)
    with torch.no_grad():
        out = renderer(x, x, torch.rand(1, 5, 3, 128, 128), torch.rand(1, 5, 3, 128, 128), torch.randn(1, 1, 768, 10))
        heatmap, points = guidance(torch.randn(1, 5, 768, 10), torch.rand(1, 5, 1, 128, 128), torch.rand(1, 5, 1, 128, 128))
    assert out.shape == (1, 3, 1, 128, 128) and heatmap.shape == (5, 1, 128, 128) and points.shape == (5, 2, 57)


def test_inference_modules_do_not_load_the_training_code():
    """The renderer's training-only parts live in stsa.training.renderer_losses (still importable from
    stsa.renderer by name); inference imports neither them nor torchvision's VGG."""
    code = ("import sys, stsa.renderer, stsa.guidance, stsa.inference; "
            "print(sorted(m for m in sys.modules if m.startswith(('stsa.training', 'torchvision'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.split() == ["[]"]
    import stsa.renderer
    from stsa.training.renderer_losses import FaceRendererTrainer

    assert stsa.renderer.FaceRendererTrainer is FaceRendererTrainer
