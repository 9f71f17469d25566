"""`stsa-bench ablate`: the paper's Table III. Train every variant (or take given checkpoints), run it on
the evaluation suite with the harness's metrics, write the table beside the paper's numbers.

Layout under `out`: train/guidance (stage 1, shared by every variant), train/<variant> (stage 2, or
stage 3 for w_ft, which fine-tunes guidance + the wo_ft renderer), eval/ (one `stsa-bench run` with a
`<variant>:stsa` row per variant) and table3.{md,tex,csv}. Each part resumes where it stopped.

Every training run composes configs/ablate.yaml again, with the overrides ablate was given and
`stage=<stage>`, so configs/stage/<stage>.yaml applies to that run (e.g. the fine-tuning learning rate)
exactly as in `stsa-bench train stage=<stage>`; the evaluation composes configs/config.yaml with a
`<variant>:stsa` method row per variant.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.errors import ConfigError
from .core.registry import did_you_mean
from .train import config as _train_config  # noqa: F401 - stores the train config's defaults (ablate.yaml composes train.yaml)

Log = Callable[[str], None]

VARIANTS: dict[str, tuple[str, dict[str, bool]]] = {
    "wo_cil": ("w/o CIL", {"cil": False, "finetune": False}),
    "wo_sync": ("w/o sync loss", {"sync_loss": False, "finetune": False}),
    "wo_spatial": ("w/o spatial path", {"spatial_path": False, "finetune": False}),
    "wo_temporal": ("w/o temporal path", {"temporal_path": False, "finetune": False}),
    "wo_ft": ("full w/o FT", {"finetune": False}),
    "w_ft": ("full w/ FT", {"finetune": True}),
}
"""Table III rows in the paper's order: name -> (label, ablation switches). `finetune` adds stage 3."""
FINETUNED_FROM = {"w_ft": "wo_ft"}
"""A fine-tuned variant starts from the shared guidance network and this variant's stage-2 renderer."""


ABLATE_KEYS = ("variants", "steps", "checkpoints", "evaluation")
"""configs/ablate.yaml's own keys; the rest of its composed config is configs/train.yaml's."""

Compose = Callable[[list[str], str], dict]
"""(overrides, config name) -> resolved config: `stsa_bench.configure.compose`, which the CLI uses."""


@dataclass(frozen=True)
class AblateConfig:
    resolved: Mapping[str, Any]
    out: Path
    variants: tuple[str, ...]
    steps: Mapping[str, int]
    checkpoints: Mapping[str, Mapping[str, str]]
    evaluation: Mapping[str, Any]
    overrides: tuple[str, ...] = ()
    """The overrides `resolved` was composed with; each training run composes them again with its stage."""


def ablate_config_from_dict(resolved: Mapping[str, Any], overrides: Sequence[str] = ()) -> AblateConfig:
    r = dict(resolved)
    variants = tuple(r.get("variants") or ())
    for v in variants:
        if v not in VARIANTS:
            raise ConfigError(f"unknown variant {v!r}{did_you_mean(v, list(VARIANTS))}")
    for v in r.get("checkpoints") or {}:
        if v not in VARIANTS:
            raise ConfigError(f"checkpoints.{v}: unknown variant{did_you_mean(v, list(VARIANTS))}")
    return AblateConfig(r, Path(str(r["out"])).expanduser(), variants, dict(r["steps"]), dict(r.get("checkpoints") or {}),
                        dict(r["evaluation"]), tuple(overrides))


def _compose(compose: Compose | None) -> Compose:
    if compose is not None:
        return compose
    from .configure import compose as configure_compose

    return configure_compose


def train_resolved(acfg: AblateConfig, stage: str, name: str, ablation: dict | None = None, init: dict | None = None,
                   compose: Compose | None = None) -> dict:
    """The train config of one stage run: configs/ablate.yaml composed with ablate's overrides and
    `stage=<stage>` (its stage file applies, under the command line's values), without ablate's own keys,
    with this run's out, steps (`steps.<stage>`), Table III switches and init."""
    stage_free = [o for o in acfg.overrides if o.split("=", 1)[0].lstrip("+~") != "stage"]
    r = _compose(compose)(stage_free + [f"stage={stage}"], "ablate")
    for key in ABLATE_KEYS:
        r.pop(key, None)
    r["out"] = str(acfg.out / "train" / name)
    r["train"]["steps"] = int(acfg.steps[stage])
    r["ablation"].update(ablation or {})
    if init:
        r["init"] = init
    return r


