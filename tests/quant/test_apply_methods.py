"""quantize() applies each layer's weight method; to_integer runs uniform / integer-codebook ones, refuses float codebooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.errors import ConfigError, UnsupportedModelError
from mpsearch.execution import to_integer
from mpsearch.quant import QuantizeConfig, quantize
from mpsearch.quant.methods import capture_inputs, make_method


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = Net().eval()
    batches = [(torch.randn(32, 12), torch.zeros(32)) for _ in range(2)]
    return model, batches


def _plan(m1, m2, b=4):
    return BitPlan(layers={"fc1": LayerBits(b, 8, method=m1), "fc2": LayerBits(8, 8, method=m2)})


def test_rtn_plan_is_the_exact_existing_path(setup):
    model, batches = setup
    a = quantize(model, BitPlan.uniform(["fc1", "fc2"], 4, 8), batches)
    b = quantize(model, _plan("rtn", "rtn", 4).layers | {"fc2": LayerBits(4, 8)}, batches)
    x = batches[0][0]
    assert torch.equal(a(x), b(x))
    assert not hasattr(a.fc1, "weight_method")


@pytest.mark.parametrize("method", ["gptq", "bias_correction", "adaround"])
def test_uniform_method_installs_its_weight_bias_and_codes(setup, method):
    model, batches = setup
    q = quantize(model, _plan(method, "rtn"), batches)
    x_in = capture_inputs(model, ["fc1"], [b[0] for b in batches])["fc1"]
    spec = q.fc1.weight_quant.spec
    res = make_method(method).quantize_weight(model.fc1.weight, spec, calib_inputs=x_in, layer=model.fc1, name="fc1")
    if method != "adaround":  # AdaRound's optimisation is seeded; GPTQ / bias correction are deterministic
        assert torch.equal(q.fc1.quantized_weight(), res.weight_dq)
        if res.bias is not None:
            assert torch.equal(q.fc1.bias, res.bias)
    assert torch.allclose(q.fc1.quantized_weight(), q.fc1.weight)  # on the method's own grid
    assert q.fc1.weight_method == method and q.fc1.w_bits == 4
    codes = torch.round(q.fc1.weight / q.fc1.weight_quant.scale.reshape(-1, 1))
    assert codes.abs().max() <= 8


def test_gptq_lowers_the_model_output_error_against_rtn(setup):
    model, batches = setup
    x = torch.cat([b[0] for b in batches])
    ref = model(x).detach()
    e_rtn = float(((quantize(model, _plan("rtn", "rtn", 2), batches)(x) - ref) ** 2).mean())
    e_gptq = float(((quantize(model, _plan("gptq", "rtn", 2), batches)(x) - ref) ** 2).mean())
    assert e_gptq < e_rtn


def test_float_codebook_simulates_and_integer_path_refuses(setup):
    model, batches = setup
    q = quantize(model, _plan("kmeans", "rtn", 3), batches)
    res = make_method("kmeans").quantize_weight(model.fc1.weight, q.fc1.weight_quant.spec, name="fc1")
    assert torch.equal(q.fc1.quantized_weight(), res.weight_dq)
    assert q.fc1.weight_codebook == "float"
    with pytest.raises(UnsupportedModelError, match=r"layer 'fc1': method 'kmeans' stores a float codebook"):
        to_integer(q, batches[0][0])


def test_integer_codebook_runs_through_a_lookup_in_the_integer_path(setup):
    model, batches = setup
    q = quantize(model, _plan("log2", "rtn", 3), batches, config=QuantizeConfig())
    spec3 = QuantizeConfig().weight_spec(None, 3)  # the spec quantize built the layer with
    res = make_method("log2").quantize_weight(model.fc1.weight, spec3, name="fc1")
    assert res.integer_codebook
    assert torch.allclose(q.fc1.quantized_weight(), res.weight_dq, atol=0, rtol=1e-6)
    assert q.fc1.weight_codebook == "integer"
    im = to_integer(q, batches[0][0])
    x = batches[0][0]
    assert torch.allclose(im(x).float(), q(x), atol=0.05 * float(q(x).abs().max()))


def test_data_method_without_batches_names_layer_and_method(setup):
    model, _ = setup
    with pytest.raises(ConfigError, match=r"layer 'fc1': method 'gptq' needs calibration data"):
        quantize(model, _plan("gptq", "rtn"), [], config=QuantizeConfig(activation_range="dynamic"))


def test_sequential_gptq_fits_each_layer_on_the_quantized_prefix(setup):
    """method_inputs="quantized": fc2's GPTQ sees relu(fc1 with fc1's GPTQ weights), not the float fc1's output."""
    model, batches = setup
    plan = BitPlan(layers={"fc1": LayerBits(2, 8, method="gptq"), "fc2": LayerBits(2, 8, method="gptq")})
    seq = quantize(model, plan, batches, config=QuantizeConfig(activation_range="dynamic", method_inputs="quantized"))
    flt = quantize(model, plan, batches, config=QuantizeConfig(activation_range="dynamic"))
    x = torch.cat([b[0] for b in batches])
    gptq = make_method("gptq")
    spec = flt.fc2.weight_quant.spec
    # by hand: fc1 is the first layer, so both modes fit it on the float input x
    assert torch.equal(seq.fc1.weight, flt.fc1.weight)
    with torch.no_grad():
        h_q = torch.relu(nn.functional.linear(x, seq.fc1.weight, model.fc1.bias))  # the quantized prefix's output
        h_f = torch.relu(model.fc1(x))
    want_seq = gptq.quantize_weight(model.fc2.weight, spec, calib_inputs=h_q, layer=model.fc2, name="fc2").weight_dq
    want_flt = gptq.quantize_weight(model.fc2.weight, spec, calib_inputs=h_f, layer=model.fc2, name="fc2").weight_dq
    assert torch.allclose(seq.fc2.weight, want_seq, atol=1e-6) and torch.allclose(flt.fc2.weight, want_flt, atol=1e-6)
    assert not torch.allclose(want_seq, want_flt)  # the two modes differ here
    # and the sequential fc2 fits its real (quantized-prefix) input better at the fc2 output
    err = {k: float(((nn.functional.linear(h_q, w, model.fc2.bias) - model.fc2(h_q)) ** 2).mean())
           for k, w in (("seq", seq.fc2.weight), ("flt", flt.fc2.weight))}
    assert err["seq"] < err["flt"]


