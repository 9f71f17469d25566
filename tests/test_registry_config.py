from __future__ import annotations

import sys

import pytest

from configs import CONFIG_DIR
from stsa_bench.configure import compose
from stsa_bench.core.config import PreprocessConfig, RunConfig, config_hash, typed
from stsa_bench.core.errors import ConfigError
from stsa_bench.core.registry import METHODS, METRICS, SUITES, Registry

from .helpers import make_config


def test_registry_discovers_without_importing_and_did_you_mean(tmp_path, monkeypatch):
    pkg = tmp_path / "widgets_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text(
        "from tests.test_registry_config import WIDGETS\nimport sys\nLOADED = True\n"
        "@WIDGETS.register('alpha')\nclass Alpha:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget", "WIDGETS", ("widgets_pkg",), sets_name=True)
    globals()["WIDGETS"] = reg
    assert reg.names() == ["alpha"] and "widgets_pkg.alpha" not in sys.modules
    with pytest.raises(ConfigError, match="did you mean 'alpha'"):
        reg.get("alpah")
    assert reg.get("alpha").name == "alpha" and "widgets_pkg.alpha" in sys.modules

    @reg.register("beta")
    class Beta:
        pass

    assert reg.get("beta") is Beta
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("beta")(object)


def test_builtin_registries_resolve_every_name():
    for reg in (SUITES, METHODS, METRICS):
        for name in reg.names():
            assert reg.get(name) is not None


def test_cli_import_is_light():
    """Suite/method checks and the CLI parser must not import torch or mediapipe."""
    import subprocess

    code = "import stsa_bench.cli, sys; stsa_bench.cli.build_parser(); print('torch' in sys.modules, 'mediapipe' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("suite", sorted(p.stem for p in (CONFIG_DIR / "suite").glob("*.yaml")))
def test_every_suite_config_composes(suite):
    cfg = make_config(f"suite={suite}")
    assert isinstance(cfg, RunConfig)
    assert cfg.suite == suite
    assert cfg.preprocess == PreprocessConfig()
    assert cfg.methods == ("gt", "static", "shift")


TRAIN_GROUPS = ("stage", "size")
"""Groups of configs/train.yaml, composed in test_stsa_training.test_train_config_composes_for_every_stage_and_size."""


@pytest.mark.parametrize(
    "group",
    [p.parent.name + "/" + p.stem for p in CONFIG_DIR.glob("*/*.yaml") if p.parent.name not in ("suite", "reference", *TRAIN_GROUPS)],
)
def test_every_other_group_composes(group):
    name, option = group.split("/")
    cfg = make_config(f"{name}={option}")
    assert cfg.config_hash


def test_fixed_splits_have_40_unique_ids():
    for name in ("lrs2", "cmlr"):
        ids = make_config(f"suite={name}").suite_options["ids"]
        assert len(ids) == 40 and len(set(ids)) == 40


def test_fixed_splits_match_shared(shared):
    for name in ("lrs2", "cmlr"):
        ids = list(make_config(f"suite={name}").suite_options["ids"])
        assert ids == (shared / "splits" / f"{name}_test40.txt").read_text().split()


def test_fixed_splits_follow_the_rule(shared):
    """key(id) = sha256("stsa-bench/<dataset>/test40/v1:" + id); the 40 smallest keys, sorted."""
    import hashlib

    for name in ("lrs2", "cmlr"):
        full = [line.split()[0] for line in (shared / "splits" / f"{name}_test_full.txt").read_text().splitlines() if line.strip()]
        key = lambda i: hashlib.sha256(f"stsa-bench/{name}/test40/v1:{i}".encode()).hexdigest()  # noqa: E731
        expected = sorted(sorted(full, key=key)[:40])
        assert list(make_config(f"suite={name}").suite_options["ids"]) == expected


def test_typed_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match="did you mean 'crop_size'"):
        typed(PreprocessConfig, {"crop_sise": 96}, "preprocess")
    with pytest.raises(ConfigError, match="must be an integer"):
        typed(PreprocessConfig, {"fps": "25"}, "preprocess")
    assert typed(PreprocessConfig, {"box_scale": 1}, "preprocess").box_scale == 1.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "stage=guidanse"], "stage='guidanse' is not one of finetune, guidance, syncnet, synthesis; did you mean 'guidance'?"),
        (["train", "size=huge"], "size='huge' is not one of paper, tiny"),
        (["run", "--suite", "demo", "preprocess=foo"], "preprocess='foo' is not one of paper"),
    ],
)
def test_a_config_group_option_that_does_not_exist_is_named_with_the_options(argv, message, capsys, tmp_path):
    """It used to read `unknown setting 'stage'; did you mean 'stage' ...`."""
    from stsa_bench.cli import main

    assert main([*argv, f"out={tmp_path}", "--print-config"]) == 2
    assert message in capsys.readouterr().err


