"""Compose the Hydra config: YAML files for deliberate choices, dataclasses for every default.

The run config (`configs/config.yaml`) holds no default that a dataclass already states. Its
defaults list pulls two nodes from Hydra's ConfigStore, built here from the dataclasses:
- `stsa_defaults`: `data`, `runtime` and `preprocess` (DataConfig, RuntimeConfig, PreprocessConfig);
- `stsa_suite_defaults`: the chosen suite kind's Options defaults, under the suite file's values;
- `stsa_components`: one node per method row, metric option group and overridden component of
  this run, from that plugin's `Options` dataclass (a method or metric is one file).
Overrides then apply with Hydra's own grammar and type-free merging; `typed()` checks types later.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .core.config import BASE_SECTIONS, TOP_LEVEL, flatten, plain_defaults
from .core.errors import ConfigError
from .core.registry import METHODS, METRICS, SUITES, did_you_mean

RUN_CONFIG = "config"


def suite_names() -> list[str]:
    """The suite configs (configs/suite/*.yaml) and the plugin suites registered without one."""
    from configs import CONFIG_DIR

    return sorted({p.stem for p in (CONFIG_DIR / "suite").glob("*.yaml")} | set(SUITES.names()))


def _store_plugin_suites() -> None:
    """A plugin suite without a YAML file becomes the config group entry `suite=<name>` with its Options' defaults."""
    from configs import CONFIG_DIR

    from .core.config import plain_defaults

    for name in SUITES.names():
        if not (CONFIG_DIR / "suite" / f"{name}.yaml").is_file():
            opts = getattr(SUITES.get(name), "Options", None)
            node = {"name": name, **(plain_defaults(opts) if opts else {})}
            from hydra.core.config_store import ConfigStore

            ConfigStore.instance().store(group="suite", name=name, node=node)


def _top_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~").split(".", 1)[0]


def options_class(component: str) -> type | None:
    """The options dataclass behind a config key: a method, a metric, or a metric option group (`lse`)."""
    if component in METHODS.names():
        return METHODS.get(component).Options
    if component in METRICS.names():
        cls = METRICS.get(component)
        return cls.Options if (cls.options_key or component) == component else None
    for name in METRICS.names():
        cls = METRICS.get(name)
        if cls.options_key == component:
            return cls.Options
    raise KeyError(component)


def component_nodes(methods: list[str], metrics: list[str], extra_keys: list[str]) -> dict[str, dict]:
    """{config key: option defaults} for the run's method rows, its metrics' option groups and `extra_keys`."""
    from .core.config import method_specs

    nodes: dict[str, dict] = {}
    for label, name in method_specs(tuple(methods)).items():
        opts = METHODS.get(name).Options
        nodes[label] = plain_defaults(opts) if opts else {}
    from .core.registry import expand_metric_sets

    for name in expand_metric_sets(metrics):
        cls = METRICS.get(name)
        if cls.Options is not None:
            nodes[cls.options_key or name] = plain_defaults(cls.Options)
    known = sorted(set(TOP_LEVEL) | set(METHODS.names()) | set(METRICS.names()) | set(nodes))
    for key in extra_keys:
        if key in nodes or key in TOP_LEVEL:
            continue
        try:
            opts = options_class(key)
        except KeyError:
            raise ConfigError(f"unknown setting {key!r}{did_you_mean(key, known)}") from None
        nodes[key] = plain_defaults(opts) if opts else {}
    return nodes


def mapping_keys(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose value is a mapping (`wav2lip_official.env`): Hydra's struct mode refuses `key={A: 1}` on one
    that is empty, so compose gives such an override Hydra's `++` (set, keys added)."""
    keys = []
    for k, v in node.items():
        if isinstance(v, Mapping):
            keys.append(f"{prefix}{k}")
            keys += mapping_keys(v, f"{prefix}{k}.")
    return keys


def suite_defaults(suite: Mapping[str, Any]) -> dict:
    """The Options defaults of the suite's kind (its YAML file holds only what differs)."""
    from .core.config import plain_defaults

    kind = suite.get("kind", suite.get("name"))
    opts = getattr(SUITES.get(kind), "Options", None) if kind in SUITES.names() else None
    return plain_defaults(opts) if opts else {}


def _store(name: str, node: Mapping[str, Any]) -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=name, node=dict(node))


def _hydra(config_name: str, overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def _list_value(overrides: list[str], key: str, default: list[str]) -> list[str]:
    for o in reversed(overrides):
        k, eq, v = o.partition("=")
        if eq and k.lstrip("+") == key:
            return [x.strip().strip("'\"") for x in v.strip("[]").split(",") if x.strip()]
    return list(default)


def compose(overrides: list[str], config_name: str = RUN_CONFIG) -> dict:
    """Compose configs/<config_name>.yaml with overrides and resolve it into a plain dict."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "suite" and "=" in o and o.split("=", 1)[1] not in suite_names():
            name = o.split("=", 1)[1]
            raise ConfigError(f"unknown suite {name!r}{did_you_mean(name, suite_names())}")
    _store("stsa_defaults", {k: plain_defaults(cls) for k, cls in BASE_SECTIONS.items()})
    _store_plugin_suites()
    try:
        if config_name == RUN_CONFIG:
            base = [o for o in overrides if _top_key(o) in TOP_LEVEL and not o.lstrip("+~").startswith("suite.")]
            _store("stsa_components", {})
            _store("stsa_suite_defaults", {})
            first = _hydra(config_name, base)
            _store("stsa_suite_defaults", {"suite": suite_defaults(first.get("suite") or {})})
            methods = _list_value(overrides, "methods", first.get("methods") or [])
            metrics = _list_value(overrides, "metrics", first.get("metrics") or [])
            extra = [_top_key(o) for o in overrides if _top_key(o) not in TOP_LEVEL]
            nodes = component_nodes(methods, metrics, extra)
            _store("stsa_components", nodes)
            present = set(flatten(nodes))
            overrides = [o[1:] if o.startswith("+") and o[1:].split("=", 1)[0] in present else o for o in overrides]
            mappings = {key for label, node in nodes.items() for key in mapping_keys(node, f"{label}.")}
            overrides = [f"++{o}" if o.split("=", 1)[0] in mappings and "=" in o else o for o in overrides]
        return _hydra(config_name, overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        msg = " ".join(str(exc).split())
        from configs import CONFIG_DIR

        group = re.search(r"Could not find '(\w+)/([^'/]*)'", msg)
        options = sorted(p.stem for p in (CONFIG_DIR / group.group(1)).glob("*.yaml")) if group else []
        if options:
            name, value = group.groups()
            raise ConfigError(
                f"{name}={value!r} is not one of {', '.join(options)}{did_you_mean(value, options).split(' (known')[0]}"
            ) from None
        keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
        bad = [k for k in keys if f"'{k}'" in msg or f"'{k.rsplit('.', 1)[-1]}'" in msg]
        if not bad:
            raise ConfigError(f"bad override: {msg}") from exc
        known = list(flatten(_hydra(config_name, [])))
        if config_name == RUN_CONFIG:
            top = bad[0].split(".", 1)[0]
            fields = flatten({top: component_nodes([], [], [top]).get(top, {})}) if top not in TOP_LEVEL else {}
            known += list(fields)
        raise ConfigError(f"unknown setting {bad[0]!r}{did_you_mean(bad[0], sorted(set(known))).split(' (known')[0]}") from exc


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_placeholders(override: str) -> str:
    """`results.pattern={clip}.mp4` -> quoted value: Hydra's grammar would read `{...}` as a dict."""
    key, eq, value = override.partition("=")
    if eq and re.search(r"\{clip(_flat)?\}", value) and value[:1] not in "'\"":
        return f"{key}={quote(value)}"
    return override


LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@|/-]*")
"""A `label:method` row label: one the override grammar reads as a key, and no `.` or `..` path part (labels name
the run folder's strips/ and videos/ folders)."""


def run_overrides(suite: str | None, methods: str | None, metrics: str | None, out: str | None, extra: list[str]) -> list[str]:
    """CLI flags -> Hydra overrides (`--suite x` is `suite=x`, `--methods a,b` is `methods=[a,b]`)."""
    overrides = []
    if suite:
        if suite not in suite_names():
            raise ConfigError(f"unknown suite {suite!r}{did_you_mean(suite, suite_names())}")
        overrides.append(f"suite={suite}")
    for flag, value, registry in (("methods", methods, METHODS), ("metrics", metrics, METRICS)):
        if value is not None and not value.strip(" ,"):
            raise ConfigError(
                f"--{flag} is empty; name at least one (stsa-bench ls {flag} lists them), or leave the flag out for the defaults"
            )
        if value:
            names = [v.strip() for v in value.split(",") if v.strip()]
            if flag == "methods":
                labels = [n.split(":", 1)[0] for n in names if ":" in n]
                bad = [x for x in labels if not LABEL.fullmatch(x) or {".", ".."} & set(x.split("/"))]
                if bad:
                    raise ConfigError(f"--methods {bad[0]!r}: a row label starts with a letter, digit or _ and holds only those and "
                                      f"_ . + - @ | / (no . or .. part), e.g. --methods ours:static")  # fmt: skip
                registry.check([n.split(":", 1)[-1] for n in names])
            else:
                from .core.registry import METRIC_SETS

                registry.check([n for n in names if n not in METRIC_SETS])
            overrides.append(f"{flag}=[{','.join(names)}]")
    if out:
        overrides.append(f"out={quote(str(Path(out).expanduser()))}")
    return overrides + [quote_placeholders(o) for o in extra]


def defaults_restated(yaml_node: Mapping[str, Any], cls: type) -> list[str]:
    """Keys of `yaml_node` whose value equals the dataclass default (a default stated twice)."""
    defaults = plain_defaults(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return sorted(k for k, v in yaml_node.items() if k in names and defaults.get(k) == v)
