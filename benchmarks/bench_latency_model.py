"""Latency model: predicted whole-model latency (sum of layers from a measured profile) vs measured.

    python benchmarks/bench_latency_model.py [--device cpu|cuda] [--profile x86-2core-int]
        [--batch 1 --batch 256] [--repeats 50] [--warmup 10] [--threads 1] [--rounds 5]

For each demo model and plan (W8A8, W4A4, a mixed plan), the prediction is the sum over the
model's layers of ``layer_costs(layer, candidate, profile, batch).latency_ms`` (LUT where the
signature and pair were measured, else the fitted roofline); the measurement is the end-to-end
wall time of the integer executor, ``imodel(x)`` (input quantization, integer program, output
dequantization), at the same batch and threads, with the profiler's estimator (mean of the
fastest quarter of the timed runs, ``_timing.TRIM``); all 18 cases are built first and timed
interleaved (``--rounds`` rounds, each running every case in turn), as the profiler does. Target: |error| <= 15%. Prints a table and writes
benchmarks/results/bench_latency_model[_cuda].json. ``--device cuda`` without CUDA skips cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from mpsearch.core import BitPlan
from mpsearch.core.plan import LayerBits
from mpsearch.core.types import Candidate
from mpsearch.demo import batches, load_demo
from mpsearch.execution import to_integer
from mpsearch.hardware import layer_costs, load_profile
from mpsearch.model import discover
from mpsearch.profiler import machine_description
from mpsearch.profiler._timing import ROUNDS, TRIM, intra_op_threads, time_end_to_end_many
from mpsearch.quant import quantize

MODELS = ("small_cnn", "resnet_tiny", "mobilenet_tiny")
TARGET_PCT = 15.0


def plans(names: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """W8A8, W4A4, and mixed: first / last layer w8a8, the rest alternating w4a8 and w2a4."""
    mixed = {n: (8, 8) if i in (0, len(names) - 1) else ((4, 8) if i % 2 else (2, 4)) for i, n in enumerate(names)}
    return {"w8a8": {n: (8, 8) for n in names}, "w4a4": {n: (4, 4) for n in names}, "mixed": mixed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", default=None, help="profile name or path (default x86-2core-int on cpu)")
    parser.add_argument("--batch", type=int, action="append", default=[])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds the timed runs are spread over")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_latency_model: --device cuda but torch.cuda.is_available() is False; skipped")
        return 0
    if args.profile is None and device.type == "cuda":
        print("bench_latency_model: --device cuda needs --profile (measure one with `mpsearch profile --device cuda`)")
        return 2
    profile = load_profile(args.profile or "x86-2core-int")
    batch_sizes = args.batch or [1, 256]
    rows: list[dict[str, Any]] = []
    programs = []
    load_start = list(os.getloadavg())
    with intra_op_threads(args.threads), torch.no_grad():
        for name in MODELS:  # build every case first, then time them all interleaved
            model, splits = load_demo(name)
            x_all = splits.test.tensors[0]
            calib = list(batches(splits.train, 256))[:2]
            for b in batch_sizes:
                x = x_all.repeat(-(-b // len(x_all)), 1, 1, 1)[:b].contiguous()
                layers = discover(model, x)
                for plan_key, bits in plans([layer.name for layer in layers]).items():
                    costs = [layer_costs(layer, Candidate(*bits[layer.name]), profile, batch=b) for layer in layers]
                    plan = BitPlan(layers={n: LayerBits(*wb) for n, wb in bits.items()})
                    programs.append((to_integer(quantize(model, plan, calib), x[:2]), x))
                    rows.append({"model": name, "plan": plan_key, "batch": b,
                                 "predicted_ms": sum(c.latency_ms for c in costs),
                                 "lut_layers": sum(c.latency_source == "lut" for c in costs), "layers": len(costs)})
        stats = time_end_to_end_many(programs, device, args.warmup, args.repeats, args.rounds)
        machine = machine_description(device, args.threads)
    load_end = list(os.getloadavg())
    for row, measured in zip(rows, stats):
        err = (row["predicted_ms"] - measured.mean) / measured.mean * 100
        row.update({"measured_ms": measured.mean, "measured_std_ms": measured.std, "measured_count": measured.count,
                    "error_pct": err, "within_target": abs(err) <= TARGET_PCT})
        print(f"{row['model']:<15} {row['plan']:<6} batch {row['batch']:>4}  predicted {row['predicted_ms']:9.3f} ms  "
              f"measured {measured.mean:9.3f} ± {measured.std:7.3f} ms  error {err:+6.1f}%  "
              f"(LUT {row['lut_layers']}/{row['layers']} layers)", flush=True)
    errs = [abs(r["error_pct"]) for r in rows]
    summary = {"max_abs_error_pct": max(errs), "mean_abs_error_pct": sum(errs) / len(errs),
               "within_target": sum(r["within_target"] for r in rows), "n": len(rows)}
    print(f"|error| mean {summary['mean_abs_error_pct']:.1f}%, max {summary['max_abs_error_pct']:.1f}%; "
          f"{summary['within_target']}/{summary['n']} within {TARGET_PCT:.0f}%")
    out = {"benchmark": "bench_latency_model", "device": str(device), "machine": machine, "profile": profile.name,
           "torch": torch.__version__, "threads": args.threads, "load_avg_start": load_start,
           "load_avg_end": load_end, "warmup": args.warmup, "repeats": args.repeats, "rounds": args.rounds,
           "estimator": f"mean of the fastest {1 - TRIM:.0%} of timed runs (as the profiler)",
           "profile_notes": profile.source.get("notes", ""), "target_pct": TARGET_PCT,
           "summary": summary, "rows": rows}
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    path = Path(__file__).parent / "results" / f"bench_latency_model{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
