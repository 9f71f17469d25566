"""The four layers and the one rule between them: imports only go downward.

    stsa/             the model library: imports no harness module
    stsa_bench/core/  the harness core: imports stsa/ and configs/, never a plugin or orchestration
    metrics/ baselines/ reports/   plugins: import the core (baselines also stsa/), never each other
    stsa_bench/*.py   orchestration (cli, runner, train, ablate, ...): imports anything

Every import of every module is checked, including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("metrics", "baselines", "reports")
CORE = "stsa_bench.core"

ALLOWED: dict[str, tuple[str, ...]] = {
    "stsa": ("stsa",),
    CORE: ("stsa", CORE, "configs", "stsa_bench"),
    "metrics": ("metrics", CORE, "configs", "stsa_bench"),
    "baselines": ("baselines", CORE, "configs", "stsa_bench", "stsa"),
    "reports": ("reports", CORE, "configs", "stsa_bench"),
}
"""Layer -> the project packages its modules may import (`stsa_bench` alone is its `__version__`)."""

PROJECT = ("stsa", "stsa_bench", "metrics", "baselines", "reports", "configs")


def layer_of(module: str) -> str | None:
    """The layer a module belongs to; None for orchestration (which may import anything)."""
    if module == CORE or module.startswith(CORE + "."):
        return CORE
    top = module.split(".")[0]
    return top if top in ALLOWED else None


def module_name(py: Path) -> str:
    parts = py.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree, relative ones resolved."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
                if not node.module:
                    out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
                    continue
            else:
                name = node.module or ""
            subs = [f"{name}.{a.name}" for a in node.names if is_module(f"{name}.{a.name}")]
            out += [(node.lineno, sub) for sub in subs] or [(node.lineno, name)]
    return out


def is_module(name: str) -> bool:
    """`from pkg import mod` names a module when pkg/mod.py or pkg/mod/ exists in the project."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def allowed(importer_layer: str, target: str) -> bool:
    if target.split(".")[0] not in PROJECT:
        return True
    if target == "stsa_bench":
        return True
    target_layer = layer_of(target) or "orchestration"
    for ok in ALLOWED[importer_layer]:
        if ok == "stsa_bench":
            continue
        if target == ok or target.startswith(ok + ".") or target_layer == ok:
            return True
    return False


def violations(source: str, module: str, is_package: bool = False, where: str = "") -> list[str]:
    layer = layer_of(module)
    if layer is None:
        return []
    return [
        f"{where or module}:{line}: {module} ({layer}) imports {target}"
        for line, target in imported(ast.parse(source), module, is_package)
        if not allowed(layer, target)
    ]


def project_modules() -> list[Path]:
    files = []
    for pkg in ("stsa", "stsa_bench", "metrics", "baselines", "reports"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def test_imports_only_go_downward():
    offenders = []
    for py in project_modules():
        offenders += violations(py.read_text(), module_name(py), py.name == "__init__.py", str(py.relative_to(ROOT)))
    assert offenders == []


@pytest.mark.parametrize(
    "module, source, line, bad",
    [
        ("metrics.fake", "from baselines.base import Sample\n", 1, "baselines.base"),
        ("metrics.fake", "import numpy\ndef f():\n    from stsa_bench.runner import run\n", 3, "stsa_bench.runner"),
        ("reports.fake", "import metrics.psnr\n", 1, "metrics.psnr"),
        ("baselines.fake", "from reports import tables\n", 1, "reports.tables"),
        ("stsa_bench.core.fake", "from metrics.base import EvalPair\n", 1, "metrics.base"),
        ("stsa_bench.core.fake", "from ..cli import main\n", 1, "stsa_bench.cli"),
        ("metrics.fake", "from stsa_bench import runner\n", 1, "stsa_bench.runner"),
        ("stsa.fake", "from stsa_bench.core.errors import ClipError\n", 1, "stsa_bench.core.errors"),
    ],
)
def test_a_wrong_import_is_caught_and_named(module, source, line, bad):
    """A synthetic module with one upward or sideways import: the check names its file, line and target."""
    where = f"{module.replace('.', '/')}.py"
    assert violations(source, module, where=where) == [f"{where}:{line}: {module} ({layer_of(module)}) imports {bad}"]


@pytest.mark.parametrize(
    "module, source",
    [
        ("metrics.fake", "from stsa_bench.core.registry import METRICS\nfrom .base import Metric\n"),
        ("baselines.fake", "from stsa.inference import ClipInputs\nfrom stsa_bench.core.faces import LIP_POINTS\n"),
        ("stsa_bench.core.fake", "from .paths import cache_key\nfrom stsa.checkpoints import strip_prefix\n"),
        ("stsa_bench.fake", "from metrics import build_metric\nfrom reports import tables\n"),
    ],
)
def test_downward_imports_pass(module, source):
    assert violations(source, module) == []


def test_stsa_never_imports_stsa_bench():
    offenders = []
    for py in (ROOT / "stsa").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{py.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "stsa_bench"]
    assert offenders == []


def test_no_file_over_450_lines():
    """One idea per file, tests and scripts included; stsa/renderer.py mirrors the official checkpoint's layout and
    is exempt."""
    files = [*project_modules(), *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "scripts").rglob("*.py"))]
    long = [
        f"{py.relative_to(ROOT)}: {n}"
        for py in files
        if (n := len(py.read_text().splitlines())) > 450 and py.relative_to(ROOT) != Path("stsa/renderer.py")
    ]
    assert long == []


def test_torch_load_is_always_weights_only():
    offenders = []
    for pkg in ("stsa_bench", "metrics", "baselines", "stsa", "reports"):
        for py in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                    if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords):
                        offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []


def test_readme_stays_short():
    """The README holds the two commands, what works and how to run; the rest lives in docs/ (at most 300 lines)."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
