"""Allocation benchmark: ILP solve time vs table size, and a Pareto sweep.

Tables are random but shaped like real ones: per layer a parameter count and MACs drawn
log-normally, 6 candidates (w in 2/4/8 x a in 4/8), omega falling as 4^-bits (HAWQ-V2's
trace x quantization-noise form, +-20 % noise), size_bytes = n_params x w / 8,
bops = MACs x w x a, latency_ms from a roofline with +-10 % noise. Three budgets at once, each
at 50 % of the way from its smallest to its largest total (HAWQ-V3's relative setting).

Random tables differ a lot in how hard they are (how far the LP bound sits below the best
plan), so each size is measured on several tables (--seeds; the summary gives the median and
the worst table); exact runs (gap_rel 0) only on the tables in --exact-seeds and sizes in
--exact-sizes. Each row is the median of --repeats runs (all totals and the load average are
recorded).
The sweeps (54 layers, 50 points, size swept, with and without a latency budget) time pareto's
compiled search against its HiGHS node-LP search interleaved, the first sweep of a fresh process,
and the plain PuLP+CBC baseline (``--sweep-only`` runs only them).
Run:  python benchmarks/bench_allocation.py [--sizes 50 200 1000 10000] [--seeds 0 1 2] [--repeats 3]
Prints a table and writes benchmarks/results/allocation.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mpsearch.allocation import allocate, lagrange_bb, pareto
from mpsearch.core.cost_table import CostTable

PAIRS = [(w, a) for w in (2, 4, 8) for a in (4, 8)]
BUDGETS = {"size_bytes": "50%", "bops": "50%", "latency_ms": "50%"}


def make_table(n_layers: int, seed: int = 0) -> CostTable:
    """A realistic random table (see module docstring), built from flat arrays."""
    rng = np.random.default_rng(seed)
    n_params = rng.lognormal(11.0, 1.5, n_layers)
    macs = n_params * rng.lognormal(4.0, 1.0, n_layers)
    w_trace = rng.lognormal(-8.0, 2.0, n_layers)  # mean Hessian trace x weight range^2
    a_trace = rng.lognormal(-10.0, 2.0, n_layers)
    k = len(PAIRS)
    w = np.array([p[0] for p in PAIRS], dtype=float)
    a = np.array([p[1] for p in PAIRS], dtype=float)
    omega = (w_trace[:, None] * n_params[:, None] * 4.0 ** -w * rng.uniform(0.8, 1.2, (n_layers, k))
             + a_trace[:, None] * n_params[:, None] * 4.0 ** -a * rng.uniform(0.8, 1.2, (n_layers, k)))
    size = n_params[:, None] * w / 8
    bops = macs[:, None] * w * a
    ops_per_s = 1e12 * (8.0 / np.maximum(w, a))  # narrower pairs run faster
    latency = (np.maximum(macs[:, None] / ops_per_s, size / 2.5e10) * 1e3 + 0.005) * rng.uniform(0.9, 1.1, (n_layers, k))
    cands = tuple(__import__("mpsearch.core.types", fromlist=["Candidate"]).Candidate(wb, ab) for wb, ab in PAIRS)
    return CostTable(layers=tuple(f"layer{i}" for i in range(n_layers)), candidates=(cands,) * n_layers,
                     offsets=np.arange(0, n_layers * k + 1, k), omega=omega.ravel(),
                     resources={"size_bytes": size.ravel(), "bops": bops.ravel(), "latency_ms": latency.ravel()})


def time_allocate(table: CostTable, solver: str, gap_rel: float, time_limit_s: float | None) -> dict:
    t0 = time.perf_counter()
    plan = allocate(table, budgets=BUDGETS, solver=solver, gap_rel=gap_rel, time_limit_s=time_limit_s)
    total = time.perf_counter() - t0
    m = plan.meta
    return {"total_s": total, "build_s": m["build_time_s"], "solve_s": plan.solve_time_s,
            "lp_s": m["lp_time_s"], "fix_s": m["fix_time_s"], "branch_s": m["branch_time_s"] or 0.0,
            "branch_nodes": m["branch_nodes"], "mip_s": m["mip_time_s"] or 0.0, "lp": m["lp"],
            "closed_by": m["closed_by"],
            "status": plan.status, "gap": plan.gap, "objective": plan.objective, "lp_gap_rel": m["lp_gap_rel"],
            "n_vars": m["n_vars"], "n_candidates": m["n_candidates"], "n_vars_after_fixing": m["n_vars_after_fixing"],
            "n_groups_after_fixing": m["n_groups_after_fixing"], "loadavg": loadavg(), "limits": dict(m["budgets"])}


def plain_pulp_cbc(table: CostTable, limits: dict[str, float], gap_rel: float, time_limit_s: float = 60.0) -> dict:
    """The baseline of #17: the textbook PuLP model (one binary per layer x candidate, one-hot rows,
    one row per budget) built and solved by PULP_CBC_CMD at the same gap_rel, nothing else."""
    import warnings

    import pulp

    t0 = time.perf_counter()
    lp = pulp.LpProblem("baseline", pulp.LpMinimize)
    off = table.offsets
    x = [lp.add_variable(f"x{j}", 0, 1, pulp.LpBinary) for j in range(int(off[-1]))]
    lp.setObjective(pulp.lpSum(float(table.omega[j]) * x[j] for j in range(len(x))))
    for i in range(table.n_layers):
        lp.addConstraint(pulp.lpSum(x[int(off[i]):int(off[i + 1])]) == 1)
    for name, limit in limits.items():
        arr = table.resources[name]
        lp.addConstraint(pulp.lpSum(float(arr[j]) * x[j] for j in range(len(x))) <= limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lp.solve(pulp.PULP_CBC_CMD(msg=False, gapRel=gap_rel, timeLimit=time_limit_s))
    total = time.perf_counter() - t0
    # CBC stopped by its time limit still reports "Optimal" for a feasible plan: the clock tells
    capped = total >= time_limit_s
    return {"total_s": total, "objective": pulp.value(lp.objective), "status": pulp.LpStatus[lp.status],
            "capped": capped}


def loadavg() -> str:
    """The 1/5/15-minute load averages (the machine may be shared)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def summarize(rows: list[dict]) -> dict:
    """Per (layers, solver, gap_rel): median and worst end-to-end time over the tables."""
    out: dict = {}
    for key in sorted({(r["n_layers"], r["solver"], r["gap_rel"]) for r in rows}):
        sel = [r for r in rows if (r["n_layers"], r["solver"], r["gap_rel"]) == key]
        totals = sorted(r["total_s"] for r in sel)
        base = [r["baseline_s"] for r in sel if "baseline_s" in r]
        capped = sum(bool(r.get("baseline_capped")) for r in sel)
        out[f"{key[0]} layers, {key[1]}, gap_rel {key[2]:g}"] = {
            "median_s": float(np.median(totals)), "max_s": totals[-1], "n_tables": len(totals),
            "baseline_median_s": float(np.median(base)) if base else None,
            "speedup_vs_pulp_cbc": float(np.median(base) / np.median(totals)) if base else None,
            "baseline_capped": capped,
            "worst_gap": max((r["gap"] or 0.0) for r in sel)}
    return out


