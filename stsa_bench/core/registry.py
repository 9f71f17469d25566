"""One decorator registry per kind (suites, methods, metrics), discovered and lazily imported.

Nothing lists the plugins. A registry learns which module defines each name without importing
anything:
- built-in plugins: the modules of its packages (`metrics/`, `baselines/`, ...) are parsed (AST)
  for `@REGISTRY.register("name")` decorators and `REGISTRY.register("name")(cls)` calls;
- third-party plugins: package entry points in the group `stsa_bench.<kind>s`, whose name is the
  registered name and whose value is the module that registers it, e.g. in pyproject.toml
  `[project.entry-points."stsa_bench.metrics"] my_metric = "my_pkg.my_metric"`.
`get(name)` imports the defining module on first use, so `ls` and `--help` import no torch.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} (known: {', '.join(sorted(choices))})"


def _package_files(package: str) -> list[tuple[str, Path]]:
    """(module name, file) of every module of `package` (a package or a single module), unimported."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        files = []
        for root in spec.submodule_search_locations:
            for py in sorted(Path(root).rglob("*.py")):
                parts = py.relative_to(root).with_suffix("").parts
                parts = parts[:-1] if parts[-1] == "__init__" else parts
                files.append((".".join((package, *parts)), py))
        return files
    return [(package, Path(spec.origin))] if spec.origin else []


def registered_names(source: str, registry: str) -> list[str]:
    """Names given to `<registry>.register("name")` anywhere in `source` (decorator or call)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "register"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == registry
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def option_groups(source: str) -> list[str]:
    """String values assigned to `options_key` in `source` (class attributes of registered plugins)."""
    groups = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if any(isinstance(t, ast.Name) and t.id == "options_key" for t in node.targets):
                groups.append(node.value.value)
    return groups


class Registry(Generic[T]):
    """Names -> objects. `variable` is the registry's module-level name that plugins decorate with
    (`@METRICS.register("psnr")`); `packages` are scanned for it; `group` is the entry-point group.
    With `sets_name`, `register(name)` sets the class attribute `name`.
    """

    def __init__(self, kind: str, variable: str, packages: tuple[str, ...] = (), sets_name: bool = False):
        self.kind = kind
        self.variable = variable
        self.packages = tuple(packages)
        self.group = f"stsa_bench.{kind}s"
        self.sets_name = sets_name
        self._items: dict[str, T] = {}
        self._groups: dict[str, str] = {}

    def option_groups(self) -> list[str]:
        """Config keys shared by several registered names (`options_key = "lse"` in lse_c and lse_d)."""
        _ = self._lazy  # the scan fills self._groups
        return sorted(set(self._groups) | {g for o in self._items.values() if (g := getattr(o, "options_key", None))})

    @cached_property
    def _lazy(self) -> dict[str, str]:
        """{name: module} from the scanned packages and the installed entry points."""
        found: dict[str, str] = {}
        for package in self.packages:
            for module, path in _package_files(package):
                source = path.read_text(encoding="utf-8")
                names = registered_names(source, self.variable)
                for name in names:
                    found.setdefault(name, module)
                if names:
                    for group in option_groups(source):
                        self._groups.setdefault(group, module)
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            found.setdefault(ep.name, ep.value.split(":", 1)[0])
        return found

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if self.sets_name:
                if vars(obj).get("name", name) != name:
                    raise ValueError(f"{self.kind} class {obj.__name__} is registered as {obj.name!r} and {name!r}")
                obj.name = name
            self._items[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return sorted(set(self._lazy) | set(self._items))

    def module_of(self, name: str) -> str | None:
        """The module that defines `name`, without importing it (None for names registered at run time)."""
        return self._lazy.get(name)

    def get(self, name: str) -> T:
        if name not in self._items and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")
        return self._items[name]

    def check(self, names: list[str] | tuple[str, ...]) -> None:
        """Fail early, before any heavy import, on a name no module defines."""
        for name in names:
            if name not in self._lazy and name not in self._items:
                raise ConfigError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}")


SUITES: Registry = Registry("suite", "SUITES", ("stsa_bench.core.suites",))
"""Suite kinds (the suites themselves are configs/suite/*.yaml, each naming a kind)."""
METHODS: Registry = Registry("method", "METHODS", ("baselines",), sets_name=True)
METRICS: Registry = Registry("metric", "METRICS", ("metrics",), sets_name=True)
PAPER_METRICS = ("psnr", "ssim", "fid", "lpips", "lipmd", "lse_d", "lse_c", "dme")
"""`--metrics all`: the eight metrics of the STSA paper's tables, in its column order."""
METRIC_SETS = {"all": PAPER_METRICS, "extended": PAPER_METRICS + ("fvd", "csim")}
"""Named metric lists for `--metrics`: `all` is the paper's table, `extended` adds what the wider field reports."""


def expand_metric_sets(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`--metrics` names with the named sets replaced by their metrics (order kept, duplicates dropped)."""
    out = [m for name in names for m in METRIC_SETS.get(name, (name,))]
    return tuple(dict.fromkeys(out))