def test_method_inputs_must_be_float_or_quantized():
    with pytest.raises(ConfigError, match=r"QuantizeConfig: method_inputs must be one of float, quantized, but got "
                                          r"'sequential'"):
        QuantizeConfig(method_inputs="sequential")


def test_a_weight_only_format_with_a_method_runs_on_a_profile_that_lists_both():
    """w4a16g32+kmeans: the format is checked without the method (the profile lists w4a16g32), k-means installed."""
    from dataclasses import replace

    from mpsearch import load_profile

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(16, 32), nn.Linear(32, 16)).eval()
    base = load_profile("x86-2core-int")
    profile = replace(base, capabilities=replace(base.capabilities, methods=("rtn", "kmeans")))
    plan = BitPlan(layers={"0": LayerBits(4, 16, 32, method="kmeans"), "1": LayerBits(4, 16, 32, method="kmeans")})
    q = quantize(model, plan, [(torch.randint(0, 16, (4, 8)), None)], profile=profile)
    emb = q.get_submodule("0")
    want = make_method("kmeans").quantize_weight(model[0].weight, emb.weight_quant.spec, name="0").weight_dq
    assert emb.weight_method == "kmeans" and torch.equal(emb.weight, want)
    assert len(torch.unique(emb.weight[0])) <= 16  # one 2^4-entry codebook per group of 32 (one row here)
