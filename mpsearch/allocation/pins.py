"""Pins: layers fixed to one candidate, given by hand or by a profile's first/last-layer rules."""

from __future__ import annotations

from typing import Any, Mapping

from mpsearch.core.checks import is_int
from mpsearch.core.cost_table import CostTable
from mpsearch.core.profile import Rules
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError, rule_error

_PIN_RULE = 'a candidate: LayerBits, Candidate, (w_bits, a_bits), {"w_bits", "a_bits"} or "w8a8"'


def parse_pin(value: Any, where: str = "pins", key: str = "pin") -> tuple[int, int]:
    """``(w_bits, a_bits)`` from any of the accepted pin forms."""
    if isinstance(value, str):
        c = Candidate.parse(value, where)
        return c.w_bits, c.a_bits
    if hasattr(value, "w_bits") and hasattr(value, "a_bits"):
        return int(value.w_bits), int(value.a_bits)
    if isinstance(value, Mapping) and set(value) == {"w_bits", "a_bits"}:
        return int(value["w_bits"]), int(value["a_bits"])
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise rule_error(where, key, _PIN_RULE, value)


def resolve_pins(table: CostTable, pins: Mapping[str, Any] | None, rules: Rules | None = None) -> dict[int, tuple[int, int]]:
    """Layer index -> ``(w_bits, a_bits)``; explicit ``pins`` win over the ``rules``.

    Raises:
        UnknownNameError: a pinned layer is not in the table.
        ConfigError: a pin (or rule) names a candidate the layer does not have.
    """
    merged: dict[str, tuple[int, int]] = {}
    if rules is not None:
        for attr, name in (("first_layer", table.layers[0]), ("last_layer", table.layers[-1])):
            bits = getattr(rules, attr)
            if bits is not None:
                merged[name] = parse_pin(tuple(bits), "rules", attr)
    for name, value in (pins or {}).items():
        merged[str(name)] = parse_pin(value, "pins", str(name))
    out: dict[int, tuple[int, int]] = {}
    for name, (w_bits, a_bits) in merged.items():
        i = table.index_of(name)
        keys = [(c.w_bits, c.a_bits) for c in table.candidates[i]]
        if (w_bits, a_bits) not in keys:
            raise ConfigError(f"pins: {name!r} must be pinned to one of its candidates "
                              f"{[c.key for c in table.candidates[i]]}, but got w{w_bits}a{a_bits}")
        out[i] = (w_bits, a_bits)
    return out
