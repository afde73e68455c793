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
* ``joint_val`` (the default, fixed before any test score was seen; what a recipe with
  ``hardware.methods`` does): :func:`mpsearch.pipeline.guard.guard_plan` of ``joint_cal`` on the
  VALIDATION split (359 images, top-1, ties broken by validation cross-entropy) against every
  uniform plan within the budget, the greedy plan and the bits-only plan (``bits_only``),
* ``bits_val``: the same guard on the ``bits`` plan (a recipe without methods).

``narrow_cnn`` (demo/narrow.py) is trained per seed; the other CNNs are one cached model each.

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
PLANS = ("bits", "joint", "joint_cal", "joint_chk", "bits_cal", "uniform", "joint_val", "bits_val")
#: measure every row up to 4 bits and use the measured figure (factor 1, no noise floor)
CAL = CalibrationConfig(factor=1.0, min_diff=0.0, max_w_bits=4, max_evaluations=100_000)


def cnn_seed(name: str, seed: int) -> dict[str, Any]:
    from mpsearch.demo import batches, evaluate, load_demo_run

    from mpsearch.allocation.greedy import greedy_plan
    from mpsearch.demo.narrow import load_narrow_run
    from mpsearch.pipeline.guard import bits_only, guard_plan, mean_loss
    from mpsearch.sensitivity.calibrate import weight_error_table

    torch.manual_seed(seed)
    run = load_narrow_run(seed=seed) if name == "narrow_cnn" else load_demo_run(name)
    model, splits = run.model.eval(), run.splits
    train = list(batches(splits.train, 64))
    train = [train[int(i)] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    test = list(batches(splits.test, 512))
    val = list(batches(splits.val, 512))
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

    def guarded(p, table, budget, extra):
        def q(plan):
            torch.manual_seed(seed)
            return mps.quantize(model, plan, calib, profile=profile)
        greedy = greedy_plan(weight_error_table(model, bits, profile), budget, profile.rules)
        return guard_plan(p, table, budget, lambda plan: evaluate(q(plan), val), higher_is_better=True,
                          greedy=greedy, rules=profile.rules, tiebreak=lambda plan: mean_loss(q(plan), ce, val),
                          extra=extra)

    out: dict[str, Any] = {"table_s": {"bits": t1 - t0, "joint": t2 - t1, "calibrate_joint": t3 - t2}}
    for w in (2, 3, 4):
        budget = {"size_bytes": uniform_plan(bits, w, 8)[0].totals["size_bytes"]}
        plans = {"bits": mps.allocate(bits, budget), "joint": mps.allocate(joint, budget),
                 "joint_cal": mps.allocate(joint_cal, budget), "bits_cal": mps.allocate(bits_cal, budget),
                 "uniform": uniform_plan(bits, w, 8)[0]}
        pick = "joint_cal" if held_top1(plans["joint_cal"]) > held_top1(plans["bits"]) else "bits"  # tie: bits
        plans["joint_chk"] = plans[pick]
        plans["joint_val"] = guarded(plans["joint_cal"], joint_cal, budget, bits_only(joint_cal, budget, profile.rules))
        plans["bits_val"] = guarded(plans["bits"], bits, budget, None)
        row: dict[str, Any] = {k: score(p) for k, p in plans.items()}
        row["joint_chk_pick"] = pick
        row["guard"] = {k: {"chosen": plans[k].meta["guard"]["chosen"], "values": plans[k].meta["guard"]["values"]}
                        for k in ("joint_val", "bits_val")}
        row["size_bytes"] = {k: p.totals["size_bytes"] for k, p in plans.items()}
        row["budget"] = budget["size_bytes"]
        row["omega"] = {k: p.objective for k, p in plans.items() if k != "uniform"}
        row["keys"] = {k: " ".join(b.key for b in p.layers.values()) for k, p in plans.items()}
        out[f"W{w}"] = row
    return out


LM_FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16", "w16a16"]


def lm_seed(seed: int) -> dict[str, Any]:
    """gpt_tiny (one trained model per seed), weight-only formats: bits, joint_cal, joint_val, uniform;
    test bits per byte on 256 windows of 128 bytes (lean: the shared 2-core machine)."""
    from mpsearch.allocation.greedy import greedy_plan
    from mpsearch.demo import bits_per_byte, lm_loss, load_demo_lm_run, text_batches
    from mpsearch.model import weight_ties
    from mpsearch.pipeline.guard import bits_only, guard_plan, mean_loss
    from mpsearch.sensitivity.calibrate import weight_error_table

    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    windows = list(text_batches(splits.train, ctx, 32, n_batches=6, seed=1000 + seed))
    calib = windows[2:]
    val = list(text_batches(splits.val[: 256 * ctx + 1], ctx, 64))
    test = list(text_batches(splits.test[: 256 * ctx + 1], ctx, 64))
    base = mps.load_profile("x86-2core-int")
    profile = replace(base, capabilities=replace(base.capabilities, methods=tuple(METHODS)))
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    ties = weight_ties(layers)
    from mpsearch.sensitivity.cache import default_cache_dir  # bench_decisions_lm's settings: a cache hit

    sens = mps.analyze(model, lm_loss, windows[:2], cache_dir=default_cache_dir(),
                       config=HessianConfig(max_probes=64, rel_stderr_target=0.1, seed=seed))
    t0 = time.perf_counter()
    bits = mps.cost_table(model, layers, sens, profile, formats=LM_FORMATS, calib_batches=calib, ties=ties)
    joint = mps.cost_table(model, layers, sens, profile, formats=LM_FORMATS, calib_batches=calib, ties=ties,
                           methods=METHODS)
    t1 = time.perf_counter()
    joint_cal = calibrate_omega(model, joint, lm_loss, calib, profile, CAL, calib_batches=calib)
    t2 = time.perf_counter()

    def q(plan):
        return mps.quantize(model, plan, calib, profile=profile)

    def guarded(p, table, budget, extra):
        greedy = greedy_plan(weight_error_table(model, bits, profile), budget, profile.rules)
        return guard_plan(p, table, budget, lambda plan: float(bits_per_byte(q(plan), val)), higher_is_better=False,
                          greedy=greedy, rules=profile.rules, tiebreak=lambda plan: mean_loss(q(plan), lm_loss, val),
                          extra=extra)

    out: dict[str, Any] = {"table_s": t1 - t0, "calibrate_s": t2 - t1, "float": float(bits_per_byte(model, test))}
    for w in (3, 4):
        uni = uniform_plan(bits, w, 16, key=f"w{w}a16g128")[0]
        budget = {"size_bytes": float(uni.totals["size_bytes"])}
        plans = {"bits": mps.allocate(bits, budget), "joint_cal": mps.allocate(joint_cal, budget), "uniform": uni}
        print(f"gpt_tiny s{seed} W{w}: allocated; guarding", flush=True)
        plans["joint_val"] = guarded(plans["joint_cal"], joint_cal, budget, bits_only(joint_cal, budget, profile.rules))
        row: dict[str, Any] = {k: float(bits_per_byte(q(p), test)) for k, p in plans.items()}
        row["guard"] = {"joint_val": {"chosen": plans["joint_val"].meta["guard"]["chosen"],
                                      "values": plans["joint_val"].meta["guard"]["values"]}}
        row["budget"] = budget["size_bytes"]
        row["keys"] = {k: " ".join(b.key for b in p.layers.values()) for k, p in plans.items()}
        out[f"W{w}"] = row
        print(f"gpt_tiny s{seed} W{w}: " + " ".join(f"{k} {row[k]:.4f}" for k in plans), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["small_cnn", "resnet_tiny"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lm", action="store_true", help="gpt_tiny instead of the CNNs (writes joint_methods_lm.json)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "joint_methods.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    if args.lm:
        rows = results["gpt_tiny"] = [lm_seed(s) for s in args.seeds]
        for w in ("W3", "W4"):
            keys = ("bits", "joint_cal", "uniform", "joint_val")
            cells = [f"{k} {statistics.mean([r[w][k] for r in rows]):.4f} ± "
                     f"{statistics.stdev([r[w][k] for r in rows]) if len(rows) > 1 else 0.0:.4f}" for k in keys]
            for a, b in (("joint_cal", "bits"), ("joint_val", "bits")):
                d = [r[w][a] - r[w][b] for r in rows]
                cells.append(f"{a}-{b} {statistics.mean(d):+.4f} ± {statistics.stdev(d) if len(d) > 1 else 0.0:.4f}")
            print(f"gpt_tiny {w} (bits/byte, lower is better): " + " | ".join(cells))
    for name in ([] if args.lm else args.models):
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
            for a, b in (("joint", "bits"), ("joint_cal", "bits"), ("joint_chk", "bits"), ("joint_cal", "bits_cal"),
                         ("joint_val", "bits"), ("joint_val", "bits_val")):
                d = [r[w][a] - r[w][b] for r in rows]
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                cells.append(f"{a}-{b} {100 * statistics.mean(d):+.2f} ± {100 * sd:.2f} pts")
            print(f"{name} {w}: " + " | ".join(cells))
    out = Path(args.out if not args.lm else args.out.replace("joint_methods.json", "joint_methods_lm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "seeds": args.seeds, "seconds": time.perf_counter() - t0, "results": results},
                              indent=1, default=str))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
