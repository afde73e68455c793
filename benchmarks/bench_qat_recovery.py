"""How much of each layer's quantization damage QAT takes back: omega vs measured loss, PTQ and after QAT.

Starting from uniform W4A8 (the plan the mixed plan is compared with), one layer at a time is
moved to W2A8 or W8A8. For each move: the change of omega (the ILP's objective, HAWQ-V2/V3),
the change of the mean validation cross-entropy after PTQ, and after QAT (the recipe's QAT,
same seeds for the move and for uniform W4A8, so the seed noise cancels in the difference).
The mixed plan at the size of uniform W4A8 buys 4 -> 8 moves with 4 -> 2 moves; it can beat
uniform W4A8 after QAT only if what the 8-bit moves gain after QAT exceeds what the 2-bit
moves lose. Validation split only (no test images are used).

    nice -n 19 python benchmarks/bench_qat_recovery.py --splits 0 1 2 --seeds 0 1 2 --out bench_qat_recovery
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import add_qat_args, finetuned, mean_loss, split_inputs  # noqa: E402

from mpsearch.allocation import uniform_plan  # noqa: E402
from mpsearch.core.plan import BitPlan, LayerBits  # noqa: E402
from mpsearch.pipeline import steps  # noqa: E402
from mpsearch.recipe import load_recipe  # noqa: E402
from mpsearch.report.progress import Progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def omega_of(table: Any, layers: dict[str, LayerBits]) -> float:
    return float(table.totals(table.rows_for_plan(layers))["omega"])


def run_split(name: str, split_seed: int, args: argparse.Namespace) -> dict[str, Any]:
    base = load_recipe(args.recipe)
    recipe = dataclasses.replace(base, model=name, name=f"bench-{name}", budgets={})
    prep = steps.prepare(recipe, inputs=split_inputs(recipe, split_seed))
    table = steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))
    base_plan = uniform_plan(table, 4, 8)[0]

    def evaluate(layers: dict[str, LayerBits]) -> dict[str, Any]:
        q = steps.quantize_plan(prep, BitPlan(layers=layers))
        qat = [finetuned(prep, q, s, args)["val_loss"] for s in args.seeds]
        return {"omega": omega_of(table, layers), "ptq_val_loss": mean_loss(q, prep.inputs.val), "qat_val_loss": qat}

    ref = evaluate(dict(base_plan.layers))
    rows = []
    for layer in table.layers:
        i = table.layers.index(layer)
        n_params = next(lay.n_params for lay in prep.layers if lay.name == layer)
        for w in args.moves:
            if (w, 8) not in {(c.w_bits, c.a_bits) for c in table.candidates[i]}:
                continue
            m = evaluate({**base_plan.layers, layer: LayerBits(w, 8)})
            rows.append({"layer": layer, "n_params": n_params, "w_bits": w,
                         "d_omega": m["omega"] - ref["omega"], "d_ptq_val_loss": m["ptq_val_loss"] - ref["ptq_val_loss"],
                         "d_qat_val_loss": statistics.fmean(a - b for a, b in zip(m["qat_val_loss"], ref["qat_val_loss"])),
                         "d_size_bytes": (w - 4) * n_params / 8})
            print(f"  split {split_seed} {layer:<22} w{w}: d_omega {rows[-1]['d_omega']:+.5f}  d_PTQ {rows[-1]['d_ptq_val_loss']:+.5f}"
                  f"  d_QAT {rows[-1]['d_qat_val_loss']:+.5f}", flush=True)
    return {"reference": ref, "moves": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"])
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--moves", nargs="+", type=int, default=[2, 8])
    add_qat_args(ap)
    ap.add_argument("--out", default="bench_qat_recovery")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {"machine": "2-core x86-64 CPU, no GPU, torch " + torch.__version__, "args": vars(args), "models": {}}
    t0 = time.perf_counter()
    for name in args.models:
        print(name, flush=True)
        out["models"][name] = {k: run_split(name, k, args) for k in args.splits}
    out["wall_s"] = time.perf_counter() - t0
    path = ROOT / "benchmarks" / "results" / f"{args.out}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
