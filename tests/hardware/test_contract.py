"""Every shipped profile passes the mpsearch.testing profile contract; broken ones fail it."""

from __future__ import annotations

import pytest

from mpsearch.hardware import load_profile, parse_profile, shipped_profiles
from mpsearch.testing.profiles import PROFILE_CHECKS, ContractFailure, check_profile, run_check


@pytest.mark.parametrize("check", sorted(PROFILE_CHECKS))
@pytest.mark.parametrize("name", shipped_profiles())
def test_shipped_profile_passes(name, check):
    run_check(check, load_profile(name))


def test_profile_with_lut_passes_and_lut_is_exercised(base):
    base["cost"]["lut"].append({
        "op": "linear", "shape": {"batch": 8, "in_features": 512, "out_features": 10},
        "latency_ms": {"w8a8": {"mean": 0.002}, "w4a4": {"mean": 0.0015}}})
    check_profile(parse_profile(base, "test"))


def test_contract_catches_a_profile_too_small_for_its_layers(base):
    base["cost"]["memory"] = {"activation_bytes": 1000}  # no probe layer fits
    with pytest.raises(ContractFailure, match="contract 'candidates'.*activation working set must fit"):
        check_profile(parse_profile(base, "test"))


def test_contract_catches_missing_source_notes(base):
    base["source"]["notes"] = "  "
    with pytest.raises(ContractFailure, match="contract 'source'"):
        run_check("source", parse_profile(base, "test"))
