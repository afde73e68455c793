"""The space every explorer searches: free units (tie groups / single layers), pins, budgets.

A *unit* is what an explorer decides once: a tie group (all members take one candidate)
or a single untied layer. Pinned units are fixed and never offered. A unit's candidates
are its candidate keys ("w4a8") sorted by cost, cheapest first, where the cost of a
candidate is the sum over the budgeted resources (or all resources when there are no
budgets) of its resource value divided by that resource's range over the table. This
order is what "lowering" a layer means for the repair step and what the RL action maps to.

Repair (make a plan feasible): strategies in :mod:`mpsearch.explorers._repair`, registry
:data:`REPAIRS` (``"greedy"`` by default, ``"haq"``).

If repair cannot meet several budgets at once (cheaper in one resource is dearer in
another), the plan falls back to the cheapest-everywhere assignment when that is
feasible, else to a feasible anchor from the ILP (:func:`mpsearch.allocation.allocate`
on the same budgets with every omega set to 0), so explorers only ever hand out
feasible plans.

Budgets are read by :func:`mpsearch.allocation.resolve_budgets` (the one budget reader);
this module only turns relative ones into limits over the range its pins leave.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from mpsearch.allocation import Budgets, check_feasible, resolve_budgets  # numpy only: pulp loads lazily
from mpsearch.allocation.pins import resolve_pins
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError, rule_error, unknown_name
from mpsearch.explorers._repair import REL_TOL, REPAIRS


@dataclass(frozen=True)
class Unit:
    """One decision: a tie group or a single layer.

    Attributes:
        name: parameter name (the first member's layer name).
        layers: indices of the member layers in the table.
        keys: candidate keys, cheapest first.
        rows: int array (n_members, n_keys): table row of member m at key k.
    """

    name: str
    layers: tuple[int, ...]
    keys: tuple[str, ...]
    rows: np.ndarray


def absolute_budgets(table: CostTable, budgets: Budgets | Any, pins: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Absolute limit per resource, as the explorers use it.

    Accepts what :func:`mpsearch.allocation.allocate` accepts (``{"size_bytes": 120_000}``,
    ``{"size_bytes": "50%"}``, ``["bops=2.5G"]``, a :class:`~mpsearch.allocation.Budgets`).
    A relative limit is ``lo + f * (hi - lo)`` with ``lo``/``hi`` the smallest/largest total
    over assignments that respect ties and pins, as in ``allocate``.
    """
    return SearchSpace(table, budgets, pins).budgets


def normalize_pins(table: CostTable, pins: Mapping[str, Any] | None) -> dict[int, int]:
    """Layer index -> pinned row, with :func:`mpsearch.allocation.pins.resolve_pins`'s rules."""
    return {i: table.row_of(table.layers[i], key) for i, key in resolve_pins(table, pins).items()}


class SearchSpace:
    """Units, pins and budgets of one table, with totals, feasibility and repair.

    Args:
        table: the cost table.
        budgets: see :func:`absolute_budgets`.
        pins: layer name -> candidate (see :func:`normalize_pins`); pinning one member of a
            tie group pins the group.
        repair: name in :data:`REPAIRS`.
    """

    def __init__(self, table: CostTable, budgets: Budgets | Any = None, pins: Mapping[str, Any] | None = None,
                 repair: str = "greedy") -> None:
        if repair not in REPAIRS:
            raise unknown_name("repair", repair, REPAIRS, "explorer")
        self.table = table
        self.repair_name = repair
        pinned_rows = normalize_pins(table, pins)
        groups = [tuple(table.index_of(n) for n in g) for g in table.ties]
        in_group = {i for g in groups for i in g}
        groups += [(i,) for i in range(table.n_layers) if i not in in_group]
        groups.sort(key=min)
        parsed = resolve_budgets(budgets, table)
        cost_names = parsed.resources or table.resource_names
        scale = {}
        for r in cost_names:
            lo, hi = table.extremes(r)
            scale[r] = 1.0 / max(float(np.abs(table.resources[r]).max()), 1e-300) if hi <= lo else 1.0 / (hi - lo)
        self._row_cost = sum((table.resources[r] * scale[r] for r in cost_names), np.zeros(table.n_rows))
        self.fixed_rows = np.full(table.n_layers, -1, dtype=np.int64)
        self.units: list[Unit] = []
        for g in groups:
            key_rows = {c.key: int(table.offsets[g[0]]) + j for j, c in enumerate(table.candidates[g[0]])}
            pinned_keys = {_key_of(table, i, pinned_rows[i]) for i in g if i in pinned_rows}
            if len(pinned_keys) > 1:
                names = [table.layers[i] for i in g]
                raise ConfigError(f"pins: tied layers {names} must be pinned to one candidate, but got {sorted(pinned_keys)}")
            if pinned_keys:
                key = pinned_keys.pop()
                for i in g:
                    self.fixed_rows[i] = table.row_of(table.layers[i], key)
                continue
            keys = sorted(key_rows, key=lambda k: (sum(self._row_cost[table.row_of(table.layers[i], k)]
                                                       for i in g), k))
            rows = np.array([[table.row_of(table.layers[i], k) for k in keys] for i in g], dtype=np.int64)
            self.units.append(Unit(table.layers[g[0]], g, tuple(keys), rows))
        self._res_names = parsed.resources
        self.fixed_totals = np.array([table.resources[r][self.fixed_rows[self.fixed_rows >= 0]].sum()
                                       for r in self._res_names], dtype=np.float64)
        self.budgets: dict[str, float] = {}
        _, res = self.arrays()
        for r, bud in enumerate(parsed.entries):
            lo = float(self.fixed_totals[r] + res[r].min(axis=1).sum())
            hi = float(self.fixed_totals[r] + np.where(np.isinf(res[r]), -np.inf, res[r]).max(axis=1).sum())
            limit = bud.absolute(lo, hi)
            if not np.isfinite(limit):
                raise rule_error("budgets", bud.resource, "finite", limit)
            self.budgets[bud.resource] = limit
        self.limits = np.array([self.budgets[r] for r in self._res_names], dtype=np.float64)
        self._anchor: np.ndarray | None = None
        # each budget alone against its smallest total (no solver); a joint conflict surfaces
        # at repair time, through the anchor, with each budget's smallest value
        check_feasible(table, parsed, pins=pins, where="explorer", joint=False)

    # -- basic maps ------------------------------------------------------------------------
    @property
    def n_units(self) -> int:
        return len(self.units)

    def fingerprint(self) -> str:
        """Short hash of units, keys and budgets (a stored study must match it to resume)."""
        data = {"units": [[u.name, list(u.keys)] for u in self.units],
                "fixed": self.fixed_rows.tolist(), "budgets": self.budgets}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def rows(self, choice: Sequence[int]) -> np.ndarray:
        """Table row per layer for a choice (key index per unit)."""
        rows = self.fixed_rows.copy()
        for u, k in zip(self.units, choice):
            rows[list(u.layers)] = u.rows[:, int(k)]
        return rows

    def choice_from_keys(self, keys: Mapping[str, str]) -> list[int]:
        """Key index per unit from ``unit name -> candidate key``."""
        return [u.keys.index(keys[u.name]) for u in self.units]

    def keys_of(self, choice: Sequence[int]) -> dict[str, str]:
        return {u.name: u.keys[int(k)] for u, k in zip(self.units, choice)}

    def unit_totals(self, choice: Sequence[int]) -> np.ndarray:
        """Budgeted resource totals of a choice, in the order of :attr:`budgets`."""
        rows = self.rows(choice)
        return np.array([self.table.resources[r][rows].sum() for r in self._res_names], dtype=np.float64)

    def is_feasible(self, choice: Sequence[int]) -> bool:
        return bool(np.all(self.unit_totals(choice) <= self.limits * (1 + REL_TOL)))

    def plan_is_feasible(self, plan: BitPlan) -> bool:
        """Whether a plan meets every budget (checked from the table, not the plan's totals)."""
        rows = self.table.rows_for_plan(plan)
        return all(self.table.resources[r][rows].sum() <= lim * (1 + REL_TOL) for r, lim in self.budgets.items())

    def plan(self, choice: Sequence[int], **fields: Any) -> BitPlan:
        meta = dict(fields.pop("meta", {}))
        meta.setdefault("budgets", dict(self.budgets))
        return self.table.plan_from_rows(self.rows(choice), meta=meta, **fields)

    # -- repair ----------------------------------------------------------------------------
    def repair(self, choice: Sequence[int]) -> list[int]:
        """A feasible choice close to ``choice`` (unchanged when already feasible)."""
        choice = [int(k) for k in choice]
        if not self.budgets or self.is_feasible(choice):
            return choice
        fixed = REPAIRS[self.repair_name](self, choice)
        if self.is_feasible(fixed):
            return fixed
        cheapest = [0] * self.n_units
        if self.is_feasible(cheapest):
            return REPAIRS[self.repair_name](self, cheapest)
        return list(self._feasible_anchor())

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(omega, resources) per unit x key, padded with +inf where a unit has fewer keys."""
        if not hasattr(self, "_cache"):
            n_keys = max((len(u.keys) for u in self.units), default=1)
            om = np.full((self.n_units, n_keys), np.inf)
            res = np.full((len(self._res_names), self.n_units, n_keys), np.inf)
            for j, u in enumerate(self.units):
                om[j, :len(u.keys)] = self.table.omega[u.rows].sum(axis=0)  # tie group: summed over members
                for r, name in enumerate(self._res_names):
                    res[r, j, :len(u.keys)] = self.table.resources[name][u.rows].sum(axis=0)
            self._cache = (om, res)
        return self._cache

    def _feasible_anchor(self) -> np.ndarray:
        """A feasible choice: the ILP's plan with every omega 0 (any plan meeting the budgets ties)."""
        if self._anchor is None:
            from mpsearch.allocation import allocate

            zero = replace(self.table, omega=np.zeros_like(self.table.omega))
            pins = {self.table.layers[i]: _key_of(self.table, i, r) for i, r in enumerate(self.fixed_rows) if r >= 0}
            plan = allocate(zero, budgets=self.budgets, pins=pins or None)
            rows = self.table.rows_for_plan(plan)
            self._anchor = np.array([list(u.rows[0]).index(rows[u.layers[0]]) for u in self.units])
        return self._anchor


def _key_of(table: CostTable, layer: int, row: int) -> str:
    return table.candidates[layer][int(row) - int(table.offsets[layer])].key
