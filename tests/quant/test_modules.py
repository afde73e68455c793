"""ActQuant modes, WeightQuant and the quantized layers."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.errors import ConfigError
from mpsearch.quant import ActQuant, QuantConv1d, QuantLinear, QuantSpec, fake_quantize, qparams


def test_act_quant_observe_freeze_quantize():
    spec = QuantSpec(4, symmetric=False, signed=False)
    aq = ActQuant(spec, "minmax")
    x1, x2 = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.875])
    assert torch.equal(aq(x1), x1) and torch.equal(aq(x2), x2)  # observe: float passes through
    with pytest.raises(ConfigError, match="needs a calibrated range"):
        aq.set_mode("quantize")
    aq.freeze()
    assert (aq.scale.item(), aq.zero_point.item(), aq.mode, aq.bits) == (0.125, 0, "quantize", 4)
    assert aq(torch.tensor([0.3, 5.0])).tolist() == [0.25, 1.875]
    assert set(aq.state_dict()) == {"scale", "zero_point"}
    aq.set_mode("off")
    assert aq(torch.tensor([0.3])).item() == pytest.approx(0.3)
    with pytest.raises(ConfigError, match="mode must be one of observe, quantize, dynamic, off"):
        aq.set_mode("train")


def test_act_quant_dynamic_uses_each_batch_range():
    spec = QuantSpec(4, symmetric=False, signed=False)
    aq = ActQuant(spec, mode="dynamic")
    assert aq(torch.tensor([0.0, 0.3, 1.875])).tolist() == [0.0, 0.25, 1.875]  # S = 0.125
    assert aq(torch.tensor([0.0, 0.3, 3.75])).tolist() == [0.0, 0.25, 3.75]  # S = 0.25: 1.2 -> 1


def test_deepcopy_of_sampled_calibrator_module():
    aq = ActQuant(QuantSpec(8, False, True), "mse")
    aq(torch.randn(100))
    clone = copy.deepcopy(aq)
    aq.freeze()
    clone.freeze()
    assert torch.equal(aq.scale, clone.scale)


def test_quant_layers_use_the_fake_quantized_weight_and_ste():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    spec = QuantSpec(4, symmetric=True, signed=True, granularity="per_channel")
    q = QuantLinear.from_float(lin, 4, 8, spec)
    assert (q.w_bits, q.a_bits, q.input_quant_name) == (4, 8, "")
    assert torch.equal(q.weight, lin.weight) and torch.equal(q.bias, lin.bias)
    s, z = qparams(lin.weight.amin(1), lin.weight.amax(1), spec)
    assert torch.equal(q.weight_quant.scale, s)
    x = torch.randn(2, 5)
    w_q = fake_quantize(lin.weight, s, z, spec)
    assert torch.equal(q(x), F.linear(x, w_q, lin.bias))
    q(x).sum().backward()  # STE: no weight is clipped under min-max, so dL/dW = sum_n x
    assert torch.allclose(q.weight.grad, x.sum(0).expand(3, 5))

    conv = nn.Conv1d(2, 4, 3, padding=1, groups=2)
    qc = QuantConv1d.from_float(conv, 8, 8, QuantSpec(8, True, True, granularity="per_channel"))
    x = torch.randn(1, 2, 6)
    ref = F.conv1d(x, qc.quantized_weight(), conv.bias, padding=1, groups=2)
    assert torch.equal(qc(x), ref) and qc.weight_quant.scale.shape == (4,)


def test_w_bits_lives_on_the_weight_spec_only():
    spec = QuantSpec(4, symmetric=True, signed=True, granularity="per_channel")
    q = QuantLinear.from_float(nn.Linear(5, 3), 4, 8, spec)
    assert q.w_bits == 4 and q.weight_quant.spec is spec
    q.weight_quant.spec = spec.with_bits(2)  # one source of truth: the layer's w_bits follows
    assert q.w_bits == 2
    with pytest.raises(AttributeError):
        q.w_bits = 8
    assert "w_bits" not in vars(q)
    with pytest.raises(ConfigError, match=r"QuantLinear.from_float: w_spec.bits must be equal to w_bits \(4\), "
                                          r"but got 8"):
        QuantLinear.from_float(nn.Linear(5, 3), 4, 8, spec.with_bits(8))
