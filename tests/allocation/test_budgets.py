"""Budget syntax: absolute numbers with suffixes, percentages, pairs; errors name the rule."""

from __future__ import annotations

import pytest

from mpsearch.allocation import Budget, allocate, parse_budget
from mpsearch.allocation.budgets import parse_budgets
from mpsearch.errors import ConfigError, UnknownNameError

from alloc_helpers import random_table


@pytest.mark.parametrize("spec, expected", [
    ("size_bytes=120k", Budget("size_bytes", 120_000.0)),
    ("size_bytes=120kB", Budget("size_bytes", 120_000.0)),
    ("size_bytes=1.5M", Budget("size_bytes", 1_500_000.0)),
    ("bops=2.5G", Budget("bops", 2.5e9)),
    ("bops=3T", Budget("bops", 3e12)),
    ("size_bytes=2KiB", Budget("size_bytes", 2048.0)),
    ("size_bytes=1MiB", Budget("size_bytes", 1048576.0)),
    ("size_bytes=1Gi", Budget("size_bytes", 1024.0**3)),
    ("latency_ms=2.5", Budget("latency_ms", 2.5)),
    ("latency_ms = 2.5e-1", Budget("latency_ms", 0.25)),
    ("size_bytes=50%", Budget("size_bytes", 0.5, relative=True)),
    ("size_bytes=12.5%", Budget("size_bytes", 0.125, relative=True)),
    (("latency_ms", 2.5), Budget("latency_ms", 2.5)),
    (("latency_ms", "75%"), Budget("latency_ms", 0.75, relative=True)),
    (Budget("bops", 7.0), Budget("bops", 7.0)),
])
def test_parse_budget_forms(spec, expected):
    assert parse_budget(spec) == expected


@pytest.mark.parametrize("spec, fragment", [
    ("size_bytes", 'of the form "resource=value"'),
    ("size_bytes=12q", "must be a number"),
    ("size_bytes=150%", "a percentage in 0%..100%"),
    ("size_bytes=", "must be a number"),
    (("bops", True), "must be a number"),
    (42, "a \"resource=value\" string"),
])
def test_parse_budget_errors(spec, fragment):
    with pytest.raises(ConfigError, match="must be") as info:
        parse_budget(spec, where="--budget")
    assert fragment in str(info.value) and str(info.value).startswith("--budget: ")


def test_parse_budgets_mapping_relative_and_duplicates():
    got = parse_budgets({"size_bytes": "120k", "latency_ms": 2.5}, relative={"bops": 0.25})
    assert got == (Budget("size_bytes", 120e3), Budget("latency_ms", 2.5), Budget("bops", 0.25, True))
    with pytest.raises(ConfigError, match="budgeted once"):
        parse_budgets({"size_bytes": 1.0}, relative={"size_bytes": 0.5})
    with pytest.raises(ConfigError, match=r"relative.bops must be a fraction in \[0, 1\]"):
        parse_budgets(None, relative={"bops": 1.5})
    assert str(Budget("size_bytes", 0.5, True)) == "size_bytes=50%"


def test_unknown_resource_lists_table_resources():
    table = random_table(0, 3, integer=True)
    with pytest.raises(UnknownNameError) as info:
        allocate(table, budgets={"size_byte": 10})
    msg = str(info.value)
    assert "size_byte" in msg and "bops, latency_ms, size_bytes" in msg and "did you mean 'size_bytes'" in msg


def test_unknown_solver_and_bad_pin():
    table = random_table(0, 3, n_cands=2, integer=True)
    with pytest.raises(UnknownNameError, match="Valid: cbc, highs"):
        allocate(table, solver="gurobi")
    layer = table.layers[0]
    keys = [c.key for c in table.candidates[0]]
    missing = next(k for k in ("w2a8", "w4a4", "w4a8", "w8a8") if k not in keys)
    with pytest.raises(ConfigError) as info:
        allocate(table, pins={layer: missing})
    assert repr(layer) in str(info.value) and missing in str(info.value) and str(keys) in str(info.value)
    with pytest.raises(UnknownNameError, match="unknown layer 'nope'"):
        allocate(table, pins={"nope": "w8a8"})
