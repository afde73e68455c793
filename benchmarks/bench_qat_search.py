"""Search with QAT in the loop at the size and BOPs of uniform W4A4: whole plans judged after QAT.

``bench_qat_oracle.py`` showed that per-layer post-QAT costs do not add up, so no per-layer
sensitivity can be expected to beat uniform W4A4 after QAT. This benchmark judges whole plans
instead. Per model and per split (GAP-8 profile, w in {2, 4, 8}, a in {4, 8}; budgets = size and
BOPs of uniform W4A4):

1. **Pool** of up to ``--k`` distinct feasible plans: uniform W4A4, the omega ILP plan ("mixed @
   W4A4 size+BOPs", as in ``bench_e2e.py``), the oracle plan of ``bench_qat_oracle.json`` when
   present (its costs were measured on the validation sets of splits 0-2), then ILP plans
   (``allocate``, default gap) with omega multiplied entry by entry by ``exp(N(0, sigma))``
   (``--sigma``; RNG seeded by ``--pool-seed`` and the split), deduplicated.
2. **Search score**: each pool plan gets the recipe's QAT with ``--search-seeds`` (default one
   seed, 100, apart from the evaluation seeds) and is scored by its mean *validation*
   cross-entropy (averaged over the search seeds). The plan with the lowest score is the
   "QAT-searched plan". Test is not looked at.
3. **Evaluation**: the searched plan, uniform W4A4 and the omega plan are fine-tuned with
   ``--eval-seeds`` (default 0 1 2); paired differences to uniform W4A4 (seed means per split,
   mean +- SE over splits) as in ``bench_e2e.py``. Validation was used to choose, so test is the
   honest number; the eval seeds differ from the search seeds, so their validation numbers show
   how much of the search score's lead was the noise of one seed (the winner's curse).

Each run is stored under ``--tag`` in the results JSON (other tags are kept)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 python benchmarks/bench_qat_search.py \
        --splits 0 1 2 3 4 --k 16 --eval-seeds 0 1 2 --tag k16-seed100
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 python benchmarks/bench_qat_search.py \
        --splits 0 1 2 3 4 --k 8 --search-seeds 100 101 102 --eval-seeds 0 1 2 --tag k8-seeds100-102
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import add_qat_args, finetuned, measure, paired, plans_for, summarize  # noqa: E402
from bench_qat_oracle import REFERENCE, prepared  # noqa: E402

from mpsearch.allocation import allocate, uniform_plan  # noqa: E402
from mpsearch.core.cost_table import CostTable  # noqa: E402
from mpsearch.core.plan import BitPlan, LayerBits  # noqa: E402
from mpsearch.pipeline import steps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
UNIFORM, OMEGA, ORACLE, SEARCHED = "uniform W4A4", "mixed @ W4A4 size+BOPs", "oracle @ W4A4 size+BOPs", "QAT-searched"


def key_of(plan: BitPlan) -> tuple[str, ...]:
    return tuple(f"{n}={b.key}" for n, b in plan.layers.items())


def oracle_bits(name: str) -> dict[str, str] | None:
    """The oracle plan of ``bench_qat_oracle.json`` (the same plan on every split), if it was run."""
    path = ROOT / "benchmarks" / "results" / "bench_qat_oracle.json"
    if not path.is_file():
        return None
    ev = json.loads(path.read_text())["models"].get(name, {}).get("evaluate")
    return None if ev is None else next(iter(ev["splits"].values()))["plans"][ORACLE]["bits"]


def pool_plans(name: str, table: CostTable, split_seed: int, args: argparse.Namespace) -> tuple[dict[str, BitPlan], int]:
    """Up to ``args.k`` distinct feasible plans (see the module docstring) and the number of ILP draws."""
    uniform = uniform_plan(table, *REFERENCE)[0]
    budget = {"size_bytes": uniform.totals["size_bytes"], "bops": uniform.totals["bops"]}
    pool: dict[str, BitPlan] = {UNIFORM: uniform, OMEGA: plans_for(table, ["w4a4"], [], all_uniform=False)[OMEGA]}
    bits = oracle_bits(name) if args.oracle else None
    if bits is not None:
        layers = {n: LayerBits(int(k[1:].split("a")[0]), int(k.split("a")[1])) for n, k in bits.items()}
        totals = table.totals(table.rows_for_plan(layers))
        if all(totals[r] <= budget[r] * (1 + 1e-9) for r in budget):
            pool[ORACLE] = table.plan_from_rows(table.rows_for_plan(layers))
    seen = {key_of(p) for p in pool.values()}
    rng = np.random.default_rng([args.pool_seed, split_seed])
    draws = 0
    while len(pool) < args.k and draws < args.max_draws:
        draws += 1
        noisy = dataclasses.replace(table, omega=table.omega * np.exp(rng.normal(0.0, args.sigma, table.omega.shape)))
        plan = steps.stable_plan(allocate(noisy, budget))
        totals = table.totals(table.rows_for_plan(plan.layers))
        if key_of(plan) in seen or any(totals[r] > budget[r] * (1 + 1e-9) for r in budget):
            continue
        seen.add(key_of(plan))
        pool[f"perturbed #{draws}"] = plan
    return pool, draws


def row(table: CostTable, plan: BitPlan, prep: steps.Prepared, q: torch.nn.Module) -> dict[str, Any]:
    totals = table.totals(table.rows_for_plan(plan.layers))
    return {"size_bytes": totals["size_bytes"], "bops": totals["bops"], "omega": totals["omega"],
            "bits": {n: b.key for n, b in plan.layers.items()}, "ptq": measure(q, prep)}


def run_split(name: str, split_seed: int, args: argparse.Namespace) -> dict[str, Any]:
    prep, table = prepared(name, split_seed, args)
    pool, draws = pool_plans(name, table, split_seed, args)
    search: dict[str, Any] = {}
    qmodels: dict[str, torch.nn.Module] = {}
    t0 = time.perf_counter()
    for label, plan in pool.items():
        qmodels[label] = steps.quantize_plan(prep, plan)
        runs = [finetuned(prep, qmodels[label], s, args) for s in args.search_seeds]
        search[label] = {**row(table, plan, prep, qmodels[label]), "qat_runs": runs,
                         "qat": {k: statistics.fmean(m[k] for m in runs) for k in runs[0]}}
    search_s = time.perf_counter() - t0
    best = min(search, key=lambda lab: search[lab]["qat"]["val_loss"])
    for label, r in sorted(search.items(), key=lambda kv: kv[1]["qat"]["val_loss"]):
        print(f"  split {split_seed} {label:<24} {'*' if label == best else ' '} search val loss "
              f"{r['qat']['val_loss']:.4f}  val {100 * r['qat']['val']:.2f}", flush=True)
    t0 = time.perf_counter()
    plans = {}
    for label, src in ((UNIFORM, UNIFORM), (OMEGA, OMEGA), (SEARCHED, best)):
        plans[label] = {**{k: v for k, v in search[src].items() if not k.startswith("qat")}, "source": src,
                        "qat": [finetuned(prep, qmodels[src], s, args) for s in args.eval_seeds]}
        qv, qt = (statistics.fmean(m[k] for m in plans[label]["qat"]) for k in ("val", "test"))
        print(f"  split {split_seed} {label:<24} ({src}) QAT val {100 * qv:.2f}  test {100 * qt:.2f}", flush=True)
    eval_s = time.perf_counter() - t0
    n_qat = len(pool) * len(args.search_seeds) + 3 * len(args.eval_seeds)
    return {"float": measure(prep.inputs.model, prep), "pool_size": len(pool), "ilp_draws": draws, "chosen": best,
            "search": search, "plans": plans, "search_s": search_s, "eval_s": eval_s,
            "s_per_qat_run": (search_s + eval_s) / n_qat}


def winners_curse(splits: dict[int, Any]) -> dict[str, Any]:
    """Searched - uniform validation loss: by the search seeds (what chose it) and by the eval seeds."""
    at_search = [s["search"][s["chosen"]]["qat"]["val_loss"] - s["search"][UNIFORM]["qat"]["val_loss"] for s in splits.values()]
    at_eval = [statistics.fmean(m["val_loss"] for m in s["plans"][SEARCHED]["qat"])
               - statistics.fmean(m["val_loss"] for m in s["plans"][UNIFORM]["qat"]) for s in splits.values()]

    def ms(d: list[float]) -> dict[str, Any]:
        return {"mean": statistics.fmean(d), "se": statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0, "per_split": d}

    return {"search_seed_val_loss": ms(at_search), "eval_seeds_val_loss": ms(at_eval),
            "chosen": {k: s["chosen"] for k, s in splits.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"])
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--k", type=int, default=16, help="pool size (distinct plans, uniform W4A4 included)")
    ap.add_argument("--sigma", type=float, default=0.75, help="SD of the log-normal omega perturbation")
    ap.add_argument("--max-draws", type=int, default=200, help="perturbed ILP solves per split at most")
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--no-oracle", dest="oracle", action="store_false", help="leave the oracle plan out of the pool")
    ap.add_argument("--search-seeds", nargs="+", type=int, default=[100])
    ap.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    add_qat_args(ap)
    ap.add_argument("--out", default="bench_qat_search")
    ap.add_argument("--tag", default="k16-seed100", help="key of this run in the results JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = ROOT / "benchmarks" / "results" / f"{args.out}.json"
    store: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    store.setdefault("machine", "2-core AMD EPYC VM, no GPU, torch " + torch.__version__)
    out: dict[str, Any] = {"args": vars(args), "models": {}}
    store.setdefault("runs", {})[args.tag] = out
    t0 = time.perf_counter()
    for name in args.models:
        print(name, flush=True)
        splits = {k: run_split(name, k, args) for k in args.splits}
        summary = summarize(splits)
        diffs = {f"{m} - {UNIFORM}": paired(summary, splits, m, UNIFORM) for m in (SEARCHED, OMEGA)}
        out["models"][name] = {"summary": summary, "paired": diffs, "winners_curse": winners_curse(splits), "splits": splits}
        for key, d in diffs.items():
            print(f"  {key}: " + "  ".join(f"{k} {d[k]['mean'] * (1 if 'loss' in k else 100):+.4f} +- "
                                            f"{d[k]['se'] * (1 if 'loss' in k else 100):.4f}"
                                            for k in ("qat_val", "qat_test", "qat_val_loss", "qat_test_loss")), flush=True)
        wc = out["models"][name]["winners_curse"]
        print(f"  searched - uniform val loss: search seed {wc['search_seed_val_loss']['mean']:+.4f} +- "
              f"{wc['search_seed_val_loss']['se']:.4f}, eval seeds {wc['eval_seeds_val_loss']['mean']:+.4f} +- "
              f"{wc['eval_seeds_val_loss']['se']:.4f}", flush=True)
        out["wall_s"] = time.perf_counter() - t0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(store, indent=2) + "\n")
    print(f"wrote {path} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
