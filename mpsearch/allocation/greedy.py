"""A greedy allocation: the baseline a mixed plan must beat (issue #21's guard).

Every layer (tie group) starts at its largest candidate; while a budget is exceeded, the group
whose next smaller candidate costs the least omega per unit of the exceeded resource saved
steps down. With omega = per-layer weight-quantization MSE x parameters (see
``mpsearch.sensitivity.calibrate.weight_error_table``) this is the usual "lower the bits of the
layers whose weights round best" heuristic; it ignores the loss entirely, which is the point of
comparing against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpsearch.allocation.budgets import resolve_budgets
from mpsearch.allocation.pins import resolve_pins
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import Rules


def _groups(table: CostTable) -> list[list[int]]:
    """Layer indices of each tie group (an untied layer is its own group), in table order."""
    tied = {table.index_of(n): g for g, grp in enumerate(table.ties) for n in grp}
    out: dict[Any, list[int]] = {}
    for i in range(table.n_layers):
        out.setdefault(("tie", tied[i]) if i in tied else ("layer", i), []).append(i)
    return list(out.values())


def greedy_plan(table: CostTable, budgets: Any, rules: Rules | None = None) -> BitPlan | None:
    """The greedy plan under ``budgets`` (see the module docstring), or None when greedy cannot meet them.

    Args:
        table: the cost table whose omega the greedy minimizes.
        budgets: as :func:`~mpsearch.allocation.allocate` takes them.
        rules: the profile's first/last-layer rules (those layers are pinned).
    """
    resolved = resolve_budgets(budgets, table, where="greedy_plan")
    limits = {b.resource: b.absolute(*table.extremes(b.resource)) for b in resolved.entries}
    pins = resolve_pins(table, None, rules)
    groups = _groups(table)
    keys_of = [[c.key for c in table.candidates[g[0]]] for g in groups]

    def rows(g: int, key: str) -> list[int]:
        return [int(table.offsets[i]) + [c.key for c in table.candidates[i]].index(key) for i in groups[g]]

    def cost(g: int, key: str, what: str) -> float:
        arr = table.omega if what == "omega" else table.resources[what]
        return float(sum(arr[r] for r in rows(g, key)))

    main = next(iter(limits), None)
    size_res = main or (table.resource_names[0] if table.resource_names else None)
    choice = []
    for g, keys in enumerate(keys_of):
        pinned = {pins[i] for i in groups[g] if i in pins}
        choice.append(pinned.pop() if pinned else max(keys, key=lambda k: cost(g, k, size_res) if size_res else 0.0))
    free = [g for g in range(len(groups)) if not any(i in pins for i in groups[g])]

    def totals() -> dict[str, float]:
        return {r: sum(cost(g, choice[g], r) for g in range(len(groups))) for r in limits}

    while True:
        over = [r for r, t in totals().items() if t > limits[r] * (1 + 1e-12)]
        if not over:
            break
        res = over[0]
        best = None
        for g in free:
            now = cost(g, choice[g], res)
            for k in keys_of[g]:
                saved = now - cost(g, k, res)
                if saved <= 0:
                    continue
                score = (cost(g, k, "omega") - cost(g, choice[g], "omega")) / saved
                if best is None or score < best[0]:
                    best = (score, g, k)
        if best is None:
            return None
        choice[best[1]] = best[2]
    chosen = np.zeros(table.n_layers, dtype=np.int64)
    for g, key in enumerate(choice):
        for i, r in zip(groups[g], rows(g, key)):
            chosen[i] = r
    return table.plan_from_rows(chosen, solver="greedy", status="given", meta={"baseline": "greedy"})
