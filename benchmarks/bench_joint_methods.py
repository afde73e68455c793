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
* ``default`` (session 7): what ``mpsearch run`` does with ``hardware.methods`` on the same cost
  table, calling the pipeline's own steps (:func:`recipe_path`): ``calibrate_as_recipe``
  (``sensitivity.calibrate_factor`` 2, ``calibrate_max_evaluations`` 64), the ILP, ``kbest_step``
  (8 best plans, lowest validation loss), ``guard_step`` (the joint plan must beat the bits-only
  plan in a paired sign test / McNemar's test on the validation images at alpha 0.05, else the
  bits-only plan is guarded; one-image tie margin, ties to the validation loss).
* ``default_cal``: ``default`` from the ``joint_cal`` table (every row up to 4 bits measured)
  instead of the recipe's calibration: which calibration is better is decided on VALIDATION.
* ``default_bits``: the same recipe path without methods (the bits table).

``narrow_cnn`` (demo/narrow.py) is trained per seed; the other CNNs are one cached model each,
or with ``--own-models`` one model trained from each seed on its own split (``load_demo_run(name, seed=s)``).

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
PLANS = ("bits", "joint", "joint_cal", "joint_chk", "bits_cal", "uniform", "joint_val", "bits_val", "default",
         "default_cal", "default_bits")
RECIPE_PLANS = ("default", "default_cal", "default_bits")
#: measure every row up to 4 bits and use the measured figure (factor 1, no noise floor)
CAL = CalibrationConfig(factor=1.0, min_diff=0.0, max_w_bits=4, max_evaluations=100_000)


def _profile_path(profile: Any) -> str:
    """``profile`` written to a YAML file (a recipe names its profile by path)."""
    import tempfile

    import yaml

    from mpsearch.hardware.schema import profile_to_dict

    path = Path(tempfile.gettempdir()) / f"bench_joint_{profile.name}_{'_'.join(METHODS)}.yaml"
    path.write_text(yaml.safe_dump(profile_to_dict(profile)))
    return str(path)


def recipe_prep(name: str, seed: int, inputs: Any, profile: Any, methods: list[str] | None, budget: float,
                formats: list[str] | None = None) -> Any:
    """``steps.prepare`` of a recipe on ``inputs`` (its train batches start with the 4 calibration batches)."""
    from mpsearch.pipeline import steps
    from mpsearch.recipe import recipe_from_dict

    hw: dict[str, Any] = {"profile": _profile_path(profile)}
    hw.update({"formats": formats, "w_bits": [8], "a_bits": [8]} if formats else {"w_bits": [2, 3, 4, 8], "a_bits": [8]})
    if methods:
        hw["methods"] = list(methods)
    recipe = recipe_from_dict({"version": 1, "name": f"bench-joint-{name}", "seed": seed, "model": name,
                               "data": {"source": "stdlib_text" if formats else "digits", "batch_size": 64,
                                        "calib_batches": 4},
                               "hardware": hw, "budgets": {"size_bytes": budget},
                               "allocation": {"method": "ilp", "pareto": None},
                               "validation": {"split": "test", "integer": False}})
    return steps.prepare(recipe, inputs=inputs)


def recipe_path(prep: Any, table: Any, budget: float, calibrated: Any = None) -> Any:
    """The plan ``mpsearch run`` returns from ``table`` (pipeline/run.py's steps, in its order):
    ``calibrate_as_recipe`` (or ``calibrated``), the ILP, ``kbest_step``, ``guard_step``."""
    from mpsearch.allocation import resolve_budgets
    from mpsearch.pipeline import steps
    from mpsearch.pipeline.guard import calibrate_as_recipe, guard_step
    from mpsearch.pipeline.kbest import kbest_step
    from mpsearch.report.progress import Progress

    prep = replace(prep, budgets=resolve_budgets({"size_bytes": budget}, prep.resources, where="bench"))
    cal = calibrate_as_recipe(prep, table) if calibrated is None else calibrated
    plan = steps.stable_plan(steps.choose_plan(prep, cal, Progress(enabled=False)))
    plan = steps.stable_plan(kbest_step(prep, cal, plan))
    return steps.stable_plan(guard_step(prep, cal, plan)), cal


