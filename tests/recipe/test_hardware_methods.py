"""``hardware.methods``: the weight quantization methods a recipe pairs with its bits (#16)."""

from __future__ import annotations

import pytest

from mpsearch.core.formats import WEIGHT_METHODS
from mpsearch.errors import ConfigError
from mpsearch.recipe import recipe_from_dict
from mpsearch.recipe.specs import HardwareSpec

VALID = ", ".join(WEIGHT_METHODS)


def test_methods_are_kept_in_order_without_repeats():
    assert HardwareSpec(profile="x86-2core-int", methods=["rtn", "gptq", "rtn"]).methods == ("rtn", "gptq")
    assert HardwareSpec(profile="x86-2core-int").methods is None


def test_a_bad_method_names_the_file_key_and_valid_names():
    with pytest.raises(ConfigError) as info:
        recipe_from_dict({"version": 1, "name": "n", "model": "m",
                          "hardware": {"profile": "x86-2core-int", "methods": ["rtn", "gptqq"]}}, where="r.yaml")
    assert str(info.value) == f"r.yaml: hardware.methods[1] must be one of {VALID}, but got 'gptqq'"


def test_methods_must_be_a_non_empty_list():
    with pytest.raises(ConfigError) as info:
        HardwareSpec(profile="x86-2core-int", methods="gptq")
    assert str(info.value) == ("HardwareSpec: methods must be a non-empty list of weight quantization methods "
                               "such as [rtn, gptq], but got 'gptq'")
