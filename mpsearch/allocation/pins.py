"""Pins: layers fixed to one candidate, given by hand or by a profile's first/last-layer rules."""

from __future__ import annotations

from typing import Any, Mapping

from mpsearch.core.checks import is_int
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import LAYER_KEYS, LayerBits
from mpsearch.core.profile import Rules
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError, rule_error

_PIN_RULE = ('a candidate: LayerBits, Candidate, (w_bits, a_bits), {"w_bits", "a_bits"} or a key such as "w8a8" '
             'or "w4a16g128"')


def parse_pin(value: Any, where: str = "pins", key: str = "pin") -> str:
    """The candidate key (``"w8a8"``, ``"w4a16g128z"``) of any of the accepted pin forms.

    A ``(w_bits, a_bits)`` pair or ``{"w_bits", "a_bits"}`` mapping names the plain pair
    ``w<w>a<a>``; :func:`resolve_pins` lets it match a layer's only format with those bits.
    """
    if isinstance(value, str):
        return Candidate.parse(value, where).key
    if hasattr(value, "w_bits") and hasattr(value, "a_bits") and hasattr(value, "key"):
        return str(value.key)
    if isinstance(value, Mapping) and {"w_bits", "a_bits"} <= set(value) <= set(LAYER_KEYS):
        try:
            return LayerBits(**{k: value[k] for k in value}).key
        except (ConfigError, TypeError):
            raise rule_error(where, key, _PIN_RULE, value) from None
    if hasattr(value, "w_bits") and hasattr(value, "a_bits"):
        return f"w{int(value.w_bits)}a{int(value.a_bits)}"
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return f"w{int(value[0])}a{int(value[1])}"
    raise rule_error(where, key, _PIN_RULE, value)


def resolve_pins(table: CostTable, pins: Mapping[str, Any] | None, rules: Rules | None = None) -> dict[int, str]:
    """Layer index -> the key of its pinned candidate; explicit ``pins`` win over the ``rules``.

    A plain pair key (``"w8a8"``) matches the layer's plain candidate, else its only candidate
    with those bits (a layer whose candidates are formats); any other key matches exactly.

    Raises:
        UnknownNameError: a pinned layer is not in the table.
        ConfigError: a pin (or rule) names a candidate the layer does not have.
    """
    merged: dict[str, str] = {}
    if rules is not None:
        for attr, name in (("first_layer", table.layers[0]), ("last_layer", table.layers[-1])):
            bits = getattr(rules, attr)
            if bits is not None:
                merged[name] = parse_pin(tuple(bits), "rules", attr)
    for name, value in (pins or {}).items():
        merged[str(name)] = parse_pin(value, "pins", str(name))
    out: dict[int, str] = {}
    for name, key in merged.items():
        i = table.index_of(name)
        cands = table.candidates[i]
        keys = [c.key for c in cands]
        if key not in keys:
            c = Candidate.parse(key)
            same_bits = [k for k, cand in zip(keys, cands) if (cand.w_bits, cand.a_bits) == (c.w_bits, c.a_bits)]
            if c.is_format or len(same_bits) != 1:
                raise ConfigError(f"pins: {name!r} must be pinned to one of its candidates {keys}, but got {key}")
            key = same_bits[0]
        out[i] = key
    return out
