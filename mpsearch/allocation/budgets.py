"""Budgets: the one place where budget syntax is read, and the typed :class:`Budgets` it makes.

A budget limits the total of one resource over the plan. Syntax (recipes, ``--budget`` flags,
the Python API):

* ``"size_bytes=120k"`` / ``{"size_bytes": "120k"}``: absolute; suffixes ``k K M G T`` are
  decimal (1k = 1000), ``Ki Mi Gi Ti`` (optionally followed by ``B``: ``KiB``, ``MiB``) are
  binary (1KiB = 1024); a plain ``B`` after a decimal suffix is allowed too (``120kB``).
* ``"size_bytes=50%"``: relative, a fraction of the way from the cheapest to the most
  expensive assignment of that resource (HAWQ-V3's 0.25 / 0.5 / 0.75 settings).
* ``"size_bytes=uniform:w4a8"``: the total of the uniform W4A8 plan (:func:`uniform_plan`).
* ``("latency_ms", 2.5)`` or ``("latency_ms", "2.5")``: absolute; ``("size_bytes", "50%")``: relative.
* a :class:`Budget` or :class:`UniformBudget` is taken as it is.

In the Python API, relative budgets are also given as fractions in [0, 1] through
``allocate(..., relative={"size_bytes": 0.5})``.

Two steps, each done once: :meth:`Budgets.parse` reads the syntax (recipe loading and the
CLI's flags do it, so a typo stops before any heavy work); :func:`resolve_budgets` checks the
resources against a cost table and turns ``uniform:`` budgets into totals. Everything below
the public verbs receives the resolved :class:`Budgets` and parses nothing again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from mpsearch.core.checks import check_bits, check_number, is_number
from mpsearch.core.cost_table import CostTable
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError, rule_error, unknown_name

#: Multipliers for number suffixes: decimal SI and binary IEC.
_SUFFIXES = {
    "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([KMGT]i?|k)?B?\s*$")
_PERCENT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*%\s*$")
_UNIFORM = re.compile(r"^uniform:(w(\d+)a(\d+)\S*)$")
_RULE = ('a number (suffixes k, M, G, T, KiB, MiB, GiB allowed), a percentage such as "50%" '
         'or a uniform plan\'s total such as "uniform:w4a8"')


@dataclass(frozen=True)
class Budget:
    """A limit on the total of one resource over the plan.

    Attributes:
        resource: the resource name in the cost table (``size_bytes``, ``bops``, ``latency_ms``...).
        limit: the absolute limit, or when ``relative`` the fraction in [0, 1] of the way from
            the resource's smallest to its largest total.
        relative: whether ``limit`` is such a fraction.
        given: the value as the user wrote it (``"120k"``), quoted in messages; not compared.
    """

    resource: str
    limit: float
    relative: bool = False
    given: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.resource, str) or not self.resource:
            raise rule_error("Budget", "resource", "a non-empty string", self.resource)
        object.__setattr__(self, "limit", check_number(self.limit, "Budget", self.resource))
        if self.relative and not 0.0 <= self.limit <= 1.0:
            raise rule_error("Budget", f"{self.resource}", "a relative fraction in [0, 1] (0% .. 100%)", self.limit)

    def absolute(self, lo: float, hi: float) -> float:
        """The limit in resource units, given the smallest and largest totals ``lo``/``hi``."""
        return lo + self.limit * (hi - lo) if self.relative else self.limit

    @property
    def written(self) -> Any:
        """The value as written by the user, else as it would be written (``120000.0``, ``"50.0%"``)."""
        if self.given is not None:
            return self.given
        return f"{self.limit * 100!r}%" if self.relative else self.limit

    def __str__(self) -> str:
        return f"{self.resource}={self.limit * 100:g}%" if self.relative else f"{self.resource}={self.limit:g}"


@dataclass(frozen=True)
class UniformBudget:
    """A limit equal to the total of ``resource`` in the uniform plan at ``w{w_bits}a{a_bits}``.

    It needs a cost table to become a number: :func:`resolve_budgets` turns it into a :class:`Budget`.
    """

    resource: str
    w_bits: int
    a_bits: int
    key: str | None = None  # an LLM format's key ("w3a16g128"); None: the plain pair

    def __post_init__(self) -> None:
        if not isinstance(self.resource, str) or not self.resource:
            raise rule_error("UniformBudget", "resource", "a non-empty string", self.resource)
        check_bits(self.w_bits, "UniformBudget", "w_bits")
        check_bits(self.a_bits, "UniformBudget", "a_bits")
        if self.key is not None:
            c = Candidate.parse(self.key, "UniformBudget")
            if (c.w_bits, c.a_bits) != (self.w_bits, self.a_bits):
                raise rule_error("UniformBudget", "key", f"a format of w{self.w_bits}a{self.a_bits}", self.key)

    @property
    def written(self) -> str:
        return f"uniform:{self.key or f'w{self.w_bits}a{self.a_bits}'}"

    def resolve(self, table: CostTable) -> Budget:
        """The absolute budget: the uniform plan's total of ``resource`` on ``table``."""
        from mpsearch.allocation.uniform import uniform_plan

        plan, others = uniform_plan(table, self.w_bits, self.a_bits, key=self.key)
        if len(others) == len(table.layers):  # no layer takes it: the "uniform" plan is the widest one
            keys = sorted({c.key for cs in table.candidates for c in cs})
            raise rule_error("budgets", self.resource, f"a uniform plan that some layer can take (candidates: "
                             f"{', '.join(keys)})", self.written)
        total = plan.totals[self.resource]
        return Budget(self.resource, total, given=total)

    def __str__(self) -> str:
        return f"{self.resource}={self.written}"


