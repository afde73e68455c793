"""Budget syntax is read in one module only: ``mpsearch/allocation/budgets.py`` (the resolver).

The rule, checked with ``ast`` on every other module of the package (nothing is imported;
docstrings, comments and message strings are free to *mention* the syntax):

1. **No budget-parser names.** No function or method is named like a budget reader:
   ``parse_budget*``, ``resolve_budget*``, ``parse_value``, ``parse_uniform``,
   ``parse_percent*``, ``parse_limit*`` (leading underscores included).
2. **No budget syntax in code.** None of the ways to read ``120k``, ``50%`` or
   ``uniform:w4a8`` appears:

   a. a regular expression (the pattern given to ``re.compile`` / ``match`` / ``fullmatch``
      / ``search`` / ``findall`` / ``sub`` / ``split``) containing ``%``, ``uniform`` or a
      unit-suffix class (``[KMGT``, ``Ki``);
   b. a suffix table: a dict literal with two or more of the keys
      ``k K M G T Ki Mi Gi Ti``;
   c. a string method (``endswith``, ``startswith``, ``strip``, ``rstrip``, ``lstrip``,
      ``removesuffix``, ``removeprefix``, ``split``, ``rsplit``, ``partition``,
      ``rpartition``, ``replace``, ``find``, ``index``, ``count``) called with ``"%"`` or
      a string starting with ``"uniform"``;
   d. a comparison (``==``, ``!=``, ``in``, ``not in``) against ``"%"`` or a string
      starting with ``"uniform"``.
3. **No budget splitter.** No function whose name contains ``budget`` splits text at
   ``"="`` (``partition`` / ``split`` / ``rpartition`` / ``rsplit``): ``"size_bytes=120k"``
   is read by the resolver's ``parse_budget``.

A second parser would have to dodge all three (a differently named function, with no regex,
suffix table, ``%``/``uniform`` test or ``=`` split). The planted-duplicate tests below show
each rule firing on a fake package tree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpsearch"
RESOLVER = Path("allocation") / "budgets.py"  # relative to the package root

_PARSER_NAME = re.compile(r"^_*(parse_budget|resolve_budget|parse_value$|parse_uniform|parse_percent|parse_limit)")
_RE_FUNCS = {"compile", "match", "fullmatch", "search", "findall", "finditer", "sub", "subn", "split"}
_REGEX_TOKENS = ("%", "uniform", "[KMGT", "Ki")
_SUFFIX_KEYS = {"k", "K", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"}
_STR_METHODS = {"endswith", "startswith", "strip", "rstrip", "lstrip", "removesuffix", "removeprefix", "split",
                "rsplit", "partition", "rpartition", "replace", "find", "index", "count"}
_SPLITTERS = {"partition", "rpartition", "split", "rsplit"}


def _is_token(node: ast.AST) -> bool:
    """``"%"`` or a string starting with ``"uniform"``: the markers of relative / uniform budgets."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and (
        node.value.strip() == "%" or node.value.startswith("uniform"))


def _str_const(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _violations_in(tree: ast.AST) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _PARSER_NAME.match(node.name):
                out.append((node.lineno, f"defines a budget parser {node.name}()"))
            if "budget" in node.name.lower():
                for inner in ast.walk(node):
                    if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute)
                            and inner.func.attr in _SPLITTERS and inner.args and _str_const(inner.args[0]) == "="):
                        out.append((inner.lineno, f"{node.name}() splits budget text at '='"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            is_re = isinstance(func.value, ast.Name) and func.value.id == "re" and func.attr in _RE_FUNCS
            pattern = _str_const(node.args[0]) if node.args else None
            if is_re and pattern is not None and any(t in pattern for t in _REGEX_TOKENS):
                out.append((node.lineno, f"a regex for budget syntax {pattern!r}"))
            elif func.attr in _STR_METHODS and any(_is_token(a) for a in node.args):
                out.append((node.lineno, f"reads budget syntax with .{func.attr}()"))
        elif isinstance(node, ast.Dict):
            keys = {_str_const(k) for k in node.keys if k is not None}
            if len(keys & _SUFFIX_KEYS) >= 2:
                out.append((node.lineno, f"a unit-suffix table {sorted(keys & _SUFFIX_KEYS)}"))
        elif isinstance(node, ast.Compare):
            if (any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)
                    and any(_is_token(n) for n in [node.left, *node.comparators])):
                out.append((node.lineno, "compares with budget syntax ('%' or 'uniform...')"))
    return out


def budget_parsers(pkg: Path, resolver: Path = RESOLVER) -> list[str]:
    """``"path:line: what"`` for every budget-reading construct outside ``pkg / resolver``."""
    found = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg)
        if rel == resolver:
            continue
        for line, what in _violations_in(ast.parse(path.read_text(), filename=str(path))):
            found.append(f"{rel}:{line}: {what}")
    return found