def median_run(fn, repeats: int) -> dict:
    """Run ``fn`` ``repeats`` times; the run with the median total_s, plus every total."""
    runs = sorted((fn() for _ in range(repeats)), key=lambda r: r["total_s"])
    return {**runs[len(runs) // 2], "totals_s": [r["total_s"] for r in runs], "repeats": repeats}



@contextlib.contextmanager
def highs_search():
    """pareto with the HiGHS node-LP group branching (the default before the compiled search)."""
    saved = lagrange_bb.available
    lagrange_bb.available = lambda: False
    try:
        yield
    finally:
        lagrange_bb.available = saved


COLD = """import sys, time
sys.path.insert(0, {bench!r})
t0 = time.perf_counter()
from bench_allocation import make_table
from mpsearch.allocation import pareto
t1 = time.perf_counter()
pareto(make_table(54, seed=1), "size_bytes", {n}, other_budgets={others!r}, solver={solver!r})
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def cold_sweep(n_points: int, others: dict, solver: str) -> dict:
    """The first sweep of a fresh process (numba's import and its kernels loaded from its disk cache)."""
    code = COLD.format(bench=str(Path(__file__).parent), n=n_points, others=others, solver=solver)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imports_s, first_s = map(float, out.stdout.split())
    return {"imports_s": imports_s, "first_sweep_s": first_s}


def run_sweeps(args: argparse.Namespace) -> list[dict]:
    """50-point sweeps on 54 layers (seed 1), size swept, without and with a latency budget held at
    50 %: the compiled search (default) and the HiGHS search interleaved, the plain PuLP+CBC baseline
    (one textbook model per point) once, and the first sweep of a fresh process."""
    sweeps = []
    table = make_table(54, seed=1)  # ResNet-50 has 54 quantizable conv/linear layers
    for solver in args.solvers:
        for others in ({}, {"latency_ms": "50%"}):
            def sweep() -> dict:
                t0 = time.perf_counter()
                front = pareto(table, "size_bytes", args.pareto_points, other_budgets=others, solver=solver)
                return {"total_s": time.perf_counter() - t0, "n_distinct": len(front), "loadavg": loadavg(),
                        "worst_gap": max(p.gap or 0.0 for p in front.points), "objectives": [p.objective for p in front.points],
                        "branch_nodes": sum(p.meta.get("branch_nodes") or 0 for p in front.points),
                        "closed_without_mip": sum(p.meta["closed_by"] in ("fixing", "gap", "branching")
                                                  for p in front.points)}

            sweep()  # compiles or loads the kernels once
            runs: dict[str, list[dict]] = {"compiled": [], "highs_search": []}
            for _ in range(args.sweep_repeats):  # interleaved: both see the same load
                runs["compiled"].append(sweep())
                with highs_search():
                    runs["highs_search"].append(sweep())
            r = {"n_layers": 54, "n_points": args.pareto_points, "solver": solver, "other_budgets": others}
            for name, rs in runs.items():
                rs.sort(key=lambda x: x["total_s"])
                r[name] = {**rs[len(rs) // 2], "totals_s": [x["total_s"] for x in rs]}
            r["total_s"] = r["compiled"]["total_s"]
            r["speedup_vs_highs_search"] = r["highs_search"]["total_s"] / r["total_s"]
            r["cold"] = cold_sweep(args.pareto_points, others, solver)
            if args.baseline:  # the baseline sweep: one plain PuLP+CBC model per point, same limits
                front = pareto(table, "size_bytes", args.pareto_points, other_budgets=others, solver=solver)
                grid = np.linspace(front.points[0].meta["budgets"]["size_bytes"],
                                   front.points[-1].totals["size_bytes"], args.pareto_points)
                t0 = time.perf_counter()
                done, capped = 0, False
                for v in grid:
                    out = plain_pulp_cbc(table, {"size_bytes": float(v), **front.budgets}, args.gap_rel,
                                         args.baseline_cap_s)
                    done, capped = done + 1, capped or out["capped"]
                    if time.perf_counter() - t0 >= args.baseline_sweep_cap_s:
                        capped = True
                        break
                r.update(baseline_s=time.perf_counter() - t0, baseline_capped=capped, baseline_points_done=done)
            sweeps.append(r)
            c, h = r["compiled"], r["highs_search"]
            print(f"pareto 54 layers x 6, {args.pareto_points} points, {solver}, other budgets {others or 'none'}: "
                  f"compiled search {c['total_s']:.3f} s (worst gap {c['worst_gap']:.1e}, {c['branch_nodes']} nodes), "
                  f"HiGHS search {h['total_s']:.3f} s (worst gap {h['worst_gap']:.1e}, {h['branch_nodes']} nodes), "
                  f"{r['speedup_vs_highs_search']:.1f}x; fresh process: imports {r['cold']['imports_s']:.2f} s + "
                  f"first sweep {r['cold']['first_sweep_s']:.2f} s; {c['n_distinct']} distinct points, load {c['loadavg']}"
                  + (f"; plain PuLP+CBC {'> ' if r['baseline_capped'] else ''}{r['baseline_s']:.3f} s "
                     f"({r['baseline_points_done']} points; {'> ' if r['baseline_capped'] else ''}"
                     f"{r['baseline_s'] / r['total_s']:.1f}x)" if "baseline_s" in r else ""), flush=True)
    return sweeps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000, 10000])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)), help="table seeds per size")
    ap.add_argument("--exact-seeds", type=int, nargs="*", default=[0], help="tables also solved with gap_rel 0")
    ap.add_argument("--exact-sizes", type=int, nargs="*", default=[50, 200, 1000])
    ap.add_argument("--solvers", nargs="+", default=["cbc", "highs"])
    ap.add_argument("--gap-rel", type=float, default=1e-4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--time-limit-s", type=float, default=60.0)
    ap.add_argument("--pareto-points", type=int, default=50)
    ap.add_argument("--sweep-only", action="store_true", help="only the 54-layer Pareto sweeps")
    ap.add_argument("--sweep-repeats", type=int, default=7,
                    help="interleaved repetitions of each sweep (compiled search, HiGHS search)")
    ap.add_argument("--baseline", type=int, default=1, help="1: also time plain PuLP+CBC on each table (ratios)")
    ap.add_argument("--baseline-max-layers", type=int, default=1000)
    ap.add_argument("--baseline-cap-s", type=float, default=10.0,
                    help="time limit of one plain PuLP+CBC solve; a solve that reaches it is reported as '> cap'")
    ap.add_argument("--baseline-sweep-cap-s", type=float, default=60.0,
                    help="the baseline sweep stops once its points took this long ('> cap')")
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "allocation.json"))
    args = ap.parse_args()
    rows = []
    baselines: dict = {}
    print(f"{'layers':>7} {'seed':>4} {'solver':>6} {'gap_rel':>8} {'total_s':>8} {'build_s':>8} {'lp_s':>7} {'fix_s':>7} "
          f"{'branch_s':>8} {'mip_s':>7} {'closed_by':>9} {'status':>11} {'gap':>9} vars (after fixing/after pruning/all)  load")
    for n in ([] if args.sweep_only else args.sizes):
        for seed in args.seeds:
            table = make_table(n, seed=seed)
            gaps = [args.gap_rel] + ([0.0] if seed in args.exact_seeds and n in args.exact_sizes else [])
            for solver in args.solvers:
                for gap_rel in gaps:
                    r = {"n_layers": n, "seed": seed, "n_candidates_per_layer": len(PAIRS), "n_budgets": len(BUDGETS),
                         "solver": solver, "gap_rel": gap_rel, "time_limit_s": args.time_limit_s,
                         **median_run(lambda: time_allocate(table, solver, gap_rel, args.time_limit_s), args.repeats)}
                    rows.append(r)
                    gap = "-" if r["gap"] is None else f"{r['gap']:.1e}"
                    print(f"{n:>7} {seed:>4} {solver:>6} {gap_rel:>8.0e} {r['total_s']:>8.3f} {r['build_s']:>8.3f} "
                          f"{r['lp_s']:>7.3f} {r['fix_s']:>7.3f} {r['branch_s']:>8.3f} {r['mip_s']:>7.3f} "
                          f"{r['closed_by']:>9} {r['status']:>11} {gap:>9} "
                          f"{r['n_vars_after_fixing']}/{r['n_vars']}/{r['n_candidates']}  {r['loadavg']}", flush=True)
    for r in rows:  # the plain PuLP+CBC baseline on the same table and limits, in the same run
        if r["gap_rel"] == args.gap_rel and args.baseline and r["n_layers"] <= args.baseline_max_layers:
            table = make_table(r["n_layers"], seed=r["seed"])
            key = (r["n_layers"], r["seed"])
            if key not in baselines:
                baselines[key] = median_run(lambda: plain_pulp_cbc(table, r["limits"], args.gap_rel,
                                                                   args.baseline_cap_s), args.baseline_repeats)
            r["baseline_s"] = baselines[key]["total_s"]
            r["baseline_capped"] = baselines[key]["capped"]
            r["baseline_objective"] = baselines[key]["objective"]
            print(f"baseline {r['n_layers']} layers seed {r['seed']} ({r['solver']}): plain PuLP+CBC "
                  f"{'> ' if r['baseline_capped'] else ''}{r['baseline_s']:.3f} s, objective {r['baseline_objective']:.6g} "
                  f"vs mpsearch {r['total_s']:.3f} s, {r['objective']:.6g}  load {loadavg()}", flush=True)
    summary = summarize(rows)
    for key, v in summary.items():
        base = "" if v["baseline_median_s"] is None else (f"; plain PuLP+CBC median {v['baseline_median_s']:.3f} s, "
                                                          f"speed-up {v['speedup_vs_pulp_cbc']:.1f}x, "
                                                          f"{v['baseline_capped']} baseline solves hit the cap")
        print(f"summary {key}: median {v['median_s']:.3f} s, worst {v['max_s']:.3f} s over {v['n_tables']} tables, "
              f"worst proven gap {v['worst_gap']:.1e}{base}")
    sweeps = run_sweeps(args)
    out = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU, no GPU", "python": platform.python_version(),
           "allocate": rows, "summary": summary, "pareto": sweeps}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
