"""#17 target 2: are fewer bits faster? W4A8 / W2A8 packed linear kernels against W8A8, batch 1.

    python benchmarks/bench_packed.py [--repeats 30] [--sizes 1024 4096] [--stack-mb 48]

For square linear layers (``--sizes``) at batch 1, one thread, every kernel is timed interleaved
(median of ``--repeats`` rounds, after a warm-up) in two settings:

* **hot**: the same layer called again and again (its weights stay in cache: 1 MB of int8 at 1024
  fits this CPU's 2 MB L2 per core);
* **stream**: a stack of distinct layers of that size, ``--stack-mb`` MB of int8 weights in all,
  each called once per round (as a decoding step of an LLM reads every weight once per token);
  the time is per layer.

Kernels (int8 activation codes in, int32 accumulators out; every output checked bit for bit against
the int64 reference first):

* ``w8 numba``: the executor's W8A8 linear on the "numba" backend (register-blocked int16 kernel);
* ``w8 packed``: the packed kernel family at 8 bits (int8 weights, same ``vpdpbusd`` microkernel);
* ``w4 packed`` / ``w2 packed``: the packed kernels (two / four codes a byte) that low-bit layers run.

The ratio is best W8 time / W4 time (> 1: fewer bits are faster). Writes
benchmarks/results/packed.json.
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

from mpsearch.execution import ir
from mpsearch.execution.kernels import packed as pk
from mpsearch.execution.kernels._numba_packed import linear_kernel, pack_rows
from mpsearch.execution.kernels.numba_cpu import NumbaBackend


def _op(bits: int, n: int, seed: int) -> ir.Linear:
    g = torch.Generator().manual_seed(seed)
    lo = -(1 << (bits - 1))
    w = torch.randint(lo, -lo, (n, n), dtype=torch.int8, generator=g)
    b = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=g)
    return ir.Linear(name="y", inputs=("x",), weight=w, bias=b, bias_shift=0, input_zp=0, w_bits=bits, a_bits=8)


def _packed8(op: ir.Linear):  # the packed family at 8 bits (not used by the executor: W8 stays numba's)
    from mpsearch.execution.kernels.layers import layer_corr
    import numpy as np

    wpk = pack_rows(op.weight.numpy(), 8)
    n, k = op.weight.shape
    consts = np.zeros((6, n), np.int64)
    consts[0] = layer_corr(op, torch.device("cpu")).numpy()
    kern = linear_kernel()

    def run(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty(x.shape[0], n, dtype=torch.int32)
        kern(x.contiguous().numpy(), wpk, 8, wpk.shape[1], 0, consts, False, out.numpy())
        return out

    return run


def _kernels(n: int, seed: int) -> dict[str, tuple[ir.Linear, object]]:
    cpu = torch.device("cpu")
    from mpsearch.execution.kernels.layers import layer_corr

    ops = {b: _op(b, n, seed + b) for b in (8, 4, 2)}
    return {
        "w8 numba": (ops[8], NumbaBackend().kernel(ops[8], cpu)),
        "w8 packed": (ops[8], _packed8(ops[8])),
        "w4 packed": (ops[4], pk.prep_packed_linear(ops[4], layer_corr(ops[4], cpu))),
        "w2 packed": (ops[2], pk.prep_packed_linear(ops[2], layer_corr(ops[2], cpu))),
    }


def _check(op: ir.Linear, run, x: torch.Tensor) -> None:
    ref = ((x.long() - op.input_zp) @ op.weight.long().T) + op.bias.long()
    if not torch.equal(run(x).long(), ref):
        raise SystemExit(f"kernel for w{op.w_bits} is not bit-exact")


def measure(n: int, stack_mb: float, repeats: int) -> dict[str, dict[str, float]]:
    n_layers = max(1, int(stack_mb * 2**20 // (n * n)))
    stacks = [_kernels(n, seed=10 * i) for i in range(n_layers)]
    x = torch.randint(-128, 128, (1, n), dtype=torch.int8, generator=torch.Generator().manual_seed(n))
    names = list(stacks[0])
    for name in names:
        _check(*stacks[0][name], x)
    hot: dict[str, list[float]] = {k: [] for k in names}
    stream: dict[str, list[float]] = {k: [] for k in names}
    for rnd in range(repeats + 2):
        for name in names:
            run = stacks[0][name][1]
            t0 = time.perf_counter()
            for _ in range(10):
                run(x)
            t_hot = (time.perf_counter() - t0) / 10
            t0 = time.perf_counter()
            for s in stacks:
                s[name][1](x)
            t_stream = (time.perf_counter() - t0) / n_layers
            if rnd >= 2:  # two warm-up rounds
                hot[name].append(t_hot)
                stream[name].append(t_stream)
    return {"n_layers_in_stack": n_layers,
            "hot_ms": {k: 1e3 * statistics.median(v) for k, v in hot.items()},
            "stream_ms": {k: 1e3 * statistics.median(v) for k, v in stream.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--stack-mb", type=float, default=48.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not pk.usable(torch.device("cpu")):
        raise SystemExit("the packed kernels need numba and AVX-512 VNNI on this CPU")
    load0 = os.getloadavg()
    results = {}
    for n in args.sizes:
        r = measure(n, args.stack_mb, args.repeats)
        results[str(n)] = r
        for mode in ("hot_ms", "stream_ms"):
            t = r[mode]
            w8 = min(t["w8 numba"], t["w8 packed"])
            print(f"{n}x{n} {mode[:-3]:6s} " + "  ".join(f"{k} {v:.4f} ms" for k, v in t.items())
                  + f"  | best W8 / W4 = {w8 / t['w4 packed']:.2f}x, best W8 / W2 = {w8 / t['w2 packed']:.2f}x")
    out = {"machine": platform.processor() or platform.machine(), "threads": 1, "repeats": args.repeats,
           "load_start": load0, "load_end": os.getloadavg(), "results": results}
    path = Path(__file__).parent / "results" / "packed.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"load average {load0} -> {out['load_end']}; wrote {path}")


if __name__ == "__main__":
    main()


def wide_mlp() -> torch.nn.Module:
    """The layers of the target as one model for ``mpsearch profile --model benchmarks.bench_packed:wide_mlp
    --input-shape 1024``: linears 1024x1024, 1024x4096, 4096x4096, 4096x1024."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1024)).eval()
