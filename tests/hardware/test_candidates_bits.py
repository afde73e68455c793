"""candidates_for reads the user's bit set with the one normalizer that recipes use (2..8 or 16)."""

from __future__ import annotations

import pytest

from mpsearch.errors import ConfigError
from mpsearch.hardware import candidates_for, candidates_for_layers, parse_profile

from .conftest import conv3x3_64, linear


def keys(cands):
    return [c.key for c in cands]


def _sixteen_bit(base):
    """The test NPU, also running 16-bit weights (w16a8: keep the layer's weights in 16 bits)."""
    base["capabilities"].update(weight_bits=[4, 8, 16], activation_bits=[8])
    for key in ("pairs", "per_op"):
        base["capabilities"].pop(key)
    base.pop("rules")
    base["cost"]["roofline"]["ops_per_s"] = {"w16a8": 1.0e12}
    base["cost"]["lut"] = []
    return parse_profile(base, "test")


def test_16_bits_are_a_user_bit_width_where_the_device_runs_them(base):
    p = _sixteen_bit(base)
    conv = conv3x3_64()
    assert keys(candidates_for(conv, p)) == ["w16a8", "w8a8", "w4a8"]
    assert keys(candidates_for(conv, p, w_bits=[16, 4])) == ["w16a8", "w4a8"]
    assert keys(candidates_for(conv, p, w_bits=16)) == ["w16a8"]


def test_user_bits_in_any_order_with_repeats_or_as_an_iterator(base):
    p = parse_profile(base, "test")
    conv = conv3x3_64()
    assert keys(candidates_for(conv, p, w_bits=[2, 4, 4])) == keys(candidates_for(conv, p, w_bits=(4, 2)))
    assert keys(candidates_for(conv, p, w_bits=iter([4]), a_bits={8})) == ["w4a8"]
    layers = [conv, linear(64, 10, index=3)]  # one iterator serves every layer: it is read once
    cands = candidates_for_layers(layers, p, w_bits=(b for b in (8, 4)), a_bits=iter([8]))
    assert {n: keys(c) for n, c in cands.items()} == {"features.conv": ["w8a8"], "fc64x10": ["w8a8"]}


@pytest.mark.parametrize("w_bits, message", [
    ([4, 9], "candidates_for: w_bits must be an integer in 2..8 or 16, but got 9"),
    ([4, True], "candidates_for: w_bits must be an integer in 2..8 or 16, but got True"),
    ([], "candidates_for: w_bits must be a non-empty list of bit-widths such as [2, 4, 8], but got []"),
    ("48", "candidates_for: w_bits must be a non-empty list of bit-widths such as [2, 4, 8], but got '48'"),
    (4.0, "candidates_for: w_bits must be a non-empty list of bit-widths such as [2, 4, 8], but got 4.0"),
])
def test_bad_user_bits_name_the_rule_and_the_value(base, w_bits, message):
    p = parse_profile(base, "test")
    with pytest.raises(ConfigError) as info:
        candidates_for(conv3x3_64(), p, w_bits=w_bits)
    assert str(info.value) == message
    with pytest.raises(ConfigError) as info:
        candidates_for_layers([conv3x3_64()], p, w_bits=w_bits)
    assert str(info.value) == message
