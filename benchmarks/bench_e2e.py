"""End to end over data splits and QAT seeds: ILP mixed plans against uniform plans of the same size.

One QAT run on the 359-image digits test split cannot separate plans that differ by an image or
two. Here every plan is measured on several stratified digits splits (``--splits``: split k
redraws which images are train / val / test and retrains the float model on its train part
with the demo's own training config; split 0 is the demo's) and fine-tuned with several QAT
seeds (``--seeds``: the seed draws the order of the training examples, see ``mpsearch.qat``).
Reported per plan: PTQ and QAT accuracy and mean cross-entropy on validation (where settings
may be chosen) and on test (reported, never used to choose), as mean +- standard deviation
over all (split, seed) runs, and the paired difference to the uniform plan it is compared
with: mean over splits of (mixed - uniform), each split averaged over seeds, +- the standard
error of that mean over splits.

Per split: the recipe's Hessian sensitivity and cost table (``--recipe``, default
``recipes/demo.yaml``; ``--profile`` / ``--w-bits`` / ``--a-bits`` override its candidates,
with several activation widths omega has the activation-Hessian term unless ``--no-activations``),
then the plans:

* uniform W{w}A{a} for every candidate w at the widest a, and the ``--targets`` pairs;
* for every target pair (e.g. ``w4a8``, ``w3a8``, ``w4a4``): the ILP plan at the size of that
  uniform plan, and also at its BOPs when its activations are narrower than the widest;
* the ILP plans at the "b-bit sizes" ``--bit-sizes`` (size of uniform W2 plus (b - 2) / 2 of
  the way to W4: size is linear in the weight bits).

The tables in docs/BENCHMARKS.md ("End to end") come from::

    nice -n 19 python benchmarks/bench_e2e.py --splits 0 1 2 3 4 --seeds 0 1 2 3 4 --a-bits 4 8 \
        --targets w4a8 w4a4 --bit-sizes 2.5 3 3.5 6 --out bench_e2e
    nice -n 19 python benchmarks/bench_e2e.py --splits 0 1 2 3 4 --seeds 0 1 2 3 4 --profile x86-2core-int \
        --w-bits 2 3 4 8 --targets w4a8 w3a8 --bit-sizes 2.5 --out bench_e2e_x86_w3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from mpsearch.allocation import allocate, uniform_plan
from mpsearch.core.io import write_bytes_atomic
from mpsearch.pipeline import steps
from mpsearch.pipeline.inputs import Inputs, digits_inputs
from mpsearch.qat import DistillConfig, FinetuneConfig, finetune_
from mpsearch.quant import QuantizeConfig, quantize
from mpsearch.recipe import Recipe, load_recipe
from mpsearch.report.progress import Progress

ROOT = Path(__file__).resolve().parents[1]


def split_inputs(recipe: Recipe, split_seed: int) -> Inputs:
    """The demo model trained on digits split ``split_seed`` (demo training config; cached)."""
    from mpsearch.demo import DEMO_TRAIN_CONFIGS, checkpoint_path, get_model, load_digits_splits, train
    from mpsearch.pipeline.inputs import load_inputs

    if split_seed == 0:
        return load_inputs(recipe)
    config = dataclasses.replace(DEMO_TRAIN_CONFIGS[recipe.model], split_seed=split_seed)
    splits = load_digits_splits(seed=split_seed, image_size=config.image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = get_model(recipe.model)
    path = checkpoint_path(recipe.model, config)
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    else:
        train(model, splits, config.epochs, config.lr, config.seed, batch_size=config.batch_size,
              weight_decay=config.weight_decay)
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "info": {"config": dataclasses.asdict(config)}}, buffer)
        write_bytes_atomic(path, buffer.getvalue())
    return digits_inputs(recipe, model, splits, {"split_seed": split_seed})


def plans_for(table: Any, targets: list[str], bit_sizes: list[float], all_uniform: bool = True) -> dict[str, Any]:
    """Named plans: uniform baselines and ILP plans at their sizes (see the module docstring)."""
    pairs = {(c.w_bits, c.a_bits) for cs in table.candidates for c in cs}
    a_max = max(a for _, a in pairs)
    out: dict[str, Any] = {}
    for w in sorted({w for w, _ in pairs}) if all_uniform else ():
        out[f"uniform W{w}A{a_max}"] = uniform_plan(table, w, a_max)[0]
    for t in targets:
        w, a = (int(v) for v in t.lower().lstrip("w").split("a"))
        if (w, a) not in pairs:
            continue
        u = out.setdefault(f"uniform W{w}A{a}", uniform_plan(table, w, a)[0])
        budget = {"size_bytes": u.totals["size_bytes"], **({"bops": u.totals["bops"]} if a < a_max else {})}
        out[f"mixed @ W{w}A{a} {'size+BOPs' if a < a_max else 'size'}"] = steps.stable_plan(allocate(table, budget))
    s2, s4 = (uniform_plan(table, w, a_max)[0].totals["size_bytes"] for w in (2, 4))
    for b in bit_sizes:
        out[f"mixed @ {b:g}-bit size"] = steps.stable_plan(allocate(table, {"size_bytes": s2 + (b - 2) / 2 * (s4 - s2)}))
    return out


def mean_loss(model: torch.nn.Module, batches: list[Any]) -> float:
    """Mean cross-entropy (nats) over ``(x, y)`` batches: it still ranks plans where accuracy ties."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            total += float(torch.nn.functional.cross_entropy(model(x), y, reduction="sum"))
            n += len(y)
    return total / n


