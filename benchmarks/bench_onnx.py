"""ONNX Runtime latency of exported QDQ models vs our integer executor vs torch.ao fbgemm, same plans.

    nice -n 5 python benchmarks/bench_onnx.py [--repeats 30] [--models resnet_tiny,mobilenet_tiny,small_cnn]

For each demo CNN and plan (W8A8, and a mixed plan: first/last W8A8, the rest cycling W4A8, W2A8,
W4A4, W8A4) the fake-quant model is exported with ``export_onnx`` (opset 21, int4 for 2..4 bits)
and timed in ONNX Runtime (CPUExecutionProvider, 1 intra-op thread) with its QDQ fusions on (the
speed a user deploying it gets) and off (the QDQ graph as written), against our integer program
(``IntegerModel.logits_int``, the fastest backend) and, for W8A8 (torch.ao runs 8-bit only), torch.ao's
fbgemm static int8 model of the same quantization (``execution.reference.torch_int8_reference``).
Batch 1 and 256; median of interleaved runs, ratios taken within one run. Also the demo LM
gpt_tiny at W8A8 and w4a16g128 (ONNX Runtime vs our program; batch 1 x 128 tokens).
Writes benchmarks/results/bench_onnx.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from mpsearch.core import BitPlan, LayerBits
from mpsearch.demo import batches, load_demo, load_demo_lm_run, text_batches
from mpsearch.execution import IntegerConfig, to_integer
from mpsearch.execution.export import OnnxRunner, export_onnx, validate_onnx
from mpsearch.execution.reference import torch_ao_available, torch_int8_reference
from mpsearch.quant import quantizable_layer_names, quantize

from _timing import time_interleaved  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def mixed_plan(names: list[str]) -> BitPlan:
    cycle = [LayerBits(4, 8), LayerBits(2, 8), LayerBits(4, 4), LayerBits(8, 4)]
    layers = {n: cycle[i % len(cycle)] for i, n in enumerate(names)}
    layers[names[0]] = layers[names[-1]] = LayerBits(8, 8)
    return BitPlan(layers=layers, solver="bench")


def _ort(path: Path, x: torch.Tensor, fusion: bool) -> Callable[[], Any]:
    runner = OnnxRunner(path, threads=1, qdq_fusion=fusion)
    feeds = runner.feeds(x)
    return lambda: runner.run_numpy(feeds)


def bench_cnn(name: str, plan_key: str, batch: int, repeats: int, tmp: Path) -> dict[str, Any]:
    model, splits = load_demo(name)
    names = quantizable_layer_names(model)
    plan = BitPlan.uniform(names, 8, 8) if plan_key == "w8a8" else mixed_plan(names)
    q = quantize(model, plan, batches(splits.train, 256))
    path = export_onnx(q, splits.example_inputs(2), tmp / f"{name}_{plan_key}.onnx", plan=plan)
    x_test = splits.test.tensors[0]
    x = x_test.repeat(-(-batch // len(x_test)), 1, 1, 1)[:batch]
    imodel = to_integer(q, splits.example_inputs(2))
    fns: dict[str, Callable[[], Any]] = {"ort_fused": _ort(path, x, True), "ort_unfused": _ort(path, x, False),
                                         "executor": lambda: imodel.logits_int(x)}
    if plan_key == "w8a8" and torch_ao_available() is not None and "fbgemm" in torch.backends.quantized.supported_engines:
        ref = torch_int8_reference(q, imodel.output.scale, 0, list(batches(splits.train, 256))[:2])
        fns["fbgemm"] = lambda: ref(x)
    with torch.no_grad():
        sec = time_interleaved(fns, repeats)
    agree = {f: validate_onnx(OnnxRunner(path, qdq_fusion=f), q, batches(splits.test, 512)).top1_agreement_fake
             for f in (True, False)}
    row = {"model": name, "plan": plan_key, "batch": batch, **{f"{k}_ms": v * 1e3 for k, v in sec.items()},
           "agreement_fused": agree[True], "agreement_unfused": agree[False]}
    base = sec["executor"]
    row.update({f"{k}_vs_executor": v / base for k, v in sec.items() if k != "executor"})
    if "fbgemm" in sec:
        row["ort_fused_vs_fbgemm"] = sec["ort_fused"] / sec["fbgemm"]
    return row


def bench_lm(key: str, repeats: int, tmp: Path) -> dict[str, Any]:
    run = load_demo_lm_run("gpt_tiny")
    names = quantizable_layer_names(run.model)
    plan = (BitPlan.uniform(names, 8, 8) if key == "w8a8"
            else BitPlan(layers={n: LayerBits(4, 16, group_size=128) for n in names}))
    calib = list(text_batches(run.splits.train, context=128, batch_size=16))[:2]
    q = quantize(run.model, plan, calib)
    path = export_onnx(q, calib[0][0][:2], tmp / f"gpt_{key}.onnx", plan=plan)
    x = calib[0][0][:1]
    imodel = to_integer(q, calib[0][0][:2], IntegerConfig(integer_only=False))
    fns = {"ort_fused": _ort(path, x, True), "ort_unfused": _ort(path, x, False),
           "executor": lambda: imodel.logits_int(x)}
    with torch.no_grad():
        sec = time_interleaved(fns, repeats)
    test = list(text_batches(run.splits.test, context=128, batch_size=16))[:4]
    agree = validate_onnx(OnnxRunner(path, qdq_fusion=True), q, test).top1_agreement_fake
    row = {"model": "gpt_tiny", "plan": key, "batch": 1, **{f"{k}_ms": v * 1e3 for k, v in sec.items()},
           "agreement_fused": agree}
    row.update({f"{k}_vs_executor": v / sec["executor"] for k, v in sec.items() if k != "executor"})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--models", default="small_cnn,resnet_tiny,mobilenet_tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in args.models.split(","):
            for plan_key in ("w8a8", "mixed"):
                for batch in (1, 256):
                    row = bench_cnn(name, plan_key, batch, args.repeats, tmp)
                    rows.append(row)
                    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
                          flush=True)
        for key in ("w8a8", "w4a16g128"):
            row = bench_lm(key, args.repeats, tmp)
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    import onnxruntime

    out = {"benchmark": "bench_onnx", "machine": f"{platform.machine()} CPU, 1 thread", "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "loadavg": os.getloadavg(), "rows": rows}
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/bench_onnx.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
