"""The integer / number check is written once, in mpsearch/core/checks.py.

``isinstance(x, bool) or not isinstance(x, int)`` (a bool is an int in Python, so every hand-written
check needs both halves) was written out 36 times in 21 files, each with its own message. This test
reads every module with ``ast`` (nothing is imported) and fails on a boolean expression that tests one
value both for ``bool`` and for ``int`` / ``float``, in either polarity (``isinstance(v, int) and not
isinstance(v, bool)`` too): use ``check_int`` / ``check_number`` / ``is_int`` / ``is_number`` from
:mod:`mpsearch.core.checks` instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpsearch"

#: The one module allowed to write the pattern.
CHECKS_MODULE = "core/checks.py"

#: Folders and files that other work had open when the checks module landed; their checks are still
#: hand-written. Convert them to mpsearch.core.checks, then drop them from here.
PENDING = ("execution/", "profiler/", "demo/", "core/formats.py")

_NUMBER_TYPES = {"int", "float"}


def _isinstance_types(node: ast.AST) -> tuple[str, set[str]] | None:
    """``(dump of the tested value, names of the types)`` for ``isinstance(x, T)`` (also under ``not``)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        node = node.operand
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance"
            and len(node.args) == 2):
        return None
    types = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
    return ast.dump(node.args[0]), {t.id for t in types if isinstance(t, ast.Name)}


def hand_written_checks(source: str, filename: str = "<string>") -> list[int]:
    """Line numbers of boolean expressions that test one value for bool and for int or float."""
    lines = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if not isinstance(node, ast.BoolOp):
            continue
        tested: dict[str, set[str]] = {}
        for part in node.values:
            found = _isinstance_types(part)
            if found is not None:
                tested.setdefault(found[0], set()).update(found[1])
        if any("bool" in types and types & _NUMBER_TYPES for types in tested.values()):
            lines.append(node.lineno)
    return sorted(lines)


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


MODULES = [p for p in sorted(PKG.rglob("*.py")) if _rel(p) != CHECKS_MODULE and not _rel(p).startswith(PENDING)]


def test_the_int_and_number_check_is_written_only_in_the_checks_module():
    found = [f"{_rel(p)}:{line}" for p in MODULES for line in hand_written_checks(p.read_text(), str(p))]
    assert not found, ("write int / number checks with mpsearch.core.checks (check_int, check_number, is_int, "
                       "is_number), not by hand:\n" + "\n".join(found))


def test_the_checks_module_itself_holds_the_pattern():
    # guards the detector: if this fails, the test above can no longer see the pattern
    assert hand_written_checks((PKG / CHECKS_MODULE).read_text())


@pytest.mark.parametrize("source", [
    "if isinstance(x, bool) or not isinstance(x, int) or x < 1:\n    raise E",
    "ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo",
    "ok = isinstance(v, (int, float)) and not isinstance(v, bool)",
    "if isinstance(self.n, bool) or not isinstance(self.n, int):\n    pass",
    "ok = all(isinstance(b, int) and not isinstance(b, bool) for b in bits)",
    "def f(t):\n    if isinstance(t, bool) or not isinstance(t, float):\n        raise E",
])
def test_a_planted_hand_written_check_is_found(source):
    assert hand_written_checks(source) == [source.count("\n", 0, source.index("isinstance")) + 1]


@pytest.mark.parametrize("source", [
    "ok = isinstance(x, bool)",
    "ok = isinstance(x, int) and x > 0",
    "ok = isinstance(a, bool) or isinstance(b, int)",  # two different values
    "ok = check_int(x, 'T', 'n', min=1)",
    "if isinstance(x, bool):\n    pass\nif isinstance(x, int):\n    pass",  # separate statements: not one check
])
def test_other_isinstance_tests_are_left_alone(source):
    assert hand_written_checks(source) == []
