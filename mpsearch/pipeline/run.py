"""``run_recipe``: the whole pipeline of a recipe, writing the results directory.

Order (cheap checks first, so a bad recipe fails before heavy work): load and check the
recipe -> profile, model, data -> discover -> budgets against the resources (infeasible stops
here) -> sensitivity -> cost table -> plan (ILP / explorer) -> Pareto sweep and uniform
baselines with PTQ accuracy -> QAT of the plan -> integer conversion and validation -> files.

Results directory ``<output.dir>/<name>/``: ``plan.yaml``, ``sensitivity.json``,
``sensitivity.csv`` (omega table), ``cost_table.json``, ``pareto.csv``, ``pareto.json``,
``pareto.png``, ``baselines.json``, ``validation.json``, ``integer_model/``, ``report.md``,
``summary.json``. Every file is written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpsearch.allocation import uniform_plan  # numpy only: pulp loads lazily
from mpsearch.core.io import dump_structured
from mpsearch.core.plan import BitPlan
from mpsearch.pipeline import steps
from mpsearch.recipe import Recipe
from mpsearch.report.progress import progress

#: Uniform baselines drawn and compared: weight bits (activation bits: the widest the device pairs with them).
BASELINE_W_BITS = (8, 4, 2)


@dataclass
class RunResult:
    """What :func:`run_recipe` made (the same facts as the files it wrote).

    Attributes:
        results_dir: where the files are.
        plan: the chosen plan (as written to plan.yaml).
        summary: the plain-data summary (summary.json; report.md and the table read it).
    """

    results_dir: Path
    plan: BitPlan
    summary: dict[str, Any] = field(default_factory=dict)


def _baseline_pairs(table: Any) -> list[tuple[int, int]]:
    keys = {(c.w_bits, c.a_bits) for cs in table.candidates for c in cs}
    out = []
    for w in BASELINE_W_BITS:
        a_opts = sorted(a for ww, a in keys if ww == w)
        if a_opts:
            out.append((w, a_opts[-1]))
    return out


def _point(plan: BitPlan, resource_names: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: float(plan.totals[k]) for k in resource_names if k in plan.totals}, "omega": float(plan.objective or 0.0)}


def run_recipe(recipe: Recipe, *, quiet: bool = True, budgets: dict[str, Any] | None = None) -> RunResult:
    """Run ``recipe`` end to end and write its results directory.

    Args:
        recipe: from :func:`mpsearch.recipe.load_recipe` (already checked).
        quiet: no progress bars (they are drawn only on a terminal anyway).
        budgets: override of the recipe's budgets.

    Returns:
        A :class:`RunResult`.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = recipe.results_dir
    with progress(quiet) as bars:
        prep = steps.prepare(recipe, budgets)
        timings.update(prep.timings_s)
        t = time.perf_counter()
        sens = steps.sensitivity_step(prep, bars)
        table = steps.table_step(prep, sens)
        timings["sensitivity_s"] = time.perf_counter() - t
        t = time.perf_counter()
        plan = steps.stable_plan(steps.choose_plan(prep, table, bars))
        timings["allocation_s"] = time.perf_counter() - t

        # Frontier and baselines (PTQ accuracy of each, on the validation split).
        t = time.perf_counter()
        val = prep.inputs.split(recipe.validation.split)
        res_names = table.resource_names
        frontier_pts: list[dict[str, Any]] = []
        front = None
        if recipe.allocation.pareto is not None:
            from mpsearch.allocation import pareto

            others = prep.budgets.without(recipe.allocation.pareto.resource)
            front = pareto(table, recipe.allocation.pareto.resource, recipe.allocation.pareto.n_points,
                           others, rules=prep.profile.rules, solver=recipe.allocation.solver,
                           gap_rel=recipe.allocation.gap_rel)
            task = bars.add("frontier PTQ", total=len(front.points))
            for p in front.points:
                q = steps.quantize_plan(prep, p)
                frontier_pts.append({**_point(p, res_names), "acc_ptq": steps.accuracy(q, val),
                                     "bits": " ".join(f"{n}:{b.key}" for n, b in p.layers.items())})
                bars.update(task, advance=1)
        baselines: dict[str, dict[str, Any]] = {}
        baseline_models: dict[str, Any] = {}
        for w, a in _baseline_pairs(table):
            bplan, others_at = uniform_plan(table, w, a)
            q = steps.quantize_plan(prep, bplan)
            key = f"w{w}a{a}"
            baselines[key] = {**_point(bplan, res_names), "acc_ptq": steps.accuracy(q, val),
                              "layers_at_other_bits": others_at}
            baseline_models[key] = q
        timings["frontier_s"] = time.perf_counter() - t

        # The chosen plan: PTQ, QAT, integer.
        t = time.perf_counter()
        float_acc = steps.accuracy(prep.inputs.model, val)
        qmodel = steps.quantize_plan(prep, plan)
        chosen = {**_point(plan, res_names), "acc_ptq": steps.accuracy(qmodel, val)}
        qat_record = steps.finetune_step(prep, qmodel, bars, "chosen plan")
        if qat_record:
            chosen["acc_qat"] = steps.accuracy(qmodel, val)
            # The uniform baseline closest in size gets the same fine-tuning, for a fair comparison.
            if baselines and "size_bytes" in res_names:
                near = min(baselines, key=lambda k: abs(baselines[k]["size_bytes"] - chosen["size_bytes"]))
                steps.finetune_step(prep, baseline_models[near], bars, near)
                baselines[near]["acc_qat"] = steps.accuracy(baseline_models[near], val)
        timings["finetune_s"] = time.perf_counter() - t
        t = time.perf_counter()
        report = None
        if recipe.validation.integer:
            imodel, report = steps.integer_step(prep, qmodel, bars)
            chosen["acc_int"] = report.accuracy_int
            imodel.save(out / "integer_model")
        timings["validation_s"] = time.perf_counter() - t

    # Files.
    from mpsearch.report import plot_pareto, write_csv, write_report

    plan.save(out / "plan.yaml")
    dump_structured(steps.plain(sens.to_dict()), out / "sensitivity.json")
    dump_structured(steps.table_to_dict(table), out / "cost_table.json")
    omega_rows = []
    for rec in table.to_records():
        s = sens[rec["layer"]]
        omega_rows.append({**rec, "trace": s.trace, "trace_stderr": s.trace_stderr, "n_probes": s.n_probes})
    write_csv(out / "sensitivity.csv", omega_rows)
    if front is not None:
        res = front.resource
        write_csv(out / "pareto.csv", frontier_pts, [res, "omega", *[k for k in res_names if k != res], "acc_ptq", "bits"])
        dump_structured(steps.plain({"resource": res, "points": frontier_pts, "baselines": baselines,
                                     "chosen": chosen, "frontier": front.to_dict()}), out / "pareto.json")
        plot_pareto(out / "pareto.png", res, frontier_pts, baselines, chosen,
                    title=f"{recipe.name}: {recipe.model} on {prep.profile.name}")
    dump_structured(steps.plain(baselines), out / "baselines.json")
    if report is not None:
        dump_structured(steps.plain(report.to_dict()), out / "validation.json")

    by_name = {lay.name: lay for lay in prep.layers}
    layer_rows = []
    for i, name in enumerate(table.layers):
        b = plan.layers[name]
        row = table.row_of(name, b.w_bits, b.a_bits)
        s = sens[name]
        layer_rows.append({"layer": name, "kind": by_name[name].kind, "n_params": by_name[name].n_params,
                           "w_bits": b.w_bits, "a_bits": b.a_bits, "trace": s.trace,
                           "mean_trace": (s.trace / s.n_params) if s.trace is not None and s.n_params else None,
                           "omega": float(table.omega[row]),
                           **{k: float(table.resources[k][row]) for k in res_names},
                           "latency_source": str(table.sources["latency_ms"][row]) if "latency_ms" in table.sources else None,
                           "candidates": [c.key for c in table.candidates[i]]})
    timings["total_s"] = time.perf_counter() - t_start
    summary = steps.plain({
        "recipe": recipe.path, "name": recipe.name, "model": recipe.model, "seed": recipe.seed,
        "profile": {"name": prep.profile.name, "source": prep.profile.source.get("kind"),
                    "n_lut_entries": len(prep.profile.cost.lut)},
        "sensitivity": {"method": sens.method, "n_batches": recipe.sensitivity.n_batches},
        "budgets": {"given": dict(recipe.budgets if budgets is None else budgets), "absolute": prep.budgets},
        "allocation": {"method": recipe.allocation.method, "solver": plan.solver, "status": plan.status,
                       "optimal": plan.optimal},
        "layers": layer_rows, "totals": dict(plan.totals), "objective": plan.objective,
        "float_accuracy": float_acc, "chosen": chosen, "baselines": baselines,
        "finetune": None if recipe.finetune is None else {
            "epochs": recipe.finetune.epochs, "lr": recipe.finetune.lr, "batch_size": recipe.finetune.batch_size,
            "seed": recipe.seed if recipe.finetune.seed is None else recipe.finetune.seed,
            "distill": None if recipe.finetune.distill is None else vars(recipe.finetune.distill), **qat_record},
        "validation": None if report is None else report.to_dict(),
        "validation_split": recipe.validation.split,
        "inputs": prep.inputs.info, "timings_s": timings,
        "frontier": frontier_pts, "pareto_resource": None if front is None else front.resource,
    })
    dump_structured(summary, out / "summary.json")
    write_report(out / "report.md", summary)
    return RunResult(results_dir=out, plan=plan, summary=summary)


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the end-of-run table: float, chosen plan, uniform baselines."""
    rows = [{"label": "float32", "acc_ptq": summary["float_accuracy"]},
            {"label": "chosen (mixed)", **summary["chosen"]}]
    for k, b in summary["baselines"].items():
        rows.append({"label": f"uniform {k.upper()}", **b})
    return rows
