"""Decision quality on the language-model task (gpt_tiny, bits per byte, lower is better), PTQ and after QAT.

    PYTHONPATH=. nice -n 5 python benchmarks/bench_decisions.py --tasks lm --seeds 0 1 2 --qat-steps 150
    # or one seed per process, then score the peer plans written since and merge the seeds:
    PYTHONPATH=. nice -n 5 python benchmarks/bench_decisions.py --tasks lm --seeds 1 --out benchmarks/results/decisions_lm_s1.json
    PYTHONPATH=. nice -n 5 python benchmarks/bench_decisions_lm.py --seeds 0 1 2 --qat-steps 150

(run through bench_decisions.py; this module holds the LM half, and its ``main`` adds peer plans
(``benchmarks/peers/run_modelopt_lm.py``) to per-seed result files and prints the merged tables). Each seed is one trained gpt_tiny
(``load_demo_lm_run(seed=...)``, cached) with its own sensitivity / calibration windows (as
bench_lm.py). Candidates: the weight-only LLM formats w2/w3/w4 g128, w8 per channel, w16 (15 layers,
tied embedding/head one group: 5^14 = 6e9 plans, beyond brute force: no oracle rank). Budgets: the
sizes of uniform W4 g128 and W3 g128. Validation = the val split (1 561 windows of 128 bytes), test =
the test split (1 602 windows, 205 k predictions); every plan is chosen without the test split and
scored on all of it by ``mps.quantize`` (fake-quant) and ``bits_per_byte``.

Methods: ``mpsearch`` (the default decision of ``mpsearch run``: calibrated omega -> ILP -> guard on
validation), ``mpsearch-ilp`` (uncalibrated Hessian omega, no guard: bench_lm.py's plan), ``kbest8-val``,
``uniform`` (W4 g128 / W3 g128), ``greedy-mse`` (the package's greedy on weight MSE x parameters, the
guard's baseline), ``random20`` (mean of 20 random feasible plans: decisions_methods.random_feasible).
Peers: ModelOpt / NNCF / AIMET plans are read from results/peers/<peer>_lm_s<seed>.json when present.
QAT: ``finetune_`` with KD from the float model (T 1, alpha 0.5, as recipes/demo-gpt.yaml), lr 5e-4,
``--qat-steps`` batches of 16 random train windows, seed 0, for mpsearch, uniform and greedy-mse.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import mpsearch as mps
from mpsearch.allocation import uniform_plan
from mpsearch.core.plan import BitPlan
from mpsearch.demo import bits_per_byte, lm_loss, load_demo_lm_run, text_batches
from mpsearch.model import weight_ties
from mpsearch.pipeline.guard import mean_loss
from mpsearch.qat import DistillConfig, FinetuneConfig, finetune_
from mpsearch.sensitivity import HessianConfig
from mpsearch.sensitivity.cache import default_cache_dir

from decisions_methods import default_decision, kbest_decision, plan_of_keys, random_feasible

FORMATS = ["w2a16g128", "w3a16g128", "w4a16g128", "w8a16", "w16a16"]
BUDGETS = {"W4 g128": "w4a16g128", "W3 g128": "w3a16g128"}
PEER_DIR = Path(__file__).resolve().parent / "results" / "peers"
PEERS = ["modelopt-gradient", "modelopt-kl", "nncf-hawq", "aimet-amp"]
RESULTS = Path(__file__).resolve().parent / "results"


def keys_of(plan: BitPlan) -> dict[str, str]:
    return {n: b.key for n, b in plan.layers.items()}


def one_seed_lm(seed: int, args: Any, budgets: list[str] | None = None, lean: bool = False) -> dict[str, Any]:
    """Every method at both budgets (or ``budgets``) for one seed: test bits per byte, PTQ and QAT.

    ``lean`` leaves out the extra rows ``mpsearch-ilp`` and ``kbest8-val`` and validation scores not
    already measured by the decision (under load: the table's methods only), and fine-tunes peer plans too."""
    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    windows = list(text_batches(splits.train, ctx, 32, n_batches=6, seed=1000 + seed))
    calib = windows[2:]
    val = list(text_batches(splits.val, ctx, 64))
    test = list(text_batches(splits.test, ctx, 64))
    profile = mps.load_profile("x86-2core-int")
    t0 = time.perf_counter()
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    sens = mps.analyze(model, lm_loss, windows[:2], method="hessian", cache_dir=default_cache_dir(),
                       config=HessianConfig(max_probes=args.lm_max_probes, rel_stderr_target=0.1, seed=seed))
    table = mps.cost_table(model, layers, sens, profile, formats=FORMATS, calib_batches=calib, ties=weight_ties(layers))
    sens_s = time.perf_counter() - t0
    cache: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def quantized(plan: BitPlan):
        return mps.quantize(model, plan, calib, profile=profile)

    def metric(plan: BitPlan, split: str) -> float:
        key = (split, tuple(sorted(keys_of(plan).items())))
        if key not in cache:
            cache[key] = float(bits_per_byte(quantized(plan), val if split == "val" else test))
        return cache[key]

    def on_val(plan: BitPlan) -> float:
        return metric(plan, "val")

    def loss_val(plan: BitPlan) -> float:
        return mean_loss(quantized(plan), lm_loss, val)

    def qat(plan: BitPlan) -> float:
        q = quantized(plan)
        train = list(text_batches(splits.train, ctx, 16, n_batches=args.qat_steps, seed=2000 + seed))
        finetune_(q, train, FinetuneConfig(epochs=1, lr=5e-4, seed=0, n_threads=1), DistillConfig(model, 1.0, 0.5))
        return float(bits_per_byte(q, test))

    row: dict[str, Any] = {"seed": seed, "float": float(bits_per_byte(model, test)), "sensitivity_s": sens_s,
                           "budgets": {}, "qat_steps": args.qat_steps, "n_random": args.n_random, "lean": lean}
    if not lean:
        row["float_val"] = float(bits_per_byte(model, val))
    qat_done: dict[tuple[tuple[str, str], ...], float] = {}
    for label, fmt in BUDGETS.items():
        if budgets is not None and label not in budgets:
            continue
        uni = uniform_plan(table, int(fmt[1]), 16, key=fmt)[0]
        budget = float(uni.totals["size_bytes"])
        b = {"size_bytes": budget}
        t0 = time.perf_counter()
        dec = default_decision(model, table, b, profile, lm_loss, calib, on_val, loss_val, False)
        decide_s = time.perf_counter() - t0
        kb, kb_val = (None, None) if lean else kbest_decision(dec["table"], b, on_val, False)
        plans: dict[str, BitPlan] = {"mpsearch": dec["plan"], "uniform": uni} if lean else {
            "mpsearch": dec["plan"], "mpsearch-ilp": mps.allocate(table, budgets=b), "kbest8-val": kb, "uniform": uni}
        if dec["greedy"] is not None:
            plans["greedy-mse"] = plan_of_keys(table, keys_of(dec["greedy"]))
        for peer in PEERS:
            path = PEER_DIR / f"{peer}_lm_s{seed}.json"
            if path.is_file():
                plans[peer] = plan_of_keys(table, json.loads(path.read_text())["plans"][label])
        cell: dict[str, Any] = {"size_bytes": budget, "methods": {}, "decide_s": decide_s, "kbest_val": kb_val,
                                "default": {"guard": dec["guard"], "ilp_keys": keys_of(dec["ilp"]),
                                            "omega_rows_measured": dec["n_measured"]}}
        for m, p in plans.items():
            size = float(table.totals(table.rows_for_plan(p))["size_bytes"])
            cell["methods"][m] = {"keys": keys_of(p), "metric": metric(p, "test"),
                                  "val": cache.get(("val", tuple(sorted(keys_of(p).items())))) if lean else on_val(p),
                                  "size_bytes": size, "over_budget": size > budget * (1 + 1e-9)}
        rng = random.Random(seed)
        draws = [metric(plan_of_keys(table, random_feasible(table, budget, rng)), "test") for _ in range(args.n_random)]
        cell["methods"]["random20"] = {"metric": statistics.fmean(draws), "draws": draws}
        if args.qat_steps:
            for m in ("mpsearch", "uniform", "greedy-mse", *(PEERS if lean else ())):
                if m in plans:
                    sig = tuple(sorted(keys_of(plans[m]).items()))  # a peer plan equal to another: fine-tuned once
                    qat_done[sig] = qat_done[sig] if sig in qat_done else qat(plans[m])
                    cell["methods"][m]["qat"] = qat_done[sig]
        row["budgets"][label] = cell
        print(f"  lm seed {seed} {label}: " + "  ".join(
            f"{m} {c['metric']:.4f}" + (f"/qat {c['qat']:.4f}" if "qat" in c else "") for m, c in cell["methods"].items())
            + f"  guard: {dec['guard'].get('chosen')} ({dec['guard'].get('reason', '')[:160]})", flush=True)
    return row


def print_tables_lm(rows: list[dict[str, Any]]) -> None:
    """Markdown tables (mean ± std over seeds; paired differences against uniform)."""

    def ms(v: list[float]) -> str:
        return f"{statistics.fmean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.4f}"

    print(f"\nlm (gpt_tiny): float {ms([r['float'] for r in rows])} bits/byte on test, {len(rows)} seeds")
    for label in rows[0]["budgets"]:
        cells = [r["budgets"][label] for r in rows]
        print(f"\n| lm @ uniform {label} size | bits/byte PTQ (mean ± std) | minus uniform (paired) | QAT bits/byte |"
              f" QAT minus uniform |\n|---|---|---|---|---|")
        for m in dict.fromkeys(m for c in cells for m in c["methods"]):
            got = [(c["methods"][m], c["methods"]["uniform"]) for c in cells if m in c["methods"]]
            d = ms([g["metric"] - u["metric"] for g, u in got])
            q = [(g["qat"], u["qat"]) for g, u in got if "qat" in g and "qat" in u]
            qs = (ms([a for a, _ in q]), ms([a - b for a, b in q])) if len(q) == len(got) else ("", "")
            note = f" ({len(got)} seeds)" if len(got) != len(cells) else ""
            print(f"| {m}{note} | {ms([g['metric'] for g, _ in got])} | {d} | {qs[0]} | {qs[1]} |")


def qat_bits_per_byte(model: Any, q: Any, splits: Any, seed: int, steps: int) -> float:
    """``q`` fine-tuned in place as in ``one_seed_lm`` (KD from ``model``, lr 5e-4, ``steps`` batches of 16), test bits/byte."""
    ctx = model.config.context
    train = list(text_batches(splits.train, ctx, 16, n_batches=steps, seed=2000 + seed))
    finetune_(q, train, FinetuneConfig(epochs=1, lr=5e-4, seed=0, n_threads=1), DistillConfig(model, 1.0, 0.5))
    return float(bits_per_byte(q, list(text_batches(splits.test, ctx, 64))))


def add_peers(row: dict[str, Any], qat_steps: int) -> bool:
    """Score the peer plans of ``row``'s seed that the row lacks (PTQ and QAT on test, validation); True if any."""
    from mpsearch.hardware.resources import resource_table

    seed, todo = row["seed"], []
    for label, cell in row["budgets"].items():
        for peer in PEERS:
            path = PEER_DIR / f"{peer}_lm_s{seed}.json"
            got = json.loads(path.read_text()) if path.is_file() else {}
            have = cell["methods"].get(peer, {})
            if label in got.get("plans", {}) and ("qat" not in have and qat_steps or "metric" not in have):
                todo.append((label, peer, got["plans"][label]))
            elif got.get("error"):
                cell.setdefault("peer_errors", {})[peer] = got["error"]
    if not todo:
        return False
    run = load_demo_lm_run("gpt_tiny", seed=seed)
    model, splits = run.model.eval(), run.splits
    ctx = model.config.context
    windows = list(text_batches(splits.train, ctx, 32, n_batches=6, seed=1000 + seed))  # as one_seed_lm
    calib, profile = windows[2:], mps.load_profile("x86-2core-int")
    val, test = list(text_batches(splits.val, ctx, 64)), list(text_batches(splits.test, ctx, 64))
    layers = mps.discover(model, splits.example_inputs(2, ctx))
    table = resource_table(layers, profile, formats=FORMATS, ties=weight_ties(layers))
    done: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for label, peer, keys in todo:
        cell, sig = row["budgets"][label], tuple(sorted(keys.items()))
        if sig not in done:
            plan = plan_of_keys(table, keys)
            q = mps.quantize(model, plan, calib, profile=profile)
            done[sig] = {"metric": float(bits_per_byte(q, test)), "val": float(bits_per_byte(q, val)),
                         "size_bytes": float(table.totals(table.rows_for_plan(plan))["size_bytes"])}
            if qat_steps:
                done[sig]["qat"] = qat_bits_per_byte(model, q, splits, seed, qat_steps)
        size = done[sig]["size_bytes"]
        cell["methods"][peer] = {"keys": dict(keys), **done[sig], "over_budget": size > cell["size_bytes"] * (1 + 1e-9)}
        print(f"  lm seed {seed} {label} {peer}: {done[sig]}", flush=True)
    return True


def rows_of_seed(seed: int, pattern: str) -> dict[str, Any]:
    """One seed's row, its budgets gathered from ``pattern``'s files (a full run first, then per-budget runs)."""
    paths = sorted(Path(pattern.format(seed=seed)).parent.glob(Path(pattern.format(seed=seed)).stem + "*.json"))
    row: dict[str, Any] | None = None
    for path in paths:
        got = json.loads(path.read_text())["tasks"]["lm"][0]
        got["budgets"] = {k: {**v, "source": path.name} for k, v in got["budgets"].items()}
        if row is None:
            row = got
        else:
            row["budgets"] = {**got["budgets"], **row["budgets"]}
    if row is None:
        raise FileNotFoundError(f"no result file for seed {seed}: {pattern.format(seed=seed)} (run bench_decisions.py)")
    row["budgets"] = {k: row["budgets"][k] for k in BUDGETS if k in row["budgets"]}
    return row


def main() -> None:
    """``--run``: bench one seed's budgets in this process (lean); then add peer plans and print the tables."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(description="LM decision benchmark: per-budget runs, peer plans, tables over seeds.")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--run", action="store_true", help="run one_seed_lm (lean) for --seeds and --budgets first")
    ap.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    ap.add_argument("--qat-steps", type=int, default=150, help="QAT steps (as the seed runs')")
    ap.add_argument("--n-random", type=int, default=20)
    ap.add_argument("--lm-max-probes", type=int, default=64)
    ap.add_argument("--peer-qat", action="store_true", help="also fine-tune peer plans missing a QAT figure")
    ap.add_argument("--per-seed", default=str(RESULTS / "decisions_lm_s{seed}.json"))
    ap.add_argument("--out", default=str(RESULTS / "decisions_lm.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.run:
        for seed in args.seeds:
            row = one_seed_lm(seed, args, budgets=args.budgets, lean=True)
            tag = "_".join(b.split()[0] for b in args.budgets)
            path = Path(args.per_seed.format(seed=seed)).with_name(f"{Path(args.per_seed.format(seed=seed)).stem}_{tag}.json")
            path.write_text(json.dumps({"torch": torch.__version__, "tasks": {"lm": [row]}}, indent=1))
            print(f"wrote {path}")
        return
    rows = []
    for seed in args.seeds:
        row = rows_of_seed(seed, args.per_seed)
        if add_peers(row, args.qat_steps if args.peer_qat else 0):
            print(f"  seed {seed}: peer plans added (kept in {args.out})")
        rows.append(row)
    ctx = load_demo_lm_run("gpt_tiny", seed=args.seeds[0]).model.config.context
    from mpsearch.demo import load_text_splits

    n_pred = sum(int(y.numel()) for _, y in text_batches(load_text_splits().test, ctx, 64))
    print(f"one point = {n_pred} test predictions (bytes) per seed")
    print_tables_lm(rows)
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "n_test_predictions": n_pred, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
