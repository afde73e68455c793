"""Measured LLM formats in the LUT: the profiler writes format-keyed entries, costs read them, the schema
refuses a format key the profile does not list."""

from __future__ import annotations

import copy

import pytest

from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import layer_costs, load_profile, parse_profile, resource_table, write_profile
from mpsearch.hardware.schema import profile_to_dict
from mpsearch.hardware.signature import layer_signature
from mpsearch.profiler.formats import measure_format, merge_format_entries, profile_formats

from .conftest import linear

FORMATS = {"keys": ["w4a16g32", "w8a16", "w3a16g32", "w16a16"], "ops": ["linear"], "scale_dtype": "float16"}


def _with_formats(base, lut_extra=()):
    data = copy.deepcopy(base)
    data["capabilities"]["formats"] = FORMATS
    data["cost"]["lut"] += list(lut_extra)
    return data


def test_sequence_input_signature_counts_tokens() -> None:
    # [B, T, D] = [2, 8, 64]: the GEMM has 2 x 8 = 16 rows; at batch 1 it has 8
    lay = linear(64, 32, input_shape=(2, 8, 64))
    assert layer_signature(lay) == ("linear", {"batch": 16, "in_features": 64, "out_features": 32})
    assert layer_signature(lay, 1) == ("linear", {"batch": 8, "in_features": 64, "out_features": 32})


def test_profiler_writes_format_entries_that_load_and_validate(base, tmp_path) -> None:
    p = parse_profile(_with_formats(base), "test.yaml")
    layers = [linear(64, 32, input_shape=(1, 8, 64)), linear(64, 48, input_shape=(1, 8, 64))]
    out = profile_formats(layers, ["w4a16g32", "w8a16", "w3a16g32", "w16a16"], p, batch=[1, 2], warmup=1,
                          repeats=4, name="test-npu")
    path = write_profile(out, tmp_path / "test-npu.yaml")
    back = load_profile(path)
    assert profile_to_dict(back) == profile_to_dict(out)
    assert back.cost.lut[0] == p.cost.lut[0]  # the conv entry is kept as it was
    new = back.cost.lut[1:]
    assert [(e.shape["batch"], e.shape["out_features"]) for e in new] == [(8, 32), (8, 48), (16, 32), (16, 48)]
    for e in new:
        assert list(e.latency_ms) == ["w4a16g32", "w8a16", "w3a16g32", "w16a16"]
        # 4 timed runs, the fastest quarter kept: one run per stat
        assert all(s.count == 1 and s.mean > 0 for s in e.latency_ms.values())
    assert "Formats measured" in back.source["notes"] and "load average" in back.source["notes"]
    # a layer of a measured signature is costed from the LUT, exactly
    stat = new[0].latency_ms["w4a16g32"]
    got = layer_costs(layers[0], Candidate.parse("w4a16g32"), back)
    assert (got.latency_ms, got.latency_source, got.latency_std_ms) == (stat.mean, "lut", stat.std)


def test_cost_table_takes_a_format_latency_from_the_lut(base) -> None:
    entry = {"op": "linear", "shape": {"batch": 8, "in_features": 64, "out_features": 32},
             "latency_ms": {"w4a16g32": {"mean": 0.0123, "std": 0.001, "count": 7},
                            "w16a16": {"mean": 0.0045, "std": 0.0, "count": 3}}}
    data = _with_formats(base, [entry])
    del data["rules"]  # a single layer is first and last: no w8a8 pin
    p = parse_profile(data, "test.yaml")
    lay = linear(64, 32, input_shape=(1, 8, 64), index=0)
    t = resource_table([lay], p, formats=["w4a16g32", "w8a16", "w16a16"], ties=[])
    lat = t.resources["latency_ms"]
    assert lat[t.row_of("fc64x32", "w4a16g32")] == 0.0123
    assert lat[t.row_of("fc64x32", "w16a16")] == 0.0045
    assert t.sources["latency_ms"][t.row_of("fc64x32", "w4a16g32")] == "lut"
    # w8a16 is not measured for that signature: the roofline at the float rate
    assert t.sources["latency_ms"][t.row_of("fc64x32", "w8a16")] == "roofline"
    # another batch is another signature: the roofline
    assert layer_costs(lay, Candidate.parse("w4a16g32"), p, batch=2).latency_source == "roofline"


