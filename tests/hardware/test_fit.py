"""fit_roofline: recovers a known roofline from its own predictions, tolerates noise, refuses junk."""

from __future__ import annotations

import numpy as np
import pytest

from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import RooflineSample, fit_roofline, layer_costs, parse_profile, roofline_work

from .conftest import conv3x3_64, linear

TRUE = {"w8a8": 2.0e12, "w4a4": 4.0e12}
BW, OVERHEAD = 2.5e10, 0.02


def _latency(pair, ops, nbytes):
    return max(ops / TRUE[pair], nbytes / BW) * 1e3 + OVERHEAD


def _samples(noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    # a spread of compute-bound and memory-bound shapes for both pairs
    for ops in (1e8, 5e8, 2e9, 8e9):
        for nbytes in (1e5, 1e6, 3e7, 2e8):
            for pair in TRUE:
                t = _latency(pair, ops, nbytes) * (1 + noise * rng.uniform(-1, 1))
                out.append(RooflineSample(pair, ops, nbytes, t))
    return out


def test_exact_recovery_from_noise_free_samples():
    rl = fit_roofline(_samples())
    assert rl.ops_per_s["w8a8"] == pytest.approx(2.0e12, rel=1e-4)
    assert rl.ops_per_s["w4a4"] == pytest.approx(4.0e12, rel=1e-4)
    assert rl.bytes_per_s == pytest.approx(2.5e10, rel=1e-4)
    assert rl.overhead_ms == pytest.approx(0.02, rel=1e-3)


def test_noisy_samples_stay_close():
    rl = fit_roofline(_samples(noise=0.03, seed=1))
    for pair, rate in TRUE.items():
        assert rl.ops_per_s[pair] == pytest.approx(rate, rel=0.1)
    assert rl.bytes_per_s == pytest.approx(BW, rel=0.1)


def test_fixed_overhead_and_mapping_samples():
    samples = [{"pair": s.pair, "ops": s.ops, "bytes": s.bytes, "latency_ms": s.latency_ms} for s in _samples()]
    rl = fit_roofline(samples, overhead_ms=0.02)
    assert rl.overhead_ms == 0.02
    assert rl.ops_per_s["w8a8"] == pytest.approx(2.0e12, rel=1e-4)


def test_fit_feeds_layer_costs_the_same_model(base):
    """Samples made with roofline_work from real layers; the fitted profile predicts them back."""
    layers = [conv3x3_64(batch=b) for b in (1, 2, 4, 8)] + [linear(4096, 4096), linear(1024, 1024),
                                                            linear(256, 256, input_shape=(64, 256))]
    samples = []
    for layer in layers:
        for w, a in ((8, 8), (4, 4)):
            ops, nbytes = roofline_work(layer, Candidate(w, a))
            samples.append(RooflineSample(f"w{w}a{a}", ops, nbytes, _latency(f"w{w}a{a}", ops, nbytes)))
    rl = fit_roofline(samples)
    base["cost"] = {"roofline": {"ops_per_s": dict(rl.ops_per_s), "bytes_per_s": rl.bytes_per_s,
                                 "overhead_ms": rl.overhead_ms}}
    p = parse_profile(base, "fitted")
    for layer, s in zip([lay for lay in layers for _ in range(2)], samples):
        w, a = int(s.pair[1]), int(s.pair[3])
        assert layer_costs(layer, Candidate(w, a), p).latency_ms == pytest.approx(s.latency_ms, rel=1e-3)


def test_compute_only_samples_keep_every_sample_compute_bound():
    samples = [RooflineSample("w8a8", ops, 10.0, ops / 1e12 * 1e3) for ops in (1e8, 1e9, 1e10)]
    rl = fit_roofline(samples)
    assert rl.ops_per_s["w8a8"] == pytest.approx(1e12, rel=1e-4)
    assert all(s.bytes / rl.bytes_per_s <= s.ops / rl.ops_per_s["w8a8"] for s in samples)
    assert rl.overhead_ms == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("samples,overhead,message", [
    ([], None, "measurements must hold at least one sample"),
    ([RooflineSample("w8a8", 1e9, 1e6, -1.0)], None, r"measurements\[0\].latency_ms must be a finite number > 0"),
    ([RooflineSample("int8", 1e9, 1e6, 1.0)], None, r"measurements\[0\].pair must be a pair key"),
    ([RooflineSample("w8a8", 0, 0, 1.0)], None, r"measurements\[0\] must be a sample with ops or bytes > 0"),
    ([{"pair": "w8a8", "ops": 1.0}], None, r"key 'measurements\[0\].bytes' is required but missing"),
    ([RooflineSample("w8a8", 1e9, 1e6, 1.0)], 2.0, "overhead_ms must be below the smallest latency 1.0"),
])
def test_bad_samples_are_refused(samples, overhead, message):
    with pytest.raises(ConfigError, match=message):
        fit_roofline(samples, overhead_ms=overhead)