def _guard_record(plan: Any) -> dict[str, Any]:
    g = plan.meta.get("guard", {})
    return {"chosen": g.get("chosen"), "values": g.get("values"), "methods_test": g.get("methods_test"),
            "k_best_rank": plan.meta.get("k_best", {}).get("picked_rank")}


def cnn_seed(name: str, seed: int, own_model: bool = False, lean: bool = False, cal_row: bool = True,
             bits_row: bool = False) -> dict[str, Any]:
    """One CNN and seed at the W2/W3/W4 sizes; ``lean``: only bits, joint_cal, uniform, default, default_cal
    (``cal_row`` False: without default_cal)."""
    from mpsearch.demo import batches, evaluate, load_demo_run

    from mpsearch.allocation.greedy import greedy_plan
    from mpsearch.demo.narrow import load_narrow_run
    from mpsearch.pipeline.guard import bits_only, guard_plan, mean_loss
    from mpsearch.pipeline.inputs import Inputs
    from mpsearch.sensitivity.calibrate import weight_error_table

    torch.manual_seed(seed)
    if name == "narrow_cnn":
        run = load_narrow_run(seed=seed)
    else:
        run = load_demo_run(name, seed=seed) if own_model else load_demo_run(name)
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
    bits_cal = None if lean else calibrate_omega(model, bits, ce, calib, profile, CAL, calib_batches=calib)

    def score(p):
        torch.manual_seed(seed)
        return evaluate(mps.quantize(model, p, calib, profile=profile), test)

    def held_top1(p):
        torch.manual_seed(seed)
        return evaluate(mps.quantize(model, p, calib, profile=profile), held)

    def val_top1(p):
        torch.manual_seed(seed)
        return evaluate(mps.quantize(model, p, calib, profile=profile), val)

    # the recipe path: its train batches start with the calibration batches (data.calib_batches = 4)
    inputs = Inputs(model=model, train=train[2:], val=val, test=test, example_inputs=splits.example_inputs(2))
    w2 = float(uniform_plan(bits, 2, 8)[0].totals["size_bytes"])
    prep_joint = recipe_prep(name, seed, inputs, profile, METHODS, w2)
    prep_bits = recipe_prep(name, seed, inputs, profile, None, w2)
    cal_joint = cal_bits = None  # the recipe's calibration, made once (it does not depend on the budget)

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
        plans = {"bits": mps.allocate(bits, budget), "joint_cal": mps.allocate(joint_cal, budget),
                 "uniform": uniform_plan(bits, w, 8)[0]}
        pick = None
        if not lean:
            plans.update(joint=mps.allocate(joint, budget), bits_cal=mps.allocate(bits_cal, budget))
            pick = "joint_cal" if held_top1(plans["joint_cal"]) > held_top1(plans["bits"]) else "bits"  # tie: bits
            plans["joint_chk"] = plans[pick]
            plans["joint_val"] = guarded(plans["joint_cal"], joint_cal, budget,
                                         bits_only(joint_cal, budget, profile.rules))
            plans["bits_val"] = guarded(plans["bits"], bits, budget, None)
        recipe_rows = {"default": (prep_joint, joint, cal_joint), "default_cal": (prep_joint, joint, joint_cal),
                       "default_bits": (prep_bits, bits, cal_bits)}
        if not cal_row:
            del recipe_rows["default_cal"]
        if lean and not bits_row:
            del recipe_rows["default_bits"]
        for k, (prep, table, cal) in recipe_rows.items():
            torch.manual_seed(seed)
            plans[k], got = recipe_path(prep, table, budget["size_bytes"], cal)
            if k == "default":
                cal_joint = got
            elif k == "default_bits":
                cal_bits = got
        row: dict[str, Any] = {k: score(p) for k, p in plans.items()}
        row["val"] = {k: val_top1(plans[k]) for k in RECIPE_PLANS if k in plans}
        row["joint_chk_pick"] = pick
        row["guard"] = {k: _guard_record(plans[k]) for k in ("joint_val", "bits_val") + RECIPE_PLANS if k in plans}
        row["size_bytes"] = {k: p.totals["size_bytes"] for k, p in plans.items()}
        row["budget"] = budget["size_bytes"]
        row["omega"] = {k: p.objective for k, p in plans.items() if k != "uniform"}
        row["keys"] = {k: " ".join(b.key for b in p.layers.values()) for k, p in plans.items()}
        out[f"W{w}"] = row
    return out


