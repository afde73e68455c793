"""``run_recipe``: the whole pipeline of a recipe, writing the results directory.

Order (cheap checks first, so a bad recipe fails before heavy work): load and check the
recipe -> profile, model, data -> discover -> budgets against the resources (infeasible stops
here) -> sensitivity -> cost table -> plan (ILP / explorer, or with ``allocation.max_drop`` the
smallest frontier plan within that drop on validation: pipeline/target.py) -> Pareto sweep and uniform
baselines with PTQ accuracy -> QAT of the plan (and of ``finetune.frontier_points`` frontier points)
-> integer conversion and validation -> files.

This module orders the steps; ``report/`` writes the files (``report/files.py`` lists them)
and builds the summary.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mpsearch.allocation import uniform_plan  # numpy only: pulp loads lazily
from mpsearch.core.cost_table import CostTable
from mpsearch.core.plan import BitPlan
from mpsearch.pipeline import guard, steps
from mpsearch.recipe import Recipe
from mpsearch.report.files import write_run_files, write_summary
from mpsearch.report.progress import Progress, progress
from mpsearch.report.summary import RunHeader, RunRecord, run_summary, summary_rows

__all__ = ["BASELINE_W_BITS", "RunResult", "run_recipe", "summary_rows"]  # summary_rows: read by the run command

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
    out = recipe.results_dir
    with progress(quiet) as bars:
        prep = steps.prepare(recipe, budgets)
        timings = dict(prep.timings_s)
        run = _run_steps(prep, bars, timings)
    header = _header(prep, budgets)
    write_run_files(out, header, run)
    timings["total_s"] = time.perf_counter() - t_start
    summary = run_summary(header, run, timings)
    write_summary(out, summary)
    return RunResult(results_dir=out, plan=run.plan, summary=summary)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the wall time of the block as ``timings[key]`` (seconds)."""
    t = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t


def _run_steps(prep: steps.Prepared, bars: Progress, timings: dict[str, float]) -> RunRecord:
    """Every step after :func:`steps.prepare`, in order; adds each stage's time to ``timings``."""
    recipe = prep.recipe
    with _timed(timings, "sensitivity_s"):
        sens = steps.sensitivity_step(prep, bars)
        table = steps.table_step(prep, sens)
        if recipe.sensitivity.calibrate and recipe.sensitivity.method != "empirical":  # empirical: all measured
            table = guard.calibrate_step(prep, table)
    target = recipe.allocation.max_drop is not None  # accuracy-target mode: the plan is measured, not guarded
    with _timed(timings, "allocation_s"):
        if target:
            from mpsearch.pipeline.target import target_plan, target_step

            raw_plan = target_plan(target_step(prep, table))
        else:
            raw_plan = steps.choose_plan(prep, table, bars)
        plan = steps.stable_plan(raw_plan)
    if recipe.allocation.method == "ilp" and not target:
        from mpsearch.pipeline.kbest import kbest_step

        with _timed(timings, "k_best_s"):  # the k best plans by omega, the lowest val loss
            plan = steps.stable_plan(kbest_step(prep, table, plan))
    if recipe.allocation.guard and not target:
        with _timed(timings, "guard_s"):
            plan = steps.stable_plan(guard.guard_step(prep, table, plan))
    with _timed(timings, "frontier_s"):  # frontier and baselines: PTQ accuracy of each, on the validation split
        val = prep.inputs.split(recipe.validation.split)
        front, frontier = _frontier(prep, table, val, bars)
        baselines, baseline_models = _baselines(prep, table, val)
    with _timed(timings, "finetune_s"):  # the chosen plan: PTQ, then QAT
        float_acc = steps.metric(prep, prep.inputs.model, val)
        qmodel = steps.quantize_plan(prep, plan)
        chosen = {**_point(plan, table.resource_names), "acc_ptq": steps.metric(prep, qmodel, val)}
        qat = steps.finetune_step(prep, qmodel, bars, "chosen plan")
        if qat:
            chosen["acc_qat"] = steps.metric(prep, qmodel, val)
            if baselines and "size_bytes" in table.resource_names:
                _finetune_nearest_baseline(prep, val, chosen, baselines, baseline_models, bars)
    frontier_qat: list[dict[str, Any]] = []
    if qat and front is not None and recipe.finetune is not None and recipe.finetune.frontier_points:
        from mpsearch.pipeline.frontier_qat import frontier_qat_step

        with _timed(timings, "frontier_qat_s"):  # a few frontier points, the same QAT (finetune.frontier_points)
            frontier_qat = frontier_qat_step(prep, front.points, frontier, val, bars)
    imodel = report = None
    with _timed(timings, "validation_s"):
        if recipe.validation.integer:
            imodel, report = steps.integer_step(prep, qmodel, bars, plan)
            lm = prep.inputs.task.metric == "bits_per_byte" and report.bits_per_token_int is not None
            # byte-level tokens: bits per token are bits per byte
            chosen["acc_int"] = report.bits_per_token_int if lm else report.accuracy_int
    return RunRecord(sens=sens, table=table, plan=plan, layers=prep.layers, profile=prep.profile, front=front,
                     frontier=frontier, baselines=baselines, chosen=chosen, float_accuracy=float_acc, qat=qat,
                     integer_model=imodel, validation=report, solve_time_s=raw_plan.solve_time_s,
                     frontier_qat=frontier_qat,
                     pareto_n_points=None if recipe.allocation.pareto is None else recipe.allocation.pareto.n_points)


