"""Group-wise weights, zero points, per-token activations and quantize() with LLM formats, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch as mps
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.quant.quantizer import fake_quantize_minmax, param_shape
from mpsearch.quant.spec import activation_spec, format_weight_spec


def test_group_wise_symmetric_weight_by_hand() -> None:
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.25, 8.0]])
    spec = format_weight_spec(None, Candidate(4, 16, "per_group", 4))
    assert (spec.granularity, spec.group_size, spec.symmetric, spec.scale_kind) == ("per_group", 4, True, "float")
    assert param_shape(w.shape, spec) == (1, 2)
    # group 1: amax 4, S = 2 * 4 / 15; w / S = 1.875, 3.75, 5.625, 7.5 -> 2, 4, 6, 8 -> clip 7
    s1 = 8 / 15
    # group 2: amax 8, S = 16 / 15; w / S = -0.9375, 0.46875, 0.234375, 7.5 -> -1, 0, 0, 8 -> clip 7
    s2 = 16 / 15
    want = torch.tensor([[2 * s1, 4 * s1, 6 * s1, 7 * s1, -1 * s2, 0.0, 0.0, 7 * s2]])
    assert torch.allclose(fake_quantize_minmax(w, spec), want, rtol=0, atol=1e-6)


def test_group_wise_zero_points_by_hand() -> None:
    w = torch.tensor([[0.0, 1.0, 2.0, 3.0, -3.0, -2.0, -1.0, 0.0]])
    spec = format_weight_spec(None, Candidate(4, 16, "per_group", 4, True))
    assert not spec.symmetric
    # group 1: [0, 3], S = 3 / 15 = 0.2, zp = -8 - round(0 / 0.2) = -8: codes -8, -3, 2, 7: exact
    # group 2: [-3, 0], S = 0.2, zp = -8 - round(-15) = 7: codes -8, -3, 2, 7: exact
    assert torch.allclose(fake_quantize_minmax(w, spec), w, rtol=0, atol=1e-6)
    # the symmetric grid cannot hold [0, 3] exactly: S = 6 / 15 = 0.4, 1 -> 2.5 -> 2 -> 0.8
    sym = format_weight_spec(None, Candidate(4, 16, "per_group", 4))
    assert fake_quantize_minmax(w, sym)[0, 1].item() == pytest.approx(0.8, abs=1e-6)


def test_per_token_activation_by_hand() -> None:
    x = torch.tensor([[[1.0, -2.0, 0.5], [10.0, 3.0, -4.0]]])  # [B=1, T=2, D=3]
    spec = activation_spec(None, 8, granularity="per_token", symmetric=True)
    assert param_shape(x.shape, spec) == (1, 2)  # one scale per token
    got = fake_quantize_minmax(x, spec)
    # each token its own scale S = 2 amax / 255 (float32, as the quantizer divides), codes in [-128, 127]
    s = torch.tensor([[[2 * 2.0 / 255], [2 * 10.0 / 255]]], dtype=torch.float32)
    want = torch.clamp(torch.round(x / s), -128, 127) * s
    assert torch.equal(got, want)
    assert got[0, 1, 0].item() == pytest.approx(127 * 20 / 255, abs=1e-6)  # 10 / S = 127.5: clipped to 127
    # one scale for the whole tensor (per_tensor) loses the small token: 0.5 -> 0.549
    tensor_wide = fake_quantize_minmax(x, activation_spec(None, 8, symmetric=True))
    assert tensor_wide[0, 0, 2].item() == pytest.approx(round(0.5 / (20 / 255)) * 20 / 255, abs=1e-6)
    assert abs(got[0, 0, 2].item() - 0.5) < 0.004


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _data():
    torch.manual_seed(0)
    return _Net().eval(), [torch.randn(2, 5, 64) for _ in range(2)]


def test_quantize_applies_each_layers_format() -> None:
    model, batches = _data()
    plan = BitPlan(layers={"fc1": LayerBits.parse("w4a16g32z"), "fc2": LayerBits.parse("w8a8t"),
                           "fc3": LayerBits(16, 16)})
    q = mps.quantize(model, plan, batches, profile=mps.load_profile("x86-2core-int"))
    assert q.quant_mode == "graph"
    aqs = dict(q.act_quant.items())
    assert len(aqs) == 1  # weight-only fc1 and fc3 read float activations
    (aq,) = aqs.values()
    assert aq.consumers == ["fc2"] and aq.mode == "dynamic" and aq.spec.granularity == "per_token"
    assert q.fc1.weight_quant.spec.group_size == 32 and not q.fc1.weight_quant.spec.symmetric
    assert tuple(q.fc1.weight_quant.scale.shape) == (32, 2) and q.fc1.weight_quant.zero_point.abs().sum() > 0
    assert q.fc2.a_mode == "dynamic_per_token" and q.fc2.weight_quant.spec.granularity == "per_channel"
    assert q.fc3.w_bits == 16 and q.fc3.a_bits == 16
    # the output, by hand from the same pieces
    x = batches[0]
    w1 = fake_quantize_minmax(model.fc1.weight, q.fc1.weight_quant.spec)
    h = F.relu(F.linear(x, w1, model.fc1.bias))
    w2 = fake_quantize_minmax(model.fc2.weight, q.fc2.weight_quant.spec)
    h = F.relu(F.linear(fake_quantize_minmax(h, aq.spec), w2, model.fc2.bias))
    w3 = fake_quantize_minmax(model.fc3.weight, q.fc3.weight_quant.spec)
    want = F.linear(h, w3, model.fc3.bias)
    with torch.no_grad():
        assert torch.allclose(q(x), want, rtol=0, atol=1e-6)


def test_quantize_refuses_formats_by_layer() -> None:
    model, batches = _data()
    plan = BitPlan(layers={"fc1": LayerBits.parse("w4a16g32")})
    with pytest.raises(ConfigError, match=r"quantize: layer 'fc1' \(linear\) must take a format the profile "
                                          r"'nvidia-t4' runs \(it lists none\), but got 'w4a16g32'"):
        mps.quantize(model, plan, batches, profile=mps.load_profile("nvidia-t4"))
    bad = BitPlan(layers={"fc2": LayerBits.parse("w4a16g64")})  # fc2 has 32 input features
    with pytest.raises(ConfigError, match=r"quantize: layer 'fc2': QuantSpec: group_size must be a divisor of the "
                                          r"32 elements per channel, but got 64"):
        mps.quantize(model, bad, batches)
