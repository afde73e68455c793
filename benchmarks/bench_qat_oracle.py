"""Post-QAT oracle at the size and BOPs of uniform W4A4: measured per-layer QAT costs instead of omega.

Omega (HAWQ) prices a layer's move by its PTQ damage; ``bench_qat_recovery.py`` showed that QAT
takes back most of it. This benchmark asks whether *any* per-layer cost model could beat uniform
W4A4 after QAT, by giving the ILP the costs QAT actually has.

``--phase measure`` (validation only): from uniform W4A4 (GAP-8 profile, w in {2, 4, 8}, a in
{4, 8}), each layer (each tie group as one unit) is moved to every other candidate (``--moves``,
default w4a8, w2a4, w8a4, w2a8, w8a8) and fine-tuned with the recipe's QAT; the change of the
mean validation cross-entropy against uniform W4A4 after QAT with the same seed (so the seed noise
cancels), and the change of omega and of the PTQ validation loss, are recorded per split and seed.

``--phase evaluate``: per model, the cost table's omega is replaced by the measured QAT deltas,
averaged over the measure splits (uniform W4A4's own candidate = 0; a tie group's delta sits on
its first layer), and the ILP (``allocate``, ``gap_rel=0``) picks the "oracle" plan under the
size and the BOPs of uniform W4A4. The oracle plan, uniform W4A4 and the omega plan "mixed @ W4A4
size+BOPs" (per split, as in ``bench_e2e.py``) are then fine-tuned on ``--eval-splits`` x
``--eval-seeds``; paired differences to uniform W4A4 as in ``bench_e2e.py``. The costs were
measured on the validation sets of the measure splits, so validation on those splits is
optimistic for the oracle; test (and validation of the other splits) is the honest number.

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_qat_oracle.py --phase measure --splits 0 1 2 --seeds 0 1 2
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_qat_oracle.py --phase evaluate --eval-splits 0 1 2 3 4 --eval-seeds 0 1 2
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
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import (add_qat_args, finetuned, mean_loss, measure, paired, plans_for, split_inputs,  # noqa: E402
                       summarize)

from mpsearch.allocation import allocate, uniform_plan  # noqa: E402
from mpsearch.core.cost_table import CostTable  # noqa: E402
from mpsearch.core.plan import BitPlan, LayerBits  # noqa: E402
from mpsearch.pipeline import steps  # noqa: E402
from mpsearch.recipe import load_recipe  # noqa: E402
from mpsearch.report.progress import Progress  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (4, 4)


def prepared(name: str, split_seed: int, args: argparse.Namespace) -> tuple[steps.Prepared, CostTable]:
    """The demo model of split ``split_seed`` and its Hessian cost table with a in {4, 8}."""
    base = load_recipe(args.recipe)
    hw = dataclasses.replace(base.hardware, a_bits=(8, 4))
    recipe = dataclasses.replace(base, model=name, name=f"bench-{name}", hardware=hw, budgets={})
    prep = steps.prepare(recipe, inputs=split_inputs(recipe, split_seed))
    return prep, steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))


def units(table: CostTable) -> list[tuple[str, ...]]:
    """Layers that must move together: each tie group once, every other layer alone."""
    tied = {n: g for g in table.ties for n in g}
    out: list[tuple[str, ...]] = []
    for n in table.layers:
        g = tuple(tied.get(n, (n,)))
        if g not in out:
            out.append(g)
    return out


def parse_pair(key: str) -> tuple[int, int]:
    w, a = key.lower().lstrip("w").split("a")
    return int(w), int(a)


def measure_split(name: str, split_seed: int, args: argparse.Namespace) -> dict[str, Any]:
    prep, table = prepared(name, split_seed, args)
    base = dict(uniform_plan(table, *REFERENCE)[0].layers)

    def evaluate(layers: dict[str, LayerBits]) -> dict[str, Any]:
        q = steps.quantize_plan(prep, BitPlan(layers=layers))
        qat = [finetuned(prep, q, s, args) for s in args.seeds]
        return {"omega": float(table.totals(table.rows_for_plan(layers))["omega"]),
                "ptq_val_loss": mean_loss(q, prep.inputs.val),
                "qat_val_loss": [m["val_loss"] for m in qat], "qat_val": [m["val"] for m in qat]}

    ref = evaluate(base)
    rows = []
    for unit in units(table):
        for key in args.moves:
            m = evaluate({**base, **{n: LayerBits(*parse_pair(key)) for n in unit}})
            d_qat = [a - b for a, b in zip(m["qat_val_loss"], ref["qat_val_loss"])]
            rows.append({"unit": list(unit), "move": key, "d_omega": m["omega"] - ref["omega"],
                         "d_ptq_val_loss": m["ptq_val_loss"] - ref["ptq_val_loss"], "d_qat_val_loss_per_seed": d_qat,
                         "d_qat_val_loss": statistics.fmean(d_qat),
                         "d_qat_val": statistics.fmean(a - b for a, b in zip(m["qat_val"], ref["qat_val"]))})
            r = rows[-1]
            print(f"  split {split_seed} {'+'.join(unit):<32} {key}: d_omega {r['d_omega']:+.5f}  d_PTQ "
                  f"{r['d_ptq_val_loss']:+.5f}  d_QAT {r['d_qat_val_loss']:+.5f}", flush=True)
    return {"reference": ref, "moves": rows}


def per_unit_means(splits: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(unit, move) -> mean over splits of d_omega, d_ptq_val_loss, d_qat_val_loss (and its SE)."""
    acc: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in splits.values():
        for r in s["moves"]:
            acc.setdefault(("+".join(r["unit"]), r["move"]), []).append(r)
    out = {}
    for k, rs in acc.items():
        d = [r["d_qat_val_loss"] for r in rs]
        out[k] = {"d_omega": statistics.fmean(r["d_omega"] for r in rs),
                  "d_ptq_val_loss": statistics.fmean(r["d_ptq_val_loss"] for r in rs),
                  "d_qat_val_loss": statistics.fmean(d), "d_qat_val": statistics.fmean(r["d_qat_val"] for r in rs),
                  "d_qat_val_loss_se": statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0, "n_splits": len(d)}
    return out


