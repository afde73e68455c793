"""LLM weight formats on profiles: honest sizes, BOPs, latency, schema rules and candidates."""

from __future__ import annotations

import pytest

from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import candidates_for, layer_costs, load_profile, parse_profile, resource_table, size_bytes
from mpsearch.hardware.schema import profile_to_dict

from .conftest import linear

FORMATS = {"keys": ["w4a16g128", "w4a16g128z", "w4a16g32", "w8a16", "w8a8t", "w16a16"], "scale_dtype": "float16"}


def _profile(base, formats=FORMATS, **roofline):
    base["capabilities"]["formats"] = formats
    base["cost"]["roofline"].update(roofline)
    return parse_profile(base, "test.yaml")


def test_honest_sizes_bits_per_weight(base) -> None:
    p = _profile(base)
    lay = linear(256, 64)  # 16,384 weights, no bias
    n = 256 * 64
    # 4-bit: 8192 B; group 128: 64 rows x 2 groups = 128 fp16 scales = 256 B -> 4 + 16/128 bits
    assert size_bytes(lay, Candidate.parse("w4a16g128"), p) == 8192 + 256
    assert size_bytes(lay, Candidate.parse("w4a16g128"), p) * 8 / n == 4.125
    # + 128 fp16 zero points = 256 B -> 4.25 bits per weight
    assert size_bytes(lay, Candidate.parse("w4a16g128z"), p) * 8 / n == 4.25
    # group 32: 64 x 8 = 512 scales, 1024 B -> 4.5 bits per weight
    assert size_bytes(lay, Candidate.parse("w4a16g32"), p) * 8 / n == 4.5
    # 8-bit per output channel: 16384 + 64 x 2 B
    assert size_bytes(lay, Candidate.parse("w8a16"), p) == 16384 + 128
    # keep in 16-bit: 2 bytes per weight, no scale
    assert size_bytes(lay, Candidate.parse("w16a16"), p) == 2 * n
    # a bias is stored in the scale dtype: 64 x 2 B more
    assert size_bytes(linear(256, 64, bias=True), Candidate.parse("w4a16g128"), p) == 8192 + 256 + 128
    # today's pairs are unchanged: 4-bit, 64 dyadic scales x 5 B
    assert size_bytes(lay, Candidate(4, 8), p) == 8192 + 320


def test_float32_scales(base) -> None:
    p = _profile(base, {"keys": ["w4a16g128z"], "scale_dtype": "float32"})
    assert size_bytes(linear(256, 64), Candidate.parse("w4a16g128z"), p) == 8192 + 2 * 128 * 4  # 4.5 bits


def test_bops_and_roofline_latency(base) -> None:
    p = _profile(base, float_ops_per_s=1.0e12)
    lay = linear(256, 64, input_shape=(1, 16, 256))  # 16 tokens: 262,144 MACs
    macs = 256 * 64 * 16
    wo = layer_costs(lay, Candidate.parse("w4a16g128"), p)
    assert wo.bops == macs * 4 * 16
    assert layer_costs(lay, Candidate.parse("w16a16"), p).bops == macs * 16 * 16
    # bytes: honest weights 8448 + 16-bit input 16*256*2 + output 16*64*2 = 8448 + 8192 + 2048
    assert wo.bytes_moved == 8448 + 8192 + 2048
    compute_s, memory_s = 2 * macs / 1.0e12, (8448 + 8192 + 2048) / 2.5e10
    assert wo.latency_ms == pytest.approx(max(compute_s, memory_s) * 1e3 + 0.01, rel=1e-12)
    # per-token W8A8 runs at the integer w8a8 rate
    t = layer_costs(lay, Candidate.parse("w8a8t"), p)
    assert t.bops == macs * 64 and t.size_bytes == 16384 + 64 * 2
    assert t.bytes_moved == 16384 + 128 + 16 * 256 + 16 * 64


def test_weight_only_without_float_rate_uses_the_slowest(base) -> None:
    p = _profile(base)
    lay = linear(256, 256, input_shape=(1, 4096, 256))  # compute bound: 2.7e-4 s against 1.7e-4 s of bytes
    got = layer_costs(lay, Candidate.parse("w8a16"), p)
    assert got.bound == "compute"
    assert got.latency_ms == pytest.approx(2 * 256 * 256 * 4096 / 2.0e12 * 1e3 + 0.01, rel=1e-12)


def test_profile_round_trip(base) -> None:
    p = _profile(base, float_ops_per_s=3.0e11)
    back = parse_profile(profile_to_dict(p), "again")
    assert back.capabilities == p.capabilities and back.cost.roofline == p.cost.roofline
    assert p.capabilities.formats.keys == tuple(FORMATS["keys"])
    assert p.capabilities.formats.ops == ("linear", "embedding")