AnyBudget = Budget | UniformBudget


@dataclass(frozen=True, eq=False)
class Budgets(Mapping):
    """Every budget of one run, parsed once; build with :meth:`parse` or :func:`resolve_budgets`.

    As a mapping it reads ``resource -> value as written`` (``{"size_bytes": "120k"}``; a
    resolved ``uniform:`` budget reads as its total), so it prints, compares and serializes
    like the user's own budgets and parses back to the same value. The typed budgets are
    :attr:`entries`.

    Attributes:
        entries: one :class:`Budget` (or, before resolution, :class:`UniformBudget`) per resource.
    """

    entries: tuple[AnyBudget, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        for b in self.entries:
            if not isinstance(b, (Budget, UniformBudget)):
                raise rule_error("Budgets", "entries", "Budget or UniformBudget values", b)
        _check_once(self.entries, "Budgets")

    @classmethod
    def parse(cls, budgets: Any, relative: Mapping[str, float] | None = None, where: str = "budgets") -> "Budgets":
        """Read budgets in any accepted form (see the module docstring); a :class:`Budgets` is kept."""
        if isinstance(budgets, Budgets) and not relative:
            return budgets
        return cls(parse_budgets(budgets, relative, where))

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(b.resource for b in self.entries)

    @property
    def resolved(self) -> bool:
        """True when every budget is a number (no ``uniform:`` budget left)."""
        return all(isinstance(b, Budget) for b in self.entries)

    def budget(self, resource: str) -> AnyBudget:
        """The typed budget on ``resource``."""
        for b in self.entries:
            if b.resource == resource:
                return b
        raise unknown_name("budget", resource, self.resources, "Budgets")

    def without(self, *resources: str) -> "Budgets":
        """These budgets less the ones on ``resources``."""
        return Budgets(tuple(b for b in self.entries if b.resource not in resources))

    def __getitem__(self, resource: str) -> Any:
        return self.budget(resource).written

    def __contains__(self, resource: object) -> bool:
        return resource in self.resources

    def __iter__(self) -> Iterator[str]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Budgets):
            return self.entries == other.entries
        return dict(self.items()) == dict(other.items()) if isinstance(other, Mapping) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.entries)

    def __str__(self) -> str:
        return ", ".join(str(b) for b in self.entries)


def parse_value(text: Any, where: str = "budget", key: str = "value") -> tuple[float, bool]:
    """Parse ``120k``, ``1.5MiB``, ``2.5``, ``50%`` (or a number) into ``(value, relative)``.

    A percentage becomes a fraction (``"50%"`` -> ``(0.5, True)``).
    """
    if is_number(text, finite=False):  # an int or float, not a bool
        return check_number(text, where, key, rule=_RULE), False
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


def parse_uniform(value: Any) -> tuple[int, int] | None:
    """``"uniform:w4a8"`` -> ``(4, 8)`` (``"uniform:w3a16g128"`` -> ``(3, 16)``); anything else -> None."""
    m = _UNIFORM.match(value.strip()) if isinstance(value, str) else None
    return (int(m.group(2)), int(m.group(3))) if m else None