def test_config_hash_ignores_out_and_runtime_but_not_protocol():
    a = make_config("out=/tmp/a", "runtime.progress=false")
    b = make_config("out=/tmp/b")
    c = make_config("preprocess.crop_size=96")
    assert a.config_hash == b.config_hash
    assert a.config_hash != c.config_hash
    assert config_hash(a.resolved) == a.config_hash


def test_a_run_folder_grows_by_methods_and_metrics_while_method_options_are_hashed_per_method():
    a = make_config("methods=[gt,static]", "metrics=[psnr]")
    b = make_config("methods=[gt,static,shift]", "metrics=[psnr,ssim]", "shift.frames=2")
    c = make_config("methods=[gt,static,shift]", "shift.frames=3")
    d = make_config("methods=[gt,late:shift]", "late.frames=2")
    assert a.config_hash == b.config_hash == c.config_hash
    assert a.method_config_hash("static") == b.method_config_hash("static")
    assert b.method_config_hash("shift") != c.method_config_hash("shift")
    assert d.method_entry("late") == {"method": "shift", "options": {"frames": 2}}
    assert d.method_config_hash("late") == b.method_config_hash("shift")


def test_a_run_folder_from_the_older_hash_definition_is_resumed(tmp_path):
    """Before run folders could grow, config_hash also covered methods and metrics: such a folder (no
    `invocations` in run.json) with the same suite, preprocessing and seed is accepted and re-hashed."""
    import json

    from stsa_bench.core.errors import ConfigError
    from stsa_bench.run_files import init_run_dir

    cfg = make_config(f"out={tmp_path}", "methods=[gt]", "metrics=[psnr]")
    init_run_dir(tmp_path, cfg)
    info = json.loads((tmp_path / "run.json").read_text())
    old = {k: v for k, v in info.items() if k not in ("invocations", "methods")} | {"config_hash": "0123456789ab"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    init_run_dir(tmp_path, make_config(f"out={tmp_path}", "methods=[gt,static]", "metrics=[psnr]"))
    assert json.loads((tmp_path / "run.json").read_text())["config_hash"] == cfg.config_hash
    (tmp_path / "run.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="differs in preprocess.crop_size"):
        init_run_dir(tmp_path, make_config(f"out={tmp_path}", "methods=[gt]", "metrics=[psnr]", "preprocess.crop_size=96"))


def test_a_run_folder_decoded_by_another_decode_version_is_not_extended(tmp_path):
    """A folder made before frames were turned upright and late audio aligned (no decode_version in run.json) would
    mix rows of both decodes for such clips: refused, naming the versions."""
    import json

    from stsa_bench.core.errors import ConfigError
    from stsa_bench.core.media import DECODE_VERSION
    from stsa_bench.run_files import init_run_dir

    cfg = make_config(f"out={tmp_path}", "methods=[gt]", "metrics=[psnr]")
    init_run_dir(tmp_path, cfg)
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["decode_version"] == DECODE_VERSION
    init_run_dir(tmp_path, make_config(f"out={tmp_path}", "methods=[gt,static]", "metrics=[psnr]"))
    (tmp_path / "run.json").write_text(json.dumps({k: v for k, v in info.items() if k != "decode_version"}))
    with pytest.raises(ConfigError, match=f"decode version 1, this harness decodes by version {DECODE_VERSION}"):
        init_run_dir(tmp_path, make_config(f"out={tmp_path}", "methods=[gt,static]", "metrics=[psnr]"))


def test_preprocessing_is_part_of_metric_identity():
    base, other = PreprocessConfig(), PreprocessConfig(box_scale=1.3)
    assert base.crop_tag().startswith("face128@25fps/pp=")
    assert base.crop_tag() != other.crop_tag()


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "reference").glob("*.yaml")))
def test_reference_numbers_load_and_use_known_names(name):
    """Published numbers (configs/reference) are keyed by registered metric names."""
    from reports.tables import load_reference

    ref = load_reference(name)
    assert ref["source"] and ref["values"]
    for values in ref["values"].values():
        METRICS.check(list(values))


def _yaml(path):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path)) or {}


