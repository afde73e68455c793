"""Shared pieces of the fuzz suite: mutations of plain data, and the tally of how inputs ended."""

from __future__ import annotations

import collections
import copy
import os
from pathlib import Path
from typing import Any, Iterator

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

#: suite -> outcome ("accepted", "refused: ConfigError", ...) -> count; printed by test_zz_tally.
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
_paths = st.sampled_from(["..", "../x", "/", "/proc/x.yaml", "/dev/null", ".", "a/../../b", "x" * 300,
                          "runs", "README.md", "sub/dir", "~/x", "nul\u0000byte"])
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True), _text, _paths,
                    st.sampled_from(["w8a8", "w4a4", "w99a8", "w4a16g128", "uniform:w4a8", "50%", "120k", "-1",
                                     "2.0e12", "size_bytes", "latency_ms", "watts", "os:getcwd", "digits",
                                     "gap8-pulp-nn", "per_channel", "conv2d", "hessian", "ilp"]))
junk = st.recursive(_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(_text, kids, max_size=4)), max_leaves=10)


def _locations(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) inside a nested dict / list."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield node, k
            yield from _locations(v)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield node, i
            yield from _locations(v)


@st.composite
def mutated(draw: Any, base: Any) -> Any:
    """``base`` with 1-3 mutations: a value replaced by junk, a key deleted or added, a number negated."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        locations = list(_locations(data))
        if not locations:
            return draw(junk)
        container, key = draw(st.sampled_from(locations))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "negate"]))
        if action == "replace":
            container[key] = draw(junk)
        elif action == "delete":
            del container[key]
        elif action == "add" and isinstance(container, dict):
            container[draw(_text)] = draw(junk)
        elif action == "negate" and isinstance(container[key], (int, float)) and not isinstance(container[key], bool):
            container[key] = -container[key]
    return data


def snapshot(folder: Path) -> set[str]:
    """Every file and folder under ``folder`` (relative paths)."""
    return {os.path.relpath(os.path.join(d, n), folder) for d, dirs, files in os.walk(folder) for n in dirs + files}
