"""``mpsearch validate``: quantize a plan, build the integer program and compare it with the simulation.

    mpsearch validate --recipe recipes/demo.yaml --plan results/demo/plan.yaml -o validation.json
"""

from __future__ import annotations

import argparse

from mpsearch.commands._common import load

HELP = "Check a plan in integer-only arithmetic: accuracy, agreement with fake-quant, LSB error; optional export."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="a recipe YAML (model, data, hardware, validation are used)")
    parser.add_argument("--plan", required=True, help="a plan YAML/JSON (from run, allocate or search)")
    parser.add_argument("--finetune", action="store_true", help="fine-tune (QAT) as the recipe says before validating")
    parser.add_argument("-o", "--output", default=None, help="write the validation report here (JSON/YAML)")
    parser.add_argument("--export", default=None, metavar="DIR", help="save the integer program to this folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no printed report")


def run(args: argparse.Namespace) -> int:
    from mpsearch.core.io import check_output_path, dump_structured
    from mpsearch.core.plan import BitPlan
    from mpsearch.hardware.plans import check_plan_runs
    from mpsearch.pipeline import steps
    from mpsearch.report import progress

    if args.output:  # before any work
        check_output_path(args.output, "", "-o")
    if args.export:
        check_output_path(args.export, "", "--export", folder=True)
    recipe = load(args.recipe)
    plan = BitPlan.load(args.plan)
    with progress(args.quiet) as bars:
        prep = steps.prepare(recipe, budgets={})
        plan.check_layers([lay.name for lay in prep.layers], where=args.plan)
        check_plan_runs(plan, prep.layers, prep.profile, where=args.plan)  # bits the device cannot run stop here
        qmodel = steps.quantize_plan(prep, plan)
        if args.finetune:
            steps.finetune_step(prep, qmodel, bars)
        imodel, report = steps.integer_step(prep, qmodel, bars, plan)
    if args.output:
        dump_structured(steps.plain(report.to_dict()), args.output)
    if args.export:
        imodel.save(args.export)
    if not args.quiet:
        print(report)
    return 0