def rank_summary(means: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per move: sums and Spearman rank correlations over units (like bench_qat_recovery)."""
    out = {}
    for move in sorted({m for _, m in means}):
        rs = [v for (_, m), v in means.items() if m == move]
        om, ptq, qat = ([r[k] for r in rs] for k in ("d_omega", "d_ptq_val_loss", "d_qat_val_loss"))
        out[move] = {"n_units": len(rs), "sum_d_omega": sum(om), "sum_d_ptq": sum(ptq), "sum_d_qat": sum(qat),
                     "min_d_qat": min(qat), "max_d_qat": max(qat),
                     "spearman_omega_ptq": float(spearmanr(om, ptq).statistic),
                     "spearman_omega_qat": float(spearmanr(om, qat).statistic),
                     "spearman_ptq_qat": float(spearmanr(ptq, qat).statistic)}
    return out


def oracle_table(table: CostTable, means: dict[tuple[str, str], dict[str, float]]) -> CostTable:
    """``table`` with omega = measured post-QAT delta (W4A4 = 0), shifted per unit to be >= 0."""
    recs = table.to_records()
    tied = {n: g for g in table.ties for n in g}
    cost: dict[tuple[str, str], float] = {}
    for unit in units(table):
        key = "+".join(unit)
        deltas = {m: v["d_qat_val_loss"] for (u, m), v in means.items() if u == key}
        deltas[f"w{REFERENCE[0]}a{REFERENCE[1]}"] = 0.0
        low = min(deltas.values())  # a per-unit constant does not change the ILP's choice
        for m, d in deltas.items():
            cost[(key, m)] = d - low
    for r in recs:
        g = tied.get(r["layer"], (r["layer"],))
        r["omega"] = cost[("+".join(g), f"w{r['w_bits']}a{r['a_bits']}")] if r["layer"] == g[0] else 0.0
    return CostTable.from_records(recs, ties=table.ties)


def evaluate_model(name: str, measured: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    means = {(u, m): v for u, m, v in ((*k.split(" | "), v) for k, v in measured["per_unit"].items())}
    splits: dict[int, Any] = {}
    oracle_plan = None
    for k in args.eval_splits:
        prep, table = prepared(name, k, args)
        uniform = uniform_plan(table, *REFERENCE)[0]
        budget = {"size_bytes": uniform.totals["size_bytes"], "bops": uniform.totals["bops"]}
        if oracle_plan is None:
            otable = oracle_table(table, means)
            oracle_plan = steps.stable_plan(allocate(otable, budget, gap_rel=0))
            print(f"  oracle plan: {({n: b.key for n, b in oracle_plan.layers.items()})}  predicted d_QAT "
                  f"{oracle_plan.objective - float(otable.totals(otable.rows_for_plan(uniform.layers))['omega']):+.5f}", flush=True)
        omega_plan = plans_for(table, ["w4a4"], [], all_uniform=False)["mixed @ W4A4 size+BOPs"]
        plans = {"uniform W4A4": uniform, "oracle @ W4A4 size+BOPs": oracle_plan, "mixed @ W4A4 size+BOPs": omega_plan}
        rows = {}
        for label, plan in plans.items():
            q = steps.quantize_plan(prep, plan)
            totals = table.totals(table.rows_for_plan(plan.layers))
            rows[label] = {"size_bytes": totals["size_bytes"], "bops": totals["bops"], "omega": totals["omega"],
                           "bits": {n: b.key for n, b in plan.layers.items()}, "ptq": measure(q, prep),
                           "qat": [finetuned(prep, q, s, args) for s in args.eval_seeds]}
            qv = statistics.fmean(m["val"] for m in rows[label]["qat"])
            qt = statistics.fmean(m["test"] for m in rows[label]["qat"])
            print(f"  split {k} {label:<24} QAT val {100 * qv:.2f}  test {100 * qt:.2f}", flush=True)
        splits[k] = {"float": measure(prep.inputs.model, prep), "plans": rows}
    summary = summarize(splits)
    diffs = {f"{m} - uniform W4A4": paired(summary, splits, m, "uniform W4A4")
             for m in ("oracle @ W4A4 size+BOPs", "mixed @ W4A4 size+BOPs")}
    return {"summary": summary, "paired": diffs, "splits": splits}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=["measure", "evaluate"], required=True)
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"])
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2], help="measure splits")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="measure seeds")
    ap.add_argument("--moves", nargs="+", default=["w4a8", "w2a4", "w8a4", "w2a8", "w8a8"])
    ap.add_argument("--eval-splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    add_qat_args(ap)
    ap.add_argument("--out", default="bench_qat_oracle")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = ROOT / "benchmarks" / "results" / f"{args.out}.json"
    out: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    out.setdefault("machine", "2-core AMD EPYC VM, no GPU, torch " + torch.__version__)
    out.setdefault("models", {})
    t0 = time.perf_counter()
    for name in args.models:
        print(name, flush=True)
        entry = out["models"].setdefault(name, {})
        if args.phase == "measure":
            splits = {}
            for k in args.splits:
                splits[str(k)] = measure_split(name, k, args)
                entry["measure"] = {"args": vars(args), "splits": splits}
                path.write_text(json.dumps(out, indent=2) + "\n")
            means = per_unit_means(splits)
            entry["measure"]["per_unit"] = {f"{u} | {m}": v for (u, m), v in means.items()}
            entry["measure"]["by_move"] = rank_summary(means)
            for move, s in entry["measure"]["by_move"].items():
                print(f"  {move}: " + "  ".join(f"{k} {v:+.4f}" for k, v in s.items()), flush=True)
        else:
            entry["evaluate"] = {"args": vars(args), **evaluate_model(name, entry["measure"], args)}
            for key, d in entry["evaluate"]["paired"].items():
                print(f"  {key}: " + "  ".join(f"{k} {d[k]['mean'] * (1 if 'loss' in k else 100):+.4f} +- "
                                                f"{d[k]['se'] * (1 if 'loss' in k else 100):.4f}"
                                                for k in ("qat_val", "qat_test", "qat_val_loss", "qat_test_loss")), flush=True)
        out[f"wall_s_{args.phase}"] = out.get(f"wall_s_{args.phase}", 0.0) + time.perf_counter() - t0
        path.write_text(json.dumps(out, indent=2) + "\n")
        t0 = time.perf_counter()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
