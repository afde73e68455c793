"""Every name a benchmark script imports from mpsearch exists: the scripts are not collected by
pytest, so a module the package drops (``sensitivity/_quant.py``) would only fail when someone
runs the benchmark. Reads the imports with ``ast``; imports only mpsearch's own modules."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py")) + sorted(BENCH.glob("*/*.py"))


def _missing(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mpsearch":
            try:
                module = importlib.import_module(node.module)
            except ModuleNotFoundError as exc:
                out.append(f"line {node.lineno}: {node.module} ({exc})")
                continue
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ModuleNotFoundError:
                        out.append(f"line {node.lineno}: {node.module}.{alias.name}")
    return out


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(BENCH)))
def test_benchmark_imports_exist(path: Path) -> None:
    assert not _missing(path), f"{path.name} imports names mpsearch no longer has: {_missing(path)}"


def test_a_dropped_module_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "bench_x.py"
    script.write_text("def run():\n    from mpsearch.sensitivity._quant import weight_error\n")
    assert _missing(script) == ["line 2: mpsearch.sensitivity._quant (No module named 'mpsearch.sensitivity._quant')"]
