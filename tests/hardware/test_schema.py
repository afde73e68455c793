"""Loading and strict validation of profile files: every refusal names file, key, rule, value."""

from __future__ import annotations

import os

import pytest

from mpsearch.core.profile import LatencyStat, OpCapabilities
from mpsearch.errors import ConfigError, UnknownNameError
from mpsearch.hardware import load_profile, shipped_profiles


def test_valid_profile_loads_with_every_field(base, write_yaml):
    path = write_yaml(base)
    p = load_profile(path)
    assert p.name == "test-npu" and p.path == str(path)
    c = p.capabilities
    assert c.weight_bits == (2, 4, 8) and c.activation_bits == (4, 8)
    assert c.pairs == ((8, 8), (4, 8), (4, 4), (2, 8))
    assert c.per_op == {"depthwise_conv2d": OpCapabilities(weight_bits=(8,))}
    assert c.allowed_pairs("conv2d") == [(8, 8), (4, 8), (4, 4), (2, 8)]
    assert c.allowed_pairs("depthwise_conv2d") == [(8, 8)]
    assert p.rules.first_layer == (8, 8) and p.rules.last_layer == (8, 8)
    assert p.cost.roofline.ops_per_s == {"w8a8": 2.0e12, "w4a4": 4.0e12}
    assert p.cost.roofline.overhead_ms == 0.01
    (entry,) = p.cost.lut
    # scalar kernel/stride expand to one per spatial dimension
    assert entry.shape == {"batch": 1, "in_hw": (56, 56), "cin": 64, "cout": 64, "kernel": (3, 3),
                           "stride": (1, 1), "groups": 1}
    assert entry.latency_ms == {"w8a8": LatencyStat(0.53, 0.01, 100)}


def test_defaults_of_optional_keys(base, write_yaml):
    for k in ("pairs", "weight_mode", "weight_granularity", "activation_mode", "scale", "integer_only", "per_op"):
        del base["capabilities"][k]
    del base["rules"]
    del base["cost"]["lut"]
    del base["cost"]["roofline"]["overhead_ms"]
    p = load_profile(write_yaml(base))
    c = p.capabilities
    assert (c.weight_mode, c.activation_mode, c.scale, c.integer_only) == ("symmetric", "asymmetric", "dyadic", True)
    assert c.weight_granularity == ("per_channel", "per_tensor") and c.pairs is None
    assert len(c.allowed_pairs("conv2d")) == 6  # 3 x 2, no whitelist
    assert p.rules.first_layer is None and p.cost.lut == () and p.cost.roofline.overhead_ms == 0.0


def test_yaml11_exponent_without_sign_is_a_number(base, write_yaml, tmp_path):
    # PyYAML reads "2.0e12" as a string (YAML 1.1); DESIGN.md's sketch writes numbers that way.
    path = write_yaml(base)
    text = path.read_text().replace("2000000000000.0", "2.0e12")
    assert "2.0e12" in text
    path.write_text(text)
    assert load_profile(path).cost.roofline.ops_per_s["w8a8"] == 2.0e12


