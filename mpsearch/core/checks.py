"""The shared value checks: what "an integer >= 1", "a number in [0, 1]" or "a bit-width" means.

Every ``check_*`` takes the value, ``where`` (the type, function or file named first) and ``key``,
returns the value in normal form, and otherwise raises the standard :class:`ConfigError`
``"{where}: {key} must be {rule}, but got {value!r}"`` (:func:`mpsearch.errors.rule_error`).
The rule is worded from the bounds (``"an integer >= 1"``, ``"a number in [0, 1)"``) unless
``rule`` gives the wording a call site needs (``"an integer >= 1 (the deployment batch size)"``).

A bool is never an integer or a number here, although Python counts it as one (``True == 1``):
``batch_size: true`` in a YAML file is a mistake, not a batch of one. Nothing here raises anything
but :class:`ConfigError` on arbitrary data (huge ints, NaN, lists), and a long value is cut in the
message so that one error stays one readable line.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from mpsearch.errors import ConfigError, rule_error

#: Bit-widths a quantizer accepts (16 keeps a layer near-lossless: "keep it in 16-bit").
VALID_BITS = (2, 3, 4, 5, 6, 7, 8, 16)

#: The rule of :func:`check_bits`, as the messages word it.
BITS_RULE = "an integer in 2..8 or 16"

#: The rule of a whole bit-width list (:func:`normalize_bits`).
BITS_LIST_RULE = "a non-empty list of bit-widths such as [2, 4, 8]"

_SHOWN_CHARS = 200  # longest repr of a value that a message quotes in full


class _Cut(str):
    def __repr__(self) -> str:
        return str(self)


def shown(value: Any) -> Any:
    """``value`` for a message: a repr over 200 characters is cut (``"[1, 2, ... ..."``)."""
    text = repr(value)
    return value if len(text) <= _SHOWN_CHARS else _Cut(text[:_SHOWN_CHARS] + " ...")


def fail(where: str, key: str, rule: str, value: Any) -> ConfigError:
    """The standard :class:`ConfigError` for ``value`` (cut by :func:`shown`)."""
    return rule_error(where, key, rule, shown(value))  # type: ignore[return-value]


def _fmt(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _as_float(value: Any) -> float | None:
    """``value`` as a float when it is an int or float (not a bool); huge ints become +-inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        return math.inf if value > 0 else -math.inf


