"""Candidates: device pairs x user bits, per-op overrides, first/last rules, SRAM limit, clear errors."""

from __future__ import annotations

import pytest

from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import candidates_for, candidates_for_layers, load_profile, parse_profile

from .conftest import conv3x3_64, depthwise3x3_64, linear


def keys(cands):
    return [c.key for c in cands]


def test_device_pairs_times_user_bits(base):
    p = parse_profile(base, "test")
    conv = conv3x3_64()
    assert keys(candidates_for(conv, p)) == ["w8a8", "w4a8", "w4a4", "w2a8"]
    assert keys(candidates_for(conv, p, w_bits=[2, 4], a_bits=[8])) == ["w4a8", "w2a8"]
    assert keys(candidates_for(conv, p, w_bits=4)) == ["w4a8", "w4a4"]
    assert candidates_for(conv, p, w_bits=[4], a_bits=[4]) == [Candidate(4, 4, "per_channel")]


def test_per_op_override_restricts_depthwise(base):
    p = parse_profile(base, "test")
    assert keys(candidates_for(depthwise3x3_64(), p)) == ["w8a8"]


def test_empty_intersection_names_layer_user_bits_and_device_bits(base):
    p = parse_profile(base, "test")
    with pytest.raises(ConfigError) as info:
        candidates_for(depthwise3x3_64(), p, w_bits=[4], a_bits=[8])
    assert str(info.value) == (
        "test-npu: layer 'features.dw' (depthwise_conv2d): no candidate is left: the user's bits "
        "(w_bits=[4], a_bits=[8]) must meet the device's pairs for depthwise_conv2d [w8a8]")


def test_rules_fix_first_and_last_layer_over_user_bits(base):
    p = parse_profile(base, "test")
    conv = conv3x3_64()
    assert keys(candidates_for(conv, p, w_bits=[4], first=True)) == ["w8a8"]
    assert keys(candidates_for(conv, p, w_bits=[4], last=True)) == ["w8a8"]
    layers = [linear(128, 10, index=9), conv3x3_64(), linear(64, 128, index=5)]
    out = candidates_for_layers(layers, p, w_bits=[2, 4, 8], a_bits=[8])
    assert list(out) == ["features.conv", "fc64x128", "fc128x10"]  # execution order by index
    assert keys(out["features.conv"]) == ["w8a8"]      # first by index
    assert keys(out["fc64x128"]) == ["w8a8", "w4a8", "w2a8"]
    assert keys(out["fc128x10"]) == ["w8a8"]           # last by index


def test_rule_pair_the_op_cannot_run_is_an_error(base):
    base["rules"]["first_layer"] = {"w_bits": 4, "a_bits": 8}
    p = parse_profile(base, "test")
    with pytest.raises(ConfigError, match=r"first-layer rule must be a pair the device runs for "
                                          r"depthwise_conv2d \[w8a8\], but got w4a8"):
        candidates_for(depthwise3x3_64(), p, first=True)
    with pytest.raises(ConfigError, match="first and last layer rules must agree"):
        candidates_for(conv3x3_64(), p, first=True, last=True)


def test_activation_memory_limit_drops_candidates(base):
    # conv3x3_64 working set: 2 x 200,704 elements -> 401,408 B at a8, 200,704 B at a4
    base["cost"]["memory"] = {"activation_bytes": 300_000}
    p = parse_profile(base, "test")
    assert keys(candidates_for(conv3x3_64(), p)) == ["w4a4"]
    base["cost"]["memory"] = {"activation_bytes": 100_000}
    p = parse_profile(base, "test")
    with pytest.raises(ConfigError, match=r"activation working set must fit cost.memory.activation_bytes=100000, "
                                          r"but the smallest candidate \(w4a4\) needs 200704 bytes"):
        candidates_for(conv3x3_64(), p)


def test_granularity_and_bad_user_bits(base):
    p = parse_profile(base, "test")
    assert {c.w_granularity for c in candidates_for(conv3x3_64(), p, granularity="per_tensor")} == {"per_tensor"}
    with pytest.raises(ConfigError, match="granularity must be one of per_channel, per_tensor, but got 'per_group'"):
        candidates_for(conv3x3_64(), p, granularity="per_group")
    with pytest.raises(ConfigError, match="w_bits must be an integer in 2..8 or 16, but got 9"):
        candidates_for(conv3x3_64(), p, w_bits=[4, 9])
    with pytest.raises(ConfigError, match="a_bits must be a non-empty list"):
        candidates_for(conv3x3_64(), p, a_bits=[])


def test_shipped_gpu_profiles_have_no_int4_depthwise_and_cortex_is_8_bit():
    t4 = load_profile("nvidia-t4")
    assert keys(candidates_for(conv3x3_64(), t4, w_bits=[4, 8], a_bits=[4, 8])) == ["w8a8", "w4a4"]
    assert keys(candidates_for(depthwise3x3_64(), t4)) == ["w8a8"]
    m7 = load_profile("cortex-m7-cmsis-nn")
    small = linear(256, 10)
    assert candidates_for(small, m7) == [Candidate(8, 8, "per_tensor")]
    with pytest.raises(ConfigError, match=r"w_bits=\[4\].*\[w8a8\]"):
        candidates_for(small, m7, w_bits=[4])