def _set(d, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    if value is _DELETE:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


_DELETE = object()

# (dotted path to change, new value, expected message after "{file}: ")
BAD = [
    ("colour", "red", "unknown key 'colour'; valid keys: version, name, description"),
    ("version", 2, "version must be 1, but got 2"),
    ("name", "bad name!", "name must be a name of letters, digits"),
    ("source.kind", "guessed", "source.kind must be one of measured, datasheet, analytic, but got 'guessed'"),
    ("capabilities.weight_bits", "8", "capabilities.weight_bits must be a non-empty list of bit-widths, but got '8'"),
    ("capabilities.weight_bits", [8, 9],
     "capabilities.weight_bits[1] must be an integer bit-width in 2, 3, 4, 5, 6, 7, 8, 16, but got 9"),
    ("capabilities.activation_bits", [8, True], "capabilities.activation_bits[1] must be an integer bit-width"),
    ("capabilities.pairs", [[8, 8], [16, 8]],
     "capabilities.pairs[1] must be a pair with w_bits in [2, 4, 8] and a_bits in [4, 8], but got [16, 8]"),
    ("capabilities.scale", "float", "capabilities.scale must be dyadic or power_of_two when integer_only is true, "
                                    "but got 'float'"),
    ("capabilities.weight_mode", "skewed", "capabilities.weight_mode must be one of symmetric, asymmetric"),
    ("capabilities.per_op", {"lstm": {"weight_bits": [8]}}, "capabilities.per_op must be keyed by op kinds"),
    ("capabilities.per_op", {"linear": {"weight_bits": [2], "activation_bits": [4]}},
     "capabilities.per_op.linear must be a set of bits and pairs that leaves at least one (w, a) pair"),
    ("rules.first_layer", {"w_bits": 2, "a_bits": 4}, "rules.first_layer must be a pair the capabilities allow"),
    ("rules.last_layer", {"w_bits": 8}, "key 'rules.last_layer.a_bits' is required but missing"),
    ("cost.roofline.bytes_per_s", -1.0, "cost.roofline.bytes_per_s must be a finite number > 0, but got -1.0"),
    ("cost.roofline.overhead_ms", -0.5, "cost.roofline.overhead_ms must be a finite number >= 0, but got -0.5"),
    ("cost.roofline.ops_per_s", {"w4a4": 4.0e12},
     "cost.roofline.ops_per_s must be given for w2a8 or a wider pair (an allowed pair needs a rate), but got ['w4a4']"),
    ("cost.roofline.ops_per_s", {"w8a8": 1.0, "w9a8": 1.0}, "cost.roofline.ops_per_s key must be a pair key"),
    ("cost.roofline.ops_per_s", {"w8a8": 1.0, "w2a4": 1.0}, "cost.roofline.ops_per_s.w2a4 must be keyed by a pair the "
                                                           "capabilities allow"),
    ("cost.roofline", _DELETE, "key 'cost.roofline' is required but missing"),
    ("cost.lut.0.latency_ms.w8a8.mean", -0.5, "cost.lut[0].latency_ms.w8a8.mean must be a finite number > 0, "
                                               "but got -0.5"),
    ("cost.lut.0.latency_ms.w8a8.mean", ".nan", "cost.lut[0].latency_ms.w8a8.mean must be a finite number > 0"),
    ("cost.lut.0.latency_ms.w8a8", {"std": 0.1}, "key 'cost.lut[0].latency_ms.w8a8.mean' is required but missing"),
    ("cost.lut.0.latency_ms", _DELETE, "key 'cost.lut[0].latency_ms' is required but missing"),
    ("cost.lut.0.latency_ms", {}, "cost.lut[0].latency_ms must be a non-empty mapping"),
    ("cost.lut.0.latency_ms", {"w2a4": {"mean": 1.0}},
     "cost.lut[0].latency_ms.w2a4 must be a pair the capabilities allow for conv2d (w8a8, w4a8, w4a4, w2a8), "
     "but got 'w2a4'"),
    ("cost.lut.0.latency_ms.w8a8.count", 0, "cost.lut[0].latency_ms.w8a8.count must be an integer >= 1, but got 0"),
    ("cost.lut.0.shape.in_hw", [56], "cost.lut[0].shape.in_hw must be a list of 2 positive integers, but got [56]"),
    ("cost.lut.0.shape.groups", 3, "cost.lut[0].shape.groups must be a divisor of cin=64 and cout=64, but got 3"),
    ("cost.lut.0.shape.padding", 1, "unknown key 'cost.lut[0].shape.padding'"),
    ("cost.lut.0.op", "lstm", "cost.lut[0].op must be one of conv1d, conv2d"),
    ("cost.memory", {"activation_bytes": -5}, "cost.memory.activation_bytes must be an integer >= 1, but got -5"),
    ("cost.energy", {"pj_per_op": {"w4a4": 1.0}}, "cost.energy.pj_per_op must be given for w2a8 or a wider pair"),
]


@pytest.mark.parametrize("dotted,value,message", BAD, ids=[b[0] + ":" + repr(b[1])[:20] for b in BAD])
def test_refusals_name_file_key_rule_and_value(base, write_yaml, dotted, value, message):
    if value == ".nan":
        value = float("nan")
    _set(base, dotted, value)
    path = write_yaml(base)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text, text


def test_duplicate_lut_signature_is_refused(base, write_yaml):
    entry = dict(base["cost"]["lut"][0])
    entry["shape"] = dict(entry["shape"], kernel=[3, 3], stride=[1, 1])  # same signature, other spelling
    base["cost"]["lut"].append(entry)
    with pytest.raises(ConfigError, match=r"cost\.lut\[1\]\.shape must be a signature not already given by cost\.lut\[0\]"):
        load_profile(write_yaml(base))


def test_depthwise_lut_entry_needs_groups_equal_cin(base, write_yaml):
    base["cost"]["lut"][0].update(op="depthwise_conv2d")
    with pytest.raises(ConfigError, match=r"cost\.lut\[0\]\.shape\.groups must be equal to cin=64 for depthwise_conv2d"):
        load_profile(write_yaml(base))


def test_empty_file_and_bad_yaml_and_bad_bytes(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="the top level must be a mapping, but got None"):
        load_profile(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="must be valid YAML"):
        load_profile(broken)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="must be UTF-8 YAML or JSON"):
        load_profile(binary)


