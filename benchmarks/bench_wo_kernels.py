"""Torch's CPU weight-only kernels against fp32 ``F.linear``: int4 (group 128) and int8 (per channel).

    python benchmarks/bench_wo_kernels.py [--threads 1] [--repeats 30]

For a 1024x1024 and a 4096x4096 layer at batch 1 and batch 64, times (median of ``--repeats``
calls, interleaved, after a warm-up):
  * fp32 ``F.linear`` (the baseline of the ratio);
  * ``aten._weight_int4pack_mm_for_cpu`` on the weight packed by
    ``aten._convert_weight_to_int4pack_for_cpu``, with bf16 activations (its fast path; fp32
    activations are ~20x slower, DESIGN.md), one bf16 scale and zero per group of 128;
  * ``aten._weight_int8pack_mm`` with bf16 activations and per-channel scales.
Each kernel's output is first checked against the same dequantized weight in float64 (the max
relative error is printed). Prints ratios fp32 time / kernel time (> 1: the kernel is faster) and
writes benchmarks/results/wo_kernels.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

GROUP = 128


def int4_pack(w: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit per group of ``group`` input features: (packed, scales_and_zeros, dequantized).

    The kernel dequantizes ``(q - 8) * scale + zero`` with codes q in 0..15, so ``zero = min + 8 scale``.
    """
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo).clamp(min=1e-8) / 15).to(torch.bfloat16).float()
    zero = (lo + 8 * scale).to(torch.bfloat16).float()
    q = torch.clamp(torch.round((g - lo[..., None]) / scale[..., None]), 0, 15).to(torch.int32)
    deq = ((q - 8) * scale[..., None] + zero[..., None]).reshape(n, k)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.reshape(n, k), 1)
    sz = torch.stack([scale.t(), zero.t()], dim=-1).to(torch.bfloat16).contiguous()  # [k/group, n, 2]
    return packed, sz, deq


def int8_pack(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric 8-bit per output channel: (int8 weight, scales, dequantized)."""
    scale = (w.abs().amax(1) / 127).clamp(min=1e-8).to(torch.bfloat16).float()
    q = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
    return q, scale.to(torch.bfloat16), q.float() * scale[:, None]


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def bench(size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    w = torch.randn(size, size) / size ** 0.5
    x = torch.randn(batch, size)
    xb = x.to(torch.bfloat16)
    p4, sz4, deq4 = int4_pack(w)
    q8, s8, deq8 = int8_pack(w)
    run = {
        "fp32 F.linear": lambda: F.linear(x, w),
        "int4 g128 (bf16 act)": lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, p4, GROUP, sz4),
        "int8 per-channel (bf16 act)": lambda: torch.ops.aten._weight_int8pack_mm(xb, q8, s8),
    }
    ref = {"int4 g128 (bf16 act)": deq4, "int8 per-channel (bf16 act)": deq8}
    err = {}
    for name, d in ref.items():
        want = xb.double() @ d.double().t()
        got = run[name]().double()
        err[name] = float((got - want).abs().max() / want.abs().max())
    for fn in run.values():  # warm-up
        fn()
    ms = {name: [] for name in run}
    for _ in range(3):  # interleave so load from other processes hits every kernel alike
        for name, fn in run.items():
            ms[name].append(_median_ms(fn, repeats))
    med = {k: statistics.median(v) for k, v in ms.items()}
    base = med["fp32 F.linear"]
    return {"size": size, "batch": batch, "ms": med, "speedup_vs_fp32": {k: base / v for k, v in med.items()},
            "max_rel_err_vs_dequantized": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "wo_kernels.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(s, b, args.repeats) for s in (1024, 4096) for b in (1, 64)]
    print(f"{'layer':<11} {'batch':>5} " + " ".join(f"{k:>28}" for k in rows[0]["ms"]))
    for r in rows:
        cells = " ".join(f"{r['ms'][k]:>10.3f} ms ({r['speedup_vs_fp32'][k]:5.2f}x)".rjust(28) for k in r["ms"])
        print(f"{r['size']}x{r['size']:<6} {r['batch']:>5} {cells}")
    print("max relative error vs the dequantized weight: " + ", ".join(
        f"{k} {max(r['max_rel_err_vs_dequantized'][k] for r in rows):.1e}" for k in rows[0]["max_rel_err_vs_dequantized"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                               "load_avg": os.getloadavg(), "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"wrote {out} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
