"""The shared checks (mpsearch.core.checks): exact messages, normal forms, bools refused, junk handled."""

from __future__ import annotations

import math

import pytest

from mpsearch.core.checks import (VALID_BITS, check_bits, check_bool, check_choice, check_int, check_number, int_rule,
                                  is_int, is_number, normalize_bits, number_rule, shown)
from mpsearch.errors import ConfigError, InfeasibleBudgetError, UnknownNameError, in_context, rule_error


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("value, kwargs, ok", [
    (3, {}, True), (-3, {}, True), (True, {}, False), (3.0, {}, False), ("3", {}, False), (None, {}, False),
    (1, {"min": 1}, True), (0, {"min": 1}, False), (8, {"min": 2, "max": 8}, True), (9, {"min": 2, "max": 8}, False),
    (10**400, {"min": 0}, True),
])
def test_is_int(value, kwargs, ok):
    assert is_int(value, **kwargs) is ok


@pytest.mark.parametrize("value, kwargs, ok", [
    (0.5, {}, True), (2, {}, True), (False, {}, False), ("1", {}, False),
    (math.inf, {}, False), (math.inf, {"finite": False}, True), (math.nan, {"finite": False}, True),
    (math.nan, {"min": 0, "finite": False}, False),  # NaN is within no bound
    (0, {"min": 0}, True), (0, {"min": 0, "min_exclusive": True}, False),
    (1, {"min": 0, "max": 1}, True), (1, {"min": 0, "max": 1, "max_exclusive": True}, False),
    (10**400, {}, False), (10**400, {"finite": False}, True), (-(10**400), {"finite": False, "min": 0}, False),
])
def test_is_number(value, kwargs, ok):
    assert is_number(value, **kwargs) is ok


def test_rules_are_worded_from_the_bounds():
    assert [int_rule(), int_rule(1), int_rule(None, 8), int_rule(2, 8)] == [
        "an integer", "an integer >= 1", "an integer <= 8", "an integer in [2, 8]"]
    assert number_rule() == "a finite number" and number_rule(finite=False) == "a number"
    assert number_rule(0, min_exclusive=True) == "a finite number > 0"
    assert number_rule(0.0, finite=False) == "a number >= 0"
    assert number_rule(None, 1e-3, max_exclusive=True) == "a finite number < 0.001"
    assert number_rule(0, 1, max_exclusive=True) == "a number in [0, 1)"  # bounded: finite goes unsaid
    assert number_rule(50, 100, min_exclusive=True) == "a number in (50, 100]"


def test_check_int_messages_and_normal_form():
    assert check_int(4, "T", "n", min=1) == 4
    assert check_int(None, "T", "n", min=1, allow_none=True) is None
    assert _message(check_int, 0, "T", "n", min=1) == "T: n must be an integer >= 1, but got 0"
    assert _message(check_int, True, "T", "n", min=1) == "T: n must be an integer >= 1, but got True"
    assert _message(check_int, 2.0, "T", "n") == "T: n must be an integer, but got 2.0"
    assert _message(check_int, 0, "T", "n", min=1, allow_none=True) == "T: n must be an integer >= 1 or None, but got 0"
    assert _message(check_int, None, "T", "n", min=1) == "T: n must be an integer >= 1, but got None"
    assert _message(check_int, -1, "f.yaml", "data.batch", min=1, rule="an integer >= 1 (the batch)") == (
        "f.yaml: data.batch must be an integer >= 1 (the batch), but got -1")
    assert _message(check_int, 0, "", "n", min=1) == "n must be an integer >= 1, but got 0"


def test_check_number_messages_and_normal_form():
    assert check_number(2, "T", "lr", min=0, min_exclusive=True) == 2.0
    assert isinstance(check_number(2, "T", "lr"), float)
    assert check_number(None, "T", "t", allow_none=True) is None
    assert check_number(math.inf, "T", "t", finite=False) == math.inf
    assert _message(check_number, 0, "T", "lr", min=0, min_exclusive=True) == "T: lr must be a finite number > 0, but got 0"
    assert _message(check_number, math.nan, "T", "lr", min=0) == "T: lr must be a finite number >= 0, but got nan"
    assert _message(check_number, 1.5, "T", "alpha", min=0, max=1) == "T: alpha must be a number in [0, 1], but got 1.5"
    assert _message(check_number, False, "T", "alpha", min=0, max=1) == "T: alpha must be a number in [0, 1], but got False"
    assert _message(check_number, "0.5", "T", "x") == "T: x must be a finite number, but got '0.5'"
    huge = _message(check_number, 10**400, "T", "x")  # no OverflowError, and one readable line
    assert huge.startswith("T: x must be a finite number, but got 1000") and huge.endswith(" ...") and len(huge) < 260


