"""write_profile: round trip through load_profile (YAML and JSON), refusal of invalid profiles."""

from __future__ import annotations

import dataclasses

import pytest

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.errors import ConfigError
from mpsearch.hardware import load_profile, parse_profile, profile_to_dict, write_profile


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_of_a_full_profile(base, tmp_path, suffix):
    base["capabilities"]["group_size"] = 64
    base["source"]["references"] = ["a datasheet"]
    base["source"]["machine"] = "2-core x86-64"
    base["cost"]["memory"] = {"weight_bytes": 1_000_000, "activation_bytes": 250_000}
    base["cost"]["energy"] = {"active_mw": 5.0, "pj_per_op": {"w8a8": 0.5}, "pj_per_byte": 2.0}
    p = parse_profile(base, "test")
    path = write_profile(p, tmp_path / f"out{suffix}")
    q = load_profile(path)
    assert q.path == str(path)
    assert dataclasses.replace(q, path=None) == p
    assert profile_to_dict(q) == profile_to_dict(p)
    assert q.cost.lut[0].latency_ms["w8a8"].count == 100
    assert q.cost.energy.pj_per_op == {"w8a8": 0.5} and q.capabilities.group_size == 64


def test_floats_survive_exactly(base, tmp_path):
    base["cost"]["roofline"]["ops_per_s"]["w8a8"] = 1.234567890123e12
    base["cost"]["lut"][0]["latency_ms"]["w8a8"]["mean"] = 0.1 + 0.2
    q = load_profile(write_profile(parse_profile(base, "t"), tmp_path / "x.yaml"))
    assert q.cost.roofline.ops_per_s["w8a8"] == 1.234567890123e12
    assert q.cost.lut[0].latency_ms["w8a8"].mean == 0.1 + 0.2


def test_writing_an_invalid_profile_is_refused_and_writes_nothing(tmp_path):
    bad = HardwareProfile(name="bad", description="", source={"kind": "analytic", "notes": ""},
                          capabilities=Capabilities(weight_bits=(8, 9)),
                          cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1.0}, bytes_per_s=1.0)))
    with pytest.raises(ConfigError, match=r"write_profile\('bad'\): capabilities.weight_bits\[1\] must be an "
                                          r"integer bit-width"):
        write_profile(bad, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()
    no_roofline = dataclasses.replace(bad, capabilities=Capabilities(), cost=CostModel())
    with pytest.raises(ConfigError, match="key 'cost.roofline' is required but missing"):
        write_profile(no_roofline, tmp_path / "bad.yaml")
