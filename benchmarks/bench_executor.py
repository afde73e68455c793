"""Images per second: float model vs fake-quant simulation vs integer-only executor.

    python benchmarks/bench_executor.py [--device cpu|cuda] [--batch 256] [--repeats 20] [--threads N]
                                        [--gemms int32,int_mm,numba]

For each demo model (trained on digits, cached) and each plan (W8A8, W4A4), times one forward
pass over a batch of ``--batch`` test images (median of ``--repeats``), after a warm-up, with the
float, fake-quant and integer runs of a row interleaved (so load from other processes hits them
alike). The integer executor is timed end to end (input quantization + integer program) with each
GEMM backend: "int32" (int8 values widened to int32, ``addmm``), "int_mm" (``torch._int_mm``) and,
when numba is installed, "numba" (the register-blocked ``vpmaddwd`` direct conv with the requant
fused into its epilogue, the channels-last depthwise kernel, the one-pass requant).
Prints a table and writes benchmarks/results/bench_executor[_<device>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

import torch

from mpsearch.core import BitPlan
from mpsearch.demo import batches, load_demo
from mpsearch.execution import to_integer
from mpsearch.execution.kernels import resolve_gemm
from mpsearch.quant import quantizable_layer_names, quantize

from _timing import print_fastest_steps, time_interleaved  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

MODELS = ("small_cnn", "resnet_tiny", "mobilenet_tiny")
PLANS = {"w8a8": (8, 8), "w4a4": (4, 4)}


def _sync(device: torch.device):
    """What waits for ``device`` around a timed call (nothing on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _print_steps(name: str, device: torch.device, batch: int, repeats: int) -> None:
    """Per kernel call of the W8A8 program of ``name``: ops fused in it, output shape, fastest ms."""
    model, splits = load_demo(name)
    x_test = splits.test.tensors[0]
    x = x_test.repeat(-(-batch // len(x_test)), 1, 1, 1)[:batch].to(device)
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), batches(splits.train, 256))
    imodel = to_integer(q, x[:2].cpu()).to(device)
    print_fastest_steps(imodel, x, repeats, _sync(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--gemms", default="int32,int_mm,numba",
                        help="integer GEMM backends to time, comma-separated (those not available are skipped)")
    parser.add_argument("--steps", default="", help="a demo model: print the time of each kernel call of its "
                        "W8A8 program (auto backend, fastest of --repeats) instead of the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.steps:
        _print_steps(args.steps, device, args.batch, args.repeats)
        return
    rows = []
    for name in MODELS:
        model, splits = load_demo(name)
        x_test = splits.test.tensors[0]
        x = x_test.repeat(-(-args.batch // len(x_test)), 1, 1, 1)[: args.batch].to(device)
        for plan_key, (w, a) in PLANS.items():
            q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), w, a), batches(splits.train, 256))
            fmodel = model.to(device).eval()
            q = q.to(device).eval()
            row: dict[str, Any] = {"model": name, "plan": plan_key, "batch": args.batch}
            gemms = [g for g in args.gemms.split(",") if resolve_gemm(g, device) == g]  # numba: CPU only
            if resolve_gemm("auto", device) not in gemms:
                gemms.append(resolve_gemm("auto", device))
            imodels = {g: to_integer(q, x[:2].cpu()).to(device, gemm=g) for g in gemms}
            fns: dict[str, Callable[[], Any]] = {"float": lambda: fmodel(x), "fake_quant": lambda: q(x)}
            for g, im in imodels.items():
                fns[f"integer_{g}"] = lambda im=im: im.logits_int(x)
            with torch.no_grad():
                seconds = time_interleaved(fns, args.repeats, _sync(device))
            row["float_img_s"] = args.batch / seconds["float"]
            row["fake_quant_img_s"] = args.batch / seconds["fake_quant"]
            for g in gemms:
                row[f"integer_{g}_img_s"] = args.batch / seconds[f"integer_{g}"]
            row["integer_auto_gemm"] = resolve_gemm("auto", device)
            row["integer_vs_fake"] = row[f"integer_{row['integer_auto_gemm']}_img_s"] / row["fake_quant_img_s"]
            rows.append(row)
            print(f"{name:<15} {plan_key}  float {row['float_img_s']:>9,.0f}  fake-quant {row['fake_quant_img_s']:>9,.0f}"
                  f"  integer(int32) {row.get('integer_int32_img_s', float('nan')):>9,.0f}  integer(_int_mm) "
                  f"{row.get('integer_int_mm_img_s', float('nan')):>9,.0f}  integer(numba) "
                  f"{row.get('integer_numba_img_s', float('nan')):>9,.0f}"
                  f"  auto={row['integer_auto_gemm']}  int/fake {row['integer_vs_fake']:.2f}x", flush=True)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda"
               else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    out = {"benchmark": "bench_executor", "device": str(device), "machine": machine, "torch": torch.__version__,
           "unit": "images per second (median of repeats, one batch; all variants of a row interleaved)",
           "load_average_1_5_15_min": list(os.getloadavg()), "rows": rows}
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    path = Path(__file__).parent / "results" / f"bench_executor{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
