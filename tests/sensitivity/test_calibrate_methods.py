"""calibrate_omega measures (bits, method) rows with the method's own weights (issue #16)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.model import discover
from mpsearch.quant import fake_quantize_weight, weight_spec
from mpsearch.quant.quantizer import fake_quantize_minmax
from mpsearch.quant.spec import activation_spec
from mpsearch.quant.methods import make_method
from mpsearch.sensitivity import analyze, cost_table
from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega

PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(2, 4, 8), activation_bits=(8,), weight_mode="symmetric",
                              weight_granularity=("per_channel",), activation_mode="asymmetric", scale="float",
                              methods=("rtn", "gptq")),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    x = torch.randn(32, 6) @ torch.randn(6, 6)  # correlated inputs: GPTQ differs from rtn
    with torch.no_grad():
        y = model(x) + 0.01 * torch.randn(32, 3)  # near the float optimum: quantizing raises the loss
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    loss_fn = nn.MSELoss()
    layers = discover(model, x[:1])
    sens = analyze(model, loss_fn, batches)
    table = cost_table(model, layers, sens, PROFILE, w_bits=[2, 4], a_bits=[8], calib_batches=batches,
                       methods=["rtn", "gptq"])
    return model, batches, loss_fn, table, x, y


def _loss_increase(model, weight, x, y):
    """Mean MSE over the two batches with the weight replaced and each batch's input quantized (w*a8, static
    min-max of the batch, as calibrate_omega's hook does), minus the float model's."""
    lin = model[0]
    a_spec = activation_spec(PROFILE.capabilities, 8)
    base = new = 0.0
    with torch.no_grad():
        for xb, yb in ((x[:16], y[:16]), (x[16:], y[16:])):
            base += float(((xb @ lin.weight.T + lin.bias - yb) ** 2).mean()) / 2
            xq = fake_quantize_minmax(xb, a_spec)
            new += float(((xq @ weight.T + lin.bias - yb) ** 2).mean()) / 2
    return max(new - base, 0.0)


def test_method_row_is_measured_with_the_method_weights():
    model, batches, loss_fn, table, x, y = _setup()
    before = model[0].weight.detach().clone()
    cal = calibrate_omega(model, table, loss_fn, batches, PROFILE,
                          CalibrationConfig(factor=1.0, min_diff=0.0, max_w_bits=4, max_evaluations=16))
    assert torch.equal(model[0].weight, before)  # the model is left as it was
    lin = model[0]
    for bits in (2, 4):
        spec = weight_spec(PROFILE.capabilities, bits, granularity="per_channel")
        gptq = make_method("gptq").quantize_weight(lin.weight.detach(), spec, calib_inputs=x, layer=lin, name="0")
        want_g = _loss_increase(model, gptq.weight_dq.reshape(lin.weight.shape), x, y)
        want_r = _loss_increase(model, fake_quantize_weight(lin.weight.detach(), bits, spec), x, y)
        rg = table.row_of("0", f"w{bits}a8+gptq")
        rr = table.row_of("0", f"w{bits}a8")
        assert cal.sources["omega"][rg] == "measured" and cal.sources["omega"][rr] == "measured"
        assert cal.omega[rg] == pytest.approx(want_g, rel=1e-5, abs=1e-9)
        assert cal.omega[rr] == pytest.approx(want_r, rel=1e-5, abs=1e-9)
        assert want_g != pytest.approx(want_r, rel=1e-3)  # the method's weights, not rtn's, were measured