def test_no_default_is_stated_twice():
    """Every default lives in its dataclass: no YAML of the run config restates one, and the base
    config holds no method or metric options (they come from each plugin's Options)."""
    from stsa_bench.configure import defaults_restated
    from stsa_bench.core.config import BASE_SECTIONS, is_component

    base = _yaml(CONFIG_DIR / "config.yaml")
    assert [k for k in base if is_component(k)] == []
    restated = {f"config.yaml:{k}": defaults_restated(base[k], cls) for k, cls in BASE_SECTIONS.items() if k in base}
    for path in (CONFIG_DIR / "preprocess").glob("*.yaml"):
        restated[str(path.relative_to(CONFIG_DIR))] = defaults_restated(_yaml(path), PreprocessConfig)
    for path in (CONFIG_DIR / "suite").glob("*.yaml"):
        node = _yaml(path)
        cls = SUITES.get(node.get("kind", node["name"])).Options
        restated[str(path.relative_to(CONFIG_DIR))] = defaults_restated(node, cls)
    assert {k: v for k, v in restated.items() if v} == {}


@pytest.mark.parametrize("suite", sorted(p.stem for p in (CONFIG_DIR / "suite").glob("*.yaml")))
@pytest.mark.parametrize("preprocess", sorted(p.stem for p in (CONFIG_DIR / "preprocess").glob("*.yaml")))
def test_composed_groups_take_the_dataclass_defaults(suite, preprocess):
    """Each suite x preprocess composition resolves the sections to the dataclass defaults plus the
    group files' deliberate values."""
    from stsa_bench.core.config import DataConfig, RuntimeConfig, plain_defaults

    resolved = compose([f"suite={suite}", f"preprocess={preprocess}"])
    assert resolved["runtime"] == plain_defaults(RuntimeConfig) and resolved["data"] == plain_defaults(DataConfig)
    assert resolved["preprocess"] == {**plain_defaults(PreprocessConfig), **_yaml(CONFIG_DIR / "preprocess" / f"{preprocess}.yaml")}
    node = _yaml(CONFIG_DIR / "suite" / f"{suite}.yaml")
    options = SUITES.get(node.get("kind", suite)).Options
    assert resolved["suite"] == {**plain_defaults(options), **node}


@pytest.mark.parametrize("name", METHODS.names() + METRICS.names())
def test_component_options_come_from_the_plugin_dataclass(name):
    """A method or metric in a run gets exactly its Options' defaults in the resolved config."""
    from stsa_bench.configure import options_class
    from stsa_bench.core.config import plain_defaults

    flag = "methods" if name in METHODS.names() else "metrics"
    resolved = compose([f"{flag}=[{name}]"])
    key = name if flag == "methods" else (METRICS.get(name).options_key or name)
    opts = options_class(key)
    if flag == "methods" or opts is not None:
        assert resolved[key] == (plain_defaults(opts) if opts else {})
    else:
        assert key not in resolved


def test_component_override_is_typed_and_checked():
    cfg = make_config("methods=[gt,shift]", "shift.frames=3", "metrics=[lse_c]", "lse.vshift=7")
    assert cfg.options_for("shift") == {"frames": 3} and cfg.options_for("lse")["vshift"] == 7
    with pytest.raises(ConfigError, match="did you mean 'shift.frames'"):
        make_config("methods=[gt,shift]", "shift.framez=3")
    with pytest.raises(ConfigError, match="did you mean 'dinet'"):
        make_config("dinnet.repo=/x")


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "reference").glob("*.yaml")))
def test_reference_rows_name_registered_methods_or_declared_labels(name):
    """A reference row whose key is neither a registered method nor a declared row label would
    silently drop out of the comparison (as `pc_avs` / `ip_lap` once did)."""
    from reports.tables import load_reference

    ref = load_reference(name)
    labels = set(ref.get("labels") or [])
    assert labels <= set(ref["values"]), "labels without values"
    unknown = [m for m in ref["values"] if m not in METHODS.names() and m not in labels]
    assert unknown == []


def test_metric_sets_expand():
    """`--metrics all` is the paper's eight in its column order; `extended` adds FVD and CSIM; names mix with sets."""
    from stsa_bench.core.registry import PAPER_METRICS

    assert make_config("metrics=[all]").metrics == PAPER_METRICS
    assert make_config("metrics=[extended]").metrics == (*PAPER_METRICS, "fvd", "csim")
    assert make_config("metrics=[psnr,extended,csim_fullframe]").metrics == (*PAPER_METRICS, "fvd", "csim", "csim_fullframe")
    from stsa_bench.configure import run_overrides

    assert run_overrides(None, None, "extended", None, []) == ["metrics=[extended]"]
    with pytest.raises(ConfigError, match="unknown metric 'extnded'"):
        run_overrides(None, None, "extnded", None, [])
