"""End to end: accuracy vs size of the ILP frontier against uniform baselines, PTQ and after QAT.

For each demo model on digits (GAP-8 profile, w in {2, 4, 8}, a = 8): Hessian sensitivity, the
cost table, the ILP Pareto frontier over size_bytes, and the ILP plan at exactly the size of
uniform W4A8. Every plan, and uniform W8A8 / W4A8 / W2A8, is quantized (PTQ: min-max
calibration), then fine-tuned (QAT: the recipe's epochs with KD from the float model) and
measured on the test split. Prints a table and writes benchmarks/results/bench_e2e.json.

    python benchmarks/bench_e2e.py [--models resnet_tiny mobilenet_tiny] [--n-points 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from mpsearch.allocation import allocate, pareto
from mpsearch.pipeline import steps
from mpsearch.pipeline.budgets import uniform_plan
from mpsearch.recipe import FinetuneSpec, load_recipe
from mpsearch.report.progress import Progress

ROOT = Path(__file__).resolve().parents[1]


def measure(prep: steps.Prepared, plan, bars: Progress) -> dict:
    q = steps.quantize_plan(prep, plan)
    test = prep.inputs.test
    ptq = steps.accuracy(q, test)
    steps.finetune_step(prep, q, bars)
    return {"size_bytes": plan.totals["size_bytes"], "omega": plan.objective, "acc_ptq": ptq, "acc_qat": steps.accuracy(q, test),
            "bits": {n: b.key for n, b in plan.layers.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"])
    ap.add_argument("--n-points", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = load_recipe(ROOT / "recipes" / "demo.yaml")
    out: dict = {"machine": "2-core x86-64 CPU, no GPU, torch " + torch.__version__, "models": {}}
    bars = Progress(enabled=False)
    for name in args.models:
        t0 = time.perf_counter()
        recipe = dataclasses.replace(base, model=name, name=f"bench-{name}",
                                     finetune=dataclasses.replace(base.finetune or FinetuneSpec(), epochs=args.epochs))
        prep = steps.prepare(recipe)
        table = steps.table_step(prep, steps.sensitivity_step(prep, bars))
        rows = []
        for w in (8, 4, 2):
            plan, _ = uniform_plan(table, w, 8)
            rows.append({"plan": f"uniform W{w}A8", **measure(prep, plan, bars)})
        at_w4 = steps.stable_plan(allocate(table, prep.budgets))  # budget: size of uniform W4A8
        rows.append({"plan": "ILP mixed @ W4A8 size", **measure(prep, at_w4, bars)})
        front = pareto(table, "size_bytes", args.n_points)
        for p in front.points:
            rows.append({"plan": "ILP frontier", **measure(prep, p, bars)})
        out["models"][name] = {"float_acc": steps.accuracy(prep.inputs.model, prep.inputs.test), "rows": rows,
                               "wall_s": time.perf_counter() - t0}
        print(f"\n{name}: float {100 * out['models'][name]['float_acc']:.2f}%  ({out['models'][name]['wall_s']:.0f} s)")
        print(f"{'plan':<24} {'size kB':>8} {'omega':>10} {'PTQ %':>7} {'QAT %':>7}")
        for r in sorted(rows, key=lambda r: r["size_bytes"]):
            print(f"{r['plan']:<24} {r['size_bytes'] / 1e3:>8.2f} {r['omega']:>10.4g} {100 * r['acc_ptq']:>7.2f} {100 * r['acc_qat']:>7.2f}")
    path = ROOT / "benchmarks" / "results" / "bench_e2e.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