def test_a_format_key_the_profile_does_not_list_is_refused(base) -> None:
    entry = {"op": "linear", "shape": {"batch": 8, "in_features": 64, "out_features": 32},
             "latency_ms": {"w4a16g128": {"mean": 0.01}}}
    with pytest.raises(ConfigError, match=r"^test\.yaml: cost\.lut\[1\]\.latency_ms\.w4a16g128 must be a pair the "
                                          r"capabilities allow for linear or a format listed in capabilities\.formats "
                                          r"\(w4a16g32, w8a16, w3a16g32, w16a16\), but got 'w4a16g128'$"):
        parse_profile(_with_formats(base, [entry]), "test.yaml")
    # a format on an op the formats are not for (ops: [linear])
    conv = copy.deepcopy(base["cost"]["lut"][0])
    conv["shape"]["batch"] = 2
    conv["latency_ms"] = {"w8a16": {"mean": 0.01}}
    with pytest.raises(ConfigError, match=r"cost\.lut\[1\]\.latency_ms\.w8a16 must be a format capabilities\.formats "
                                          r"lists for conv2d \(its ops: linear\), but got 'w8a16'"):
        parse_profile(_with_formats(base, [conv]), "test.yaml")
    # and a profile without formats refuses any format key
    no_formats = copy.deepcopy(base)
    no_formats["cost"]["lut"].append(entry)
    with pytest.raises(ConfigError, match=r"formats \(none listed\), but got 'w4a16g128'"):
        parse_profile(no_formats, "test.yaml")


def test_merge_refuses_a_format_the_base_does_not_list(base) -> None:
    p = parse_profile(_with_formats(base), "test.yaml")
    lay = linear(64, 32, input_shape=(1, 8, 64))
    stat = measure_format(lay, "w8a16", warmup=0, repeats=2)
    sig = ("linear", (("batch", 8), ("in_features", 64), ("out_features", 32)))
    with pytest.raises(ConfigError, match=r"--formats must be formats test-npu lists in capabilities\.formats "
                                          r"\(w4a16g32, w8a16, w3a16g32, w16a16\), but got 'w4a16g128'"):
        merge_format_entries(p, {sig: {"w4a16g128": [stat]}})
    merged = merge_format_entries(p, {sig: {"w8a16": [stat]}})
    assert merged.cost.lut[-1].latency_ms == {"w8a16": stat}


def test_formats_in_context_on_a_tiny_lm(base, tmp_path) -> None:
    import torch

    from mpsearch.demo import get_lm_model
    from mpsearch.model import discover
    from mpsearch.profiler.formats import profile_formats_in_context

    data = _with_formats(base)
    data["capabilities"]["formats"] = dict(FORMATS, ops=["linear", "embedding"])
    p = parse_profile(data, "test.yaml")
    torch.manual_seed(0)
    model = get_lm_model("gpt_micro").eval()  # d 32, context 32, SwiGLU 64, tied head
    x = torch.randint(0, 256, (1, 32), generator=torch.Generator().manual_seed(0))
    calib = [torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))]
    out = profile_formats_in_context(model, x, ["w4a16g32", "w8a16", "w16a16"], p, calib, warmup=1, repeats=4)
    back = load_profile(write_profile(out, tmp_path / "test-npu.yaml"))
    linears = [layer for layer in discover(model, x) if layer.kind == "linear"]
    sigs = {(s["batch"], s["in_features"], s["out_features"]) for s in (layer_signature(lay)[1] for lay in linears)}
    assert {(e.shape["batch"], e.shape["in_features"], e.shape["out_features"]) for e in back.cost.lut[1:]} == sigs
    assert all(e.shape["batch"] == 32 for e in back.cost.lut[1:])  # 1 sequence x 32 tokens
    for layer in linears:
        for key in ("w4a16g32", "w8a16", "w16a16"):
            got = layer_costs(layer, Candidate.parse(key), back, batch=1)
            assert got.latency_source == "lut" and got.latency_ms > 0
    assert "Formats measured in context" in back.source["notes"]


def test_cli_profile_formats_merges_into_a_base(base, write_yaml, tmp_path, capsys) -> None:
    from mpsearch.cli import main

    base_path = write_yaml(_with_formats(base))
    out = tmp_path / "merged.yaml"
    assert main(["profile", "--formats", "w4a16g32,w16a16", "--linear", "64x32", "--batch", "3", "--repeats", "4",
                 "--warmup", "1", "--base", str(base_path), "-o", str(out), "--name", "test-npu"]) == 0
    p = load_profile(out)
    assert p.cost.lut[0] == parse_profile(_with_formats(base), "x").cost.lut[0]
    assert p.cost.lut[1].shape == {"batch": 3, "in_features": 64, "out_features": 32}
    assert list(p.cost.lut[1].latency_ms) == ["w4a16g32", "w16a16"]
    assert f"wrote {out}" in capsys.readouterr().out
    # a format the base does not list: exit 2, one line naming it
    assert main(["profile", "--formats", "w4a16g128", "--linear", "128x32", "--repeats", "2", "--base",
                 str(base_path), "-o", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--formats must be formats test-npu lists in capabilities.formats" in err and "'w4a16g128'" in err
    assert not (tmp_path / "bad.yaml").exists()
    # no base: refused before measuring
    assert main(["profile", "--formats", "w8a16", "--linear", "64x32", "-o", str(tmp_path / "nobase.yaml")]) == 2
    assert "--base (or --append to an existing -o file) must be given with --formats" in capsys.readouterr().err
