"""``mpsearch analyze RECIPE``: per-layer sensitivity and the cost table, written as JSON.

    mpsearch analyze recipes/demo.yaml -o sensitivity.json --table cost_table.json
"""

from __future__ import annotations

import argparse

from mpsearch.commands._common import load

HELP = "Measure per-layer sensitivity (the recipe's method) and write it, with the omega/cost table."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="path to a recipe YAML (model, data, sensitivity, hardware sections are used)")
    parser.add_argument("-o", "--output", default="sensitivity.json", help="where the sensitivity goes (JSON/YAML)")
    parser.add_argument("--table", help="also write the cost table (omega + resources per layer x candidate) here, "
                                        "for 'mpsearch allocate --table'")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from mpsearch.core.io import check_output_path, dump_structured
    from mpsearch.pipeline import steps
    from mpsearch.report import progress

    check_output_path(args.output, "", "-o")  # before any work
    if args.table:
        check_output_path(args.table, "", "--table")
    recipe = load(args.recipe)
    with progress(args.quiet) as bars:
        prep = steps.prepare(recipe, budgets={})
        sens = steps.sensitivity_step(prep, bars)
    dump_structured(steps.plain(sens.to_dict()), args.output)
    if args.table:
        dump_structured(steps.table_to_dict(steps.table_step(prep, sens)), args.table)
    if not args.quiet:
        for name, rec in sens.layers.items():
            print(f"{name:<28} trace {rec.trace if rec.trace is not None else float('nan'):>12.5g}  n_probes {rec.n_probes}")
    return 0
