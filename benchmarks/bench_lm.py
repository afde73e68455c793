"""Bits per byte of the demo LM under LLM weight formats: float, uniform W8 / W4 g128 / W3 g128,
and mixed plans (Hessian sensitivity + ILP) at the sizes of uniform W4 g128 and W3 g128.

    python benchmarks/bench_lm.py [--seeds 0 1 2] [--max-probes 64] [--out ...]

Each seed is one trained gpt_tiny (``load_demo_lm_run(seed=...)``: its own initial weights and
training windows, cached after the first run, ~3 min each) with its own sensitivity and
calibration windows. Candidates are weight-only formats (activations stay float):
w2a16g128, w3a16g128, w4a16g128 (symmetric, one fp16 scale per 128 input features: 2.125,
3.125, 4.125 bits per weight), w8a16 (per-channel) and w16a16 (keep in 16-bit); sizes are the
honest sizes of x86-2core-int's formats (scales and fp16 biases included, the tied
embedding/head stored once). Every figure is fake-quant (simulated) bits per byte over the whole
test split (12 standard-library files, 0.21 MB, 1 635 windows of 128 bytes = 209 k predictions).
Prints a table (mean +- sample std over seeds) and writes benchmarks/results/lm_formats.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.demo import bits_per_byte, lm_loss, load_demo_lm_run, text_batches
from mpsearch.model import weight_ties
from mpsearch.sensitivity import HessianConfig

FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16", "w16a16"]
UNIFORM = {"W8": (8, 16), "W4 g128": (4, 16), "W3 g128": (3, 16)}


def one_seed(seed: int, max_probes: int) -> dict[str, Any]:
    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    windows = list(text_batches(splits.train, ctx, 32, n_batches=6, seed=1000 + seed))
    test = text_batches(splits.test, ctx, 64)
    t0 = time.perf_counter()
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    sens = mps.analyze(model, lm_loss, windows[:2], method="hessian",
                       config=HessianConfig(max_probes=max_probes, rel_stderr_target=0.1, seed=seed))
    profile = mps.load_profile("x86-2core-int")
    # weight-only formats have no activation quantizer, so only shared weights tie layers
    table = mps.cost_table(model, layers, sens, profile, formats=FORMATS, calib_batches=windows[2:],
                           ties=weight_ties(layers))
    sens_s = time.perf_counter() - t0
    row: dict[str, Any] = {"seed": seed, "float": bits_per_byte(model, test), "sensitivity_s": sens_s}
    plans = {}
    for label, (w, a) in UNIFORM.items():
        plans[f"uniform {label}"] = uniform_plan(table, w, a)[0]
    for label in ("W4 g128", "W3 g128"):
        size = plans[f"uniform {label}"].totals["size_bytes"]
        plans[f"mixed at {label} size"] = mps.allocate(table, budgets={"size_bytes": size})
    for name, plan in plans.items():
        q = mps.quantize(model, plan, windows[2:], profile=profile)
        row[name] = bits_per_byte(q, test)
        row[f"{name} size_bytes"] = float(plan.totals["size_bytes"])
        row[f"{name} omega"] = float(plan.objective or 0.0)
        if name.startswith("mixed"):
            row[f"{name} bits"] = {n: b.key for n, b in plan.layers.items()}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-probes", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lm_formats.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [one_seed(s, args.max_probes) for s in args.seeds]
    names = ["float", *(f"uniform {k}" for k in UNIFORM), "mixed at W4 g128 size", "mixed at W3 g128 size"]
    print(f"gpt_tiny, bits per byte on the test split (lower is better), {len(rows)} seeds: mean +- std")
    for n in names:
        vals = [r[n] for r in rows]
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        size = "" if n == "float" else f"  size {statistics.mean(r[n + ' size_bytes'] for r in rows) / 1e3:8.1f} kB"
        print(f"{n:<24} {statistics.mean(vals):.4f} +- {sd:.4f}{size}   per seed: {', '.join(f'{v:.4f}' for v in vals)}")
    for label in ("W4 g128", "W3 g128"):
        d = [r[f"mixed at {label} size"] - r[f"uniform {label}"] for r in rows]
        print(f"mixed - uniform at {label} size: {statistics.mean(d):+.4f} +- "
              f"{statistics.stdev(d) if len(d) > 1 else 0.0:.4f} bits/byte")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "formats": FORMATS, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