def test_unknown_name_lists_shipped_names():
    with pytest.raises(UnknownNameError) as info:
        load_profile("cortex-m7-cmsis")
    text = str(info.value)
    assert "did you mean 'cortex-m7-cmsis-nn'?" in text
    for name in shipped_profiles():
        assert name in text


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="profile file must exist"):
        load_profile(tmp_path / "nope.yaml")


def test_names_found_in_env_path_and_cwd_hw_profiles(base, tmp_path, monkeypatch):
    import yaml

    env_dir, cwd = tmp_path / "env", tmp_path / "work"
    (cwd / "hw_profiles").mkdir(parents=True)
    env_dir.mkdir()
    base["name"] = "my-npu"
    (cwd / "hw_profiles" / "my-npu.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.chdir(cwd)
    assert load_profile("my-npu").path == str(cwd / "hw_profiles" / "my-npu.yaml")
    # the environment folder is searched first
    base["description"] = "from env"
    (env_dir / "my-npu.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.setenv("MPSEARCH_PROFILE_PATH", str(env_dir))
    assert load_profile("my-npu").description == "from env"
    # shipped names still resolve from anywhere
    assert load_profile("edge-tpu").name == "edge-tpu"


def test_lookup_by_name_needs_matching_name(base, tmp_path, monkeypatch):
    import yaml

    (tmp_path / "hw_profiles").mkdir()
    (tmp_path / "hw_profiles" / "alias.yaml").write_text(yaml.safe_dump(base))  # name: test-npu
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="name must equal the file name 'alias'"):
        load_profile("alias")
    assert load_profile(os.path.join("hw_profiles", "alias.yaml")).name == "test-npu"


def test_shipped_files_are_package_data_and_hw_profiles_points_there():
    import tomllib
    from pathlib import Path

    from mpsearch.hardware import SHIPPED_DIR

    repo = Path(__file__).resolve().parents[2]
    assert set(shipped_profiles()) == {"cortex-m7-cmsis-nn", "gap8-pulp-nn", "edge-tpu", "nvidia-t4", "nvidia-a100",
                                       "x86-2core-int"}
    package_data = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["mpsearch"]
    pkg = repo / "mpsearch"
    covered = {p for pat in patterns for p in pkg.glob(pat)}
    assert set(SHIPPED_DIR.glob("*.yaml")) <= covered
    assert (repo / "hw_profiles").resolve() == SHIPPED_DIR