def _entry(name: str, value: Any, where: str) -> AnyBudget:
    uni = parse_uniform(value)
    if uni is not None:
        key = _UNIFORM.match(value.strip()).group(1)  # type: ignore[union-attr]
        try:
            plain = key == f"w{uni[0]}a{uni[1]}" and uni[1] != 16  # w8a16 is a format (weight-only)
            return UniformBudget(name, *uni, key=None if plain else key)
        except ConfigError:
            raise rule_error(where, name, 'a uniform plan of valid bit-widths (2..8 or 16) or an LLM format such as '
                             '"uniform:w4a8" or "uniform:w4a16g128"',
                             value) from None
    limit, relative = parse_value(value, where, name)
    return Budget(name, limit, relative, given=value)


def parse_budget(spec: Any, where: str = "budget") -> AnyBudget:
    """Parse one budget: ``"name=120k"``, ``"name=50%"``, ``"name=uniform:w4a8"``, ``(name, value)`` or a budget.

    Args:
        spec: the budget in one of the forms listed in this module's docstring.
        where: what to name in error messages (a file, ``--budget``...).

    Returns:
        The parsed :class:`Budget` (relative limits as fractions in [0, 1]), or a
        :class:`UniformBudget` for ``uniform:wXaY``.
    """
    if isinstance(spec, (Budget, UniformBudget)):
        return spec
    if isinstance(spec, str):
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise rule_error(where, "budget", 'of the form "resource=value" such as "size_bytes=120k" or "size_bytes=50%"', spec)
        return _entry(name.strip(), value.strip(), where)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return _entry(spec[0], spec[1], where)
    raise rule_error(where, "budget", 'a "resource=value" string, a (resource, value) pair or a Budget', spec)


def parse_budgets(budgets: Mapping[str, Any] | Iterable[Any] | None, relative: Mapping[str, float] | None = None,
                  where: str = "budgets") -> tuple[AnyBudget, ...]:
    """Collect budgets from a mapping ``{name: value}``, a list of specs and ``relative`` fractions.

    A resource may be budgeted once only.
    """
    out: list[AnyBudget] = []
    if budgets is None:
        pass
    elif isinstance(budgets, Budgets):
        out.extend(budgets.entries)
    elif isinstance(budgets, Mapping):
        out.extend(parse_budget((str(k), v), where) for k, v in budgets.items())
    elif isinstance(budgets, (str, Budget, UniformBudget, tuple)):
        out.append(parse_budget(budgets, where))
    else:
        out.extend(parse_budget(b, where) for b in budgets)
    for name, frac in (relative or {}).items():
        frac = check_number(frac, where, f"relative.{name}", min=0, max=1, rule="a fraction in [0, 1]")
        out.append(Budget(str(name), frac, True))
    _check_once(out, where)
    return tuple(out)


def _check_once(entries: Iterable[AnyBudget], where: str) -> None:
    seen: set[str] = set()
    for b in entries:
        if b.resource in seen:
            raise ConfigError(f"{where}: each resource must be budgeted once, but {b.resource!r} appears twice")
        seen.add(b.resource)


def check_resources(table: CostTable, names: Iterable[str], where: str = "budgets") -> None:
    """Refuse names of resources the table does not have (the list of valid ones is in the message)."""
    for name in names:
        if name not in table.resources:
            raise unknown_name("resource", name, table.resource_names, where)


def resolve_budgets(budgets: Any, table: CostTable, *, relative: Mapping[str, float] | None = None,
                    where: str = "budgets") -> Budgets:
    """Budgets in any accepted form -> :class:`Budgets` checked against ``table``, every limit a number.

    The resources must be the table's, and ``uniform:wXaY`` becomes the uniform plan's total.
    Relative budgets stay fractions: their range depends on the pins, which ``allocate`` knows.

    Args:
        budgets: a mapping, a list of specs, a :class:`Budgets` or None (see the module docstring).
        table: the cost table (or a resource table: same resources) the budgets apply to.
        relative: resource -> fraction in [0, 1], as ``allocate``'s argument.
        where: what to name in error messages (a file and key, ``--budget``...).

    Raises:
        ConfigError: a malformed budget, or a resource budgeted twice.
        UnknownNameError: a budget on a resource the table does not have.
    """
    parsed = Budgets.parse(budgets, relative, where)
    check_resources(table, parsed.resources, where)
    if parsed.resolved:
        return parsed
    return Budgets(tuple(b.resolve(table) if isinstance(b, UniformBudget) else b for b in parsed.entries))
