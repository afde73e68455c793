"""Hardware profiles: what a device runs (capabilities, rules) and what it costs.

    profile = load_profile("cortex-m7-cmsis-nn")          # shipped name, or a path
    cands = candidates_for(layer, profile, w_bits=[4, 8], a_bits=[8])
    cost = layer_costs(layer, cands[0], profile)          # size_bytes, bops, latency_ms (+ source)
    table = resource_table(layers, profile, w_bits=[4, 8])  # every layer x candidate (omega 0)

Measuring a profile on this machine (imports torch and the executor, so it is loaded lazily)::

    profile = profile_device(model, example_inputs, device="cpu", batch=1, name="my-cpu")

Schema: :mod:`mpsearch.hardware.schema`; cost definitions: :mod:`mpsearch.hardware.costs`;
where names are looked up: :mod:`mpsearch.hardware.loader`.
"""

from mpsearch.hardware.candidates import candidates_for, candidates_for_layers
from mpsearch.hardware.costs import (
    SCALE_BYTES,
    LayerCost,
    activation_bytes,
    layer_costs,
    lut_entry_for,
    profile_budgets,
    rate_for_pair,
    roofline_work,
    size_bytes,
)
from mpsearch.hardware.fit import RooflineSample, fit_roofline
from mpsearch.hardware.loader import (
    SHIPPED_DIR,
    available_profiles,
    load_profile,
    resolve_profile,
    shipped_profiles,
    write_profile,
)
from mpsearch.hardware.resources import resource_table
from mpsearch.hardware.schema import parse_profile, profile_to_dict
from mpsearch.hardware.signature import layer_from_signature, layer_signature

__all__ = [
    "SCALE_BYTES",
    "SHIPPED_DIR",
    "LayerCost",
    "RooflineSample",
    "activation_bytes",
    "available_profiles",
    "candidates_for",
    "candidates_for_layers",
    "fit_roofline",
    "layer_costs",
    "layer_from_signature",
    "layer_signature",
    "load_profile",
    "lut_entry_for",
    "parse_profile",
    "profile_budgets",
    "profile_to_dict",
    "rate_for_pair",
    "resolve_profile",
    "resource_table",
    "roofline_work",
    "shipped_profiles",
    "size_bytes",
    "write_profile",
]
