"""Imports point down the stack of DESIGN.md, and only allocation/ and explorers/ import the solvers.

Reads every module's import statements (including those inside functions, which are the lazy
imports) with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpsearch"

# Bottom (0) to top. A module may import from its own level or lower. explorers sit above
# allocation (they reuse its budgets and pins); demo is a data source on top of core only;
# the profiler times execution's kernels and writes hardware's profiles (only commands/ use it).
LEVEL = {
    "errors": 0, "core": 0, "model": 1, "demo": 1, "quant": 2, "hardware": 3, "execution": 4,
    "profiler": 5, "sensitivity": 5, "allocation": 6, "explorers": 7, "testing": 8, "qat": 8, "report": 8,
    "pipeline": 9, "recipe": 9, "commands": 10, "cli": 10, "__init__": 10,
}


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
    return out


MODULES = sorted(PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_the_stack(path):
    mine = _part(path)
    assert mine in LEVEL, f"{path}: top-level part {mine!r} has no level in this test; add it"
    for module, line in _imports(path):
        parts = module.split(".")
        if parts[0] != "mpsearch" or len(parts) < 2:
            continue
        theirs = parts[1]
        assert LEVEL.get(theirs, 99) <= LEVEL[mine], (
            f"{path.relative_to(PKG)}:{line} imports {module} ({theirs}, level {LEVEL.get(theirs)}) "
            f"from {mine} (level {LEVEL[mine]}): imports must point down the stack")


@pytest.mark.parametrize("engine, allowed", [("pulp", {"allocation"}), ("optuna", {"explorers"}),
                                             ("highspy", {"allocation"})])
def test_each_engine_sits_behind_one_folder(engine, allowed):
    importers = {_part(p) for p in MODULES for m, _ in _imports(p) if m.split(".")[0] == engine}
    assert importers <= allowed, f"{engine} is imported from {sorted(importers)}; only {sorted(allowed)} may"
