"""QuantSpec validation, integer ranges and the builders from Capabilities."""

import pytest

from mpsearch.core.profile import Capabilities
from mpsearch.errors import ConfigError
from mpsearch.quant import QuantSpec, activation_spec, weight_spec


@pytest.mark.parametrize(
    "bits, signed, restricted, qmin, qmax",
    [
        (8, True, False, -128, 127),
        (8, True, True, -127, 127),
        (8, False, False, 0, 255),
        (8, False, True, 0, 254),
        (4, True, False, -8, 7),
        (2, True, True, -1, 1),
        (16, True, False, -32768, 32767),
    ],
)
def test_integer_range(bits, signed, restricted, qmin, qmax):
    spec = QuantSpec(bits, symmetric=True, signed=signed, restricted_range=restricted)
    assert (spec.qmin, spec.qmax, spec.n_levels) == (qmin, qmax, qmax - qmin + 1)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"bits": 1}, "bits"),
        ({"bits": 9}, "bits"),
        ({"bits": 8.0}, "bits"),
        ({"granularity": "per_row"}, "granularity"),
        ({"granularity": "per_group"}, "group_size"),
        ({"granularity": "per_group", "group_size": 0}, "group_size"),
        ({"group_size": 4}, "group_size"),
        ({"scale_kind": "log"}, "scale_kind"),
        ({"axis": -1}, "axis"),
        ({"symmetric": 1}, "symmetric"),
    ],
)
def test_invalid_specs_name_the_key(kwargs, key):
    args = {"bits": 8, "symmetric": True, "signed": True, **kwargs}
    with pytest.raises(ConfigError, match=rf"QuantSpec: {key} must be"):
        QuantSpec(**args)


def test_builders_follow_capabilities():
    caps = Capabilities(weight_mode="asymmetric", weight_granularity=("per_tensor",), activation_mode="symmetric",
                        scale="power_of_two")
    w = weight_spec(caps, 4)
    assert (w.bits, w.symmetric, w.signed, w.granularity, w.axis, w.scale_kind) == \
        (4, False, True, "per_tensor", 0, "power_of_two")
    a = activation_spec(caps, 8)
    assert (a.symmetric, a.signed, a.granularity, a.axis, a.scale_kind) == (True, True, "per_tensor", 1, "power_of_two")
    # No profile: weights symmetric per-channel, activations asymmetric, float scales.
    assert weight_spec(None, 8) == QuantSpec(8, True, True, granularity="per_channel")
    assert activation_spec(None, 8) == QuantSpec(8, False, True, axis=1)
    with pytest.raises(ConfigError, match="weight_mode must be one of"):
        weight_spec(Capabilities(weight_mode="sym"), 8)


def test_quantize_config_specs_follow_profile_then_config():
    from mpsearch.core import HardwareProfile
    from mpsearch.quant import QuantizeConfig

    prof = HardwareProfile(name="g", capabilities=Capabilities(weight_granularity=("per_group",), group_size=4,
                                                               activation_mode="symmetric", scale="dyadic"))
    w = QuantizeConfig().weight_spec(prof, 4)
    assert (w.granularity, w.group_size, w.symmetric, w.scale_kind) == ("per_group", 4, True, "dyadic")
    w = QuantizeConfig(weight_granularity="per_group", group_size=2, weight_mode="asymmetric").weight_spec(prof, 4)
    assert (w.group_size, w.symmetric) == (2, False)
    a = QuantizeConfig(scale_kind="power_of_two").activation_spec(prof, 8)
    assert (a.symmetric, a.scale_kind, a.granularity) == (True, "power_of_two", "per_tensor")
    with pytest.raises(ConfigError, match="group_size must be an integer >= 1 when granularity is per_group"):
        QuantizeConfig(weight_granularity="per_group")
