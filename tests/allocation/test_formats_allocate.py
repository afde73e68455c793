"""allocate, pins, ties and the explorers' search space with LLM format keys (several formats share bits)."""

from __future__ import annotations

import itertools

import pytest

from mpsearch.allocation import allocate
from mpsearch.allocation.pins import parse_pin, resolve_pins
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import LayerBits
from mpsearch.errors import ConfigError
from mpsearch.explorers._space import normalize_pins

# per layer: key -> (omega, size_bytes); w4a16g128 and w4a16g128z share (4, 16)
OPTS = {"a": {"w4a16g128": (5.0, 41.25), "w4a16g128z": (3.0, 42.5), "w8a16": (1.0, 81.0), "w16a16": (0.0, 160.0)},
        "b": {"w4a16g128": (4.0, 41.25), "w4a16g128z": (3.5, 42.5), "w8a16": (0.5, 81.0), "w16a16": (0.0, 160.0)},
        "c": {"w4a16g128": (9.0, 41.25), "w4a16g128z": (2.0, 42.5), "w8a16": (1.5, 81.0), "w16a16": (0.0, 160.0)}}
FIELDS = {"w4a16g128": {"w_bits": 4, "a_bits": 16, "group_size": 128},
          "w4a16g128z": {"w_bits": 4, "a_bits": 16, "group_size": 128, "w_zero_point": True},
          "w8a16": {"w_bits": 8, "a_bits": 16}, "w16a16": {"w_bits": 16, "a_bits": 16}}


def _table(ties=()) -> CostTable:
    return CostTable.from_records([{"layer": n, **FIELDS[k], "omega": o, "size_bytes": s}
                                   for n, opts in OPTS.items() for k, (o, s) in opts.items()], ties=ties)


def _brute(limit: float, fixed: dict[str, str] | None = None, ties=()) -> tuple[float, dict[str, str]]:
    best = (float("inf"), {})
    for combo in itertools.product(*(OPTS[n] for n in OPTS)):
        plan = dict(zip(OPTS, combo))
        if any(plan[n] != k for n, k in (fixed or {}).items()) or any(len({plan[n] for n in g}) > 1 for g in ties):
            continue
        size = sum(OPTS[n][k][1] for n, k in plan.items())
        omega = sum(OPTS[n][k][0] for n, k in plan.items())
        if size <= limit and omega < best[0]:
            best = (omega, plan)
    return best


@pytest.mark.parametrize("limit", [130.0, 170.0, 210.0, 250.0, 330.0])
def test_allocate_picks_formats_like_brute_force(limit: float) -> None:
    plan = allocate(_table(), budgets={"size_bytes": limit}, gap_rel=0)
    omega, keys = _brute(limit)
    assert {n: b.key for n, b in plan.layers.items()} == keys
    assert plan.objective == pytest.approx(omega, abs=1e-12)
    assert plan.totals["size_bytes"] == sum(OPTS[n][k][1] for n, k in keys.items())


def test_pins_by_format_key_and_ties() -> None:
    t = _table()
    plan = allocate(t, budgets={"size_bytes": 250.0}, pins={"c": "w4a16g128"}, gap_rel=0)
    assert plan["c"].key == "w4a16g128" and plan.meta["pins"] == {"c": "w4a16g128"}
    assert {n: b.key for n, b in plan.layers.items()} == _brute(250.0, {"c": "w4a16g128"})[1]
    tied = _table(ties=[("a", "c")])
    plan = allocate(tied, budgets={"size_bytes": 170.0}, gap_rel=0)
    assert plan["a"].key == plan["c"].key
    assert {n: b.key for n, b in plan.layers.items()} == _brute(170.0, ties=[("a", "c")])[1]


def test_pin_forms() -> None:
    assert parse_pin("W4A16G128Z") == "w4a16g128z"
    assert parse_pin(LayerBits.parse("w8a8t")) == "w8a8t"
    assert parse_pin({"w_bits": 4, "a_bits": 16, "group_size": 128}) == "w4a16g128"
    assert parse_pin((8, 8)) == "w8a8" and parse_pin({"w_bits": 8, "a_bits": 8}) == "w8a8"
    t = _table()
    # a pair finds the layer's only candidate with those bits; two formats share (4, 16): ambiguous
    assert resolve_pins(t, {"a": (8, 16)}) == {0: "w8a16"}
    with pytest.raises(ConfigError, match=r"pins: 'a' must be pinned to one of its candidates \['w4a16g128', "
                                          r"'w4a16g128z', 'w8a16', 'w16a16'\], but got w4a16"):
        resolve_pins(t, {"a": (4, 16)})
    with pytest.raises(ConfigError, match=r"but got w4a16g64"):
        resolve_pins(t, {"a": "w4a16g64"})
    assert normalize_pins(t, {"b": "w4a16g128z", "c": "w16a16"}) == {1: 5, 2: 11}


def test_uniform_plan_over_formats() -> None:
    from mpsearch.allocation.uniform import uniform_plan

    plan, others = uniform_plan(_table(), 8, 16)
    assert {b.key for b in plan.layers.values()} == {"w8a16"} and others == []
    assert plan.totals["size_bytes"] == 3 * 81.0 and plan.objective == 3.0
    plan, _ = uniform_plan(_table(), 4, 16)  # the first format with those bits
    assert {b.key for b in plan.layers.values()} == {"w4a16g128"}
