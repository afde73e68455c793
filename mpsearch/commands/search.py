"""``mpsearch search``: explore bit plans with Optuna or RL (ask/tell) on a recipe's cost table.

    mpsearch search --recipe recipes/demo.yaml --explorer optuna --n-trials 200 -o plan.yaml
    mpsearch search --recipe recipes/demo.yaml --explorer optuna --workers 2 --storage sqlite:///study.db

As in ``mpsearch run``, the table is calibrated (``sensitivity.calibrate``) and the best plan guarded on the
val split (``allocation.guard``); a ``guard:`` line says whether the guard changed the plan and why.
"""

from __future__ import annotations

import argparse

from mpsearch.commands._common import add_budget_flag, budgets_from_flags, load

HELP = "Search bit plans with an explorer (optuna | rl) under the recipe's budgets; write the best plan."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="a recipe YAML (its sensitivity and budgets are used)")
    parser.add_argument("--explorer", default="optuna", help="explorer name: optuna (TPE) or rl (HAQ-style DDPG)")
    parser.add_argument("--n-trials", type=int, default=200, help="plans evaluated (RL: episodes)")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the study (optuna; needs --storage)")
    parser.add_argument("--storage", default=None, help="optuna storage URL (sqlite:///x.db, postgresql://...) to "
                                                       "resume or share a study")
    add_budget_flag(parser)
    parser.add_argument("-o", "--output", default="plan.yaml", help="where the best plan goes (the best so far is "
                                                                   "written there every --checkpoint-every trials)")
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="trials between two atomic writes of the best plan so far to -o (a killed search "
                             "leaves a usable plan)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from mpsearch.core.io import check_output_path
    from mpsearch.explorers import search
    from mpsearch.pipeline import steps
    from mpsearch.pipeline.guard import calibrate_as_recipe
    from mpsearch.report import progress

    check_output_path(args.output, "", "-o")  # before any work
    recipe = load(args.recipe)
    budgets = budgets_from_flags(args.budget)
    options = {"storage": args.storage} if args.storage else {}
    with progress(args.quiet) as bars:
        prep = steps.prepare(recipe, budgets)
        table = calibrate_as_recipe(prep, steps.table_step(prep, steps.sensitivity_step(prep, bars)))
        task = bars.add(f"search ({args.explorer})", total=args.n_trials)
        result = search(table, explorer=args.explorer, budgets=prep.budgets, n_trials=args.n_trials,
                        n_workers=args.workers, seed=recipe.seed, checkpoint=args.output,
                        checkpoint_every=args.checkpoint_every,
                        progress=(lambda _e: bars.update(task, advance=1)) if args.workers == 1 else None, **options)
    if result.best is None:
        from mpsearch.errors import MpsearchError

        raise MpsearchError(f"search: every one of {result.n_evaluations} trials failed; no plan to write")
    plan = result.best
    if recipe.allocation.guard:  # as in mpsearch run: the best plan is checked against uniform and greedy on val
        from mpsearch.pipeline.guard import guard_step

        plan = guard_step(prep, table, plan)
    plan = steps.stable_plan(plan)
    plan.save(args.output)
    if not args.quiet:
        from mpsearch.report.guard import guard_line

        guard = guard_line(plan)
        print(f"best of {result.n_evaluations} trials: {dict(result.best_metrics)}; totals "
              f"{ {k: round(v, 6) for k, v in plan.totals.items()} }\n" + (f"{guard}\n" if guard else "")
              + f"wrote {args.output}")
    return 0
