from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def test_torch_load_is_always_weights_only():
    offenders = []
    for pkg in ("stsa_bench", "metrics", "baselines", "stsa", "reports"):
        for py in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                    if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords):
                        offenders.append(str(py.relative_to(ROOT)))
    assert offenders == []
