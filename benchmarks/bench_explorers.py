"""ILP vs Optuna (TPE, NSGA-II, random) vs RL (HAQ-style DDPG) on the same tables and budgets.

    python benchmarks/bench_explorers.py [--trials 300] [--seeds 0 1 2] [--layers 20 100]

Tables: mpsearch.testing.explorers.random_table (HAWQ-like omega = s * 4^-w), 6 candidates
per layer (w in 2,3,4,5,6,8; a = 8). Budget settings: size_bytes at 30% of its range, and
size_bytes 50% with bops 40% at once. Reports best omega, gap to the ILP optimum, evaluations
to reach within 1% of it, evaluations used and wall time. JSON: benchmarks/results/explorers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from mpsearch.allocation import allocate
from mpsearch.explorers import search
from mpsearch.testing.explorers import random_table

METHODS = {
    # defaults: greedy repair + local improvement trials (local_search=0.5, counted as trials)
    "optuna-tpe": dict(explorer="optuna", sampler="tpe"),
    "optuna-tpe (no local)": dict(explorer="optuna", sampler="tpe", local_search=0.0),
    "optuna-nsgaii": dict(explorer="optuna", sampler="nsgaii", sampler_options={"population_size": 30}),
    "optuna-random": dict(explorer="optuna", sampler="random"),
    # 64x64 networks instead of HAQ's 400x300: 5x faster on 2 cores, same results on these tables
    "rl-ddpg (greedy repair)": dict(explorer="rl", repair="greedy", net_arch=(64, 64)),
    "rl-ddpg (greedy, no local)": dict(explorer="rl", repair="greedy", net_arch=(64, 64), local_search=0.0),
    "rl-ddpg (haq repair)": dict(explorer="rl", repair="haq", net_arch=(64, 64)),
}
BUDGETS = {"size 30%": {"size_bytes": "30%"}, "size 50% + bops 40%": {"size_bytes": "50%", "bops": "40%"}}


def first_within(evals, opt, rel=0.01):
    best = float("inf")
    for k, e in enumerate(evals, 1):
        best = min(best, e.metrics["omega"])
        if best <= opt * (1 + rel):
            return k
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[20, 100])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "explorers.json"))
    args = ap.parse_args()
    rows = []
    print(f"{'layers':>6} {'budgets':<20} {'method':<24} {'seed':>4} {'best omega':>12} {'gap %':>8} "
          f"{'to 1%':>6} {'evals':>6} {'wall s':>8}")
    for n_layers in args.layers:
        table = random_table(n_layers, (2, 3, 4, 5, 6, 8), seed=100 + n_layers)
        for bname, budgets in BUDGETS.items():
            t0 = time.perf_counter()
            ilp = allocate(table, budgets=budgets, gap_rel=0)  # the proven optimum is the reference
            ilp_s = time.perf_counter() - t0
            opt = float(ilp.objective)
            rows.append(dict(layers=n_layers, budgets=bname, method="ilp-cbc", seed=None, best_omega=opt, gap_pct=0.0,
                             evals_to_1pct=None, evaluations=1, wall_s=ilp_s))
            print(f"{n_layers:>6} {bname:<20} {'ilp-cbc':<24} {'':>4} {opt:>12.5g} {0.0:>8.3f} {'':>6} {1:>6} {ilp_s:>8.2f}")
            for mname in args.methods:
                opts = dict(METHODS[mname])
                explorer = opts.pop("explorer")
                for seed in args.seeds:
                    t0 = time.perf_counter()
                    res = search(table, explorer, budgets, n_trials=args.trials, seed=seed, **opts)
                    wall = time.perf_counter() - t0
                    best = float(res.best_metrics["omega"])
                    gap = 100 * (best / opt - 1)
                    k = first_within(res.evaluations, opt)
                    rows.append(dict(layers=n_layers, budgets=bname, method=mname, seed=seed, trials=args.trials,
                                     best_omega=best,
                                     gap_pct=gap, evals_to_1pct=k, evaluations=res.n_evaluations, wall_s=wall))
                    print(f"{n_layers:>6} {bname:<20} {mname:<24} {seed:>4} {best:>12.5g} {gap:>8.3f} "
                          f"{str(k or '-'):>6} {res.n_evaluations:>6} {wall:>8.2f}", flush=True)
    out_path = Path(args.out)
    kept = []
    if out_path.exists():  # keep other table sizes measured earlier (runs per size are separate)
        kept = [r for r in json.loads(out_path.read_text()).get("rows", []) if r["layers"] not in args.layers]
    out = {"machine": f"{platform.machine()} CPU ({os.cpu_count()} cores), no GPU, torch {torch.__version__}",
           "command": "python benchmarks/bench_explorers.py " + " ".join(sys.argv[1:]), "rows": kept + rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
