"""resource_table: every layer x candidate's resources, the one place they are built (omega 0)."""

from __future__ import annotations

import numpy as np

from mpsearch.core.types import Candidate
from mpsearch.hardware import layer_costs, parse_profile, resource_table

from .conftest import conv3x3_64, linear


def test_rows_are_the_candidates_costs_with_omega_zero(base):
    base["rules"] = {}  # no first/last-layer pins: every layer keeps its own candidates
    profile = parse_profile(base, "test")
    conv, fc = conv3x3_64(), linear(64, 10, index=2)
    table = resource_table([conv, fc], profile, a_bits=[8])
    # the device's pairs with a = 8, widest first
    assert table.layers == ("features.conv", "fc64x10")
    assert [[c.key for c in cs] for cs in table.candidates] == [["w8a8", "w4a8", "w2a8"]] * 2
    assert table.resource_names == ("bops", "latency_ms", "size_bytes") and table.ties == ()
    assert np.array_equal(table.omega, np.zeros(6))
    for i, lay in enumerate((conv, fc)):
        for j, key in enumerate(("w8a8", "w4a8", "w2a8")):
            cost = layer_costs(lay, Candidate.parse(key), profile)
            row = int(table.offsets[i]) + j
            assert {k: float(v[row]) for k, v in table.resources.items()} == cost.resources()
            assert table.sources["latency_ms"][row] == cost.latency_source
    # the LUT measures the conv at w8a8 only; the rest comes from the roofline
    assert list(table.sources["latency_ms"]) == ["lut", "roofline", "roofline", "roofline", "roofline", "roofline"]
    # 36864 weights x 2 bits / 8 + 64 dyadic scales x 5 B + 64 int32 biases
    assert table.resources["size_bytes"][2] == 9216 + 320 + 256


def test_profile_rules_pin_first_and_last_layer_and_ties_are_kept(base):
    profile = parse_profile(base, "test")  # rules: first and last layer at w8a8
    layers = [conv3x3_64(), linear(64, 64, index=2), linear(64, 32, index=3), linear(32, 10, index=4)]
    table = resource_table(layers, profile, w_bits=[2, 4, 8], a_bits=[8], ties=[["fc64x64", "fc64x32"]])
    assert [[c.key for c in cs] for cs in table.candidates] == [["w8a8"], ["w8a8", "w4a8", "w2a8"],
                                                                 ["w8a8", "w4a8", "w2a8"], ["w8a8"]]
    assert table.ties == (("fc64x64", "fc64x32"),)
    # ties=None: layers that read the same input; these hand-made layers share none
    assert resource_table(layers, profile, a_bits=[8]).ties == ()
