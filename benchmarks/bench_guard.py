"""Issue #21: is the default plan (measured omega + guard) never worse than uniform and greedy?

    python benchmarks/bench_guard.py [--tasks lm cnn] [--seeds 0 1 2] [--out ...]

For each task, seed and size (the size of uniform W2, W3 and W4 over candidates {2, 3, 4, 8}):
the test metric of

* ``plain``: Hessian omega -> ILP (no calibration, no guard; the pipeline before #21),
* ``calibrated``: omega measured where the prediction is off by more than 2x -> ILP,
* ``default``: calibrated, then the guard (uniform plans within the budget and greedy scored
  on the validation split; a better baseline triggers a re-allocation),
* ``uniform``: every layer at that width, and ``greedy``: weight MSE x parameters, greedy.

LM: gpt_tiny seeds 0, 1, 2 (three trained models, cached), weight-only formats w2/w3/w4 g128 and
w8 per channel on x86-2core-int; Hessian on 1 batch of 16 windows (<= 16 probes, as
recipes/demo-gpt.yaml), calibration on 4 batches of 16 windows; guard on the first 256 validation
windows; metric: bits per byte on the first 256 test windows (32 768 next-byte predictions).
CNNs: small_cnn, resnet_tiny, mobilenet_tiny with w in {2, 3, 4, 8}, a 8 on x86-2core-int; seed 0 is
the cached demo model, seed s > 0 a model trained from seed s on its own train/val/test split
(``load_demo_run(name, seed=s)``: weights, split, Hessian probes and the 4 calibration batches of 64
all differ between seeds); guard on the 359 validation images; metric: top-1 accuracy on the 359
test images (one image = 0.28 points). The guard breaks a tie on the validation metric with the validation loss
(cross-entropy; the LM's next-byte loss). Writes benchmarks/results/guard.json, keeping the
results of models not run (``runs`` says when and how each model was last run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.allocation.greedy import greedy_plan
from mpsearch.pipeline.guard import guard_plan, mean_loss
from mpsearch.sensitivity import HessianConfig
from mpsearch.sensitivity.calibrate import calibrate_omega, weight_error_table

LM_FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16"]
PLANS = ("plain", "calibrated", "default", "uniform", "greedy")


def _sizes(model, table, profile, budgets_for: Callable[[int], float], score_val, score_test, calib, loss_fn,
           loss_val=None, tie_margin: float = 0.0) -> dict[str, Any]:
    cal = calibrate_omega(model, table, loss_fn, calib, profile)
    out: dict[str, Any] = {"n_measured": int(sum(1 for s in cal.sources["omega"] if s == "measured"))}
    err = weight_error_table(model, table, profile)
    for w in (2, 3, 4):
        budgets = {"size_bytes": budgets_for(w)}
        plans = {"plain": mps.allocate(table, budgets), "calibrated": mps.allocate(cal, budgets),
                 "uniform": uniform_plan(table, *table_pair(table, w))[0],
                 "greedy": greedy_plan(err, budgets, profile.rules)}
        plans["default"] = guard_plan(plans["calibrated"], cal, budgets, score_val, higher_is_better=HIGHER[0],
                                      greedy=plans["greedy"], rules=profile.rules, tiebreak=loss_val, tie_margin=tie_margin)
        row = {k: score_test(p) for k, p in plans.items()}
        row["guard"] = {k: v for k, v in plans["default"].meta["guard"].items() if k in ("changed", "chosen", "reason", "decided_by", "values", "losses")}
        row["bits"] = {k: " ".join(b.key for b in p.layers.values()) for k, p in plans.items()}
        out[f"W{w}"] = row
    return out


HIGHER = [True]
TIE_IMAGES = [0]  # CNNs: validation accuracies this many images apart count as a tie (--tie-images)


def table_pair(table, w: int) -> tuple[int, int]:
    a = max(c.a_bits for cs in table.candidates for c in cs if c.w_bits == w)
    return w, a


def lm_seed(seed: int) -> dict[str, Any]:
    from mpsearch.demo import bits_per_byte, lm_loss, load_demo_lm_run, text_batches

    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    train = list(text_batches(splits.train, ctx, 16, n_batches=5, seed=seed))
    val = list(text_batches(splits.val[: 256 * ctx + 1], ctx, 64))
    test = list(text_batches(splits.test[: 256 * ctx + 1], ctx, 64))
    profile = mps.load_profile("x86-2core-int")
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    sens = mps.analyze(model, lm_loss, train[:1], config=HessianConfig(max_probes=16, min_probes=8,
                                                                       rel_stderr_target=0.2, seed=seed))
    table = mps.cost_table(model, layers, sens, profile, formats=LM_FORMATS, calib_batches=train[1:])
    q = lambda p: mps.quantize(model, p, train[1:], profile=profile)  # noqa: E731
    HIGHER[0] = False
    return _sizes(model, table, profile, lambda w: uniform_plan(table, w, 16)[0].totals["size_bytes"],
                  lambda p: bits_per_byte(q(p), val), lambda p: bits_per_byte(q(p), test), train[1:], lm_loss,
                  lambda p: mean_loss(q(p), lm_loss, val))


def cnn_seed(name: str, seed: int) -> dict[str, Any]:
    from mpsearch.demo import batches, evaluate, load_demo_run

    run = load_demo_run(name) if seed == 0 else load_demo_run(name, seed=seed)
    model, splits = run.model.eval(), run.splits
    train = list(batches(splits.train, 64))
    train = [train[int(i)] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))]
    val, test = list(batches(splits.val, 512)), list(batches(splits.test, 512))
    profile = mps.load_profile("x86-2core-int")
    layers = mps.discover(model, splits.example_inputs(2))
    loss = nn.CrossEntropyLoss()
    sens = mps.analyze(model, loss, train[:2], config=HessianConfig(max_probes=24, seed=seed))
    table = mps.cost_table(model, layers, sens, profile, w_bits=[2, 3, 4, 8], a_bits=[8], calib_batches=train[2:6])
    q = lambda p: mps.quantize(model, p, train[2:6], profile=profile)  # noqa: E731
    HIGHER[0] = True
    return _sizes(model, table, profile, lambda w: uniform_plan(table, w, 8)[0].totals["size_bytes"],
                  lambda p: evaluate(q(p), val), lambda p: evaluate(q(p), test), train[2:6], loss,
                  lambda p: mean_loss(q(p), loss, val), TIE_IMAGES[0] / len(splits.val))


def _print(label: str, rows: list[dict[str, Any]], fmt: str) -> None:
    for w in ("W2", "W3", "W4"):
        cells = []
        for k in PLANS:
            vals = [r[w][k] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{k} {format(statistics.mean(vals), fmt)} ± {format(sd, fmt)}")
        changed = sum(r[w]["guard"]["changed"] for r in rows)
        print(f"{label} {w}: " + " | ".join(cells) + f" | guard changed {changed}/{len(rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["cnn", "lm"], choices=["cnn", "lm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tie-images", type=int, default=1,
                    help="CNNs: accuracies this many validation images apart tie; the val loss decides "
                         "(default 1, as guard_step does for accuracy; 0: only equal accuracies tie)")
    ap.add_argument("--models", nargs="+", default=["small_cnn", "resnet_tiny", "mobilenet_tiny"],
                    help="which demo CNNs (with --tasks cnn); results of models not run are kept from --out")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "guard.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    TIE_IMAGES[0] = args.tie_images
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    if "cnn" in args.tasks:
        for name in args.models:
            results[name] = [cnn_seed(name, s) for s in args.seeds]
            _print(name, results[name], ".4f")
    if "lm" in args.tasks:
        results["gpt_tiny"] = [lm_seed(s) for s in args.seeds]
        _print("gpt_tiny", results["gpt_tiny"], ".4f")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else {}
    runs = {**old.get("runs", {}), **{k: {"seconds": time.perf_counter() - t0, "seeds": args.seeds,
                                          "tiebreak": "val loss", "tie_images": args.tie_images} for k in results}}
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                               "seeds": args.seeds, "seconds": time.perf_counter() - t0, "runs": runs,
                               "results": {**old.get("results", {}), **results}}, indent=1))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