LM_FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16", "w16a16"]


def lm_seed(seed: int, lean: bool = False) -> dict[str, Any]:
    """gpt_tiny (one trained model per seed), weight-only formats: bits, joint_cal, joint_val, uniform and
    the recipe path ``default`` and ``default_cal``; test bits per byte on 256 windows of 128 bytes.
    ``lean``: only bits, uniform and default (no every-row calibration: the shared 2-core machine)."""
    from mpsearch.allocation.greedy import greedy_plan
    from mpsearch.demo import bits_per_byte, lm_loss, load_demo_lm_run, text_batches
    from mpsearch.model import weight_ties
    from mpsearch.pipeline.guard import bits_only, guard_plan, mean_loss
    from mpsearch.pipeline.inputs import Inputs
    from mpsearch.pipeline.task import LANGUAGE_MODEL
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
    joint_cal = None if lean else calibrate_omega(model, joint, lm_loss, calib, profile, CAL, calib_batches=calib)
    t2 = time.perf_counter()

    def q(plan):
        return mps.quantize(model, plan, calib, profile=profile)

    def guarded(p, table, budget, extra):
        greedy = greedy_plan(weight_error_table(model, bits, profile), budget, profile.rules)
        return guard_plan(p, table, budget, lambda plan: float(bits_per_byte(q(plan), val)), higher_is_better=False,
                          greedy=greedy, rules=profile.rules, tiebreak=lambda plan: mean_loss(q(plan), lm_loss, val),
                          extra=extra)

    out: dict[str, Any] = {"table_s": t1 - t0, "calibrate_s": t2 - t1, "float": float(bits_per_byte(model, test))}
    cal_joint = None  # the recipe's calibration, made once
    for w in (3, 4):
        uni = uniform_plan(bits, w, 16, key=f"w{w}a16g128")[0]
        budget = {"size_bytes": float(uni.totals["size_bytes"])}
        plans = {"bits": mps.allocate(bits, budget), "uniform": uni}
        print(f"gpt_tiny s{seed} W{w}: allocated; guarding", flush=True)
        if not lean:
            plans["joint_cal"] = mps.allocate(joint_cal, budget)
            plans["joint_val"] = guarded(plans["joint_cal"], joint_cal, budget,
                                         bits_only(joint_cal, budget, profile.rules))
        # the recipe path (calibrate_as_recipe, ILP, k-best, guard_step), and from joint_cal
        inputs = Inputs(model=model, train=calib, val=val, test=test, example_inputs=splits.example_inputs(2, ctx),
                        task=LANGUAGE_MODEL)
        prep = recipe_prep("gpt_tiny", seed, inputs, profile, METHODS, budget["size_bytes"], formats=LM_FORMATS)
        plans["default"], cal_joint = recipe_path(prep, joint, budget["size_bytes"], cal_joint)
        if not lean:
            plans["default_cal"], _ = recipe_path(prep, joint, budget["size_bytes"], joint_cal)
        row: dict[str, Any] = {k: float(bits_per_byte(q(p), test)) for k, p in plans.items()}
        row["val"] = {k: float(bits_per_byte(q(plans[k]), val)) for k in ("default", "default_cal") if k in plans}
        row["guard"] = {k: _guard_record(plans[k]) for k in ("joint_val", "default", "default_cal") if k in plans}
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
    ap.add_argument("--lean", action="store_true",
                    help="CNNs: only bits, joint_cal, uniform, default and default_cal (the shared machine)")
    ap.add_argument("--no-cal-row", action="store_true", help="CNNs: without the default_cal row")
    ap.add_argument("--bits-row", action="store_true", help="CNNs, --lean: with the default_bits row")
    ap.add_argument("--own-models", action="store_true",
                    help="CNNs: one model trained from each seed on its own split (load_demo_run(name, seed=s))")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "joint_methods.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    if args.lm:
        rows = results["gpt_tiny"] = [lm_seed(s, args.lean) for s in args.seeds]
        for w in ("W3", "W4"):
            keys = [k for k in ("bits", "joint_cal", "uniform", "joint_val", "default", "default_cal") if k in rows[0][w]]
            cells = [f"{k} {statistics.mean([r[w][k] for r in rows]):.4f} ± "
                     f"{statistics.stdev([r[w][k] for r in rows]) if len(rows) > 1 else 0.0:.4f}" for k in keys]
            for a, b in (("joint_cal", "bits"), ("joint_val", "bits"), ("default", "bits")):
                if a not in keys:
                    continue
                d = [r[w][a] - r[w][b] for r in rows]
                cells.append(f"{a}-{b} {statistics.mean(d):+.4f} ± {statistics.stdev(d) if len(d) > 1 else 0.0:.4f}")
            print(f"gpt_tiny {w} (bits/byte, lower is better): " + " | ".join(cells))
    for name in ([] if args.lm else args.models):
        rows = results[name] = []
        for s in args.seeds:
            rows.append(cnn_seed(name, s, args.own_models, args.lean, not args.no_cal_row, args.bits_row))
            _write(args, results, t0)  # after every model and seed: a partial file survives a stopped run
            have = [k for k in PLANS if k in rows[-1]["W2"]]
            print(name, s, {w: {k: round(rows[-1][w][k], 4) for k in have} for w in ("W2", "W3", "W4")}, flush=True)
        for w in ("W2", "W3", "W4"):
            cells = []
            for k in have:
                vals = [r[w][k] for r in rows]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                cells.append(f"{k} {statistics.mean(vals):.4f} ± {sd:.4f}")
            for a, b in (("joint", "bits"), ("joint_cal", "bits"), ("joint_chk", "bits"), ("joint_cal", "bits_cal"),
                         ("joint_val", "bits"), ("joint_val", "bits_val"), ("default", "bits"),
                         ("default", "default_bits"), ("default_cal", "bits")):
                if a not in have or b not in have:
                    continue
                d = [r[w][a] - r[w][b] for r in rows]
                sd = statistics.stdev(d) if len(d) > 1 else 0.0
                wl = f" ({sum(x > 1e-9 for x in d)}/{sum(x < -1e-9 for x in d)})"
                cells.append(f"{a}-{b} {100 * statistics.mean(d):+.2f} ± {100 * sd:.2f} pts{wl}")
            cells += [f"val {k} {100 * statistics.mean([r[w]['val'][k] for r in rows]):.2f}" for k in RECIPE_PLANS
                      if k in have]
            cells.append("test kept " + ",".join(str((r[w]["guard"]["default"]["methods_test"] or {}).get("kept"))
                                                 for r in rows))
            print(f"{name} {w}: " + " | ".join(cells))
    _write(args, results, t0)


def _write(args: Any, results: dict[str, Any], t0: float) -> None:
    out = Path(args.out if not args.lm else args.out.replace("joint_methods.json", "joint_methods_lm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "seeds": args.seeds, "own_models": args.own_models, "lean": args.lean,
                               "seconds": time.perf_counter() - t0, "results": results}, indent=1, default=str))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
