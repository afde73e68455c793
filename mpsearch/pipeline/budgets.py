"""Budgets of a recipe made absolute against a cost table, and checked before heavy work.

Sizes, BOPs and latencies depend only on the layers' shapes and the profile, not on the
sensitivity, so :func:`resource_table` builds the table's resource columns (omega 0) right after
``discover``; :func:`check_feasible` then refuses a budget no plan can meet, before any Hessian
probe, QAT epoch or validation pass.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Layer
from mpsearch.errors import InfeasibleBudgetError, MpsearchError, unknown_name
from mpsearch.recipe import parse_uniform


def resource_table(layers: Sequence[Layer], profile: HardwareProfile, w_bits: Sequence[int] | None,
                   a_bits: Sequence[int] | None, batch: int | None = None) -> CostTable:
    """The cost table's resources for every layer x candidate, with omega 0 (no sensitivity).

    ``batch`` is the deployment batch latency is predicted for (None: the layers' own batch)."""
    from mpsearch.hardware import candidates_for_layers, layer_costs
    from mpsearch.model import input_ties

    cands = candidates_for_layers(list(layers), profile, w_bits, a_bits)
    by_name = {lay.name: lay for lay in layers}
    records = []
    for name in [lay.name for lay in layers]:
        for c in cands[name]:
            cost = layer_costs(by_name[name], c, profile, batch=batch)
            records.append({"layer": name, "w_bits": c.w_bits, "a_bits": c.a_bits, "w_granularity": c.w_granularity,
                            "omega": 0.0, **cost.resources()})
    return CostTable.from_records(records, ties=input_ties(list(layers)), where="resource_table")


def uniform_plan(table: CostTable, w_bits: int, a_bits: int) -> tuple[BitPlan, list[str]]:
    """Every layer at ``w{w_bits}a{a_bits}`` where the device runs it, else its widest candidate.

    Returns:
        ``(plan with totals, names of the layers that could not take the pair)`` - e.g. first
        and last layers pinned to W8A8 by the profile's rules, or depthwise layers that run 8-bit only.
    """
    layers: dict[str, LayerBits] = {}
    others = []
    for i, name in enumerate(table.layers):
        keys = {(c.w_bits, c.a_bits) for c in table.candidates[i]}
        if (w_bits, a_bits) in keys:
            layers[name] = LayerBits(w_bits, a_bits)
        else:
            c = table.candidates[i][0]  # widest first
            layers[name] = LayerBits(c.w_bits, c.a_bits)
            others.append(name)
    rows = table.rows_for_plan(layers)
    totals = table.totals(rows)
    objective = totals.pop("omega")
    plan = BitPlan(layers=layers, totals=totals, objective=objective, solver="uniform", status="given",
                   meta={"uniform": f"w{w_bits}a{a_bits}", "layers_at_other_bits": others})
    return plan, others


def resolve_budgets(budgets: Mapping[str, Any], table: CostTable, where: str) -> dict[str, Any]:
    """Recipe budgets -> what :func:`mpsearch.allocate` takes (``uniform:w4a8`` becomes a number).

    Raises:
        UnknownNameError: a budget on a resource the table does not have.
    """
    out: dict[str, Any] = {}
    for res, value in budgets.items():
        if res not in table.resources:
            raise unknown_name("resource", res, table.resource_names, f"{where}: budgets")
        uni = parse_uniform(value)
        if uni is not None:
            plan, _ = uniform_plan(table, *uni)
            out[res] = plan.totals[res]
        else:
            out[res] = value
    return out


def check_feasible(table: CostTable, budgets: Mapping[str, Any], where: str, fix: str = "") -> None:
    """Raise :class:`InfeasibleBudgetError` naming the file and key if no plan meets ``budgets``.

    One budget at a time against the table's smallest total (the extremes tell it), then all
    together with an exact allocation on the resource columns (omega 0: only feasibility counts).
    """
    from mpsearch.allocation import allocate, parse_budgets

    parsed = parse_budgets(budgets, where=f"{where}: budgets")
    for b in parsed:
        if b.relative:
            continue
        lo, _hi = table.extremes(b.resource)
        if b.limit < lo:
            raise InfeasibleBudgetError(
                f"{where}: budgets.{b.resource} must be >= {lo:.6g} (the smallest total any plan reaches with "
                f"these candidate bits on this profile), but got {budgets[b.resource]!r}; fix: raise it to at least "
                f"{lo:.6g}{fix}", smallest={b.resource: lo})
    try:
        allocate(table, budgets)
    except InfeasibleBudgetError as exc:
        raise InfeasibleBudgetError(f"{where}: budgets cannot all be met together: {exc}{fix}",
                                    smallest=exc.smallest) from None
    except MpsearchError:
        raise
