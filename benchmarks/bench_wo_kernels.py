"""#17 target 2, weight-only: is W4 (w4a16) faster than W8 (w8a16) at batch 1? The executor's
weight-only kernels against each other and fp32 ``F.linear``.

    python benchmarks/bench_wo_kernels.py [--sizes 1024 4096] [--batches 1 64] [--repeats 25] [--stack-mb 48]

For square layers (``--sizes``) at each batch, one thread, every kernel timed interleaved (median
of ``--repeats`` rounds after two warm-up rounds) in two settings (as ``bench_packed.py``):

* **hot**: one layer called again and again (its weights stay in cache where they fit);
* **stream**: a stack of distinct layers, ``--stack-mb`` MB of int8 weights in all, each called
  once per round (a decoding step reads every weight once); time per layer.

Kernels (float32 activations in, float32 out; each one is built by the executor's own prepare
functions in :mod:`mpsearch.execution.kernels.weight_only`):

* ``fp32``: ``F.linear`` on the dequantized float32 weight (what a float model runs);
* ``w8 torch``: ``aten._weight_int8pack_mm``, int8 per output channel, bf16 activations (what the
  executor runs for w8a16 layers);
* ``w4 torch``: ``aten._weight_int4pack_mm_for_cpu``, int4 groups of 128, bf16 activations (what
  it ran for w4a16g128 before);
* ``w4 packed``: the packed w4a16 kernel (:mod:`._numba_packed_float`: two codes a byte,
  dequantised in registers by a 16-entry table, float32 activations and sums): what w4a16g128
  layers run now.

Each output is first checked against float64 ``x @ W^T`` with the same dequantized weight (the max
relative error is printed: ~1e-7 for float32 kernels, ~1e-2 for the bf16 ones). The ratio is best
W8 time (``w8 torch``, ``fp32``) / ``w4 packed`` time (> 1: fewer bits faster). Writes
benchmarks/results/wo_kernels.json.
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

from mpsearch.execution import ir
from mpsearch.execution.kernels import weight_only as wo

GROUP = 128
CPU = torch.device("cpu")


def _op(bits: int, n: int, group: int | None, seed: int) -> ir.WeightOnlyLinear:
    g = torch.Generator().manual_seed(seed)
    lo = -(1 << (bits - 1))
    codes = torch.randint(lo, -lo, (n, n), dtype=torch.int8, generator=g)
    groups = n // group if group else 1
    scale = (torch.rand(n, groups, generator=g) + 0.5) / (n ** 0.5 * -lo)
    zp = torch.randint(-2, 3, (n, groups), dtype=torch.int32, generator=g) if group else torch.zeros(n, 1, dtype=torch.int32)
    return ir.WeightOnlyLinear(name="y", inputs=("x",), codes=codes, scale=scale, zp=zp, bias=None,
                               group_size=group, w_bits=bits)


def _dequantized(op: ir.WeightOnlyLinear) -> torch.Tensor:
    n, k = op.codes.shape
    g = op.scale.shape[1]
    return ((op.codes.float().reshape(n, g, k // g) - op.zp.float().unsqueeze(-1)) * op.scale.unsqueeze(-1)).reshape(n, k)


def _kernels(n: int, seed: int) -> dict[str, tuple[ir.WeightOnlyLinear, object]]:
    w8, w4 = _op(8, n, None, seed), _op(4, n, GROUP, seed + 1)
    deq8 = _dequantized(w8)
    return {
        "fp32": (w8, lambda x: F.linear(x, deq8)),
        "w8 torch": (w8, wo._int8(w8, CPU)),
        "w4 torch": (w4, wo._int4(w4, CPU)),
        "w4 packed": (w4, wo.prep_packed_w4(w4, CPU)),
    }


def _rel_err(op: ir.WeightOnlyLinear, run, x: torch.Tensor) -> float:
    want = x.double() @ _dequantized(op).double().t()
    return float((run(x).double() - want).abs().max() / want.abs().max())


def measure(n: int, batch: int, stack_mb: float, repeats: int) -> dict:
    n_layers = max(1, int(stack_mb * 2**20 // (n * n)))
    stacks = [_kernels(n, seed=10 * i) for i in range(n_layers)]
    x = torch.randn(batch, n, generator=torch.Generator().manual_seed(n))
    names = list(stacks[0])
    err = {name: _rel_err(*stacks[0][name], x) for name in names}
    hot: dict[str, list[float]] = {k: [] for k in names}
    stream: dict[str, list[float]] = {k: [] for k in names}
    calls = max(1, 4096 // n)
    for rnd in range(repeats + 2):
        for name in (names if rnd % 2 == 0 else names[::-1]):
            run = stacks[0][name][1]
            t0 = time.perf_counter()
            for _ in range(calls):
                run(x)
            t_hot = (time.perf_counter() - t0) / calls
            t0 = time.perf_counter()
            for s in stacks:
                s[name][1](x)
            t_stream = (time.perf_counter() - t0) / n_layers
            if rnd >= 2:  # two warm-up rounds
                hot[name].append(t_hot)
                stream[name].append(t_stream)
    return {"n_layers_in_stack": n_layers, "max_rel_err_vs_float64": err,
            "hot_ms": {k: 1e3 * statistics.median(v) for k, v in hot.items()},
            "stream_ms": {k: 1e3 * statistics.median(v) for k, v in stream.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--stack-mb", type=float, default=48.0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "wo_kernels.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    results = {}
    for n in args.sizes:
        for batch in args.batches:
            r = measure(n, batch, args.stack_mb, args.repeats)
            results[f"{n}x{batch}"] = r
            for mode in ("hot_ms", "stream_ms"):
                t = r[mode]
                w8 = min(t["w8 torch"], t["fp32"])
                print(f"{n}x{n} batch {batch:3d} {mode[:-3]:6s} " + "  ".join(f"{k} {v:.4f} ms" for k, v in t.items())
                      + f"  | best W8 / w4 packed = {w8 / t['w4 packed']:.2f}x")
            print("  max relative error vs float64: " + ", ".join(f"{k} {v:.1e}" for k, v in r["max_rel_err_vs_float64"].items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": 1,
                               "repeats": args.repeats, "torch": torch.__version__, "load_start": load0,
                               "load_end": os.getloadavg(), "results": results}, indent=1))
    print(f"load average {load0} -> {os.getloadavg()}; wrote {out}")


if __name__ == "__main__":
    main()
