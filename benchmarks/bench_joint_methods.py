"""Issue #16: joint (bits, method) allocation against bits-only allocation at the same size.

    python benchmarks/bench_joint_methods.py [--models small_cnn resnet_tiny] [--seeds 0 1 2]

For each demo CNN, seed and size (the size of uniform round-to-nearest W2, W3 and W4 over
candidates w in {2, 3, 4, 8}, a 8 on x86-2core-int): the test top-1 of

* ``bits``: Hessian omega -> ILP over the bit candidates (round-to-nearest: today's pipeline),
* ``joint``: the same sensitivity, candidates = bits x methods {rtn, gptq, kmeans} (the profile
  is given ``capabilities.methods`` for these), omega of each pair from the method's actual
  output (:mod:`mpsearch.sensitivity.method_omega`), sizes with k-means' codebooks -> ILP,
* ``joint_cal``: ``joint`` with every row up to 4 bits measured (:func:`calibrate_omega`: the
  real loss increase on the 4 calibration batches with that one layer quantized by the row's
  method, GPTQ / k-means on that layer's float calibration inputs), the measured figure used,
* ``bits_cal``: ``bits`` calibrated the same way (so the gain of ``joint_cal`` over ``bits`` is
  split into what measuring gives and what the methods give),
* ``joint_chk``: ``joint_cal``, checked as a whole: the joint_cal and the bits plan are both
  quantized and joint_cal is kept only if its top-1 on 4 other train batches of 64 (not test,
  not the calibration batches) is higher, a tie keeps bits (one-layer figures add up badly
  where the model collapses),
* ``uniform``: every layer at that width, round-to-nearest.

The seed draws the Hessian probes and which 4 train batches of 64 calibrate (methods, activation
ranges). One trained model per CNN (cached in ~/.cache/mpsearch/demo). Metric: top-1 on the 359
test images (one image = 0.28 points). Writes benchmarks/results/joint_methods.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.sensitivity import HessianConfig
from mpsearch.sensitivity.calibrate import CalibrationConfig, calibrate_omega

METHODS = ["rtn", "gptq", "kmeans"]
PLANS = ("bits", "joint", "joint_cal", "joint_chk", "bits_cal", "uniform")
#: measure every row up to 4 bits and use the measured figure (factor 1, no noise floor)
CAL = CalibrationConfig(factor=1.0, min_diff=0.0, max_w_bits=4, max_evaluations=100_000)


def cnn_seed(name: str, seed: int) -> dict[str, Any]:
    from mpsearch.demo import batches, evaluate, load_demo_run

    torch.manual_seed(seed)
    run = load_demo_run(name)
    model, splits = run.model.eval(), run.splits
    train = list(batches(splits.train, 64))
    train = [train[int(i)] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    test = list(batches(splits.test, 512))
    base = mps.load_profile("x86-2core-int")
    profile = replace(base, capabilities=replace(base.capabilities, methods=tuple(METHODS)))
    layers = mps.discover(model, splits.example_inputs(2))
    sens = mps.analyze(model, nn.CrossEntropyLoss(), train[:2], config=HessianConfig(max_probes=24, seed=seed))
    calib = train[2:6]
    held = train[6:10]  # the whole-model check's batches (not test, not those the methods fit)
    t0 = time.perf_counter()
    bits = mps.cost_table(model, layers, sens, profile, w_bits=[2, 3, 4, 8], a_bits=[8], calib_batches=calib)
    t1 = time.perf_counter()
    joint = mps.cost_table(model, layers, sens, profile, w_bits=[2, 3, 4, 8], a_bits=[8], calib_batches=calib,
                           methods=METHODS)
    t2 = time.perf_counter()
    ce = nn.CrossEntropyLoss()
    joint_cal = calibrate_omega(model, joint, ce, calib, profile, CAL, calib_batches=calib)
    t3 = time.perf_counter()
    bits_cal = calibrate_omega(model, bits, ce, calib, profile, CAL, calib_batches=calib)

    def score(p):
        torch.manual_seed(seed)
        return evaluate(mps.quantize(model, p, calib, profile=profile), test)

    def held_top1(p):
        torch.manual_seed(seed)
        return evaluate(mps.quantize(model, p, calib, profile=profile), held)

    out: dict[str, Any] = {"table_s": {"bits": t1 - t0, "joint": t2 - t1, "calibrate_joint": t3 - t2}}
    for w in (2, 3, 4):
        budget = {"size_bytes": uniform_plan(bits, w, 8)[0].totals["size_bytes"]}
        plans = {"bits": mps.allocate(bits, budget), "joint": mps.allocate(joint, budget),
                 "joint_cal": mps.allocate(joint_cal, budget), "bits_cal": mps.allocate(bits_cal, budget),
                 "uniform": uniform_plan(bits, w, 8)[0]}
        pick = "joint_cal" if held_top1(plans["joint_cal"]) > held_top1(plans["bits"]) else "bits"  # tie: bits
        plans["joint_chk"] = plans[pick]
        row: dict[str, Any] = {k: score(p) for k, p in plans.items()}
        row["joint_chk_pick"] = pick
        row["size_bytes"] = {k: p.totals["size_bytes"] for k, p in plans.items()}
        row["budget"] = budget["size_bytes"]
        row["omega"] = {k: p.objective for k, p in plans.items() if k != "uniform"}
        row["keys"] = {k: " ".join(b.key for b in p.layers.values()) for k, p in plans.items()}
        out[f"W{w}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["small_cnn", "resnet_tiny"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "joint_methods.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in args.models:
        rows = results[name] = []
        for s in args.seeds:
            rows.append(cnn_seed(name, s))
            print(name, s, {w: {k: round(rows[-1][w][k], 4) for k in PLANS} for w in ("W2", "W3", "W4")}, flush=True)
        for w in ("W2", "W3", "W4"):
            cells = []
            for k in PLANS:
                vals = [r[w][k] for r in rows]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{k} {statistics.mean(vals):.4f} ± {sd:.4f}")
            for a, b in (("joint", "bits"), ("joint_cal", "bits"), ("joint_chk", "bits"), ("joint_cal", "bits_cal")):
                d = [r[w][a] - r[w][b] for r in rows]
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                cells.append(f"{a}-{b} {100 * statistics.mean(d):+.2f} ± {100 * sd:.2f} pts")
            print(f"{name} {w}: " + " | ".join(cells))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "seeds": args.seeds, "seconds": time.perf_counter() - t0, "results": results},
                              indent=1, default=str))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