def is_int(value: Any, *, min: int | None = None, max: int | None = None) -> bool:
    """True for an int (not a bool) within ``[min, max]`` (a bound of None is open)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return (min is None or value >= min) and (max is None or value <= max)


def is_number(value: Any, *, min: float | None = None, max: float | None = None, min_exclusive: bool = False,
              max_exclusive: bool = False, finite: bool = True) -> bool:
    """True for an int or float (not a bool) within the bounds; NaN is within no bound."""
    x = _as_float(value)
    if x is None or (finite and not math.isfinite(x)):
        return False
    if min is not None and not (x > min if min_exclusive else x >= min):
        return False
    return max is None or (x < max if max_exclusive else x <= max)


def int_rule(min: int | None = None, max: int | None = None) -> str:
    """``"an integer >= 1"``, ``"an integer in [2, 8]"``, ``"an integer"``..."""
    if min is not None and max is not None:
        return f"an integer in [{min}, {max}]"
    if min is not None:
        return f"an integer >= {min}"
    return f"an integer <= {max}" if max is not None else "an integer"


def number_rule(min: float | None = None, max: float | None = None, min_exclusive: bool = False,
                max_exclusive: bool = False, finite: bool = True) -> str:
    """``"a finite number > 0"``, ``"a number in [0, 1)"``, ``"a number"``..."""
    if min is not None and max is not None:  # a bounded number is finite: no need to say it
        return f"a number in {'(' if min_exclusive else '['}{_fmt(min)}, {_fmt(max)}{')' if max_exclusive else ']'}"
    base = "a finite number" if finite else "a number"
    if min is not None:
        return f"{base} {'>' if min_exclusive else '>='} {_fmt(min)}"
    if max is not None:
        return f"{base} {'<' if max_exclusive else '<='} {_fmt(max)}"
    return base


def check_int(value: Any, where: str, key: str, *, min: int | None = None, max: int | None = None,
              allow_none: bool = False, rule: str | None = None) -> Any:
    """``value`` if it is an int (not a bool) in ``[min, max]`` (or None with ``allow_none``).

    Args:
        value: the value to check.
        where: named first in the message (a type, a function, a file).
        key: the (dotted) key named in the message.
        min: smallest allowed value (None: no bound); likewise ``max``.
        allow_none: None passes too (the message then says ``"... or None"``).
        rule: the message's rule instead of the one worded from the bounds.

    Raises:
        ConfigError: ``"{where}: {key} must be {rule}, but got {value!r}"``.
    """
    if value is None and allow_none:
        return None
    if not is_int(value, min=min, max=max):
        if rule is None:
            rule = int_rule(min, max) + (" or None" if allow_none else "")
        raise fail(where, key, rule, value)
    return value


def check_number(value: Any, where: str, key: str, *, min: float | None = None, max: float | None = None,
                 min_exclusive: bool = False, max_exclusive: bool = False, finite: bool = True,
                 allow_none: bool = False, rule: str | None = None) -> float | None:
    """``value`` as a float if it is an int or float (not a bool) within the bounds.

    Args:
        value: the value to check.
        where: named first in the message.
        key: the (dotted) key named in the message.
        min: lower bound (None: none), excluded with ``min_exclusive``; likewise ``max``.
        finite: refuse inf and NaN (NaN is refused by any bound anyway).
        allow_none: None passes too (and is returned).
        rule: the message's rule instead of the one worded from the bounds.

    Raises:
        ConfigError: ``"{where}: {key} must be {rule}, but got {value!r}"``.
    """
    if value is None and allow_none:
        return None
    if not is_number(value, min=min, max=max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
                     finite=finite):
        if rule is None:
            rule = number_rule(min, max, min_exclusive, max_exclusive, finite) + (" or None" if allow_none else "")
        raise fail(where, key, rule, value)
    return _as_float(value)


def check_bool(value: Any, where: str, key: str, *, rule: str = "a bool") -> bool:
    """``value`` if it is True or False (not 0 or 1); files word the rule ``"true or false"``."""
    if not isinstance(value, bool):
        raise fail(where, key, rule, value)
    return value


def check_choice(value: Any, where: str, key: str, choices: Iterable[Any], *, rule: str | None = None) -> Any:
    """``value`` if it is one of ``choices`` (compared with ``==``; a bool never matches an int)."""
    choices = tuple(choices)
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
        ok = False
    else:
        try:
            ok = value in choices
        except TypeError:  # a value whose == refuses the comparison
            ok = False
    if not ok:
        raise fail(where, key, rule or "one of " + ", ".join(map(str, choices)), value)
    return value


def check_bits(value: Any, where: str = "", key: str = "bits", *, rule: str = BITS_RULE) -> int:
    """``value`` if it is one of :data:`VALID_BITS` (an int, not a bool)."""
    if not is_int(value) or value not in VALID_BITS:
        raise fail(where, key, rule, value)
    return value


def normalize_bits(value: Any, where: str, key: str) -> tuple[int, ...]:
    """A user's set of bit-widths -> the distinct widths, widest first (``[2, 8, 4, 8]`` -> ``(8, 4, 2)``).

    The one reader of a bit-width list, for recipes (``hardware.w_bits``) and for the Python API
    (``candidates_for(..., w_bits=...)``). A single int stands for a list of one. Every width
    must be one of :data:`VALID_BITS`; 16 keeps a layer in 16 bits, and whether a device runs
    it is the profile's to say (``check_recipe``, ``candidates_for``), not this rule's.

    Raises:
        ConfigError: ``"{where}: {key} must be a non-empty list of bit-widths ..."`` for a
            value that is no list (or an empty one), and ``"{where}: {key} must be an
            integer in 2..8 or 16, but got 9"`` naming the first bad width.
    """
    if is_int(value):
        value = [value]
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise fail(where, key, BITS_LIST_RULE, value)
    items = list(value)
    if not items:
        raise fail(where, key, BITS_LIST_RULE, items)
    return tuple(sorted({check_bits(b, where, key) for b in items}, reverse=True))


def _got(value: Any) -> Any:
    """A wrong-typed argument as a message shows it: plain values as they are, objects by type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return shown(value)
    return _Cut(f"a {type(value).__module__}.{type(value).__qualname__}" if type(value).__module__ != "builtins"
                else f"{type(value).__qualname__} {shown(value)!r}")


def check_type(value: Any, types: type | tuple[type, ...], where: str, key: str, rule: str) -> Any:
    """``value`` if it is an instance of ``types``: the public verbs' check of their arguments.

    Raises:
        ConfigError: ``"{where}: {key} must be {rule}, but got None"`` (an object is named by its type).
    """
    if not isinstance(value, types):
        raise rule_error(where, key, rule, _got(value))
    return value


def check_callable(value: Any, where: str, key: str, rule: str) -> Any:
    """``value`` if it is callable (a loss function, a model factory)."""
    if not callable(value):
        raise rule_error(where, key, rule, _got(value))
    return value


def check_iterable(value: Any, where: str, key: str, rule: str) -> Any:
    """``value`` if it is an iterable of items (batches, layers): a string or a mapping is not."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise rule_error(where, key, rule, _got(value))
    return value


def check_items(values: Any, types: type | tuple[type, ...], where: str, key: str, rule: str,
                item_rule: str) -> list[Any]:
    """``values`` as a list when it is an iterable (``rule``) whose every item is an instance of
    ``types`` (``item_rule``); the message names the first bad item (``"cost_table: layers[2] ..."``).
    """
    items = list(check_iterable(values, where, key, rule))
    for i, item in enumerate(items):
        check_type(item, types, where, f"{key}[{i}]", item_rule)
    return items
