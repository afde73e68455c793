"""Weight-quantization methods x bits on the demo CNNs and the demo LM, and the data-free pipeline.

    python benchmarks/bench_methods.py [--part cnn lm datafree datafree_recipe] [--seeds 0 1 2]

Part "cnn": every registered method at 2/3/4 weight bits (per output channel, symmetric), applied
to every conv/linear layer of the BN-folded float model, activations float (weight-only PTQ:
the method is the only change). Models: narrow_cnn seeds 0-2 (cached), resnet_tiny and
mobilenet_tiny (one cached model each). Data-needing methods read 256 calibration examples of
the train split, captured once from the float model. A layer a method cannot take (k-means with
more clusters than a depthwise row's 9 weights, GPTQ on a grouped conv) keeps round-to-nearest
and is counted in ``fallback_layers``. Metric: test accuracy (359 digits: 1 example = 0.28 points).

Part "lm": the same on gpt_tiny seeds 0-2, its 13 Linear layers (embedding stays float), at 3
and 4 bits, metric test bits per byte (256 windows of 128 bytes), 32 calibration windows.

Part "datafree": resnet_tiny and mobilenet_tiny, uniform W8A8 and W4A8 plans through
``mps.quantize`` calibrated on 4 x 64 real train images vs 256 images distilled from the BN
statistics (``distill_data``, 200 steps; distillation seeds 0-2, the model is the one cached
model). Part "datafree_recipe": the same comparison through a recipe's data path (``steps.prepare`` of
a recipe with ``data.calibration: real`` / ``distilled``, ``steps.quantize_plan``; the recipe seed is
the distillation seed). Writes benchmarks/results/methods.json (``--out``: another file, merged).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpsearch import BitPlan, quantize
from mpsearch.demo import batches, bits_per_byte, evaluate, load_demo, load_demo_lm_run, text_batches
from mpsearch.demo.narrow import load_narrow_run
from mpsearch.errors import ConfigError
from mpsearch.model import fold_batchnorm
from mpsearch.quant import quantizable_layer_names
from mpsearch.quant.distill import DistillConfig, distill_data
from mpsearch.quant.methods import METHODS, capture_inputs, get_method, make_method
from mpsearch.quant.spec import QuantSpec

OUT = Path(__file__).parent / "results" / "methods.json"
FAST = {"adaround": {"n_iter": 200}}  # AdaRound's steps per layer, kept short for 2 shared cores


def _method(name: str, fast: bool = True) -> Any:
    return make_method(name, **(FAST.get(name, {}) if fast else {}))


def apply_method(model: nn.Module, name: str, bits: int, inputs: dict[str, torch.Tensor],
                 fast: bool = True) -> dict[str, Any]:
    """A copy of ``model`` with every layer in ``inputs`` quantized by method ``name`` (weights only;
    ``fast``: :data:`FAST`'s shorter settings, else the method's defaults)."""
    q = copy.deepcopy(model)
    mods = dict(q.named_modules())
    method, rtn = _method(name, fast), get_method("rtn")()
    spec = QuantSpec(bits=bits, symmetric=True, signed=True, granularity="per_channel")
    fallback, run_s = 0, 0.0
    for lname, x in inputs.items():
        layer = mods[lname]
        try:
            res = method.quantize_weight(layer.weight, spec, calib_inputs=x, layer=layer, name=lname)
        except ConfigError:
            res, fallback = rtn.quantize_weight(layer.weight, spec, layer=layer, name=lname), fallback + 1
        run_s += res.run_time_s
        with torch.no_grad():
            layer.weight.copy_(res.weight_dq)
            if res.bias is not None:
                if layer.bias is None:
                    layer.bias = nn.Parameter(res.bias)
                else:
                    layer.bias.copy_(res.bias)
    return {"model": q, "fallback_layers": fallback, "run_time_s": run_s}


def cnn_rows(seeds: list[int]) -> list[dict[str, Any]]:
    models = [("narrow_cnn", s, load_narrow_run(seed=s)) for s in seeds]
    rows = []
    for name in ("resnet_tiny", "mobilenet_tiny"):
        m, splits = load_demo(name)
        models.append((name, 0, type("Run", (), {"model": m, "splits": splits})))
    for name, seed, run in models:
        ex = run.splits.example_inputs(2)
        model = fold_batchnorm(run.model, example_inputs=ex).eval()
        test = list(batches(run.splits.test, 512))
        calib = list(batches(run.splits.train, 64, shuffle=True, seed=seed))[:4]
        layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        inputs = capture_inputs(model, layers, calib)
        fp32 = evaluate(model, test)
        for bits in (2, 3, 4):
            for method in METHODS:
                out = apply_method(model, method, bits, inputs)
                rows.append({"model": name, "seed": seed, "bits": bits, "method": method, "fp32": fp32,
                             "accuracy": evaluate(out["model"], test), "fallback_layers": out["fallback_layers"],
                             "run_time_s": out["run_time_s"]})
                print(f"{name} s{seed} w{bits} {method:16s} {100 * rows[-1]['accuracy']:6.2f} "
                      f"(fp32 {100 * fp32:.2f}) {out['run_time_s']:.2f}s fb={out['fallback_layers']}", flush=True)
    return rows


def lm_rows(seeds: list[int], skip: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """gpt_tiny rows; ``only``: just these methods, with their default settings (AdaRound: 500 Gram steps)."""
    rows = []
    for seed in seeds:
        run = load_demo_lm_run("gpt_tiny", seed=seed)
        model, ctx = run.model.eval(), run.model.config.context
        test = list(text_batches(run.splits.test[: 256 * ctx + 1], ctx, 64))
        calib = list(text_batches(run.splits.train, ctx, 8, n_batches=4, seed=1000 + seed))
        layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        inputs = capture_inputs(model, layers, calib)
        fp32 = bits_per_byte(model, test)
        for bits in (3, 4):
            for method in [m for m in METHODS if m not in skip and (not only or m in only)]:
                out = apply_method(model, method, bits, inputs, fast=not only)
                bpb = bits_per_byte(out["model"], test)
                rows.append({"model": "gpt_tiny", "seed": seed, "bits": bits, "method": method, "fp32": fp32,
                             "bits_per_byte": bpb, "settings": "defaults" if only else "FAST",
                             "fallback_layers": out["fallback_layers"],
                             "run_time_s": out["run_time_s"]})
                print(f"gpt_tiny s{seed} w{bits} {method:16s} {bpb:.4f} (fp32 {fp32:.4f}) {out['run_time_s']:.2f}s",
                      flush=True)
    return rows


def datafree_rows(seeds: list[int]) -> list[dict[str, Any]]:
    rows = []
    for name in ("resnet_tiny", "mobilenet_tiny"):
        model, splits = load_demo(name)
        model.eval()
        test = list(batches(splits.test, 512))
        real = list(batches(splits.train, 64, shuffle=True, seed=0))[:4]
        names = quantizable_layer_names(model)
        shape = tuple(splits.example_inputs(1)[0].shape[1:])
        for seed in seeds:
            start = time.perf_counter()
            x = distill_data(model, 256, shape, DistillConfig(n_iter=200, batch_size=64, seed=seed))
            distill_s = time.perf_counter() - start
            fake = [x[i:i + 64] for i in range(0, 256, 64)]
            noise = [torch.randn(x[i:i + 64].shape, generator=torch.Generator().manual_seed(seed))
                     for i in range(0, 256, 64)]  # control: calibration on N(0, 1) noise
            for w_bits, a_bits in ((8, 8), (4, 8), (4, 4)):
                plan = BitPlan.uniform(names, w_bits, a_bits)
                acc = {k: evaluate(quantize(model, plan, data), test)
                       for k, data in (("real", real), ("distilled", fake), ("noise", noise))}
                rows.append({"model": name, "seed": seed, "setting": f"W{w_bits}A{a_bits}",
                             "fp32": evaluate(model, test), **acc, "distill_s": distill_s})
                print(f"{name} s{seed} W{w_bits}A{a_bits} real {100 * acc['real']:.2f} distilled "
                      f"{100 * acc['distilled']:.2f} noise {100 * acc['noise']:.2f} ({distill_s:.1f}s)", flush=True)
    return rows


def datafree_recipe_rows(seeds: list[int], models: tuple[str, ...] = ("resnet_tiny", "mobilenet_tiny"),
                         ) -> list[dict[str, Any]]:
    """The data-free pipeline as a recipe runs it: ``steps.prepare`` of a recipe with ``data.calibration``
    real / distilled (``load_inputs`` -> ``distilled_inputs``: 4 x 64 ZeroQ images, 200 steps, seed = the
    recipe's), then ``steps.quantize_plan`` of a uniform plan (activation ranges from the calibration
    batches) and the test metric (real test split, 359 images)."""
    from mpsearch.pipeline import steps
    from mpsearch.recipe import recipe_from_dict

    rows = []
    for name in models:
        for seed in seeds:
            acc: dict[str, dict[str, float]] = {}
            for source in ("real", "distilled"):
                t0 = time.perf_counter()
                prep = steps.prepare(recipe_from_dict({
                    "version": 1, "name": f"datafree-{name}", "seed": seed, "model": name,
                    "data": {"source": "digits", "batch_size": 64, "calib_batches": 4, "calibration": source},
                    "sensitivity": {"n_batches": 1},
                    "hardware": {"profile": "x86-2core-int", "w_bits": [4, 8], "a_bits": [8]},
                    "budgets": {"size_bytes": "uniform:w8a8"}, "allocation": {"pareto": None}}))
                prep_s = time.perf_counter() - t0
                names = quantizable_layer_names(prep.inputs.model)
                acc[source] = {f"W{w}A8": steps.metric(prep, steps.quantize_plan(prep, BitPlan.uniform(names, w, 8)),
                                                       prep.inputs.test) for w in (8, 4)}
                acc[source]["prepare_s"] = prep_s
            fp32 = steps.metric(prep, prep.inputs.model, prep.inputs.test)
            for setting in ("W8A8", "W4A8"):
                rows.append({"model": name, "seed": seed, "setting": setting, "fp32": fp32, "real": acc["real"][setting],
                             "distilled": acc["distilled"][setting], "distill_prepare_s": acc["distilled"]["prepare_s"]})
                print(f"{name} s{seed} {setting} recipe: real {100 * acc['real'][setting]:.2f} distilled "
                      f"{100 * acc['distilled'][setting]:.2f} (fp32 {100 * fp32:.2f})", flush=True)
    return rows


def _gptq_plan(model: nn.Module, example: tuple[Any, ...], w_bits: int, a_bits: int, group_size: int | None = None,
               ) -> BitPlan:
    """Every layer at ``w_bits`` with GPTQ where it runs (else round-to-nearest)."""
    from mpsearch import discover
    from mpsearch.core.plan import LayerBits
    from mpsearch.hardware.methods import method_runs_on

    layers = discover(model, example)
    tied = {n for lay in layers for n in lay.shares_weight_with} | {lay.name for lay in layers if lay.shares_weight_with}
    return BitPlan(layers={lay.name: LayerBits(w_bits, a_bits, group_size, method="gptq" if method_runs_on("gptq", lay)
                                               and lay.name not in tied else "rtn") for lay in layers},
                   solver="uniform", status="given")


def sequential_rows(seeds: list[int]) -> list[dict[str, Any]]:
    """GPTQ on every layer: float inputs (each layer on the float model's inputs) against sequential
    (each layer on the inputs of the model whose earlier layers are already quantized)."""
    from mpsearch.quant import QuantizeConfig

    rows = []
    modes = {m: QuantizeConfig(method_inputs=m) for m in ("float", "quantized")}
    for seed in seeds:
        cnns = [("narrow_cnn", load_narrow_run(seed=seed).model, load_narrow_run(seed=seed).splits)]
        cnns += [(n, *load_demo(n)) for n in ("resnet_tiny", "mobilenet_tiny")]
        for name, model, splits in cnns:
            model.eval()
            test = list(batches(splits.test, 512))
            calib = list(batches(splits.train, 64, shuffle=True, seed=seed))[:4]
            for w in (2, 3):
                plan = _gptq_plan(model, splits.example_inputs(2), w, 8)
                acc = {}
                for m, cfg in modes.items():
                    t0 = time.perf_counter()
                    q = quantize(model, plan, calib, config=cfg)
                    acc[m + "_s"] = time.perf_counter() - t0
                    acc[m] = evaluate(q, test)
                rows.append({"model": name, "seed": seed, "setting": f"W{w}A8 gptq", **acc})
                print(f"{name} s{seed} W{w}A8 gptq float {100 * acc['float']:.2f} sequential "
                      f"{100 * acc['quantized']:.2f} ({acc['float_s']:.1f}s / {acc['quantized_s']:.1f}s)", flush=True)
        run = load_demo_lm_run("gpt_tiny", seed=seed)
        model, ctx = run.model.eval(), run.model.config.context
        test = list(text_batches(run.splits.test[: 256 * ctx + 1], ctx, 64))
        calib = list(text_batches(run.splits.train, ctx, 8, n_batches=4, seed=1000 + seed))
        for w in (3, 4):
            plan = _gptq_plan(model, run.splits.example_inputs(2, ctx), w, 16, 128)
            acc = {}
            for m, cfg in modes.items():
                t0 = time.perf_counter()
                q = quantize(model, plan, calib, config=cfg)
                acc[m + "_s"] = time.perf_counter() - t0
                acc[m] = bits_per_byte(q, test)
            rows.append({"model": "gpt_tiny", "seed": seed, "setting": f"W{w}A16g128 gptq", **acc})
            print(f"gpt_tiny s{seed} W{w} gptq float {acc['float']:.4f} sequential {acc['quantized']:.4f} bits/byte "
                  f"({acc['float_s']:.1f}s / {acc['quantized_s']:.1f}s)", flush=True)
    return rows


def adaround_rows(seeds: list[int]) -> list[dict[str, Any]]:
    """AdaRound per layer (3 bits, per channel): run time and output MSE of the paper's minibatch
    objective (500 steps) against the exact Gram objective at 500 / 200 / 100 steps, and RTN.
    Layers: resnet_tiny's convs and gpt_tiny's linears, inputs captured from the float model."""
    rows = []
    spec = QuantSpec(bits=3, symmetric=True, signed=True, granularity="per_channel")
    variants = {"minibatch500": {"objective": "minibatch", "n_iter": 500}, "gram500": {"n_iter": 500},
                "gram200": {"n_iter": 200}, "gram100": {"n_iter": 100}}
    for seed in seeds:
        model, splits = load_demo("resnet_tiny")
        model = fold_batchnorm(model.eval())
        calib = list(batches(splits.train, 64, shuffle=True, seed=seed))[:4]
        run = load_demo_lm_run("gpt_tiny", seed=seed)
        lm, ctx = run.model.eval(), run.model.config.context
        lm_calib = list(text_batches(run.splits.train, ctx, 8, n_batches=4, seed=1000 + seed))
        for mname, m, data in (("resnet_tiny", model, calib), ("gpt_tiny", lm, lm_calib)):
            names = [n for n, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))
                     and getattr(mod, "groups", 1) == 1]
            inputs = capture_inputs(m, names, data, max_examples=256)
            mods = dict(m.named_modules())
            for n in names:
                layer, x = mods[n], inputs[n]
                with torch.no_grad():
                    ref = _layer_out(layer, x, layer.weight)
                    rtn = get_method("rtn")().quantize_weight(layer.weight, spec)
                    row = {"model": mname, "seed": seed, "layer": n,
                           "rtn_mse": float((_layer_out(layer, x, rtn.weight_dq) - ref).pow(2).mean())}
                for k, opts in variants.items():
                    res = make_method("adaround", seed=seed, **opts).quantize_weight(layer.weight, spec, calib_inputs=x,
                                                                                   layer=layer, name=n)
                    with torch.no_grad():
                        row[k + "_mse"] = float((_layer_out(layer, x, res.weight_dq) - ref).pow(2).mean())
                    row[k + "_s"] = res.run_time_s
                rows.append(row)
                print(f"{mname} s{seed} {n}: rtn {row['rtn_mse']:.3e} " + " ".join(
                    f"{k} {row[k + '_mse']:.3e}/{row[k + '_s']:.2f}s" for k in variants), flush=True)
    return rows


def _layer_out(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, w)
    return nn.functional.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def summary(rows: list[dict[str, Any]], key: str) -> dict[str, str]:
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(f"{r['model']} w{r['bits']} {r['method']}", []).append(r[key])
    return {k: f"{statistics.mean(v):.4f} +- {statistics.stdev(v) if len(v) > 1 else 0.0:.4f} (n={len(v)})"
            for k, v in groups.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", nargs="+", default=["cnn", "lm", "datafree"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--skip", nargs="*", default=[], help="methods left out (e.g. adaround: slow on 2 cores)")
    ap.add_argument("--models", nargs="+", default=["resnet_tiny", "mobilenet_tiny"], help="part datafree_recipe")
    ap.add_argument("--only", nargs="*", default=[], help="part lm: run only these methods (default settings) and "
                    "merge their rows into the file's, replacing that method's earlier rows")
    args = ap.parse_args()
    out = args.out
    torch.set_num_threads(1)
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result["machine"] = platform.processor() or platform.machine()
    if "cnn" in args.part:
        result["cnn"] = cnn_rows(args.seeds)
        result["cnn_summary"] = summary(result["cnn"], "accuracy")
    if "adaround" in args.part:
        result["adaround"] = adaround_rows(args.seeds)
    if "sequential" in args.part:
        result["sequential"] = sequential_rows(args.seeds)
    if "lm" in args.part:
        new = lm_rows(args.seeds, tuple(args.skip), tuple(args.only))
        keep = [r for r in result.get("lm", []) if args.only and r["method"] not in args.only]
        result["lm"] = keep + new
        result["lm_summary"] = summary(result["lm"], "bits_per_byte")
    if "datafree" in args.part:
        result["datafree"] = datafree_rows(args.seeds)
    if "datafree_recipe" in args.part:
        new = datafree_recipe_rows(args.seeds, tuple(args.models))
        result["datafree_recipe"] = [r for r in result.get("datafree_recipe", [])
                                     if (r["model"], r["seed"]) not in {(n["model"], n["seed"]) for n in new}] + new
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
