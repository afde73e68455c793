"""Uniform plans: every layer at one (w_bits, a_bits) pair where it can take it.

They are the baselines a mixed plan is compared with, and ``uniform:w4a8`` budgets are
their totals (see :mod:`mpsearch.allocation.budgets`).
"""

from __future__ import annotations

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan, LayerBits


def uniform_plan(table: CostTable, w_bits: int, a_bits: int, key: str | None = None) -> tuple[BitPlan, list[str]]:
    """Every layer at ``w{w_bits}a{a_bits}`` where the device runs it, else its widest candidate.

    Args:
        table: the cost table (resources are summed from it; omega is the plan's objective).
        w_bits, a_bits: the pair every layer takes where it can.
        key: one format of that pair (``"w4a16g128"``) instead of the plain pair or its first format.

    Returns:
        ``(plan with totals, names of the layers that could not take the pair)`` - e.g. first
        and last layers pinned to W8A8 by the profile's rules, or depthwise layers that run 8-bit only.
    """
    layers: dict[str, LayerBits] = {}
    others = []
    for i, name in enumerate(table.layers):
        match = [c for c in table.candidates[i] if (c.w_bits, c.a_bits) == (w_bits, a_bits)
                 and (key is None or c.key == key)]
        if match:  # the plain pair, else the first format with those bits (w4a16 -> w4a16g128)
            layers[name] = LayerBits.from_candidate(next((c for c in match if not c.is_format), match[0]))
        else:
            c = table.candidates[i][0]  # widest first
            layers[name] = LayerBits.from_candidate(c)
            others.append(name)
    rows = table.rows_for_plan(layers)
    totals = table.totals(rows)
    objective = totals.pop("omega")
    plan = BitPlan(layers=layers, totals=totals, objective=objective, solver="uniform", status="given",
                   meta={"uniform": key or f"w{w_bits}a{a_bits}", "layers_at_other_bits": others})
    return plan, others