@pytest.mark.parametrize("formats, message", [
    ({"keys": ["w4a8"]}, "test.yaml: capabilities.formats.keys[0] must be a format (16-bit activations, a group size"),
    ({"keys": ["w4a16g100"]}, "test.yaml: capabilities.formats.keys[0] must be a format whose group size is a power "
                              "of two in 16..1024, but got 'w4a16g100'"),
    ({"keys": ["w5a16g128"]}, "capabilities.formats.keys[0] must be a format with weight bits in [2, 3, 4, 8, 16]"),
    ({"keys": ["w16a8t"]}, "capabilities.formats.keys[0] must be w16a16 when the weights are 16-bit"),
    ({"keys": ["w2a4t"]}, "capabilities.formats.keys[0] must be a per-token format whose pair w2a4 the "
                          "capabilities allow for linear layers"),
    ({"keys": ["w8a16", "W8A16"]}, "capabilities.formats.keys must be a list without repeated formats"),
    ({"keys": ["int4"]}, 'capabilities.formats.keys[0] must be of the form "w<bits>a<bits>'),
    ({"keys": []}, "capabilities.formats.keys must be a non-empty list of format keys"),
    ({"keys": ["w8a16"], "ops": ["conv2d"]}, "capabilities.formats.ops[0] must be one of linear, embedding"),
    ({"keys": ["w8a16"], "scale_dtype": "fp8"}, "capabilities.formats.scale_dtype must be one of float16, "
                                                "bfloat16, float32, but got 'fp8'"),
    ({"keys": ["w8a16"], "group": 128}, "unknown key 'capabilities.formats.group'"),
])
def test_schema_rules(base, formats, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)").replace(".", r"\.")):
        _profile(base, formats)


def test_candidates_for_formats(base) -> None:
    p = _profile(base)
    lay = linear(256, 64)
    keys = [c.key for c in candidates_for(lay, p, formats=["w4a16g128", "w16a16", "w8a16", "w4a16g128z", "w8a8"])]
    assert keys == ["w16a16", "w8a16", "w8a8", "w4a16g128z", "w4a16g128"]


def test_format_the_profile_cannot_run(base) -> None:
    p = _profile(base)
    with pytest.raises(ConfigError, match=r"test-npu: layer 'fc256x64' \(linear\): format must be one the profile "
                                          r"runs \(w4a16g128, .* for linear, embedding\), but got 'w4a16g64'"):
        candidates_for(linear(256, 64), p, formats=["w4a16g64"])
    with pytest.raises(ConfigError, match=r"nvidia-t4: layer 'fc256x64' \(linear\): format must be one the profile "
                                          r"runs \(the profile lists no capabilities.formats\), but got 'w8a16'"):
        candidates_for(linear(256, 64), load_profile("nvidia-t4"), formats=["w8a16"])
    with pytest.raises(ConfigError, match=r"candidate for layer 'fc256x64' \(linear\) must be a format the profile "
                                          r"runs"):
        layer_costs(linear(256, 64), Candidate.parse("w2a16g128"), p)


def test_group_size_must_divide_the_input_features(base) -> None:
    p = _profile(base)
    with pytest.raises(ConfigError, match=r"test-npu: layer 'fc96x64' \(linear\): group size of w4a16g128 must "
                                          r"divide the layer's 96 input features, but got 128"):
        candidates_for(linear(96, 64), p, formats=["w8a16", "w4a16g128"])


def test_resource_table_with_formats_on_the_shipped_cpu_profile() -> None:
    p = load_profile("x86-2core-int")
    layers = [linear(256, 64, index=0), linear(128, 256, index=1)]
    t = resource_table(layers, p, formats=["w4a16g128", "w4a16g64z", "w8a16", "w16a16"], ties=[])
    assert [c.key for c in t.candidates[0]] == ["w16a16", "w8a16", "w4a16g64z", "w4a16g128"]
    size = t.resources["size_bytes"]
    assert size[t.row_of("fc256x64", "w4a16g128")] == 8192 + 128 * 2
    assert size[t.row_of("fc256x64", "w4a16g64z")] == 8192 + 2 * 256 * 2  # 4.5 bits per weight
    assert size[t.row_of("fc128x256", "w4a16g64z")] == 16384 + 2 * 512 * 2
    assert size[t.row_of("fc128x256", "w16a16")] == 2 * 32768
    assert t.resources["bops"][t.row_of("fc256x64", "w8a16")] == 256 * 64 * 8 * 16
    assert set(t.sources["latency_ms"]) == {"roofline"}
    with pytest.raises(ConfigError, match=r"layer 'fc64x256' \(linear\): group size of w4a16g128 must divide the "
                                          r"layer's 64 input features, but got 128"):
        resource_table([linear(256, 64, index=0), linear(64, 256, index=1)], p, formats=["w4a16g128"])
