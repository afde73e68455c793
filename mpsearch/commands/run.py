"""``mpsearch run RECIPE``: the whole pipeline, then a summary table.

    mpsearch run recipes/demo.yaml
    mpsearch run recipes/demo.yaml --budget size_bytes=15k --output-dir /tmp/out --quiet
"""

from __future__ import annotations

import argparse

from mpsearch.commands._common import add_budget_flag, budgets_from_flags, load

HELP = "Run a recipe end to end: sensitivity, allocation, Pareto sweep, QAT, integer validation, report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe YAML (see recipes/ and mpsearch/recipe/__init__.py for the schema)")
    parser.add_argument("--output-dir", help="folder for results (default: the recipe's output.dir); the run "
                                             "writes <output-dir>/<recipe name>/")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no summary table")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: these models are too small to gain from more)")
    add_budget_flag(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from mpsearch.pipeline import run_recipe, summary_rows
    from mpsearch.report import print_summary

    from mpsearch.core.io import check_output_path

    recipe = load(args.recipe, args.output_dir)
    # before any work: a run writes <output dir>/<name>/ (the flag's, else the recipe's output.dir)
    key = "--output-dir" if args.output_dir else f"{args.recipe}: output.dir"
    check_output_path(recipe.output_dir, "", key, folder=True)
    check_output_path(recipe.results_dir, "", f"the results folder ({key}/<name>)", folder=True)
    budgets = budgets_from_flags(args.budget)
    torch.set_num_threads(max(1, args.threads))
    result = run_recipe(recipe, quiet=args.quiet, budgets=budgets)
    if not args.quiet:
        s = result.summary
        print_summary({"title": f"{s['name']}: {s['model']} on {s['profile']['name']} "
                                f"({(s.get('metric') or {}).get('metric', 'accuracy').replace('_', ' ')} on "
                                f"{s['validation_split']})",
                       "rows": summary_rows(s), "results_dir": str(result.results_dir), "metric": s.get("metric"),
                       "notes": ["chosen bits: " + " ".join(f"{r['layer']}={r['key']}" for r in s["layers"]),
                                 f"total {s['timings_s']['total_s']:.1f} s"]})
    return 0
