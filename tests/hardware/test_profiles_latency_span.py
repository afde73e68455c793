"""Datasheet profiles whose latency does not depend on the bits (#18 item 7): ``profiles show`` measures
the latency of every uniform plan on a reference CNN and warns when the span is below 2%; the GAP-8
profile's notes say why its sources give no faster sub-byte kernels."""

from __future__ import annotations

import pytest

from mpsearch.cli import main
from mpsearch.commands.profiles import FLAT_LATENCY_SPAN, latency_span
from mpsearch.hardware import load_profile


def test_gap8_every_pair_costs_the_same_and_show_warns(capsys):
    totals = latency_span(load_profile("gap8-pulp-nn"))
    assert sorted(totals) == sorted(f"w{w}a{a}" for w in (2, 4, 8) for a in (2, 4, 8))
    lo, hi = min(totals.values()), max(totals.values())
    assert (hi - lo) / hi < 1e-3  # one compute rate; only the few weight bytes differ
    assert totals["w2a2"] <= totals["w8a8"]  # and fewer bytes never cost more
    assert main(["profiles", "show", "gap8-pulp-nn"]) == 0
    out = capsys.readouterr().out
    assert "WARNING:      latency budgets cannot change the plan on this profile" in out
    assert f"(< {FLAT_LATENCY_SPAN:.0%})" in out


def test_gap8_notes_say_the_sources_give_no_sub_byte_speedup():
    notes = load_profile("gap8-pulp-nn").source["notes"]
    assert "no faster rate for 4- or 2-bit" in notes and "a latency budget cannot change the plan" in notes
    assert any("2007.07759" in r for r in load_profile("gap8-pulp-nn").source["references"])


@pytest.mark.parametrize("name", ["nvidia-t4", "nvidia-a100"])
def test_int4_tensor_cores_are_faster_and_show_does_not_warn(name, capsys):
    totals = latency_span(load_profile(name))
    assert totals["w4a4"] < totals["w8a8"]
    assert main(["profiles", "show", name]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_a_profile_with_a_faster_sub_byte_rate_is_not_flagged(tmp_path, capsys):
    from pathlib import Path

    text = (Path(load_profile("gap8-pulp-nn").path).read_text()
            .replace("ops_per_s: {w8a8: 5.425e+9}", "ops_per_s: {w8a8: 5.425e+9, w4a8: 1.085e+10, w2a8: 2.17e+10}"))
    path = tmp_path / "fast-subbyte.yaml"
    path.write_text(text.replace("name: gap8-pulp-nn", "name: fast-subbyte"))
    totals = latency_span(load_profile(str(path)))
    assert totals["w2a8"] < 0.3 * totals["w8a8"]
    assert main(["profiles", "show", str(path)]) == 0
    assert "WARNING" not in capsys.readouterr().out