def _point(plan: BitPlan, resource_names: tuple[str, ...]) -> dict[str, Any]:
    return {**{k: float(plan.totals[k]) for k in resource_names if k in plan.totals}, "omega": float(plan.objective or 0.0)}


def _frontier(prep: steps.Prepared, table: CostTable, val: list[Any], bars: Progress
              ) -> tuple[Any, list[dict[str, Any]]]:
    """The Pareto sweep (None without ``allocation.pareto``) and its points with PTQ accuracy."""
    spec = prep.recipe.allocation
    if spec.pareto is None:
        return None, []
    from mpsearch.allocation import pareto

    others = prep.budgets.without(spec.pareto.resource)
    front = pareto(table, spec.pareto.resource, spec.pareto.n_points, others, rules=prep.profile.rules,
                   solver=spec.solver, gap_rel=spec.gap_rel)
    task = bars.add("frontier PTQ", total=len(front.points))
    points = []
    for p in front.points:
        q = steps.quantize_plan(prep, p)
        points.append({**_point(p, table.resource_names), "acc_ptq": steps.metric(prep, q, val),
                       "bits": " ".join(f"{n}:{b.key}" for n, b in p.layers.items())})
        bars.update(task, advance=1)
    return front, points


def _baseline_pairs(table: CostTable, recipe: Recipe) -> list[tuple[int, int, str | None]]:
    """``(w, a, format key or None)`` of each uniform baseline: W8/W4/W2 at the widest activation
    bits, then every ``uniform:`` budget's own plan (``uniform:w3a16g128`` names a format)."""
    keys = {(c.w_bits, c.a_bits) for cs in table.candidates for c in cs}
    out: list[tuple[int, int, str | None]] = []
    for w in BASELINE_W_BITS:
        a_opts = sorted(a for ww, a in keys if ww == w)
        if a_opts:
            out.append((w, a_opts[-1], None))
    for b in recipe.budgets.entries:
        key = getattr(b, "key", None)
        if key is not None and all(k != key for *_, k in out):
            out.append((b.w_bits, b.a_bits, key))  # type: ignore[union-attr]
    return out


def _baselines(prep: steps.Prepared, table: CostTable, val: list[Any]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Uniform plans (key ``w4a8``, or a format's ``w3a16g128``): their point and PTQ accuracy, and
    their fake-quant models."""
    baselines: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    for w, a, fmt in _baseline_pairs(table, prep.recipe):
        bplan, others_at = uniform_plan(table, w, a, key=fmt)
        q = steps.quantize_plan(prep, bplan)
        # the key the layers took: a plain pair, or the format standing for it (w4a16 -> w4a16g128)
        key = fmt or next((b.key for n, b in bplan.layers.items() if n not in others_at), f"w{w}a{a}")
        baselines[key] = {**_point(bplan, table.resource_names), "acc_ptq": steps.metric(prep, q, val),
                          "layers_at_other_bits": others_at}
        models[key] = q
    return baselines, models


def _finetune_nearest_baseline(prep: steps.Prepared, val: list[Any], chosen: dict[str, Any],
                               baselines: dict[str, dict[str, Any]], models: dict[str, Any], bars: Progress) -> None:
    """The same fine-tuning for the uniform baseline closest in size to the chosen plan, for a fair comparison."""
    near = min(baselines, key=lambda k: abs(baselines[k]["size_bytes"] - chosen["size_bytes"]))
    steps.finetune_step(prep, models[near], bars, near)
    baselines[near]["acc_qat"] = steps.metric(prep, models[near], val)


def _header(prep: steps.Prepared, budgets: dict[str, Any] | None) -> RunHeader:
    """What the recipe asked for, as the plain data ``report/`` reads."""
    recipe = prep.recipe
    ft = recipe.finetune
    finetune = None if ft is None else {
        "epochs": ft.epochs, "lr": ft.lr, "batch_size": ft.batch_size,
        "seed": recipe.seed if ft.seed is None else ft.seed,
        "distill": None if ft.distill is None else vars(ft.distill)}
    return RunHeader(recipe=recipe.path, name=recipe.name, model=recipe.model, seed=recipe.seed,
                     n_sensitivity_batches=recipe.sensitivity.n_batches,
                     budgets_given=dict(recipe.budgets if budgets is None else budgets),
                     budgets_absolute=prep.budgets, allocation_method=recipe.allocation.method,
                     finetune=finetune, validation_split=recipe.validation.split, inputs=prep.inputs.info,
                     metric=prep.inputs.task.describe())
