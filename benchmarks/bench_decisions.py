"""Decision quality on tasks with headroom: tasks x budgets x methods, oracle rank by brute force, QAT frontier.

    nice -n 5 python benchmarks/bench_decisions.py [--tasks narrow_cnn denoise lm] [--seeds 0 1 2] [--qat-epochs 3]

Tasks (nothing downloaded; models cached per seed): ``narrow_cnn`` (digits, 2958 parameters, top-1 on
the 359 test images) and ``denoise`` (DenoiseNet on 16x16 patches of sklearn's sample photos, PSNR in
dB on the 416 test patches); ``lm`` (gpt_tiny, bits per byte: bench_decisions_lm.py, no brute force). Candidates: weight-only w{2,3,4,8}a16 per-channel on every layer (x86-2core-int
profile), so a layer's quantized weight does not depend on any other layer's choice, and all
4^5 = 1024 plans can be scored exactly by swapping precomputed quantized weights into the float model
(checked against ``mps.quantize`` on every evaluated plan). Budgets: the size of uniform W3 and the
midpoint between uniform W2 and W3 sizes ("W2.5").

Methods, every plan scored by mpsearch's own quantizer on the full test split (chosen without it):
- mpsearch: the DEFAULT decision of ``mpsearch run`` (decisions_methods.default_decision): Hessian
  sensitivity -> omega calibrated on the calibration batches -> 8 best ILP plans, lowest VALIDATION loss
  -> guard on the VALIDATION split;
- mpsearch-ilp: the ILP on the uncalibrated Hessian omega, no guard (what this benchmark scored before);
- kbest8-val: the 8 best plans by calibrated omega, the best on the validation split;
- uniform: the widest uniform plan within the budget (W3 at both budgets: W2.5 -> uniform W2);
- greedy-mse: from all-8-bit, repeatedly lower the layer with the smallest increase of per-layer weight
  quantization MSE x parameters per byte saved, until the budget holds;
- random20: mean of 20 feasible plans drawn uniformly from the brute-force list;
- peers: plans written by ``benchmarks/peers/run_<peer>.py`` (``results/peers/<peer>_<task>_s<seed>.json``);
  a missing file is printed with the reason from the peer's install log, a peer that failed with its error.
  AIMET AMP (``aimet-amp``: scored on the validation metric, ``aimet-amp-loss``: on minus the validation
  loss) hands back its whole Pareto curve; each budget takes the curve's point with the best AIMET score
  among those whose size fits (``run_aimet.pick_point``, sizes by this file's ``size_of``).
Oracle rank = 1 + number of feasible plans with a strictly better test metric (ties share a rank).
``--qat-epochs > 0`` also fine-tunes mpsearch's plans and the uniform baselines (QAT, seed 0) and reports
the metric before and after (issue #15 item 5).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import mpsearch as mps
from mpsearch.core.plan import LayerBits
from mpsearch.demo import batches, evaluate
from mpsearch.demo.images import load_denoise_run, psnr
from mpsearch.demo.narrow import load_narrow_run
from mpsearch.demo.train import load_demo_run
from mpsearch.qat import FinetuneConfig, finetune_, rederive_weight_scales_
from mpsearch.quant.quantizer import fake_quantize_weight, weight_quantization_error
from mpsearch.sensitivity import HessianConfig

import sys

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decisions_methods import default_decision, kbest_decision  # noqa: E402

from mpsearch.pipeline.guard import guard_plan  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from run_aimet import pick_point  # noqa: E402  (imports no aimet)

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "benchmarks" / "results" / "peers"
PEERS = ["modelopt-gradient", "modelopt-kl", "nncf-hawq", "aimet-amp", "aimet-amp-loss"]
W_BITS = (2, 3, 4, 8)
PROFILE = "x86-2core-int"


def load_task(task: str, seed: int) -> dict[str, Any]:
    """Model, splits, loss, metric and batch lists of one task and seed."""
    if task in ("narrow_cnn", "small_cnn"):
        run = load_narrow_run(seed=seed) if task == "narrow_cnn" else load_demo_run("small_cnn", seed=seed)
        loss, metric, bs = nn.CrossEntropyLoss(), evaluate, 256
    else:
        run = load_denoise_run(seed=seed)
        loss, metric, bs = nn.MSELoss(), psnr, 128
    train = list(batches(run.splits.train, 128, shuffle=True, seed=seed))
    return {"model": run.model, "splits": run.splits, "loss": loss, "metric": metric,
            "test": list(batches(run.splits.test, bs)), "val": list(batches(run.splits.val, bs)),
            "calib": train[:2], "sens": train[2:4], "train": train}


def plan_bits(plan: Any) -> dict[str, int]:
    return {n: b.w_bits for n, b in plan.layers.items()}


def to_layers(bits: dict[str, int]) -> dict[str, LayerBits]:
    return {n: LayerBits(int(b), 16) for n, b in bits.items()}


def greedy_mse(model: nn.Module, table: Any, names: list[str], budget: float) -> dict[str, int]:
    """Lower bits where weight-quantization MSE x parameters grows least per byte saved."""
    mods = dict(model.named_modules())
    cost = {(n, b): weight_quantization_error(mods[n].weight.detach(), b) * mods[n].weight.numel()
            for n in names for b in W_BITS}
    bits = {n: max(W_BITS) for n in names}
    while size_of(table, bits) > budget:
        best = None
        for n in names:
            lower = [b for b in W_BITS if b < bits[n]]
            if not lower:
                continue
            b = max(lower)
            saved = size_of(table, bits) - size_of(table, {**bits, n: b})
            score = (cost[(n, b)] - cost[(n, bits[n])]) / max(saved, 1e-9)
            if best is None or score < best[0]:
                best = (score, n, b)
        if best is None:
            break
        bits[best[1]] = best[2]
    return bits


def size_of(table: Any, bits: dict[str, int]) -> float:
    return float(table.totals(table.rows_for_plan({n: LayerBits(int(b), 8) for n, b in bits.items()}))["size_bytes"])


class FastScorer:
    """Scores weight-only plans by swapping precomputed fake-quant weights into a float copy."""

    def __init__(self, model: nn.Module, names: list[str], metric: Any, test: list[Any]):
        import copy

        self.model = copy.deepcopy(model).eval()
        self.mods = dict(self.model.named_modules())
        self.qw = {(n, b): fake_quantize_weight(self.mods[n].weight.detach(), b) for n in names for b in W_BITS}
        self.metric, self.test = metric, test

    def install(self, bits: dict[str, int]) -> None:
        with torch.no_grad():
            for n, b in bits.items():
                self.mods[n].weight.copy_(self.qw[(n, b)])

    def __call__(self, bits: dict[str, int], data: list[Any] | None = None) -> float:
        self.install(bits)
        return float(self.metric(self.model, self.test if data is None else data))

    def loss(self, bits: dict[str, int], loss_fn: Any, data: list[Any]) -> float:
        """Example-weighted mean ``loss_fn`` of the plan on ``data`` (the guard's tie-break)."""
        from mpsearch.pipeline.guard import mean_loss

        self.install(bits)
        return mean_loss(self.model, loss_fn, data)


def qat_metric(q: nn.Module, t: dict[str, Any], task: str, epochs: int) -> float:
    """Metric after ``epochs`` of QAT from ``q`` (copied): finetune_ for digits, an STE MSE loop for denoising."""
    import copy

    q = copy.deepcopy(q)
    if task != "denoise":
        finetune_(q, t["train"], FinetuneConfig(epochs=epochs, lr=1e-3, seed=0, n_threads=1))
    else:
        opt = torch.optim.Adam([p for p in q.parameters() if p.requires_grad], lr=3e-4)
        q.train()
        for epoch in range(epochs):
            if epoch:
                rederive_weight_scales_(q)  # as finetune_ does between epochs
            for x, y in t["train"]:
                opt.zero_grad(set_to_none=True)
                nn.functional.mse_loss(q(x), y).backward()
                opt.step()
        q.eval()
    return float(t["metric"](q, t["test"]))


def one_seed(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    t = load_task(task, seed)
    model = t["model"]
    profile = mps.load_profile(PROFILE)
    layers = mps.discover(model, t["splits"].example_inputs(2))
    names = [lay.name for lay in layers]
    t0 = time.perf_counter()
    sens = mps.analyze(model, t["loss"], t["sens"], method="hessian",
                       config=HessianConfig(max_probes=args.max_probes, rel_stderr_target=0.1, seed=seed))
    # The profile lists no weight-only conv pair, so the table is built at a8: a layer's activation term is
    # then the same for all its weight widths (it cannot change the ILP's choice) and size is weights only;
    # the plans are quantized weight-only (a16).
    table = mps.cost_table(model, layers, sens, profile, w_bits=W_BITS, a_bits=(8,), calib_batches=t["calib"], ties=[])
    sens_s = time.perf_counter() - t0
    s2, s3 = size_of(table, dict.fromkeys(names, 2)), size_of(table, dict.fromkeys(names, 3))
    budgets = {"W3": s3, "W2.5": (s2 + s3) / 2}
    scorer = FastScorer(model, names, t["metric"], t["test"])
    space = [dict(zip(names, c)) for c in itertools.product(W_BITS, repeat=len(names))]
    t0 = time.perf_counter()
    scored = [(size_of(table, b), scorer(b), b) for b in space]
    brute_s = time.perf_counter() - t0
    row: dict[str, Any] = {"seed": seed, "float": float(t["metric"](model, t["test"])), "sensitivity_s": sens_s,
                           "brute_force_s": brute_s, "n_plans": len(space), "budgets": {}}

    def score(bits: dict[str, int]) -> float:
        # No profile: x86-2core-int lists no weight-only conv pair, and quantize checks pairs against it.
        # Defaults: symmetric per-channel min-max weights, the same as the brute force (asserted below).
        q = mps.quantize(model, to_layers(bits), t["calib"])
        value = float(t["metric"](q, t["test"]))
        fast = scorer(bits)
        assert abs(value - fast) < 1e-6 * max(1.0, abs(value)), (bits, value, fast)  # brute force == mps.quantize
        return value

    for label, budget in budgets.items():
        feasible = [(v, b) for s, v, b in scored if s <= budget + 1e-9]
        sign = 1 if task == "narrow_cnn" or True else -1  # both metrics: higher is better

        def rank(v: float) -> int:
            return 1 + sum(1 for w, _ in feasible if sign * w > sign * v + 1e-12)

        on_val = lambda p: scorer(plan_bits(p), t["val"])  # noqa: E731
        loss_val = lambda p: scorer.loss(plan_bits(p), t["loss"], t["val"])  # noqa: E731
        b = {"size_bytes": budget}
        t0 = time.perf_counter()
        dec = default_decision(model, table, b, profile, t["loss"], t["calib"], on_val, loss_val, True)
        decide_s = time.perf_counter() - t0
        kb, kb_val = kbest_decision(dec["table"], b, on_val, True)
        kbg = guard_plan(kb, dec["table"], b, on_val, higher_is_better=True, greedy=dec["greedy"], tiebreak=loss_val)
        kbl, _ = kbest_decision(dec["table"], b, loss_val, False)  # picked by the validation LOSS
        kblg = guard_plan(kbl, dec["table"], b, on_val, higher_is_better=True, greedy=dec["greedy"], tiebreak=loss_val)
        plans = {"mpsearch": plan_bits(dec["plan"]),
                 "mpsearch-ilp": plan_bits(mps.allocate(table, budgets=b)),
                 "kbest8-val": plan_bits(kb),
                 "kbest8-val+guard": plan_bits(kbg),
                 "kbest8-valloss": plan_bits(kbl),
                 "kbest8-valloss+guard": plan_bits(kblg),
                 "uniform": dict.fromkeys(names, 3 if label == "W3" else 2),
                 "greedy-mse": greedy_mse(model, table, names, budget)}
        peer_meta: dict[str, dict[str, Any]] = {}
        for peer in PEERS:
            path = PEER_DIR / f"{peer}_{task}_s{seed}.json"
            if path.is_file():
                got = json.loads(path.read_text())
                if "curve" in got:  # AIMET AMP: its Pareto curve; the budget picks a point (run_aimet.pick_point)
                    picked = pick_point(got["curve"], lambda bits: size_of(table, bits), budget)
                    if picked is not None:
                        i, point = picked
                        plans[peer] = {n: int(b) for n, b in point["bits"].items()}
                        peer_meta[peer] = {"pareto_index": i, "pareto_points": len(got["curve"]),
                                           "peer_score": point["score"], "rel_bitops": point["rel_bitops"]}
                        # how much the mapping rule matters: the first point that fits (AIMET walks down its
                        # curve), and the best fitting point by TEST metric (an upper bound on any rule)
                        fits = [p["bits"] for p in got["curve"] if size_of(table, p["bits"]) <= budget + 1e-9]
                        best_test = max(scorer(b) for b in fits)
                        peer_meta[peer].update({"first_fit_metric": scorer(fits[0]), "curve_best_test": best_test,
                                                "curve_best_rank": rank(best_test), "curve_points_fitting": len(fits)})
                        continue
                if label in got.get("plans", {}):
                    plans[peer] = {n: int(b) for n, b in got["plans"][label].items()}
                else:
                    notes = got.get("notes", {})
                    why = notes.get("error") or notes.get(label, {}).get("not_expressible", "not written")
                    print(f"  peer {peer} {task} seed {seed} {label}: no plan ({why})")
        cell: dict[str, Any] = {"size_bytes": budget, "n_feasible": len(feasible),
                                "oracle_best": max(v for v, _ in feasible), "methods": {},
                                "default": {"guard": dec["guard"], "ilp_bits": plan_bits(dec["ilp"]),
                                            "omega_rows_measured": dec["n_measured"], "omega_rows_checked": dec["n_checked"],
                                            "decide_s": decide_s, "kbest_val": kb_val}}
        for m, bits in plans.items():
            v = score(bits)
            cell["methods"][m] = {"bits": bits, "metric": v, "rank": rank(v), "size_bytes": size_of(table, bits),
                                  "over_budget": size_of(table, bits) > budget + 1e-9, "val": scorer(bits, t["val"]),
                                  **peer_meta.get(m, {})}
        rng = random.Random(seed)
        draws = [feasible[rng.randrange(len(feasible))] for _ in range(20)]
        cell["methods"]["random20"] = {"metric": statistics.fmean(v for v, _ in draws),
                                       "rank": statistics.median(rank(v) for v, _ in draws)}
        if args.qat_epochs:
            for m in ("mpsearch", "uniform"):
                q = mps.quantize(model, to_layers(plans[m]), t["calib"])
                cell["methods"][m]["qat"] = qat_metric(q, t, task, args.qat_epochs)
        row["budgets"][label] = cell
        print(f"  {task} seed {seed} {label}: " + "  ".join(
            f"{m} {c['metric']:.4f} (#{c['rank']})" for m, c in cell["methods"].items()) + f"  oracle {cell['oracle_best']:.4f}"
            + f"  guard: {dec['guard'].get('chosen')} ({dec['guard'].get('reason', '')[:160]})", flush=True)
    if args.qat_epochs:
        row["float_qat_ref"] = {f"uniform W{w}": {"ptq": score(dict.fromkeys(names, w)), "qat": qat_metric(
            mps.quantize(model, to_layers(dict.fromkeys(names, w)), t["calib"]), t, task, args.qat_epochs)}
            for w in (4, 3)}
    return row


def ms(values: list[float], scale: float) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.fmean(values):.2f} ± {scale * sd:.2f}"


def print_tables(task: str, rows: list[dict[str, Any]]) -> None:
    scale, unit = (100.0, "top-1 %") if task != "denoise" else (1.0, "PSNR dB")
    print(f"\n{task}: float {ms([r['float'] for r in rows], scale)} {unit}, {len(rows)} seeds")
    for label in rows[0]["budgets"]:
        print(f"\n| {task} @ uniform {label} size | {unit} (mean ± std) | oracle rank (median; per seed) |"
              f" QAT {unit} |\n|---|---|---|---|")
        cells = [r["budgets"][label] for r in rows]
        print(f"| oracle (best feasible) | {ms([c['oracle_best'] for c in cells], scale)} | 1 | |")
        methods = list(dict.fromkeys(m for c in cells for m in c["methods"]))
        for m in methods:
            got = [c["methods"][m] for c in cells if m in c["methods"]]
            ranks = [g["rank"] for g in got]
            qat = ms([g["qat"] for g in got], scale) if all("qat" in g for g in got) else ""
            note = f" ({len(got)} seeds)" if len(got) != len(cells) else ""
            print(f"| {m}{note} | {ms([g['metric'] for g in got], scale)} | {statistics.median(ranks):g}; "
                  f"{', '.join(f'{x:g}' for x in ranks)} | {qat} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["narrow_cnn", "denoise"], choices=["narrow_cnn", "small_cnn", "denoise", "lm"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--max-probes", type=int, default=32)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--qat-steps", type=int, default=150, help="lm: QAT steps (batches of 16 windows)")
    ap.add_argument("--lm-max-probes", type=int, default=64, help="lm: Hutchinson probes (bench_lm.py's, cached)")
    ap.add_argument("--n-random", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_decisions.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for peer in PEERS:
        for path in sorted(PEER_DIR.glob(f"{peer}_*.json")):
            error = json.loads(path.read_text()).get("notes", {}).get("error")
            if error:
                print(f"peer {peer}: did not run on {path.stem.removeprefix(peer + '_')}: {error}")
        if not any(PEER_DIR.glob(f"{peer}_*.json")):
            venv = Path("/work/venvs") / peer.split("-")[0]
            log = venv / "install.log"
            status = venv / "install.status"
            why = (f"no environment at {venv} (run benchmarks/peers/setup.sh {venv.name})" if not log.is_file() else
                   "installed; run its benchmarks/peers script" if status.is_file() and status.read_text().strip() == "0"
                   else "install failed or unfinished: " + log.read_text().strip().splitlines()[-1])
            print(f"peer {peer}: no plans in {PEER_DIR} ({why})")
    out = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "tasks": {}}
    for task in args.tasks:
        if task == "lm":
            from bench_decisions_lm import one_seed_lm, print_tables_lm

            rows = [one_seed_lm(s, args) for s in args.seeds]
            print_tables_lm(rows)
        else:
            rows = [one_seed(task, s, args) for s in args.seeds]
            print_tables(task, rows)
        out["tasks"][task] = rows
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
