"""Decision methods shared by bench_decisions.py (digits / denoising) and bench_decisions_lm.py (gpt_tiny).

Each method gets the same cost table, budget and validation scorer, returns a plan, and every plan is
then scored on the TEST split by the caller: no method sees test data.

- ``default_decision``: what ``mpsearch run`` does after the cost table (recipe defaults): omega
  calibrated on the calibration batches (``sensitivity.calibrate: true``, ``calibrate_omega`` with
  ``CalibrationConfig()``), the ILP's 8 best plans, the lowest validation loss among them
  (``allocation.k_best: 8``, pipeline/kbest.py), then the guard (``allocation.guard: true``:
  ``guard_plan`` against every uniform plan in the budget and the greedy MSE plan, on VALIDATION
  data, ties broken by the validation loss), exactly as ``pipeline/guard.py: guard_step`` calls it.
- ``kbest_decision``: the 8 best plans by calibrated omega (``allocate_k_best``), the best by the
  validation metric (``pick_by_evaluation``).
- ``random_feasible``: random plans made feasible (see its docstring).
"""

from __future__ import annotations

import random
from typing import Any, Callable

import mpsearch as mps
from mpsearch.allocation import allocate_k_best, pick_by_evaluation
from mpsearch.allocation.greedy import greedy_plan
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.pipeline.guard import guard_plan
from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega, weight_error_table

#: plans listed by allocate_k_best and evaluated on validation data (the user-given evaluation budget)
K_BEST = 8


def default_decision(model: Any, table: CostTable, budgets: dict[str, float], profile: Any, loss_fn: Any,
                     calib: list[Any], evaluate_val: Callable[[BitPlan], float],
                     loss_val: Callable[[BitPlan], float], higher_is_better: bool) -> dict[str, Any]:
    """The run pipeline's decision: calibrated omega -> ILP -> guard on validation data.

    Returns ``{"table": calibrated table, "ilp": the ILP plan on it, "plan": the guarded plan,
    "greedy": the greedy MSE plan (or None), "guard": the guard's meta, "n_measured": omega rows measured}``.
    """
    cal = calibrate_omega(model, table, loss_fn, calib, profile, CalibrationConfig())
    ilp = mps.allocate(cal, budgets=budgets, rules=profile.rules)
    # allocation.k_best (pipeline/kbest.py): of the K_BEST best plans by omega, the lowest validation loss
    picked, _ = pick_by_evaluation(allocate_k_best(cal, budgets, K_BEST, rules=profile.rules), loss_val,
                                   higher_is_better=False)
    greedy = greedy_plan(weight_error_table(model, cal, profile), budgets, profile.rules)
    plan = guard_plan(picked, cal, budgets, evaluate_val, higher_is_better=higher_is_better, greedy=greedy,
                      rules=profile.rules, tiebreak=loss_val)
    sources = list(cal.sources.get("omega", []))
    return {"table": cal, "ilp": ilp, "plan": plan, "greedy": greedy, "guard": plan.meta.get("guard", {}),
            "n_measured": sum(1 for s in sources if s == "measured"),
            "n_checked": sum(1 for s in sources if s in ("measured", "checked"))}


def kbest_decision(table: CostTable, budgets: dict[str, float], evaluate_val: Callable[[BitPlan], float],
                   higher_is_better: bool, k: int = K_BEST) -> tuple[BitPlan, list[float]]:
    """The best of the ``k`` best-omega plans by the validation metric."""
    plans = allocate_k_best(table, budgets, k)
    return pick_by_evaluation(plans, evaluate_val, higher_is_better=higher_is_better)


def random_feasible(table: CostTable, budget_bytes: float, rng: random.Random) -> dict[str, str]:
    """One random plan within ``budget_bytes``: every tie group draws a candidate uniformly, then randomly
    chosen groups step down to their next smaller candidate until the size fits (used where the space is
    too large to list the feasible plans and draw from them uniformly)."""
    size = table.resources["size_bytes"]
    groups: list[list[int]] = []
    tied = {table.index_of(n): g for g, grp in enumerate(table.ties) for n in grp}
    seen: dict[Any, int] = {}
    for i in range(table.n_layers):
        key = ("tie", tied[i]) if i in tied else ("layer", i)
        if key not in seen:
            seen[key] = len(groups)
            groups.append([])
        groups[seen[key]].append(i)

    def gsize(g: list[int], j: int) -> float:
        return float(sum(size[int(table.offsets[i]) + j] for i in g))

    # candidates of each group in ascending size (tied layers share their candidate list)
    order = [sorted(range(len(table.candidates[g[0]])), key=lambda j, g=g: gsize(g, j)) for g in groups]
    pos = [rng.randrange(len(o)) for o in order]
    total = sum(gsize(g, order[k][pos[k]]) for k, g in enumerate(groups))
    while total > budget_bytes * (1 + 1e-9):
        k = rng.choice([k for k in range(len(groups)) if pos[k] > 0])
        total -= gsize(groups[k], order[k][pos[k]]) - gsize(groups[k], order[k][pos[k] - 1])
        pos[k] -= 1
    out = {}
    for k, g in enumerate(groups):
        key = table.candidates[g[0]][order[k][pos[k]]].key
        out.update({table.layers[i]: key for i in g})
    return out


def plan_of_keys(table: CostTable, keys: dict[str, str]) -> BitPlan:
    """The BitPlan (totals and objective from ``table``) that takes candidate ``keys[layer]`` in every layer."""
    import numpy as np

    rows = np.array([int(table.offsets[i]) + [c.key for c in table.candidates[i]].index(keys[n])
                     for i, n in enumerate(table.layers)], dtype=np.int64)
    return table.plan_from_rows(rows, solver="given", status="given")
