"""Size, BOPs, latency (LUT / roofline), energy and memory of one layer, against hand-computed numbers."""

from __future__ import annotations

import pytest

from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import (
    activation_bytes,
    layer_costs,
    layer_signature,
    parse_profile,
    profile_budgets,
    rate_for_pair,
    size_bytes,
)

from .conftest import conv3x3_64, depthwise3x3_64, linear

# conv3x3_64: 36,864 weights, 64 bias, 115,605,504 MACs, input = output = 64*56*56 = 200,704 elements


def _profile(base, **caps):
    for k, v in caps.items():
        if v is None:
            base["capabilities"].pop(k, None)
        else:
            base["capabilities"][k] = v
    if caps.get("scale") == "float":
        base["capabilities"]["integer_only"] = False
    if "weight_bits" in caps:  # other bit sets: one rate for the widest pair covers every pair
        widest = f"w{max(caps['weight_bits'])}a8"
        base["cost"]["roofline"]["ops_per_s"] = {widest: 2.0e12}
    return parse_profile(base, "test")


@pytest.mark.parametrize("caps,cand,expected", [
    # weights 36864*4/8 = 18432; 64 dyadic scales x 5 B = 320; bias 64 x 4 B = 256
    ({}, Candidate(4, 8, "per_channel"), 18432 + 320 + 256),
    # one float32 scale
    ({"scale": "float"}, Candidate(8, 8, "per_tensor"), 36864 + 4 + 256),
    # power-of-two: one int8 exponent per channel
    ({"scale": "power_of_two"}, Candidate(2, 8, "per_channel"), 9216 + 64 + 256),
    # asymmetric: + one 1-byte zero-point per scale
    ({"weight_mode": "asymmetric"}, Candidate(4, 8, "per_channel"), 18432 + 320 + 64 + 256),
    # per_group of 128 along fan_in = 576: ceil(576/128) = 5 groups per channel -> 320 scales x 5 B
    ({"weight_granularity": ["per_group"]}, Candidate(4, 8, "per_group"), 18432 + 1600 + 256),
    # per_group of 64: 9 groups per channel -> 576 scales
    ({"weight_granularity": ["per_group"], "group_size": 64}, Candidate(4, 8, "per_group"), 18432 + 2880 + 256),
    # 3 bits: 36864 * 3 / 8 = 13824 exactly
    ({"weight_bits": [3, 8], "pairs": [[8, 8], [3, 8]]}, Candidate(3, 8), 13824 + 320 + 256),
])
def test_size_bytes_by_hand(base, caps, cand, expected):
    assert size_bytes(conv3x3_64(), cand, _profile(base, **caps)) == expected


def test_size_rounds_packed_bits_up_and_16_bit_zero_points(base):
    # 70 weights x 3 bits = 210 bits = 26.25 bytes -> 27; 7 dyadic scales; no bias
    p = _profile(base, weight_bits=[3, 8], pairs=None)
    assert size_bytes(linear(10, 7), Candidate(3, 8), p) == 27 + 35
    # 16-bit asymmetric weights: zero-point takes 2 bytes
    p = _profile(base, weight_bits=[8, 16], weight_mode="asymmetric", pairs=None)
    assert size_bytes(linear(10, 7), Candidate(16, 8), p) == 140 + 35 + 14


def test_size_never_depends_on_activation_bits(base):
    p = _profile(base)
    assert size_bytes(conv3x3_64(), Candidate(4, 4), p) == size_bytes(conv3x3_64(), Candidate(4, 8), p)


def test_bops_are_macs_times_both_widths(base):
    p = parse_profile(base, "test")
    assert layer_costs(conv3x3_64(), Candidate(4, 8), p).bops == 115_605_504 * 4 * 8
    assert layer_costs(conv3x3_64(), Candidate(2, 8), p).bops == 115_605_504 * 2 * 8


def test_lut_hit_is_measured_and_says_so(base):
    p = parse_profile(base, "test")
    cost = layer_costs(conv3x3_64(), Candidate(8, 8), p)
    assert (cost.latency_ms, cost.latency_source, cost.latency_std_ms, cost.bound) == (0.53, "lut", 0.01, "lut")


def test_roofline_compute_bound_by_hand(base):
    p = parse_profile(base, "test")
    # the LUT has only w8a8 for this signature: w4a4 comes from the roofline
    cost = layer_costs(conv3x3_64(), Candidate(4, 4), p)
    # ops = 2 * 115,605,504 = 231,211,008 at 4e12/s = 57.802752 us
    # bytes = 18432 weights + 2 * 100352 activations = 219,136 at 2.5e10 B/s = 8.76544 us
    assert cost.ops == 231_211_008 and cost.bytes_moved == 219_136
    assert cost.latency_source == "roofline" and cost.bound == "compute"
    assert cost.latency_ms == pytest.approx(0.057802752 + 0.01, rel=1e-12)


