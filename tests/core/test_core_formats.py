"""LLM weight formats as candidates: keys, rules, plan files and cost-table records."""

from __future__ import annotations

import pytest

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError

#: every format the issue names, with its fields
FORMATS = {
    "w4a8": Candidate(4, 8),
    "w8a16": Candidate(8, 16),
    "w16a16": Candidate(16, 16),
    "w8a8t": Candidate(8, 8, a_mode="dynamic_per_token"),
    **{f"w{b}a16g{g}": Candidate(b, 16, "per_group", g) for b in (2, 3, 4, 8) for g in (32, 64, 128)},
    **{f"w{b}a16g{g}z": Candidate(b, 16, "per_group", g, True) for b in (2, 3, 4, 8) for g in (32, 64, 128)},
    "w4a8g128t": Candidate(4, 8, "per_group", 128, False, "dynamic_per_token"),
    "w8a16z": Candidate(8, 16, w_zero_point=True),
}


@pytest.mark.parametrize("key", sorted(FORMATS))
def test_key_round_trip(key: str) -> None:
    cand = FORMATS[key]
    assert cand.key == key
    assert Candidate.parse(key) == cand
    assert Candidate.parse(key.upper()) == cand  # keys are read case-insensitively
    bits = LayerBits.from_candidate(cand)
    assert bits.key == key and LayerBits.parse(key) == bits


def test_todays_candidates_keep_their_keys() -> None:
    assert Candidate(4, 8).key == "w4a8"
    assert Candidate(8, 8, "per_tensor").key == "w8a8"
    assert Candidate(2, 8, "per_group").key == "w2a8"  # per_group without a size: the profile's group_size
    assert LayerBits(4, 8).key == "w4a8"
    assert not Candidate(4, 8).is_format and Candidate(8, 16).is_format and Candidate(8, 16).weight_only


@pytest.mark.parametrize("kwargs, message", [
    (dict(w_bits=4, a_bits=16, group_size=128), "Candidate: w_granularity must be per_group when group_size is "
                                                "given (128), but got 'per_channel'"),
    (dict(w_bits=4, a_bits=16, w_granularity="per_group", group_size=0), "Candidate: group_size must be an "
                                                                         "integer >= 1"),
    (dict(w_bits=8, a_bits=16, a_mode="dynamic_per_token"), "Candidate: a_mode must be static when a_bits is 16"),
    (dict(w_bits=8, a_bits=8, a_mode="per_token"), "Candidate: a_mode must be one of static, dynamic_per_token, "
                                                   "but got 'per_token'"),
    (dict(w_bits=16, a_bits=16, w_zero_point=True), "Candidate: group_size and w_zero_point must be unset when "
                                                    "w_bits is 16"),
    (dict(w_bits=4, a_bits=16, w_zero_point=1), "Candidate: w_zero_point must be a bool, but got 1"),
])
def test_candidate_rules(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Candidate(**kwargs)


def test_bad_key_names_the_rule() -> None:
    with pytest.raises(ConfigError, match=r'pins: candidate key must be of the form "w<bits>a<bits>\[g<group_size>\]'):
        Candidate.parse("w4g128", "pins")


def _plan() -> BitPlan:
    return BitPlan(layers={"a": LayerBits(8, 8), "b": LayerBits.parse("w4a16g128z"), "c": LayerBits.parse("w8a8t"),
                           "d": LayerBits(16, 16)}, totals={"size_bytes": 10.0})


def test_plan_yaml_round_trip_with_formats(tmp_path) -> None:
    plan = _plan()
    d = plan.to_dict()["layers"]
    assert d == {"a": {"w_bits": 8, "a_bits": 8},  # defaults left out: a plain pair reads as before
                 "b": {"w_bits": 4, "a_bits": 16, "group_size": 128, "w_zero_point": True},
                 "c": {"w_bits": 8, "a_bits": 8, "a_mode": "dynamic_per_token"},
                 "d": {"w_bits": 16, "a_bits": 16}}
    for name in ("plan.yaml", "plan.json"):
        plan.save(tmp_path / name)
        back = BitPlan.load(tmp_path / name)
        assert {n: b.key for n, b in back.layers.items()} == {"a": "w8a8", "b": "w4a16g128z", "c": "w8a8t", "d": "w16a16"}


def test_plain_plan_file_is_unchanged(tmp_path) -> None:
    plan = BitPlan(layers={"conv": LayerBits(8, 8), "fc": LayerBits(4, 8)})
    plan.save(tmp_path / "p.yaml")
    text = (tmp_path / "p.yaml").read_text()
    assert "conv:\n    w_bits: 8\n    a_bits: 8\n  fc:\n    w_bits: 4\n    a_bits: 8\n" in text
    assert "group_size" not in text and "a_mode" not in text and "zero_point" not in text


def test_plan_file_with_a_bad_format_names_the_layer(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text("layers:\n  fc: {w_bits: 4, a_bits: 16, a_mode: dynamic_per_token}\n")
    with pytest.raises(ConfigError, match=r"p.yaml: layers.fc: LayerBits: a_mode must be static when a_bits is 16"):
        BitPlan.load(tmp_path / "p.yaml")


def test_cost_table_rows_by_key() -> None:
    recs = [{"layer": "fc", "w_bits": 4, "a_bits": 16, "group_size": 128, "omega": 3.0, "size_bytes": 4.125},
            {"layer": "fc", "w_bits": 4, "a_bits": 16, "group_size": 128, "w_zero_point": True, "omega": 2.0,
             "size_bytes": 4.25},
            {"layer": "fc", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0},
            {"layer": "fc", "w_bits": 8, "a_bits": 8, "a_mode": "dynamic_per_token", "omega": 0.5, "size_bytes": 8.5}]
    t = CostTable.from_records(recs)
    assert [c.key for c in t.candidates[0]] == ["w4a16g128", "w4a16g128z", "w8a8", "w8a8t"]
    assert [t.row_of("fc", k) for k in ("w4a16g128", "w4a16g128z", "w8a8", "w8a8t")] == [0, 1, 2, 3]
    assert t.row_of("fc", 8, 8) == 2  # a pair means the plain candidate
    assert t.row_of("fc", 4, 16) == 0  # or the first with those bits
    plan = t.plan_from_rows([1])
    assert plan["fc"].key == "w4a16g128z" and plan.totals["size_bytes"] == 4.25 and plan.objective == 2.0
    assert list(t.rows_for_plan(plan)) == [1]
    assert CostTable.from_records(t.to_records()).to_records() == t.to_records()
    assert t.to_records()[2] == {"layer": "fc", "w_bits": 8, "a_bits": 8, "omega": 1.0, "size_bytes": 8.0}
    with pytest.raises(ConfigError, match=r"candidate must be one of \['w4a16g128', 'w4a16g128z', 'w8a8', 'w8a8t'\], "
                                          r"but got w4a16g64"):
        t.row_of("fc", "w4a16g64")
