"""Budgets: a limit on one resource total, absolute or relative to that resource's range.

Syntax accepted by :func:`parse_budget` (the CLI's ``--budget`` and recipes reuse it):

* ``"size_bytes=120k"``: absolute; suffixes ``k K M G T`` are decimal (1k = 1000),
  ``Ki Mi Gi Ti`` (optionally followed by ``B``: ``KiB``, ``MiB``) are binary (1KiB = 1024);
  a plain ``B`` after a decimal suffix is allowed too (``120kB``).
* ``"size_bytes=50%"``: relative, a fraction of the way from the cheapest to the most
  expensive assignment of that resource (HAWQ-V3's 0.25 / 0.5 / 0.75 settings).
* ``("latency_ms", 2.5)`` or ``("latency_ms", "2.5")``: absolute; ``("size_bytes", "50%")``: relative.
* a :class:`Budget` is returned unchanged.

In the Python API, relative budgets are also given as fractions in [0, 1] through
``allocate(..., relative={"size_bytes": 0.5})``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from mpsearch.errors import ConfigError, rule_error

#: Multipliers for number suffixes: decimal SI and binary IEC.
_SUFFIXES = {
    "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([KMGT]i?|k)?B?\s*$")
_PERCENT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*%\s*$")
_RULE = 'a number (suffixes k, M, G, T, KiB, MiB, GiB allowed) or a percentage such as "50%"'


@dataclass(frozen=True)
class Budget:
    """A limit on the total of one resource over the plan.

    Attributes:
        resource: the resource name in the cost table (``size_bytes``, ``bops``, ``latency_ms``...).
        limit: the absolute limit, or when ``relative`` the fraction in [0, 1] of the way from
            the resource's smallest to its largest total.
        relative: whether ``limit`` is such a fraction.
    """

    resource: str
    limit: float
    relative: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.resource, str) or not self.resource:
            raise rule_error("Budget", "resource", "a non-empty string", self.resource)
        if isinstance(self.limit, bool) or not isinstance(self.limit, (int, float)) or not math.isfinite(self.limit):
            raise rule_error("Budget", f"{self.resource}", "a finite number", self.limit)
        object.__setattr__(self, "limit", float(self.limit))
        if self.relative and not 0.0 <= self.limit <= 1.0:
            raise rule_error("Budget", f"{self.resource}", "a relative fraction in [0, 1] (0% .. 100%)", self.limit)

    def absolute(self, lo: float, hi: float) -> float:
        """The limit in resource units, given the smallest and largest totals ``lo``/``hi``."""
        return lo + self.limit * (hi - lo) if self.relative else self.limit

    def __str__(self) -> str:
        return f"{self.resource}={self.limit * 100:g}%" if self.relative else f"{self.resource}={self.limit:g}"


def parse_value(text: Any, where: str = "budget", key: str = "value") -> tuple[float, bool]:
    """Parse ``120k``, ``1.5MiB``, ``2.5``, ``50%`` (or a number) into ``(value, relative)``.

    A percentage becomes a fraction (``"50%"`` -> ``(0.5, True)``).
    """
    if isinstance(text, bool):
        raise rule_error(where, key, _RULE, text)
    if isinstance(text, (int, float)):
        if not math.isfinite(float(text)):
            raise rule_error(where, key, _RULE, text)
        return float(text), False
    if not isinstance(text, str):
        raise rule_error(where, key, _RULE, text)
    m = _PERCENT.match(text)
    if m:
        pct = float(m.group(1))
        if not 0.0 <= pct <= 100.0:
            raise rule_error(where, key, "a percentage in 0%..100%", text)
        return pct / 100.0, True
    m = _NUMBER.match(text)
    if not m:
        raise rule_error(where, key, _RULE, text)
    value = float(m.group(1)) * _SUFFIXES[m.group(2) or ""]
    if not math.isfinite(value):
        raise rule_error(where, key, _RULE, text)
    return value, False


def parse_budget(spec: Any, where: str = "budget") -> Budget:
    """Parse one budget: ``"name=120k"``, ``"name=50%"``, ``(name, value)`` or a :class:`Budget`.

    Args:
        spec: the budget in one of the forms listed in this module's docstring.
        where: what to name in error messages (a file, ``--budget``...).

    Returns:
        The parsed :class:`Budget` (relative limits as fractions in [0, 1]).
    """
    if isinstance(spec, Budget):
        return spec
    if isinstance(spec, str):
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise rule_error(where, "budget", 'of the form "resource=value" such as "size_bytes=120k" or "size_bytes=50%"', spec)
        name = name.strip()
        limit, relative = parse_value(value, where, name)
        return Budget(name, limit, relative)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        limit, relative = parse_value(spec[1], where, spec[0])
        return Budget(spec[0], limit, relative)
    raise rule_error(where, "budget", 'a "resource=value" string, a (resource, value) pair or a Budget', spec)


def parse_budgets(budgets: Mapping[str, Any] | Iterable[Any] | None, relative: Mapping[str, float] | None = None,
                  where: str = "budgets") -> tuple[Budget, ...]:
    """Collect budgets from a mapping ``{name: value}``, a list of specs and ``relative`` fractions.

    A resource may be budgeted once only.
    """
    out: list[Budget] = []
    if budgets is None:
        pass
    elif isinstance(budgets, Mapping):
        out.extend(parse_budget((str(k), v), where) for k, v in budgets.items())
    elif isinstance(budgets, (str, Budget, tuple)):
        out.append(parse_budget(budgets, where))
    else:
        out.extend(parse_budget(b, where) for b in budgets)
    for name, frac in (relative or {}).items():
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= float(frac) <= 1.0:
            raise rule_error(where, f"relative.{name}", "a fraction in [0, 1]", frac)
        out.append(Budget(str(name), float(frac), True))
    seen: set[str] = set()
    for b in out:
        if b.resource in seen:
            raise ConfigError(f"{where}: each resource must be budgeted once, but {b.resource!r} appears twice")
        seen.add(b.resource)
    return tuple(out)
