"""The Pareto frontier after fine-tuning (``finetune.frontier_points``, issue #15 item 5): a few
frontier plans, evenly spread along it, fine-tuned with the same QAT as the chosen plan, so the
report shows the frontier before and after QAT beside the uniform plans."""

from __future__ import annotations

from typing import Any, Sequence

from mpsearch.core.plan import BitPlan
from mpsearch.pipeline import steps
from mpsearch.report.progress import Progress


def spread_indices(n_points: int, n_picked: int) -> list[int]:
    """``n_picked`` indices evenly spread over ``range(n_points)``, both ends included (all when
    ``n_picked >= n_points``; the middle one for a single pick)."""
    if n_picked <= 0 or n_points <= 0:
        return []
    if n_picked >= n_points:
        return list(range(n_points))
    if n_picked == 1:
        return [(n_points - 1) // 2]
    return sorted({round(i * (n_points - 1) / (n_picked - 1)) for i in range(n_picked)})


def frontier_qat_step(prep: steps.Prepared, plans: Sequence[BitPlan], frontier: Sequence[dict[str, Any]],
                      val: list[Any], bars: Progress) -> list[dict[str, Any]]:
    """Fine-tune ``finetune.frontier_points`` of the frontier's plans (``plans[i]`` has the point
    ``frontier[i]``) with the recipe's QAT; each row: the point's resources, omega, PTQ metric,
    ``acc_qat`` and its ``frontier_index``. Empty without fine-tuning or with ``frontier_points: 0``."""
    spec = prep.recipe.finetune
    if spec is None or spec.epochs == 0:
        return []
    rows = []
    for i in spread_indices(len(plans), spec.frontier_points):
        qmodel = steps.quantize_plan(prep, plans[i])
        steps.finetune_step(prep, qmodel, bars, f"frontier point {i + 1}/{len(plans)}")
        point = {k: v for k, v in frontier[i].items() if k != "bits"}
        rows.append({**point, "acc_qat": steps.metric(prep, qmodel, val), "frontier_index": i})
    return rows
