"""BitPlan: round-trips, validation, and errors that name the thing and the rule."""

import json

import pytest

from mpsearch import BitPlan, ConfigError, LayerBits, UnknownNameError


def _plan() -> BitPlan:
    return BitPlan(
        layers={"stem.conv": LayerBits(8, 8), "blocks.0.conv1": LayerBits(4, 8), "fc": LayerBits(2, 4)},
        totals={"size_bytes": 1234.5, "bops": 987654321.0},
        objective=0.125,
        solver="cbc",
        status="optimal",
        optimal=True,
        gap=0.0,
        solve_time_s=0.0123,
        meta={"budgets": {"size_bytes": 1500}},
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_plan_round_trips_exactly(tmp_path, suffix):
    plan = _plan()
    path = tmp_path / f"plan{suffix}"
    plan.save(path)
    back = BitPlan.load(path)
    assert back == plan
    assert list(back.layers) == ["stem.conv", "blocks.0.conv1", "fc"]  # model order kept
    assert back["blocks.0.conv1"] == LayerBits(4, 8)


def test_json_file_is_keyed_by_module_name(tmp_path):
    path = tmp_path / "p.json"
    _plan().save(path)
    data = json.loads(path.read_text())
    assert data["layers"]["fc"] == {"w_bits": 2, "a_bits": 4}
    assert data["totals"]["size_bytes"] == 1234.5


def test_uniform_plans():
    w8a8 = BitPlan.uniform(["a", "b"], 8, 8)
    w4a4 = BitPlan.uniform(["a", "b"], 4, 4)
    assert {b.key for b in w8a8.layers.values()} == {"w8a8"}
    assert {b.key for b in w4a4.layers.values()} == {"w4a4"}


@pytest.mark.parametrize("bits", [1, 9, 17, 0, -4, 4.0, "8", True])
def test_bits_outside_range_are_refused(bits):
    with pytest.raises(ConfigError, match=r"w_bits must be an integer in 2..8 or 16, but got"):
        LayerBits(bits, 8)


def test_bad_file_names_file_key_and_value(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nlayers:\n  fc: {w_bits: 3, a_bits: 12}\n")
    with pytest.raises(ConfigError) as exc:
        BitPlan.load(path)
    msg = str(exc.value)
    assert str(path) in msg and "layers.fc.a_bits" in msg and "12" in msg

    path.write_text("version: 1\nlayer:\n  fc: {w_bits: 8, a_bits: 8}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'layer'.*valid keys.*layers"):
        BitPlan.load(path)


def test_missing_file_and_unknown_layer():
    with pytest.raises(ConfigError, match="not found"):
        BitPlan.load("/nonexistent/plan.yaml")
    with pytest.raises(UnknownNameError, match=r"unknown layer 'fc2'; did you mean 'fc'"):
        _plan()["fc2"]
    with pytest.raises(UnknownNameError, match="Valid: .*stem.conv"):
        _plan().check_layers(["stem.conv", "fc"])