def train_variants(acfg: AblateConfig, log: Log, compose: Compose | None = None) -> dict[str, dict[str, str]]:
    """variant -> {"heatmap": path, "renderer": path}, training what is not given."""
    from .train import run_training, train_config_from_dict

    def train(stage: str, name: str, **kw) -> Path:
        cfg = train_config_from_dict(train_resolved(acfg, stage, name, compose=compose, **kw))
        log(f"ablate: training {name} ({stage}, {cfg.options.steps} steps) in {cfg.out}")
        outcome = run_training(cfg, log)
        if not outcome.exported:
            raise ConfigError(f"{cfg.out}: training stopped at step {outcome.step}; run ablate again to continue")
        return cfg.out / "export"

    given = {v: dict(c) for v, c in acfg.checkpoints.items()}
    todo = [v for v in acfg.variants if v not in given]
    weights: dict[str, dict[str, str]] = {}
    guidance = train("guidance", "guidance") / "heatmap_weight.pth" if todo else None
    for v in acfg.variants:
        if v in given:
            weights[v] = given[v]
            continue
        switches = dict(VARIANTS[v][1])
        start = FINETUNED_FROM.get(v, v)
        stage2 = {**switches, "finetune": False}
        renderer = given.get(start, {}).get("renderer") or str(train("synthesis", start, ablation=stage2) / "face_weight.pth")
        if not switches["finetune"]:
            weights[v] = {"heatmap": str(guidance), "renderer": renderer}
            continue
        heatmap = given.get(start, {}).get("heatmap") or str(guidance)
        out = train("finetune", v, ablation=switches, init={"heatmap": heatmap, "renderer": renderer})
        weights[v] = {"heatmap": str(out / "heatmap_weight.pth"), "renderer": str(out / "face_weight.pth")}
    return weights


def eval_overrides(acfg: AblateConfig) -> list[str]:
    """The evaluation's `stsa-bench run` overrides: suite, a `<variant>:stsa` row per variant, metrics."""
    ev = acfg.evaluation
    rows = ",".join(f"{v}:stsa" for v in acfg.variants)
    return [f"suite={ev['suite']}", f"methods=[{rows}]", f"metrics=[{','.join(ev['metrics'])}]"]


def eval_resolved(acfg: AblateConfig, weights: Mapping[str, Mapping[str, str]], base: Mapping[str, Any]) -> dict:
    """The `stsa-bench run` config (configs/config.yaml composed with `eval_overrides`, in `base`) with
    each variant's weights; evaluation.* values left null keep the run config's (dataclass) defaults."""
    ev = acfg.evaluation
    r = copy.deepcopy(dict(base))
    r["suite"] = {**r["suite"], **dict(ev.get("suite_options") or {})}
    r["data"] = {**r["data"], **dict(ev.get("data") or {})}
    r["methods"] = [f"{v}:stsa" for v in weights]
    r["metrics"] = list(ev["metrics"])
    r["out"] = str(acfg.out / "eval")
    r["cache_dir"] = acfg.resolved.get("cache_dir")
    if ev.get("device") is not None:
        r["runtime"] = {**r["runtime"], "device": ev["device"]}
    r["weights"] = {**r["weights"], **dict(ev.get("weights") or {})}
    given = {k: ev[k] for k in ("batch_size", "precision") if ev.get(k) is not None}
    w2v = acfg.resolved.get("wav2vec2")
    for v, w in weights.items():
        r[v] = {**r.get(v, {}), "heatmap_ckpt": str(w["heatmap"]), "renderer_ckpt": str(w["renderer"]), "wav2vec2": w2v, **given}
    return r


def write_table(eval_dir: Path, out: Path) -> list[Path]:
    """table3.md (ours, then ours vs paper), table3.tex, table3.csv from the evaluation rows."""
    from reports import tables
    from reports.build import ReportSpec, write_report

    from .pooled import SavedPartials

    run = tables.Run.load(eval_dir, pooled=SavedPartials([eval_dir]))
    spec = ReportSpec(
        title=f"Table III (ablation) on {run.rows[0].suite}",
        caption="Ablation study (Table III).",
        label="tab:ablation",
        stem="table3",
        preface="\n".join(f"- `{v}`: {VARIANTS[v][0]}" for v in run.methods if v in VARIANTS),
        per_clip=False,
        reference=tables.load_reference("stsa_table3"),
        reference_title="Ours vs the paper",
    )
    return write_report(tables.aggregate(run), out, ("md", "tex", "csv"), spec)[1]


def run_ablation(acfg: AblateConfig, log: Log = print, compose: Compose | None = None) -> list[Path]:
    from .core.config import run_config_from_dict
    from .core.paths import atomic_write_text
    from .runner import run

    compose = _compose(compose)
    weights = train_variants(acfg, log, compose)
    if acfg.resolved.get("wav2vec2") == "tiny":
        from .core.config import cache_root
        from .train import tiny_wav2vec2_dir

        tiny_dir = str(tiny_wav2vec2_dir(cache_root(acfg.resolved.get("cache_dir"))))
        acfg = dataclasses.replace(acfg, resolved={**acfg.resolved, "wav2vec2": tiny_dir})
    rcfg = run_config_from_dict(eval_resolved(acfg, weights, compose(eval_overrides(acfg), "config")))
    outcome = run(rcfg, log)
    log(outcome.summary)
    atomic_write_text(acfg.out / "weights.json", json.dumps(weights, indent=1))
    return write_table(rcfg.out, acfg.out)