def test_budget_syntax_is_read_by_the_resolver_only():
    assert (PKG / RESOLVER).is_file(), f"the resolver {RESOLVER} is missing"
    found = budget_parsers(PKG)
    assert not found, ("budget syntax must be read only in mpsearch/allocation/budgets.py "
                       "(use Budgets.parse / resolve_budgets), but:\n  " + "\n  ".join(found))


def test_the_resolver_itself_trips_every_rule():
    """The rules describe real parsing: applied to the resolver, each of them fires."""
    found = [what for _, what in _violations_in(ast.parse((PKG / RESOLVER).read_text()))]
    assert any("defines a budget parser parse_budget()" == w for w in found)
    assert any(w.startswith("a regex for budget syntax") and "%" in w for w in found)
    assert any(w.startswith("a regex for budget syntax") and "uniform" in w for w in found)
    assert any(w.startswith("a unit-suffix table") for w in found)


_CLEAN = '''"""Budgets such as 120k, 50% or uniform:w4a8 may be named in docstrings."""

def describe(limit: float, relative: bool) -> str:
    # messages and f-strings may show a percentage
    rule = 'a number or a percentage such as "50%" or "uniform:w4a8"'
    return f"{limit * 100:.1f}%" if relative else f"{limit:g} ({rule})"
'''

_PLANTED = {
    "pipeline/budgets.py": ("def resolve_budgets(budgets, table):\n    return dict(budgets)\n",
                            "defines a budget parser resolve_budgets()"),
    "recipe/checks.py": ("def check(value):\n    if str(value).endswith('%'):\n        return float(value[:-1]) / 100\n",
                         "reads budget syntax with .endswith()"),
    "commands/_common.py": ("_SCALE = {'k': 1e3, 'M': 1e6, 'G': 1e9}\n", "a unit-suffix table"),
    "explorers/_space.py": ("import re\nUNI = re.compile(r'^uniform:w(\\d+)a(\\d+)$')\n", "a regex for budget syntax"),
    "sensitivity/omega.py": ("def limit(text):\n    return 'uniform' if text[:8] == 'uniform:' else text\n",
                             "compares with budget syntax"),
    "commands/allocate.py": ("def budgets_from_flags(values):\n    return dict(v.partition('=')[::2] for v in values)\n",
                             "budgets_from_flags() splits budget text at '='"),
}


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "mpsearch"
    (pkg / RESOLVER).parent.mkdir(parents=True)
    (pkg / RESOLVER).write_text((PKG / RESOLVER).read_text())  # the real resolver is allowed
    (pkg / "report").mkdir()
    (pkg / "report" / "markdown.py").write_text(_CLEAN)
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_a_clean_fake_package_passes(tmp_path):
    assert budget_parsers(_fake_package(tmp_path, {})) == []


@pytest.mark.parametrize("rel", sorted(_PLANTED))
def test_a_planted_duplicate_parser_is_caught(tmp_path, rel):
    text, what = _PLANTED[rel]
    found = budget_parsers(_fake_package(tmp_path, {rel: text}))
    assert len(found) == 1 and found[0].startswith(f"{rel}:") and what in found[0], found