def test_check_bool_choice_and_bits():
    assert check_bool(False, "T", "fold") is False
    assert _message(check_bool, 1, "T", "fold") == "T: fold must be a bool, but got 1"
    assert _message(check_bool, "yes", "f.yaml", "x.on", rule="true or false") == (
        "f.yaml: x.on must be true or false, but got 'yes'")
    assert check_choice("rl", "T", "method", ("ilp", "rl")) == "rl"
    assert _message(check_choice, "greedy", "T", "method", ("ilp", "rl")) == (
        "T: method must be one of ilp, rl, but got 'greedy'")
    assert _message(check_choice, True, "f", "version", (1,), rule="1") == "f: version must be 1, but got True"
    assert _message(check_choice, ["ilp"], "T", "method", ("ilp",)) == "T: method must be one of ilp, but got ['ilp']"
    assert [check_bits(b) for b in VALID_BITS] == [2, 3, 4, 5, 6, 7, 8, 16]
    for bad in (1, 9, 32, True, 8.0, "8", None):
        assert _message(check_bits, bad, "LayerBits", "w_bits") == f"LayerBits: w_bits must be an integer in 2..8 or 16, but got {bad!r}"


def test_normalize_bits_one_rule_for_every_caller():
    assert normalize_bits([2, 8, 4, 8], "f", "w_bits") == (8, 4, 2)  # distinct, widest first
    assert normalize_bits(4, "f", "w_bits") == (4,)
    assert normalize_bits((b for b in (8, 16)), "f", "w_bits") == (16, 8)  # 16: keep the layer in 16 bits
    assert normalize_bits(range(2, 4), "f", "w_bits") == (3, 2)
    rule = "a non-empty list of bit-widths such as [2, 4, 8]"
    assert _message(normalize_bits, [], "f", "w_bits") == f"f: w_bits must be {rule}, but got []"
    assert _message(normalize_bits, "48", "f", "w_bits") == f"f: w_bits must be {rule}, but got '48'"
    assert _message(normalize_bits, {"w": 4}, "f", "w_bits") == f"f: w_bits must be {rule}, but got {{'w': 4}}"
    assert _message(normalize_bits, 4.0, "f", "w_bits") == f"f: w_bits must be {rule}, but got 4.0"
    assert _message(normalize_bits, [4, 9], "f", "w_bits") == "f: w_bits must be an integer in 2..8 or 16, but got 9"
    assert _message(normalize_bits, [4, True], "f", "w_bits") == "f: w_bits must be an integer in 2..8 or 16, but got True"


def test_shown_cuts_only_long_values():
    assert shown([1, 2]) == [1, 2]
    cut = shown(list(range(1000)))
    assert repr(cut) == repr(list(range(1000)))[:200] + " ..."


def test_in_context_names_the_file_and_the_dotted_key():
    err = rule_error("DataSpec", "batch_size", "an integer >= 1", -1)
    assert err.rule_parts == ("batch_size", "an integer >= 1", -1)
    out = in_context(err, "r.yaml", "data")
    assert type(out) is ConfigError and str(out) == "r.yaml: data.batch_size must be an integer >= 1, but got -1"
    assert out.rule_parts == ("data.batch_size", "an integer >= 1", -1)
    assert str(in_context(err, "r.yaml")) == "r.yaml: batch_size must be an integer >= 1, but got -1"
    plain = in_context(ConfigError("DataSpec: something else"), "r.yaml", "data")
    assert str(plain) == "r.yaml: data: DataSpec: something else"
    assert isinstance(in_context(UnknownNameError("unknown x"), "r.yaml", "data"), UnknownNameError)
    infeasible = InfeasibleBudgetError("too small", smallest={"size_bytes": 10.0})
    assert in_context(infeasible, "r.yaml", "budgets").smallest == {"size_bytes": 10.0}