def measure(model: torch.nn.Module, prep: steps.Prepared) -> dict[str, float]:
    return {"val": steps.metric(prep, model, prep.inputs.val), "test": steps.metric(prep, model, prep.inputs.test),
            "val_loss": mean_loss(model, prep.inputs.val), "test_loss": mean_loss(model, prep.inputs.test)}


def add_qat_args(ap: argparse.ArgumentParser) -> None:
    """The QAT flags every accuracy benchmark shares (defaults: the demo recipe's fine-tuning)."""
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=0.5, help="distillation weight; < 0: no distillation")
    ap.add_argument("--temperature", type=float, default=4.0)


def finetuned(prep: steps.Prepared, qmodel: torch.nn.Module, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """Accuracy and loss of a copy of ``qmodel`` after QAT with ``seed``."""
    q = copy.deepcopy(qmodel)
    distill = None if args.alpha < 0 else DistillConfig(prep.inputs.model, args.temperature, args.alpha)
    finetune_(q, prep.inputs.train, FinetuneConfig(epochs=args.epochs, lr=args.lr, seed=seed, batch_size=args.batch_size),
              distill)
    return measure(q, prep)


def run_split(name: str, split_seed: int, args: argparse.Namespace) -> dict[str, Any]:
    base = load_recipe(args.recipe)
    settings = dict(base.sensitivity.settings, **({"activations": False} if args.no_activations else {}))
    hw = dataclasses.replace(base.hardware, profile=args.profile or base.hardware.profile,
                             w_bits=tuple(sorted(args.w_bits, reverse=True)) if args.w_bits else base.hardware.w_bits,
                             a_bits=tuple(sorted(args.a_bits, reverse=True)))
    recipe = dataclasses.replace(base, model=name, name=f"bench-{name}", hardware=hw, budgets={},
                                 sensitivity=dataclasses.replace(base.sensitivity, settings=settings))
    prep = steps.prepare(recipe, inputs=split_inputs(recipe, split_seed))
    table = steps.table_step(prep, steps.sensitivity_step(prep, Progress(enabled=False)))
    qconfig = QuantizeConfig(weight_calibrator=args.weight_calibrator)
    rows = {}
    for label, plan in plans_for(table, args.targets, args.bit_sizes, not args.targets_only).items():
        q = quantize(prep.inputs.model, plan, prep.inputs.train[: recipe.data.calib_batches], profile=prep.profile,
                     config=qconfig)
        rows[label] = {"size_bytes": plan.totals["size_bytes"], "bops": plan.totals["bops"], "omega": plan.objective,
                       "bits": {n: b.key for n, b in plan.layers.items()}, "ptq": measure(q, prep),
                       "qat": [finetuned(prep, q, s, args) for s in args.seeds]}
    return {"float": measure(prep.inputs.model, prep), "plans": rows}


def stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarize(splits: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per plan: stats over every (split, seed) run, and over splits of the per-split seed means."""
    labels = list(next(iter(splits.values()))["plans"])
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        runs = [r["plans"][label] for r in splits.values()]
        s: dict[str, Any] = {"size_bytes": stats([r["size_bytes"] for r in runs]), "bops": stats([r["bops"] for r in runs])}
        for key in ("val", "test", "val_loss", "test_loss"):
            s[f"ptq_{key}"] = stats([r["ptq"][key] for r in runs])
            s[f"qat_{key}"] = stats([m[key] for r in runs for m in r["qat"]])
            s[f"qat_{key}_split_means"] = [statistics.fmean(m[key] for m in r["qat"]) for r in runs]
        out[label] = s
    return out


def paired(summary: dict[str, Any], splits: dict[int, Any], mixed: str, uniform: str) -> dict[str, Any]:
    """mixed - uniform per split (seed means; PTQ as is), mean +- standard error over splits."""
    out = {}
    for key in ("val", "test", "val_loss", "test_loss"):
        for stage in ("ptq", "qat"):
            if stage == "ptq":
                d = [r["plans"][mixed]["ptq"][key] - r["plans"][uniform]["ptq"][key] for r in splits.values()]
            else:
                d = [a - b for a, b in zip(summary[mixed][f"qat_{key}_split_means"], summary[uniform][f"qat_{key}_split_means"])]
            se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else 0.0
            out[f"{stage}_{key}"] = {"mean": statistics.fmean(d), "se": se, "per_split": d}
    return out


def comparisons(labels: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for label in labels:
        if label.startswith("mixed @ W"):
            pair = label.split()[2]
            if f"uniform {pair}" in labels:
                pairs.append((label, f"uniform {pair}"))
    return pairs


def print_summary(name: str, summary: dict[str, Any], diffs: dict[str, Any]) -> None:
    def pm(s: dict[str, float], scale: float = 100.0, fmt: str = "6.2f") -> str:
        return f"{scale * s['mean']:{fmt}} +- {scale * s['std']:{'4.2f' if scale == 100 else '6.4f'}}"

    print(f"\n{name}")
    print(f"{'plan':<26} {'kB':>6} {'PTQ val':>15} {'PTQ test':>15} {'QAT val':>15} {'QAT test':>15} {'QAT val loss':>17} {'QAT test loss':>17}")
    for label, s in sorted(summary.items(), key=lambda kv: kv[1]["size_bytes"]["mean"]):
        if label == "float":
            continue
        print(f"{label:<26} {s['size_bytes']['mean'] / 1e3:>6.2f} {pm(s['ptq_val'])} {pm(s['ptq_test'])} {pm(s['qat_val'])} "
              f"{pm(s['qat_test'])} {pm(s['qat_val_loss'], 1, '6.4f')} {pm(s['qat_test_loss'], 1, '6.4f')}")
    for key, d in diffs.items():
        cells = "  ".join(f"{k} {d[k]['mean'] * (1 if 'loss' in k else 100):+.4f} +- {d[k]['se'] * (1 if 'loss' in k else 100):.4f}"
                          for k in ("ptq_val", "ptq_test", "qat_val", "qat_test", "qat_val_loss", "qat_test_loss"))
        print(f"  {key}: {cells}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"])
    ap.add_argument("--splits", nargs="+", type=int, default=[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--profile", default=None, help="profile name (default: the recipe's)")
    ap.add_argument("--w-bits", nargs="+", type=int, default=None, help="candidate weight bits (default: the recipe's)")
    ap.add_argument("--a-bits", nargs="+", type=int, default=[8])
    ap.add_argument("--targets", nargs="+", default=["w4a8", "w3a8", "w4a4"])
    ap.add_argument("--bit-sizes", nargs="*", type=float, default=[2.5, 3.0, 3.5])
    ap.add_argument("--targets-only", action="store_true", help="no uniform plans besides the targets")
    ap.add_argument("--no-activations", action="store_true", help="no activation-Hessian term in omega")
    ap.add_argument("--weight-calibrator", default="minmax")
    add_qat_args(ap)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench_e2e")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"machine": "2-core x86-64 CPU, no GPU, torch " + torch.__version__, "args": vars(args), "models": {}}
    t0 = time.perf_counter()
    for name in args.models:
        splits = {k: run_split(name, k, args) for k in args.splits}
        summary = summarize(splits)
        diffs = {f"{m} - {u}": paired(summary, splits, m, u) for m, u in comparisons(list(summary))}
        floats = {k: stats([r["float"][k] for r in splits.values()]) for k in ("val", "test", "val_loss", "test_loss")}
        out["models"][name] = {"float": floats, "summary": summary, "paired": diffs, "splits": splits}
        print_summary(name, summary, diffs)
        print(f"  float: val {100 * floats['val']['mean']:.2f}  test {100 * floats['test']['mean']:.2f}", flush=True)
    out["wall_s"] = time.perf_counter() - t0
    path = ROOT / "benchmarks" / "results" / f"{args.out}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path} ({out['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
