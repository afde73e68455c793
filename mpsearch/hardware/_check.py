"""Typed readers for values parsed from a profile file.

Each reader takes the value, its dotted key, and returns the value in canonical form or
raises :class:`ConfigError` with ``"{file}: {dotted.key} must be {rule}, but got {value!r}"``.
Nothing here may raise anything else on arbitrary YAML data (lists, dicts, None, huge ints,
NaN): the fuzz tests hold it to that.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from mpsearch.core.checks import VALID_BITS, check_bits, check_bool, check_choice, check_int, fail, is_int, is_number
from mpsearch.core.io import check_keys
from mpsearch.errors import ConfigError

# PyYAML follows YAML 1.1, where "2.0e12" (no exponent sign) is a *string*; numbers written
# that way are accepted when the whole string is a float literal.
_FLOAT_TEXT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_PAIR_KEY = re.compile(r"w(\d{1,2})a(\d{1,2})")
BITS_RULE = "an integer bit-width in " + ", ".join(map(str, VALID_BITS))


class Reader:
    """Reads typed values of one file; ``where`` is the file named in every message."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, rule: str, value: Any) -> ConfigError:
        return fail(self.where, key, rule, value)  # long junk is cut: one error stays one readable line

    def mapping(self, data: Any, key: str, valid: Iterable[str], required: Iterable[str] = ()) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(key or "the top level", "a mapping", data)
        check_keys(data, list(valid), self.where, key, required=required)
        return data

    def string(self, value: Any, key: str, pattern: str | None = None, rule: str = "a string") -> str:
        if not isinstance(value, str) or (pattern and not re.fullmatch(pattern, value)):
            raise self.fail(key, rule, value)
        return value

    def boolean(self, value: Any, key: str) -> bool:
        return check_bool(value, self.where, key, rule="true or false")

    def choice(self, value: Any, key: str, choices: Sequence[str]) -> str:
        return check_choice(value, self.where, key, choices)

    def number(self, value: Any, key: str, minimum: float = 0.0, strict: bool = True) -> float:
        """A finite float ``> minimum`` (``>=`` when ``strict`` is False)."""
        rule = f"a finite number {'>' if strict else '>='} {minimum:g}"
        x = float(value) if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()) else value
        if not is_number(x, min=minimum, min_exclusive=strict):
            raise self.fail(key, rule, value)  # quoting the value as written ("2.0e12" stays a string)
        return float(x)

    def integer(self, value: Any, key: str, minimum: int = 1) -> int:
        return check_int(value, self.where, key, min=minimum)

    def bits(self, value: Any, key: str) -> int:
        return check_bits(value, self.where, key, rule=BITS_RULE)

    def bits_list(self, value: Any, key: str) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, "a non-empty list of bit-widths", value)
        out = tuple(self.bits(v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(set(out)) != len(out):
            raise self.fail(key, "a list without repeats", value)
        return out

    def int_tuple(self, value: Any, key: str, length: int, allow_scalar: bool) -> tuple[int, ...]:
        """``length`` positive ints; a bare int stands for all of them when ``allow_scalar``."""
        if allow_scalar and is_int(value):
            return (self.integer(value, key),) * length
        if not isinstance(value, list) or len(value) != length:
            rule = f"a list of {length} positive integers" + (" or one integer" if allow_scalar else "")
            raise self.fail(key, rule, value)
        return tuple(self.integer(v, f"{key}[{i}]") for i, v in enumerate(value))

    def pair_key(self, value: Any, key: str) -> tuple[int, int]:
        """Parse ``"w4a8"`` into ``(4, 8)`` (bits must be valid bit-widths)."""
        m = _PAIR_KEY.fullmatch(value) if isinstance(value, str) else None
        if not m or int(m.group(1)) not in VALID_BITS or int(m.group(2)) not in VALID_BITS:
            raise self.fail(key, f'a pair key "w<bits>a<bits>" such as "w8a8", with bits in '
                                 f'{", ".join(map(str, VALID_BITS))}', value)
        return int(m.group(1)), int(m.group(2))


def pair_key(w_bits: int, a_bits: int) -> str:
    """``(4, 8)`` -> ``"w4a8"``."""
    return f"w{w_bits}a{a_bits}"


def parse_pair_key(key: str) -> tuple[int, int]:
    """``"w4a8"`` -> ``(4, 8)``; raises :class:`ConfigError` when malformed."""
    return Reader("").pair_key(key, "pair key")
