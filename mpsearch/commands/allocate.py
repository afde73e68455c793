"""``mpsearch allocate``: the ILP plan under budgets (proven within --gap-rel), from a cost table or a recipe.

    mpsearch allocate --table cost_table.json --budget size_bytes=20k --budget latency_ms=2.5 -o plan.yaml
    mpsearch allocate --recipe recipes/demo.yaml --budget size_bytes=50% -o plan.yaml
    mpsearch allocate --recipe recipes/demo.yaml --max-drop 0.5% -o plan.yaml   # accuracy-target mode

With --recipe the table is calibrated (``sensitivity.calibrate``) and the plan guarded on the val split
(``allocation.guard``), as in ``mpsearch run``; a ``guard:`` line says whether the guard changed the plan.
"""

from __future__ import annotations

import argparse

from mpsearch.allocation import DEFAULT_GAP_REL, GAP_REL_RULE, check_gap_rel  # numpy only: pulp loads lazily
from mpsearch.commands._common import add_budget_flag, budgets_from_flags, load
from mpsearch.core.plan import BitPlan
from mpsearch.errors import ConfigError, MpsearchError

# Without a budget the optimum is every layer at its widest candidate: a plan, but not a choice.
NO_BUDGET = ("at least one --budget RESOURCE=VALUE must be given (or a budgets: section in the recipe), but got "
             "none with {source}; without a budget every layer takes its widest candidate")

HELP = "Choose bits per layer with the ILP under one or more budgets (proven optimal with --gap-rel 0); write the plan."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", help="a cost table JSON written by 'mpsearch analyze --table' (or run's cost_table.json)")
    src.add_argument("--recipe", help="a recipe: its sensitivity and cost table are computed first")
    add_budget_flag(parser)
    parser.add_argument("--solver", default="cbc", help="ILP engine: cbc (bundled with PuLP) or highs")
    parser.add_argument("--gap-rel", type=_gap, default=DEFAULT_GAP_REL, metavar="FRACTION",
                        help=f"stop once the plan is proven within this relative gap of the optimum "
                             f"(default {DEFAULT_GAP_REL:g}, the usual MIP default); 0 proves the optimum, "
                             f"which can take minutes on thousands of layers")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="stop the solver after this long and keep the best plan found")
    parser.add_argument("-o", "--output", default="plan.yaml", help="where the plan goes (YAML, or JSON by suffix)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--max-drop", default=None, metavar="DROP",
                        help="accuracy-target mode (needs --recipe: plans are quantized and measured on its val "
                             "split): the smallest plan whose metric is within DROP of float, in metric units "
                             "(0.005) or percent of float (0.5%%); the recipe key is allocation.max_drop")
    parser.add_argument("--minimize", default=None, metavar="RESOURCE",
                        help="what accuracy-target mode minimizes (default: allocation.minimize, size_bytes)")


def run(args: argparse.Namespace) -> int:
    from mpsearch.allocation import allocate, check_feasible, resolve_budgets
    from mpsearch.core.io import check_output_path, read_structured
    from mpsearch.pipeline import steps
    from mpsearch.pipeline.guard import calibrate_as_recipe
    from mpsearch.report import progress

    check_output_path(args.output, "", "-o")  # before any work
    budgets = budgets_from_flags(args.budget)
    if args.table and (args.max_drop is not None or args.minimize is not None):
        raise ConfigError(f"--max-drop needs --recipe (each probed plan is quantized and measured on the recipe's "
                          f"val split; a cost table alone cannot be evaluated), but got --table {args.table}")
    if args.max_drop is not None:
        from mpsearch.allocation import check_max_drop

        check_max_drop(args.max_drop, "mpsearch allocate", "--max-drop")
    if args.table and budgets is None:
        raise ConfigError(NO_BUDGET.format(source="--table"))
    if args.table:
        table = steps.table_from_dict(read_structured(args.table), args.table)
        resolved = resolve_budgets(budgets, table, where="--budget")
        # infeasible budgets stop here, naming the table and the flags (allocate would only say "allocate")
        check_feasible(table, resolved, solver=args.solver, where=args.table, fix_subject="the --budget values")
    else:
        recipe = load(args.recipe)
        if args.max_drop is not None or recipe.allocation.max_drop is not None:
            return _target(args, recipe, budgets)
        if budgets is None and not recipe.budgets.entries:
            raise ConfigError(NO_BUDGET.format(source=f"--recipe {args.recipe} (its budgets: section is empty)"))
        with progress(args.quiet) as bars:
            prep = steps.prepare(recipe, budgets)  # resolves and checks the budgets
            table = calibrate_as_recipe(prep, steps.table_step(prep, steps.sensitivity_step(prep, bars)))
        resolved = prep.budgets
    plan = allocate(table, resolved, solver=args.solver, time_limit_s=args.time_limit, gap_rel=args.gap_rel)
    how = how_solved(plan)  # before stable_plan, which drops the run's timings
    if args.recipe and recipe.allocation.guard:  # the recipe has data: the plan is checked on its val split
        from mpsearch.pipeline.guard import guard_step

        plan = guard_step(prep, table, plan)
    plan = steps.stable_plan(plan)
    plan.save(args.output)
    if not args.quiet:
        from mpsearch.report.guard import guard_line

        bits = " ".join(f"{n}={b.key}" for n, b in plan.layers.items())
        totals = ", ".join(f"{k}={v:.6g}" for k, v in plan.totals.items())
        gap = "" if plan.gap is None or plan.optimal else f" (proven gap {plan.gap:.1e})"
        guard = guard_line(plan)
        print(f"{plan.status}{gap}: omega {plan.objective:.6g}; {totals}\n{how}\n{bits}\n"
              + (f"{guard}\n" if guard else "") + f"wrote {args.output}")
    return 0


def _target(args: argparse.Namespace, recipe, budgets) -> int:
    """Accuracy-target mode on the recipe (see :mod:`mpsearch.pipeline.target`)."""
    from mpsearch.pipeline import steps
    from mpsearch.pipeline.target import target_plan, target_step
    from mpsearch.report import progress

    with progress(args.quiet) as bars:
        prep = steps.prepare(recipe, budgets)
        table = steps.table_step(prep, steps.sensitivity_step(prep, bars))
    result = target_step(prep, table, args.max_drop, args.minimize)
    plan = steps.stable_plan(target_plan(result))
    plan.save(args.output)
    if not args.quiet:
        bits = " ".join(f"{n}={b.key}" for n, b in plan.layers.items())
        print(f"{result.summary()}\n{bits}\nwrote {args.output}")
    return 0


def how_solved(plan: BitPlan) -> str:
    """One line on what proved the plan and how long the solve took (from the plan's meta)."""
    m = plan.meta
    how = {
        "fixing": "the LP bound and reduced-cost fixing (no search)",
        "gap": "the LP bound (within the gap, no search)",
        "branching": f"group branching ({m.get('branch_nodes')} nodes)",
        "mip": f"the {plan.solver} MIP on {m.get('n_groups_after_fixing')} free layers",
        "time_limit": "the time limit (not proven)",
        "infeasible": "infeasibility",
    }.get(m.get("closed_by"), str(m.get("closed_by")))
    return f"solved in {plan.solve_time_s:.3f} s by {how}"


def _gap(text: str) -> float:
    """``--gap-rel``: a number in [0, 1) (allocation's rule, worded for the flag)."""
    try:
        return check_gap_rel(float(text))
    except (ValueError, MpsearchError):
        raise argparse.ArgumentTypeError(f"--gap-rel must be {GAP_REL_RULE}, but got {text!r}") from None
