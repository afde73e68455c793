"""``mpsearch export``: quantize a plan and write it as an ONNX QDQ model, checked in ONNX Runtime.

    mpsearch export --format onnx --recipe recipes/demo.yaml --plan runs/demo/plan.yaml -o demo.onnx
    mpsearch export --format onnx --recipe recipes/demo-gpt.yaml --plan runs/demo-gpt/plan.yaml -o gpt.onnx

The model, data and profile come from the recipe (as ``validate`` reads them). After writing, the
model runs in ONNX Runtime on the recipe's validation split and the command prints its top-1
agreement and largest logit difference against the fake-quant simulation and the integer program
(``--no-check`` skips that).
"""

from __future__ import annotations

import argparse

from mpsearch.commands._common import load

HELP = "Write a plan as an ONNX QDQ model (the plan's scales and bits) and check it in ONNX Runtime."
FORMATS = ("onnx",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="onnx", choices=FORMATS, help="export format (default onnx)")
    parser.add_argument("--recipe", required=True, help="a recipe YAML (model, data, hardware, validation are used)")
    parser.add_argument("--plan", required=True, help="a plan YAML/JSON (from run, allocate or search)")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=21, help="ONNX opset, 13..23 (default 21: int4 types, blocked scales)")
    parser.add_argument("--low-bits", default="int4", choices=("int4", "int8"),
                        help="storage of 2..4-bit tensors: int4 (opset >= 21) or int8 holding the codes")
    parser.add_argument("--bias", default="int32", choices=("int32", "float"),
                        help="8-bit layers' bias as int32 codes (standard QDQ) or float")
    parser.add_argument("--no-check", action="store_true", help="do not run the model in ONNX Runtime")
    parser.add_argument("--qdq-fusion", action="store_true",
                        help="check with ONNX Runtime's QDQ fusions on (fused integer kernels, other numerics)")
    parser.add_argument("--report", default=None, help="write the agreement report here (JSON/YAML)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no printed report")


def run(args: argparse.Namespace) -> int:
    from mpsearch.core.io import dump_structured
    from mpsearch.core.plan import BitPlan
    from mpsearch.execution.export import ExportConfig, export_onnx, validate_onnx
    from mpsearch.execution.export.export import check_output_path
    from mpsearch.pipeline import steps
    from mpsearch.report import progress

    ExportConfig(opset=args.opset, low_bits=args.low_bits, bias=args.bias)  # bad options stop before the work
    check_output_path(args.output)
    recipe = load(args.recipe)
    plan = BitPlan.load(args.plan)
    with progress(args.quiet):
        prep = steps.prepare(recipe, budgets={})
        plan.check_layers([lay.name for lay in prep.layers], where=args.plan)
        qmodel = steps.quantize_plan(prep, plan)
    budgets = {k: str(v) for k, v in (recipe.budgets.items() if hasattr(recipe.budgets, "items") else [])}
    path = export_onnx(qmodel, prep.inputs.example_inputs, args.output, opset=args.opset, low_bits=args.low_bits,
                       bias=args.bias, plan=plan, budgets=budgets or None)
    if not args.quiet:
        print(f"wrote {path}")
    if args.no_check:
        return 0
    from mpsearch.execution import IntegerConfig, to_integer

    float_by_plan = any(b.a_bits == 16 or b.a_mode == "dynamic_per_token" for b in plan.layers.values())
    config = IntegerConfig(integer_only=bool(prep.profile.capabilities.integer_only) and not float_by_plan)
    imodel = to_integer(qmodel, prep.inputs.example_inputs, config)
    report = validate_onnx(path, qmodel, prep.inputs.split(recipe.validation.split), imodel=imodel,
                           qdq_fusion=args.qdq_fusion)
    if args.report:
        dump_structured(steps.plain(report.to_dict()), args.report)
    if not args.quiet:
        print(report)
    return 0
