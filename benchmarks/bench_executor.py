"""Images per second: float model vs fake-quant simulation vs integer-only executor.

    python benchmarks/bench_executor.py [--device cpu|cuda] [--batch 256] [--repeats 20] [--threads N]

For each demo model (trained on digits, cached) and each plan (W8A8, W4A4), times one forward
pass over a batch of ``--batch`` test images (median of ``--repeats``), after a warm-up. The
integer executor is timed end to end (input quantization + integer program) with each GEMM
backend: "int32" (int8 values widened to int32, ``addmm``), "int_mm" (``torch._int_mm``) and,
when numba is installed, "numba" (int16 ``vpmaddwd`` GEMM + channels-last depthwise kernel).
Prints a table and writes benchmarks/results/bench_executor[_<device>].json.
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

from mpsearch.core import BitPlan
from mpsearch.demo import batches, load_demo
from mpsearch.execution import to_integer
from mpsearch.execution.kernels import resolve_gemm
from mpsearch.quant import quantizable_layer_names, quantize

MODELS = ("small_cnn", "resnet_tiny", "mobilenet_tiny")
PLANS = {"w8a8": (8, 8), "w4a4": (4, 4)}


def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after 3 warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in MODELS:
        model, splits = load_demo(name)
        x_test = splits.test.tensors[0]
        x = x_test.repeat(-(-args.batch // len(x_test)), 1, 1, 1)[: args.batch].to(device)
        for plan_key, (w, a) in PLANS.items():
            q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), w, a), batches(splits.train, 256))
            imodel = to_integer(q, x[:2].cpu())
            fmodel = model.to(device).eval()
            q = q.to(device).eval()
            row: dict[str, Any] = {"model": name, "plan": plan_key, "batch": args.batch}
            with torch.no_grad():
                row["float_img_s"] = args.batch / _time(lambda: fmodel(x), device, args.repeats)
                row["fake_quant_img_s"] = args.batch / _time(lambda: q(x), device, args.repeats)
                for gemm in ("int32", "int_mm", "numba"):
                    if resolve_gemm(gemm, device) != gemm:
                        continue  # numba not installed, or not a CPU
                    imodel.to(device, gemm=gemm)
                    row[f"integer_{gemm}_img_s"] = args.batch / _time(lambda: imodel.logits_int(x), device,
                                                                     args.repeats)
            imodel.to(device, gemm="auto")
            row["integer_auto_gemm"] = resolve_gemm("auto", device)
            row["integer_vs_fake"] = row[f"integer_{row['integer_auto_gemm']}_img_s"] / row["fake_quant_img_s"]
            rows.append(row)
            print(f"{name:<15} {plan_key}  float {row['float_img_s']:>9,.0f}  fake-quant {row['fake_quant_img_s']:>9,.0f}"
                  f"  integer(int32) {row['integer_int32_img_s']:>9,.0f}  integer(_int_mm) "
                  f"{row['integer_int_mm_img_s']:>9,.0f}  integer(numba) "
                  f"{row.get('integer_numba_img_s', float('nan')):>9,.0f}"
                  f"  auto={row['integer_auto_gemm']}  int/fake {row['integer_vs_fake']:.2f}x", flush=True)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    out = {"benchmark": "bench_executor", "device": str(device), "machine": machine, "torch": torch.__version__,
           "unit": "images per second (median of repeats, one batch)", "rows": rows}
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    path = Path(__file__).parent / "results" / f"bench_executor{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
