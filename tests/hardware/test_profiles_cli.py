"""`mpsearch profiles` lists the shipped profiles; `mpsearch profiles show NAME` prints one."""

from __future__ import annotations

import yaml

from mpsearch.cli import main
from mpsearch.hardware import load_profile, profile_to_dict, shipped_profiles


def test_list_shows_every_profile_with_source_and_description(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in shipped_profiles():
        p = load_profile(name)
        row = next(line for line in out.splitlines() if f" {name} " in line)
        assert p.source["kind"] in row
        assert p.description.split()[0] in row
    assert "w8a8 w8a4 w8a2 w4a8 w4a4 w4a2 w2a8 w2a4 w2a2" in out  # GAP-8's pairs
    assert "Google Coral Edge TPU" in out


def test_show_prints_a_readable_summary(capsys):
    assert main(["profiles", "show", "nvidia-t4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nvidia-t4: NVIDIA T4 (Turing)")
    assert "pairs:        w8a8 w4a4" in out
    assert "per_op:       depthwise_conv2d: w8a8" in out
    assert "rules:        first_layer=(8, 8) last_layer=(8, 8)" in out
    assert "ops_per_s w8a8=1.3e+14, w4a4=2.6e+14; bytes_per_s=3.2e+11; overhead_ms=0.005" in out
    assert "scale:        float; integer_only: false" in out


def test_show_yaml_is_the_profile(capsys):
    assert main(["profiles", "show", "cortex-m7-cmsis-nn", "--yaml"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data == profile_to_dict(load_profile("cortex-m7-cmsis-nn"))
    assert data["capabilities"]["scale"] == "power_of_two"


def test_show_a_path(base, write_yaml, capsys):
    path = write_yaml(base)
    assert main(["profiles", "show", str(path)]) == 0
    assert capsys.readouterr().out.startswith("test-npu: an NPU for tests")


def test_errors_exit_2_with_one_line(capsys):
    assert main(["profiles", "show", "edge-tpuu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpsearch profiles: error: load_profile: unknown hardware profile 'edge-tpuu'; "
                          "did you mean 'edge-tpu'?")
    assert main(["profiles", "show"]) == 2
    assert "NAME must be given" in capsys.readouterr().err
    assert main(["profiles", "edge-tpu"]) == 2
    assert "did you mean 'mpsearch profiles show edge-tpu'" in capsys.readouterr().err
