"""Hand-computed scales, zero points and integer codes; STE gradients.

Values are chosen so that every scale is an exact binary fraction (0.125, 0.25, ...), so
the expected integers, including the half-to-even ties, are exact.
"""

import pytest
import torch

from mpsearch.errors import ConfigError
from mpsearch.quant import (
    QuantSpec,
    dequantize,
    fake_quantize,
    fake_quantize_weight,
    minmax,
    qparams,
    quantize_tensor,
    round_up_power_of_two,
    weight_quantization_error,
)


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


def test_asymmetric_unsigned_4bit():
    spec = QuantSpec(4, symmetric=False, signed=False)
    s, z = qparams(0.0, 1.875, spec)  # S = 1.875 / 15
    assert s.item() == 0.125 and z.item() == 0 and z.dtype == torch.int32
    x = t(0.0, 0.0625, 0.1875, 1.875, 2.5, -0.3)  # 0.5 S ties to 0, 1.5 S ties to 2
    q = quantize_tensor(x, s, z, spec)
    assert q.dtype == torch.int32 and q.tolist() == [0, 0, 2, 15, 15, 0]
    assert dequantize(q, s, z, spec).tolist() == [0.0, 0.0, 0.25, 1.875, 1.875, 0.0]


def test_asymmetric_signed_4bit_zero_point_added():
    spec = QuantSpec(4, symmetric=False, signed=True)
    s, z = qparams(-0.5, 1.375, spec)  # S = 1.875 / 15 = 0.125; zp = -8 - round(-0.5 / 0.125) = -4
    assert (s.item(), z.item()) == (0.125, -4)
    x = t(-0.5, 0.0, 0.3125, 1.375, -0.4375)  # 2.5 S -> 2 (even); -3.5 S -> -4 (even)
    assert quantize_tensor(x, s, z, spec).tolist() == [-8, -4, -2, 7, -8]
    # A range that does not reach 0 is widened to include it (zero stays exact).
    s2, z2 = qparams(0.5, 1.875, spec)
    assert (s2.item(), z2.item()) == (0.125, -8)


def test_symmetric_full_and_restricted():
    full = QuantSpec(4, symmetric=True, signed=True)
    s, z = qparams(-0.3, 0.9375, full)  # S = 2 * 0.9375 / 15
    assert (s.item(), z.item()) == (0.125, 0)
    # +7.5 S rounds to 8 and clips to 7; -7.5 S rounds to -8 (even) and stays.
    assert quantize_tensor(t(0.9375, -0.9375, 0.0625, 0.1875), s, z, full).tolist() == [7, -8, 0, 2]
    restricted = QuantSpec(4, symmetric=True, signed=True, restricted_range=True)
    s, z = qparams(-0.875, 0.5, restricted)  # S = 0.875 / 7
    assert (s.item(), z.item()) == (0.125, 0)
    assert quantize_tensor(t(-2.0, 0.875, -0.875), s, z, restricted).tolist() == [-7, 7, -7]
    unsigned = QuantSpec(3, symmetric=True, signed=False)
    s, z = qparams(-1.0, 0.875, unsigned)  # S = 0.875 / 7; negatives clip to 0
    assert (s.item(), z.item()) == (0.125, 0)
    assert quantize_tensor(t(-1.0, 0.5), s, z, unsigned).tolist() == [0, 4]


def test_per_channel_and_axis():
    spec = QuantSpec(3, symmetric=True, signed=True, restricted_range=True, granularity="per_channel")
    w = t(0.75, -0.5, 0.2, 0.375, -0.125, 0.0).reshape(2, 3)
    lo, hi = minmax(w, spec)
    assert lo.tolist() == [-0.5, -0.125] and hi.tolist() == [0.75, 0.375]
    s, z = qparams(lo, hi, spec)  # qmax = 3: S = amax / 3
    assert s.tolist() == [0.25, 0.125] and z.tolist() == [0, 0]
    assert quantize_tensor(w, s, z, spec).tolist() == [[3, -2, 1], [3, -1, 0]]
    # Channel axis 1 (activations N, C, L): same numbers on the transposed tensor.
    spec1 = QuantSpec(3, symmetric=True, signed=True, restricted_range=True, granularity="per_channel", axis=1)
    x = w.t().unsqueeze(0)  # (1, 3, 2) -> channels are w's columns
    s1, z1 = qparams(*minmax(x, spec1), spec1)  # amax per channel: 0.75, 0.5, 0.2
    assert s1.tolist() == pytest.approx([0.25, 0.5 / 3, 0.2 / 3])
    assert quantize_tensor(x, s1, z1, spec1).tolist() == [[[3, 2], [-3, -1], [3, 0]]]  # 1.5 -> 2 (even)


