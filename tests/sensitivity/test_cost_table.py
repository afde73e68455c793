"""cost_table: omega = mean trace x ||Q(W) - W||^2 (+ activation term), resources from hardware/."""

from __future__ import annotations

import pytest
import torch

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.errors import ConfigError
from mpsearch.sensitivity import HessianConfig, analyze, cost_table

hardware = pytest.importorskip("mpsearch.hardware")
model_mod = pytest.importorskip("mpsearch.model")
quant = pytest.importorskip("mpsearch.quant")

PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(2, 4, 8), activation_bits=(4, 8), weight_mode="symmetric",
                              weight_granularity=("per_channel", "per_tensor"), activation_mode="asymmetric",
                              scale="float"),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9, "w4a4": 2e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


@pytest.fixture(scope="module")
def setup(tiny):
    model, batches, loss_fn, names = tiny
    layers = model_mod.discover(model, batches[0][0][:1])
    sens = analyze(model, loss_fn, batches, config=HessianConfig(activations=True, max_probes=64, min_probes=16))
    return model, batches, layers, sens


def test_weight_omega_and_resources_by_hand(setup):
    model, batches, layers, sens = setup
    table = cost_table(model, layers, sens, PROFILE, w_bits=[2, 4, 8], a_bits=[8])
    assert table.layers == ("conv", "fc1", "fc2")
    for lay in layers:
        w = dict(model.named_modules())[lay.name].weight
        assert [c.key for c in table.candidates[table.index_of(lay.name)]] == ["w8a8", "w4a8", "w2a8"]
        for c in table.candidates[table.index_of(lay.name)]:
            row = table.row_of(lay.name, c.w_bits, c.a_bits)
            spec = quant.weight_spec(PROFILE.capabilities, c.w_bits, granularity="per_channel")
            d = (quant.fake_quantize_weight(w.detach(), c.w_bits, spec) - w.detach()).double()
            want = sens[lay.name].trace / w.numel() * float((d * d).sum())
            assert table.omega[row] == pytest.approx(want, rel=1e-9)
            cost = hardware.layer_costs(lay, c, PROFILE)
            assert table.resources["size_bytes"][row] == cost.size_bytes
            assert table.resources["bops"][row] == lay.macs * c.w_bits * 8
            assert table.resources["latency_ms"][row] == pytest.approx(cost.latency_ms)
            assert table.sources["latency_ms"][row] == "roofline"
    # fewer bits, larger quantization error: omega grows as bits shrink when the trace is positive
    for name in table.layers:
        if sens[name].trace > 0:
            om = [table.omega[table.row_of(name, b, 8)] for b in (8, 4, 2)]
            assert om[0] < om[1] < om[2]


def test_activation_term_by_hand(setup):
    model, batches, layers, sens = setup
    table = cost_table(model, layers, sens, PROFILE, w_bits=[8], a_bits=[4, 8], calib_batches=batches)
    no_act = cost_table(model, layers, sens, PROFILE, w_bits=[8], a_bits=[4, 8])
    x = torch.cat([b[0] for b in batches])
    with torch.no_grad():
        inputs = {"conv": x, "fc1": torch.tanh(model.conv(x)).flatten(1)}
        inputs["fc2"] = torch.tanh(model.fc1(inputs["fc1"]))
    for name in table.layers:
        a = inputs[name]
        lo, hi = float(a.min()), float(a.max())
        for bits in (4, 8):
            spec = quant.activation_spec(PROFILE.capabilities, bits)
            s, z = quant.qparams(torch.tensor(lo), torch.tensor(hi), spec)
            err = float(((quant.fake_quantize(a, s, z, spec) - a).double() ** 2).sum()) / len(a)
            rec = sens[name]
            extra = rec.activation_trace / rec.activation_numel * err
            row = table.row_of(name, 8, bits)
            assert table.omega[row] == pytest.approx(no_act.omega[row] + extra, rel=1e-9)


def test_ties_from_graph_and_errors(setup):
    model, batches, layers, sens = setup
    assert cost_table(model, layers, sens, PROFILE, w_bits=[8], a_bits=[8]).ties == ()
    tied = cost_table(model, layers, sens, PROFILE, w_bits=[4, 8], a_bits=[8], ties=[["fc1", "fc2"]])
    assert tied.ties == (("fc1", "fc2"),)
    partial = Sensitivity(layers={"conv": sens["conv"]}, method="hessian")
    with pytest.raises(ConfigError, match="sens must cover every layer"):
        cost_table(model, layers, partial, PROFILE)
    fisher_only = Sensitivity(layers={n: LayerSensitivity(fisher=2.0, n_params=sens[n].n_params) for n in sens},
                              method="fisher")
    t = cost_table(model, layers, fisher_only, PROFILE, w_bits=[4], a_bits=[8])
    w = model.fc2.weight.detach()
    spec = quant.weight_spec(PROFILE.capabilities, 4, granularity="per_channel")
    d = (quant.fake_quantize_weight(w, 4, spec) - w).double()
    assert t.omega[t.row_of("fc2", 4, 8)] == pytest.approx(2.0 / w.numel() * float((d * d).sum()), rel=1e-9)
    with pytest.raises(ConfigError, match="must have a trace figure"):
        cost_table(model, layers, fisher_only, PROFILE, curvature="trace")
