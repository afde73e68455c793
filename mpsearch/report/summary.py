"""The summary of a recipe run: what was asked (:class:`RunHeader`), what was made
(:class:`RunRecord`), and the plain-data summary that ``summary.json``, ``report.md`` and the
end-of-run table read.

The header is plain data filled in by ``pipeline/`` from the recipe, because ``report/`` sits
below ``recipe/`` in the stack and does not read recipes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Layer, Sensitivity
from mpsearch.report.plain import plain

if TYPE_CHECKING:
    from mpsearch.allocation import ParetoFront
    from mpsearch.execution import IntegerModel, ValidationReport


@dataclass(frozen=True)
class RunHeader:
    """What the recipe asked for, as plain data.

    Attributes:
        recipe: the recipe file.
        name / model / seed: the recipe's.
        n_sensitivity_batches: ``sensitivity.n_batches``.
        budgets_given: the budgets as written (recipe or command line).
        budgets_absolute: the budgets resolved against the cost table.
        allocation_method: ``allocation.method``.
        finetune: ``epochs``, ``lr``, ``batch_size``, ``seed`` and ``distill`` of the
            fine-tuning, or None without a ``finetune`` section.
        validation_split: the split accuracies are measured on.
        inputs: where the model and data came from.
    """

    recipe: str
    name: str
    model: str
    seed: int
    n_sensitivity_batches: int
    budgets_given: Mapping[str, Any]
    budgets_absolute: Any
    allocation_method: str
    finetune: Mapping[str, Any] | None
    validation_split: str
    inputs: Mapping[str, Any]
    metric: Mapping[str, Any] | None = None  # the task's describe(): metric name, direction, unit


@dataclass
class RunRecord:
    """What a run made, for its files and its summary.

    Attributes:
        sens: the sensitivity.
        table: the cost table.
        plan: the chosen plan (as written to plan.yaml).
        layers: the discovered layers.
        profile: the hardware profile.
        front: the Pareto sweep, or None.
        frontier: one point per plan of the sweep, with its PTQ accuracy and bits.
        baselines: uniform plan key (``w4a8``) -> its point and accuracies.
        chosen: the chosen plan's point and accuracies.
        float_accuracy: the float model's accuracy.
        qat: the fine-tuning record of the chosen plan (empty without fine-tuning).
        integer_model: the integer model, or None without integer validation.
        validation: its validation report, or None.
        solve_time_s: wall time of the allocation that made the plan (None if unknown).
        pareto_n_points: how many budgets the Pareto sweep was asked for (None without one).
        frontier_qat: the frontier points fine-tuned like the chosen plan, with PTQ and QAT metric.
    """

    sens: Sensitivity
    table: CostTable
    plan: BitPlan
    layers: Sequence[Layer]
    profile: HardwareProfile
    front: ParetoFront | None
    frontier: list[dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    chosen: dict[str, Any]
    float_accuracy: float
    qat: dict[str, Any]
    integer_model: IntegerModel | None = None
    validation: ValidationReport | None = None
    solve_time_s: float | None = None  # of the plan as the allocator returned it (plan.yaml drops wall times)
    pareto_n_points: int | None = None  # the budgets the Pareto sweep was asked for
    frontier_qat: list[dict[str, Any]] = field(default_factory=list)  # frontier points after QAT (pipeline/frontier_qat.py)


#: Keys of a plan's meta that say what closed it (report/truth.py reads them).
_SOLVE_META = ("closed_by", "lp", "branch_nodes", "branch_lps", "solver_status", "n_evaluations")


def run_summary(header: RunHeader, run: RunRecord, timings_s: Mapping[str, float]) -> dict[str, Any]:
    """The plain-data summary of a run (``summary.json``; ``report.md`` and the table read it)."""
    plan, profile = run.plan, run.profile
    return plain({
        "recipe": header.recipe, "name": header.name, "model": header.model, "seed": header.seed,
        "profile": {"name": profile.name, "source": profile.source.get("kind"),
                    "n_lut_entries": len(profile.cost.lut)},
        "sensitivity": {"method": run.sens.method, "n_batches": header.n_sensitivity_batches},
        "budgets": {"given": dict(header.budgets_given), "absolute": header.budgets_absolute},
        "allocation": {"method": header.allocation_method, "solver": plan.solver, "status": plan.status,
                       "optimal": plan.optimal, "solve_time_s": run.solve_time_s,  # plan.yaml drops wall times
                       "meta": {k: plan.meta[k] for k in _SOLVE_META if k in plan.meta}},
        "layers": layer_rows(run), "totals": dict(plan.totals), "objective": plan.objective,
        "metric": header.metric, "float_accuracy": run.float_accuracy, "chosen": run.chosen,
        "baselines": run.baselines,
        "finetune": None if header.finetune is None else {**header.finetune, **run.qat},
        "validation": None if run.validation is None else run.validation.to_dict(),
        "validation_split": header.validation_split,
        "inputs": header.inputs, "timings_s": timings_s,
        "frontier": run.frontier, "pareto_resource": None if run.front is None else run.front.resource,
        "pareto_n_points": run.pareto_n_points, "frontier_qat": run.frontier_qat, "n_layers": len(run.layers),
        "guard": plan.meta.get("guard"), "omega_sources": _omega_sources(run.table),
        "target": {k: plan.meta[k] for k in _TARGET_META if k in plan.meta} or None,
    })


#: Keys of a plan's meta that accuracy-target mode writes (pipeline/target.py; report/target.py reads them).
_TARGET_META = ("max_drop", "val_metric", "val_drop", "float_val_metric", "test_metric", "test_drop",
                "target_evaluations", "target_frontier_points", "minimize")


def _omega_sources(table: CostTable) -> dict[str, int] | None:
    """How many omega figures were measured, checked or predicted (None: all predicted)."""
    src = table.sources.get("omega")
    return None if src is None else {k: int(sum(1 for x in src if x == k)) for k in ("measured", "checked", "predicted")}


def layer_rows(run: RunRecord) -> list[dict[str, Any]]:
    """One row per layer: its chosen bits, sensitivity, omega, resources and candidates."""
    table, sens = run.table, run.sens
    by_name = {lay.name: lay for lay in run.layers}
    rows = []
    for i, name in enumerate(table.layers):
        b = run.plan.layers[name]
        row = table.row_of(name, b.key)  # the key names the format (w4a16g128 and w4a16g128z share bits)
        s = sens[name]
        rows.append({"layer": name, "kind": by_name[name].kind, "n_params": by_name[name].n_params,
                     "w_bits": b.w_bits, "a_bits": b.a_bits, "key": b.key, "trace": s.trace,
                     "mean_trace": (s.trace / s.n_params) if s.trace is not None and s.n_params else None,
                     "omega": float(table.omega[row]),
                     **{k: float(table.resources[k][row]) for k in table.resource_names},
                     "latency_source": str(table.sources["latency_ms"][row]) if "latency_ms" in table.sources else None,
                     "candidates": [c.key for c in table.candidates[i]]})
    return rows


def omega_rows(run: RunRecord) -> list[dict[str, Any]]:
    """The cost table's records with each layer's trace, its standard error and probe count."""
    rows = []
    for rec in run.table.to_records():
        s = run.sens[rec["layer"]]
        rows.append({**rec, "trace": s.trace, "trace_stderr": s.trace_stderr, "n_probes": s.n_probes})
    return rows


def summary_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the end-of-run table: float, chosen plan, uniform baselines."""
    rows = [{"label": "float32", "acc_ptq": summary["float_accuracy"]},
            {"label": "chosen (mixed)", **summary["chosen"]}]
    for k, b in summary["baselines"].items():
        rows.append({"label": f"uniform {k.upper()}", **b})
    return rows
