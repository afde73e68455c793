"""Candidates as (bits, method) pairs: keys, parsing, plans and cost-table records (issue #16)."""

from __future__ import annotations

import pytest

from mpsearch.core.cost_table import CostTable
from mpsearch.core.formats import WEIGHT_METHODS
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError


def test_core_method_names_match_the_registry():
    from mpsearch.quant.methods import METHODS

    assert set(WEIGHT_METHODS) == set(METHODS)


def test_default_method_keeps_every_key():
    assert Candidate(4, 8).key == "w4a8"
    assert Candidate(4, 8).method == "rtn"
    assert Candidate(4, 8, method="rtn") == Candidate(4, 8)
    assert Candidate.parse("w4a16g128z").key == "w4a16g128z"


@pytest.mark.parametrize("key, fields", [
    ("w4a8+gptq", (4, 8, None, False, "static", "gptq")),
    ("w3a16g128+kmeans", (3, 16, 128, False, "static", "kmeans")),
    ("w2a8t+binary_code", (2, 8, None, False, "dynamic_per_token", "binary_code")),
    ("w4a16g64z+hessian_kmeans", (4, 16, 64, True, "static", "hessian_kmeans")),
])
def test_method_keys_round_trip(key, fields):
    c = Candidate.parse(key)
    assert (c.w_bits, c.a_bits, c.group_size, c.w_zero_point, c.a_mode, c.method) == fields
    assert c.key == key
    assert c.bits_key == key.split("+")[0]
    assert LayerBits.parse(key).key == key
    assert LayerBits.from_candidate(c).method == fields[-1]


def test_unknown_method_lists_valid_names():
    with pytest.raises(ConfigError, match=r"method must be one of rtn, stochastic, .*gptq.*but got 'foo'"):
        Candidate.parse("w4a8+foo")
    with pytest.raises(ConfigError, match=r"Candidate: method must be one of rtn.*but got 'awq'"):
        Candidate(4, 8, method="awq")
    with pytest.raises(ConfigError, match=r"LayerBits: method must be one of"):
        LayerBits(4, 8, method="")


def test_plan_files_leave_rtn_out_and_round_trip_methods(tmp_path):
    plain = BitPlan(layers={"a": LayerBits(4, 8), "b": LayerBits(8, 8)})
    assert plain.to_dict()["layers"] == {"a": {"w_bits": 4, "a_bits": 8}, "b": {"w_bits": 8, "a_bits": 8}}
    mixed = BitPlan(layers={"a": LayerBits(4, 8, method="gptq"), "b": LayerBits(3, 16, 128, method="kmeans")})
    assert mixed.to_dict()["layers"]["a"] == {"w_bits": 4, "a_bits": 8, "method": "gptq"}
    path = tmp_path / "plan.yaml"
    mixed.save(path)
    back = BitPlan.load(path)
    assert back.layers == mixed.layers
    assert "method: gptq" in path.read_text()
    plain.save(tmp_path / "p.yaml")
    assert "method" not in (tmp_path / "p.yaml").read_text()
    bad = {"layers": {"a": {"w_bits": 4, "a_bits": 8, "method": "magic"}}}
    with pytest.raises(ConfigError, match=r"plan: layers.a: .*method must be one of rtn.*'magic'"):
        BitPlan.from_dict(bad)


def test_cost_table_records_carry_the_method():
    recs = [{"layer": "a", "w_bits": 4, "a_bits": 8, "omega": 2.0, "size_bytes": 10.0},
            {"layer": "a", "w_bits": 4, "a_bits": 8, "method": "gptq", "omega": 1.0, "size_bytes": 10.0},
            {"layer": "a", "w_bits": 2, "a_bits": 8, "method": "kmeans", "omega": 3.0, "size_bytes": 7.0}]
    t = CostTable.from_records(recs)
    assert [c.key for c in t.candidates[0]] == ["w4a8", "w4a8+gptq", "w2a8+kmeans"]
    assert t.resource_names == ("size_bytes",)
    assert t.to_records() == recs
    assert t.row_of("a", "w4a8+gptq") == 1
    plan = t.plan_from_rows([1])
    assert plan["a"].key == "w4a8+gptq" and plan.objective == 1.0
    assert list(t.rows_for_plan(plan)) == [1]