def test_pair_without_rate_uses_nearest_wider_pair(base):
    p = parse_profile(base, "test")
    # w4a8 has no ops_per_s; w4a4 is not wider (a=4 < 8); w8a8 is: no speed-up for w4a8
    layer = conv3x3_64(batch=2)  # batch 2: no LUT match
    w4a8 = layer_costs(layer, Candidate(4, 8), p)
    assert w4a8.latency_source == "roofline"
    assert w4a8.latency_ms == pytest.approx(2 * 231_211_008 / 2e12 * 1e3 + 0.01, rel=1e-12)
    assert rate_for_pair({"w8a8": 2.0, "w4a4": 4.0}, 4, 8) == ("w8a8", 2.0)
    assert rate_for_pair({"w8a8": 2.0, "w4a4": 4.0}, 2, 4) == ("w4a4", 4.0)
    # a tie in distance goes to the slower rate
    assert rate_for_pair({"w8a4": 10.0, "w4a8": 5.0}, 4, 4) == ("w4a8", 5.0)
    with pytest.raises(ConfigError, match="w8a8 or a wider pair"):
        rate_for_pair({"w4a4": 1.0}, 8, 8)


def test_roofline_memory_bound_by_hand(base):
    p = parse_profile(base, "test")
    cost = layer_costs(linear(4096, 4096), Candidate(8, 8), p)
    # ops 2 * 16,777,216 at 2e12 = 16.78 us; bytes 16,777,216 + 4096 + 4096 = 16,785,408 at 2.5e10 = 671.41632 us
    assert cost.bound == "memory" and cost.bytes_moved == 16_785_408
    assert cost.latency_ms == pytest.approx(0.67141632 + 0.01, rel=1e-12)


def test_batch_changes_signature_and_roofline_work(base):
    p = parse_profile(base, "test")
    assert layer_signature(conv3x3_64(), batch=4)[1]["batch"] == 4
    cost = layer_costs(conv3x3_64(), Candidate(8, 8), p, batch=4)
    assert cost.latency_source == "roofline" and cost.n_examples == 4
    assert cost.ops == 4 * 231_211_008
    assert cost.bops == 115_605_504 * 64  # BOPs stay per example


def test_linear_signature_counts_tokens_as_rows():
    layer = linear(64, 32, input_shape=(2, 10, 64))
    assert layer_signature(layer) == ("linear", {"batch": 20, "in_features": 64, "out_features": 32})
    assert layer_signature(layer, batch=1)[1]["batch"] == 10


def test_energy_and_activation_memory(base):
    base["cost"]["energy"] = {"active_mw": 100.0, "pj_per_op": {"w8a8": 1.0}, "pj_per_byte": 10.0}
    base["cost"]["lut"] = []
    p = parse_profile(base, "test")
    cost = layer_costs(conv3x3_64(), Candidate(8, 8), p)
    latency = 231_211_008 / 2e12 * 1e3 + 0.01
    # 100 mW x latency_ms (uJ) + (ops x 1 pJ + bytes x 10 pJ) x 1e-6 uJ/pJ
    expected = 100 * latency + (231_211_008 * 1.0 + 438_272 * 10.0) * 1e-6
    assert cost.energy_uj == pytest.approx(expected, rel=1e-12)
    assert cost.resources() == {"size_bytes": 36864.0 + 320 + 256,
                                "bops": float(115_605_504 * 64), "latency_ms": latency, "energy_uj": cost.energy_uj}
    assert cost.activation_bytes == activation_bytes(conv3x3_64(), 8) == 2 * 200_704
    assert activation_bytes(conv3x3_64(), 4) == 200_704


def test_forbidden_candidate_is_refused(base):
    p = parse_profile(base, "test")
    with pytest.raises(ConfigError, match=r"candidate for layer 'features.dw' \(depthwise_conv2d\) must be a pair "
                                          r"the device runs \(w8a8\), but got 'w4a8'"):
        layer_costs(depthwise3x3_64(), Candidate(4, 8), p)


def test_shipped_profile_by_name_and_budgets():
    with pytest.raises(ConfigError, match="weight granularity of layer .fc256x10. must be one of per_tensor, but got .per_channel."):
        layer_costs(linear(256, 10), Candidate(8, 8, "per_channel"), "cortex-m7-cmsis-nn")
    cost = layer_costs(linear(256, 10), Candidate(8, 8, "per_tensor"), "cortex-m7-cmsis-nn")
    # 2 x 2560 ops at 2.48e8 ops/s
    assert cost.latency_ms == pytest.approx(5120 / 2.48e8 * 1e3, rel=1e-12)
    assert cost.size_bytes == 2560 + 1  # per-tensor power-of-two: one 1-byte exponent, no bias
    from mpsearch.hardware import load_profile

    assert profile_budgets(load_profile("cortex-m7-cmsis-nn")) == {"size_bytes": 1_048_576}
    assert profile_budgets(load_profile("nvidia-t4")) == {}
