"""Calibrators: exact values where they are known, and properties (hypothesis)."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpsearch.errors import ConfigError, UnknownNameError
from mpsearch.quant import CALIBRATORS, QuantSpec, fake_quantize, get_calibrator, make_calibrator

# -- strategies ----------------------------------------------------------------------------
_value = st.floats(-1e3, 1e3, allow_nan=False, width=32).map(lambda v: 0.0 if abs(v) < 1e-3 else v)


@st.composite
def tensor_and_spec(draw, granularity=st.sampled_from(["per_tensor", "per_channel"]), scale_kind=st.just("float")):
    n_rows = draw(st.integers(1, 3))
    n_cols = draw(st.integers(1, 12))
    values = draw(st.lists(_value, min_size=n_rows * n_cols, max_size=n_rows * n_cols))
    spec = QuantSpec(bits=draw(st.sampled_from([2, 3, 4, 8])), symmetric=draw(st.booleans()),
                     signed=draw(st.booleans()), restricted_range=draw(st.booleans()),
                     granularity=draw(granularity), scale_kind=draw(scale_kind))
    return torch.tensor(values, dtype=torch.float32).reshape(n_rows, n_cols), spec


def _sq_err(x, spec, s, z):
    rows = x if spec.granularity == "per_channel" else x.reshape(1, -1)
    return ((fake_quantize(x, s, z, spec) - x).reshape(rows.shape).double() ** 2).sum(1)


def _calibrate(name, x, spec, **kw):
    cal = make_calibrator(name, spec, **kw)
    cal.observe(x)
    return cal.compute()


# -- properties ----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(tensor_and_spec())
def test_mse_never_worse_than_minmax(data):
    x, spec = data
    s_mm, z_mm = _calibrate("minmax", x, spec)
    s_mse, z_mse = _calibrate("mse", x, spec, n_grid=20)
    assert torch.all(_sq_err(x, spec, s_mse, z_mse) <= _sq_err(x, spec, s_mm, z_mm))


@settings(max_examples=60, deadline=None)
@given(tensor_and_spec(), st.sampled_from(sorted(CALIBRATORS)))
def test_round_trip_error_at_most_half_a_step_inside_clip_range(data, name):
    x, spec = data
    s, z = _calibrate(name, x, spec, **({"n_bins": 64, "n_candidates": 8} if name == "kl" else {}))
    err = fake_quantize(x, s, z, spec) - x
    if spec.granularity == "per_tensor":
        s, z, rows, err = s.reshape(1, 1), z.reshape(1, 1), x.reshape(1, -1), err.reshape(1, -1)
    else:
        s, z, rows = s.reshape(-1, 1), z.reshape(-1, 1), x
    err = err.abs()
    lo, hi = s * (spec.qmin - z), s * (spec.qmax - z)  # the clip range, per row
    inside = (rows >= lo) & (rows <= hi)
    tol = 1e-5 * (rows.abs().amax(1, keepdim=True) + s)  # float32 rounding of S and of the product
    assert torch.all(err[inside] <= (s / 2 + tol).expand_as(err)[inside])
    # min-max does not clip (except negatives under an unsigned symmetric spec): every value
    # is within half a step of the grid.
    if name == "minmax" and (spec.signed or not spec.symmetric):
        assert torch.all(err <= s / 2 + tol)


@settings(max_examples=40, deadline=None)
@given(tensor_and_spec(), st.sampled_from(sorted(CALIBRATORS)))
def test_symmetric_zero_point_is_zero(data, name):
    x, spec = data
    from dataclasses import replace

    spec = replace(spec, symmetric=True)
    _, z = _calibrate(name, x, spec, **({"n_bins": 64, "n_candidates": 8} if name == "kl" else {}))
    assert torch.all(z == 0)


@settings(max_examples=60, deadline=None)
@given(tensor_and_spec(scale_kind=st.just("power_of_two")))
def test_power_of_two_scales_are_exact_and_cover_the_range(data):
    x, spec = data
    s, z = _calibrate("minmax", x, spec)
    mantissa, _ = torch.frexp(s)
    assert torch.all(mantissa == 0.5)  # exactly 2^k
    from dataclasses import replace

    s_float, _ = _calibrate("minmax", x, replace(spec, scale_kind="float"))
    assert torch.all(s >= s_float) and torch.all(s < 2 * s_float)
    rows = x if spec.granularity == "per_channel" else x.reshape(1, -1)
    s, z = s.reshape(-1, 1), z.reshape(-1, 1)
    lo = torch.minimum(rows.amin(1, keepdim=True), torch.zeros(1))
    hi = torch.maximum(rows.amax(1, keepdim=True), torch.zeros(1))
    tol = 1e-5 * (hi - lo + s)
    # The grid reaches the range up to half a step at each end (unsigned symmetric drops negatives).
    if spec.signed or not spec.symmetric:
        assert torch.all(s * (spec.qmin - z) <= lo + s / 2 + tol)
    assert torch.all(s * (spec.qmax - z) >= hi - s / 2 - tol)


# -- exact values --------------------------------------------------------------------------
def test_percentile_exact():
    x = torch.arange(10001, dtype=torch.float32)  # P99 = 9900 exactly, P1 = 100
    spec = QuantSpec(8, symmetric=False, signed=False)
    s, z = _calibrate("percentile", x, spec, percentile=99.0)
    assert s.item() == pytest.approx(9900 / 255) and z.item() == 0  # low end widened to 0
    s, z = _calibrate("percentile", x - 5000, spec, percentile=99.0)  # [-4900, 4900]
    assert s.item() == pytest.approx(9800 / 255) and z.item() == 128
    sym = QuantSpec(8, symmetric=True, signed=True, restricted_range=True)
    s, _ = _calibrate("percentile", x - 5000, sym, percentile=99.0)  # P99 of |x| = 4950
    assert s.item() == pytest.approx(4950 / 127)


def test_minmax_over_batches_and_bits():
    spec = QuantSpec(8, symmetric=False, signed=True, granularity="per_channel")
    cal = make_calibrator("minmax", spec)
    cal.observe(torch.tensor([[1.0, -2.0], [0.5, 0.25]]))
    cal.observe(torch.tensor([[3.0, 0.0], [-1.0, 0.0]]))
    s, z = cal.compute()
    assert s.tolist() == pytest.approx([5 / 255, 1.5 / 255]) and z.tolist() == [-128 + 102, -128 + 170]
    s4, z4 = cal.compute(spec.with_bits(4))  # one calibration, another bit-width
    assert s4.tolist() == pytest.approx([5 / 15, 1.5 / 15]) and z4.tolist() == [-8 + 6, -8 + 10]


def test_mse_and_kl_clip_outliers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, generator=g)
    x[:4] = torch.tensor([40.0, -40.0, 35.0, -30.0])
    spec = QuantSpec(8, symmetric=True, signed=True)
    s_mm, z = _calibrate("minmax", x, spec)
    assert s_mm.item() * 127.5 == pytest.approx(40.0)
    s_mse, _ = _calibrate("mse", x, spec, n_grid=50)
    assert s_mse.item() < s_mm.item()
    assert _sq_err(x, spec, s_mse, z).item() < _sq_err(x, spec, s_mm, z).item()
    s_kl, _ = _calibrate("kl", x, spec)
    t_kl = s_kl.item() * 127.5  # KL ignores the 4 outliers: threshold in the bulk of N(0, 1)
    assert 2.5 < t_kl < 8.0


def test_kl_on_relu_output_keeps_most_of_the_range():
    g = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(20000, generator=g))  # half exact zeros
    spec = QuantSpec(8, symmetric=False, signed=True)
    s_mm, _ = _calibrate("minmax", x, spec)
    s_kl, z_kl = _calibrate("kl", x, spec)
    assert z_kl.item() == -128 and 0.6 * s_mm.item() < s_kl.item() <= s_mm.item()


def test_sample_cap_keeps_a_uniform_bounded_sample():
    spec = QuantSpec(8, True, True)
    cal = make_calibrator("percentile", spec, max_samples=64, percentile=100)
    for i in range(10):
        cal.observe(torch.full((40,), float(i)))
    kept = cal.samples
    assert kept.shape[1] <= 64 and cal.n_batches == 10
    assert cal.min_val.item() == 0.0 and cal.max_val.item() == 9.0  # exact whatever is kept
    counts = torch.bincount(kept.flatten().long(), minlength=10)
    assert counts.max() - counts.min() <= 2  # every batch is equally represented
    clone = copy.deepcopy(cal)  # the seeded generator survives a deepcopy
    assert torch.equal(clone.compute()[0], cal.compute()[0])


def test_calibrator_errors():
    spec = QuantSpec(8, True, True)
    with pytest.raises(UnknownNameError, match=r"unknown calibrator 'minmx'; did you mean 'minmax'\? Valid: kl, "):
        get_calibrator("minmx")
    with pytest.raises(ConfigError, match=r"option must be one of \['percentile'"):
        make_calibrator("percentile", spec, pct=99)
    with pytest.raises(ConfigError, match="percentile must be a number in"):
        make_calibrator("percentile", spec, percentile=101)
    with pytest.raises(ConfigError, match="needs at least one observed batch"):
        make_calibrator("minmax", spec).compute()
    cal = make_calibrator("mse", spec)
    cal.observe(torch.ones(3))
    with pytest.raises(ConfigError, match="layout"):
        cal.compute(QuantSpec(8, True, True, granularity="per_channel"))
    with pytest.raises(ConfigError, match="finite"):
        cal.observe(torch.tensor([1.0, float("inf")]))
