"""Every documented sensitivity method works through ``cost_table`` (#18 item 4), and measured
omega sources round-trip through a cost table's records."""

from __future__ import annotations

import json

import pytest

from mpsearch.core.cost_table import CostTable
from mpsearch.errors import ConfigError
from mpsearch.model import discover
from mpsearch.quant import fake_quantize_weight, weight_spec
from mpsearch.sensitivity import EmpiricalConfig, analyze, cost_table

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline

PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(2, 4, 8), activation_bits=(8,), weight_mode="symmetric",
                              weight_granularity=("per_channel",), activation_mode="asymmetric", scale="float"),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


def _weight_error(model, name, bits):
    w = dict(model.named_modules())[name].weight.detach()
    spec = weight_spec(PROFILE.capabilities, bits, granularity="per_channel")
    d = (fake_quantize_weight(w, bits, spec) - w).double()
    return float((d * d).sum())


@pytest.mark.parametrize("method, figure", [("hessian", "trace"), ("fisher", "fisher"), ("eigen", "eigenvalue")])
def test_second_order_methods_scale_the_weight_error(tiny, method, figure):
    model, batches, loss_fn, _ = tiny
    layers = discover(model, batches[0][0][:1])
    sens = analyze(model, loss_fn, batches, method=method)
    table = cost_table(model, layers, sens, PROFILE, w_bits=[2, 4, 8], a_bits=[8])
    for name in table.layers:
        rec = sens[name]
        curv = getattr(rec, figure) / (1 if figure == "eigenvalue" else rec.n_params)
        for bits in (2, 4, 8):
            row = table.row_of(name, bits, 8)
            assert table.omega[row] == pytest.approx(curv * _weight_error(model, name, bits), rel=1e-9)


def test_empirical_method_gives_its_measured_figures(tiny):
    model, batches, loss_fn, _ = tiny
    layers = discover(model, batches[0][0][:1])
    sens = analyze(model, loss_fn, batches, method="empirical")  # w_bits (2, 4, 8), weight only
    table = cost_table(model, layers, sens, PROFILE, w_bits=[2, 4, 8], a_bits=[8])
    for name in table.layers:
        for bits in (2, 4, 8):
            want = max(sens[name].empirical[f"w{bits}"], 0.0)
            assert table.omega[table.row_of(name, bits, 8)] == want
    assert max(table.omega) > 0


def test_empirical_method_names_a_missing_width(tiny):
    model, batches, loss_fn, _ = tiny
    layers = discover(model, batches[0][0][:1])
    sens = analyze(model, loss_fn, batches, method="empirical", config=EmpiricalConfig(w_bits=(8,)))
    with pytest.raises(ConfigError, match=r"must measure w_bits 4 .*sensitivity.settings.w_bits"):
        cost_table(model, layers, sens, PROFILE, w_bits=[4, 8], a_bits=[8])


def test_omega_sources_round_trip_through_records():
    recs = [{"layer": "a", "w_bits": 8, "a_bits": 8, "omega": 0.0, "size_bytes": 8.0},
            {"layer": "a", "w_bits": 2, "a_bits": 8, "omega": 3.5, "size_bytes": 2.0, "omega_source": "measured"},
            {"layer": "b", "w_bits": 8, "a_bits": 8, "omega": 0.1, "size_bytes": 8.0, "omega_source": "checked"}]
    table = CostTable.from_records(recs)
    assert list(table.sources["omega"]) == ["predicted", "measured", "checked"]
    back = CostTable.from_records(json.loads(json.dumps(table.to_records())))
    assert list(back.sources["omega"]) == ["predicted", "measured", "checked"]
    assert list(back.omega) == [0.0, 3.5, 0.1]
    plain = CostTable.from_records([{k: v for k, v in r.items() if k != "omega_source"} for r in recs])
    assert "omega" not in plain.sources and "omega_source" not in plain.to_records()[0]  # as before
    with pytest.raises(ConfigError, match=r"\[0\]\.omega_source must be one of predicted, checked, measured"):
        CostTable.from_records([{**recs[0], "omega_source": "guessed"}])
