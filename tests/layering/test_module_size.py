"""Small modules: no file under mpsearch/ is over 350 lines (DESIGN.md: about 50-300)."""

from __future__ import annotations

from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpsearch"
MODULES = sorted(PKG.rglob("*.py"))
MAX_LINES = 350


def n_lines(source: str) -> int:
    """Lines of a module as an editor counts them (a last line without a newline counts)."""
    return len(source.splitlines())


def too_long(source: str, limit: int = MAX_LINES) -> bool:
    """True when ``source`` has more than ``limit`` lines."""
    return n_lines(source) > limit


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_is_at_most_350_lines(path):
    n = n_lines(path.read_text())
    assert n <= MAX_LINES, (f"{path.relative_to(PKG)} has {n} lines; modules must have at most {MAX_LINES} "
                            "(split it by what its parts do)")


def test_catches_a_planted_long_module():
    assert n_lines("a = 1\nb = 2") == 2 and n_lines("a = 1\n") == 1
    assert not too_long("x = 1\n" * MAX_LINES)
    assert too_long("x = 1\n" * (MAX_LINES + 1))
