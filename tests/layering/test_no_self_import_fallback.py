"""No fallback around mpsearch's own modules: an ImportError there is a wiring error and must fail loudly.

Reads every module with ``ast`` (nothing is imported) and fails on a ``try`` whose body imports
from ``mpsearch`` and that has a handler catching ``ImportError`` or ``ModuleNotFoundError``
(alone, in a tuple, or through a bare ``except`` / ``except Exception``). Optional third-party
imports (numba, highspy, sklearn, matplotlib, ...) may keep their guards.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpsearch"
MODULES = sorted(PKG.rglob("*.py"))

_CATCHES_IMPORT_ERROR = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _names(node: ast.expr | None) -> set[str]:
    """Exception class names a handler's type catches (None: a bare ``except``)."""
    if node is None:
        return {"BaseException"}
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):  # builtins.ImportError
        return {node.attr}
    return set()


def _imports_mpsearch(body: list[ast.stmt]) -> int | None:
    """Line of the first import from mpsearch anywhere in ``body`` (nested blocks too), else None."""
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mpsearch":
                return node.lineno
            if isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: the package itself
                return node.lineno
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mpsearch" for a in node.names):
                return node.lineno
            if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                    and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).split(".")[0] == "mpsearch"):
                return node.lineno
    return None


def fallbacks(source: str, filename: str = "<string>") -> list[str]:
    """``"file:line: ..."`` for every try that imports mpsearch and catches ImportError."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.Try):
            continue
        line = _imports_mpsearch(node.body)
        if line is None:
            continue
        for handler in node.handlers:
            caught = _names(handler.type) & _CATCHES_IMPORT_ERROR
            if caught:
                found.append(f"{filename}:{line}: an import of mpsearch inside a try whose handler "
                             f"(line {handler.lineno}) catches {sorted(caught)[0]}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_fallback_around_mpsearch_imports(path):
    found = fallbacks(path.read_text(), str(path.relative_to(PKG)))
    assert not found, "mpsearch's own modules must be imported without a fallback:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "try:\n    from mpsearch.model import discover\nexcept ImportError:\n    discover = None\n",
    "try:\n    import mpsearch.quant as q\nexcept ModuleNotFoundError:\n    q = None\n",
    "def f():\n    try:\n        from mpsearch.quant.spec import weight_spec\n"
    "    except (ImportError, AttributeError):\n        return None\n",
    "try:\n    if True:\n        from mpsearch import quant\nexcept Exception:\n    pass\n",
    "try:\n    from .spec import weight_spec\nexcept ImportError:\n    pass\n",
    "import importlib\ntry:\n    m = importlib.import_module('mpsearch.commands.run')\nexcept ModuleNotFoundError:\n    m = None\n",
    "try:\n    from mpsearch.model import discover\nexcept:\n    pass\n",
])
def test_catches_a_planted_fallback(source):
    assert len(fallbacks(source)) == 1


@pytest.mark.parametrize("source", [
    "try:\n    import numba\nexcept ImportError:\n    numba = None\n",  # optional third-party: allowed
    "from mpsearch.model import discover\ntry:\n    import highspy\nexcept ImportError:\n    highspy = None\n",
    "try:\n    from mpsearch.model import discover\nexcept ValueError:\n    pass\n",  # not an import guard
    "try:\n    from mpsearch.model import discover\nfinally:\n    pass\n",
])
def test_allows_what_is_not_a_self_import_fallback(source):
    assert fallbacks(source) == []