def test_per_group():
    spec = QuantSpec(4, symmetric=True, signed=True, restricted_range=True, granularity="per_group", group_size=2)
    w = t(0.875, 0.5, 0.0, -0.4375, 1.75, 0.25, 0.1, -0.109375).reshape(2, 4)
    lo, hi = minmax(w, spec)
    s, z = qparams(lo, hi, spec)  # groups: [.875,.5] [0,-.4375] [1.75,.25] [.1,-.109375]; S = amax / 7
    assert s.shape == (2, 2) and s.tolist() == [[0.125, 0.0625], [0.25, 0.015625]]
    assert quantize_tensor(w, s, z, spec).tolist() == [[7, 4, 0, -7], [7, 1, 6, -7]]
    with pytest.raises(ConfigError, match="group_size must be a divisor of the 4 elements per channel"):
        minmax(w, QuantSpec(4, True, True, granularity="per_group", group_size=3))


def test_power_of_two_scale():
    assert round_up_power_of_two(t(0.3, 0.25, 1.0, 3.0, 1e-5)).tolist() == [0.5, 0.25, 1.0, 4.0, 2.0**-16]
    spec = QuantSpec(8, symmetric=True, signed=True, scale_kind="power_of_two")
    s, z = qparams(-1.0, 0.5, spec)  # float S = 2 / 255 = 0.00784 -> 2^-6
    assert (s.item(), z.item()) == (2.0**-6, 0)
    asym = QuantSpec(8, symmetric=False, signed=True, scale_kind="power_of_two")
    s, z = qparams(-1.0, 3.0, asym)  # float S = 4 / 255 -> 2^-5; zp = -128 - round(-1 / 2^-5) = -96
    assert (s.item(), z.item()) == (2.0**-5, -96)
    assert quantize_tensor(t(-1.0, 3.0), s, z, asym).tolist() == [-128, 0]  # 3.0 -> 96 - 96


def test_zero_range_and_bad_inputs():
    spec = QuantSpec(8, symmetric=False, signed=True)
    s, z = qparams(0.0, 0.0, spec)
    assert (s.item(), z.item()) == (1.0, -128)
    assert fake_quantize(torch.zeros(3), s, z, spec).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="finite"):
        qparams(float("nan"), 1.0, spec)
    with pytest.raises(ConfigError, match=r"scale and zero_point must have shape \(2,\)"):
        quantize_tensor(torch.zeros(2, 3), s, z, QuantSpec(8, True, True, granularity="per_channel"))


def test_matches_torch_fake_quantize_ops():
    """Same convention as torch's own fake-quant operators (zero point added, half-to-even)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g) * 3
    spec = QuantSpec(8, symmetric=False, signed=False)
    s, z = qparams(*minmax(x, spec), spec)
    ref = torch.fake_quantize_per_tensor_affine(x, s.item(), int(z), 0, 255)
    assert torch.equal(fake_quantize(x, s, z, spec), ref)
    # Restricted range: full-range symmetric puts the extreme value exactly on a tie
    # (qmax + 0.5), where torch's x * (1 / S) and our x / S may round differently.
    pc = QuantSpec(4, symmetric=True, signed=True, restricted_range=True, granularity="per_channel")
    s, z = qparams(*minmax(x, pc), pc)
    ref = torch.fake_quantize_per_channel_affine(x, s, z, 0, -7, 7)
    assert torch.equal(fake_quantize(x, s, z, pc), ref)


def test_ste_gradient():
    spec = QuantSpec(4, symmetric=False, signed=False)
    s, z = qparams(0.0, 1.875, spec)  # codes 0..15, S = 0.125
    x = t(-0.5, -0.0625, 0.3, 1.0, 1.875, 1.9375, 3.0).requires_grad_()
    # round(x/S): -4, -0.5 -> -0 (inside), 2, 8, 15, 15.5 -> 16 (outside), 24
    y = fake_quantize(x, s, z, spec)
    y.backward(t(1, 2, 3, 4, 5, 6, 7))
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]
    assert y.detach().tolist() == [0.0, 0.0, 0.25, 1.0, 1.875, 1.875, 1.875]


def test_fake_quantize_weight_and_error():
    w = t(0.75, -0.5, 0.2, 0.375, -0.125, 0.0).reshape(2, 3)
    spec = QuantSpec(8, True, True, restricted_range=True, granularity="per_channel")
    out = fake_quantize_weight(w, 3, spec)  # bits replaced by 3: S = [0.25, 0.125]
    assert out.tolist() == [[0.75, -0.5, 0.25], [0.375, -0.125, 0.0]]
    assert weight_quantization_error(w, 3, spec) == pytest.approx(0.05**2)
    # Default: per-channel symmetric full range: S = 2 * amax / 7 at 3 bits.
    d = fake_quantize_weight(torch.tensor([[0.875, -0.875, 0.125]]), 3)
    assert d.tolist() == [[0.75, -1.0, 0.0]]  # 3.5 -> 4 clips to 3; -3.5 -> -4; 0.5 -> 0 (all half-to-even)
