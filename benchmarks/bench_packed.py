"""#17 target 2: are fewer bits faster? W4A8 / W2A8 packed linear kernels against W8A8, batch 1.

    python benchmarks/bench_packed.py [--repeats 30] [--sizes 1024 4096] [--stack-mb 48] [--convs | --convs-only]

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

The ratio is best W8 time / W4 time (> 1: fewer bits are faster).

``--convs``: the same for every groups-1 conv of the demo CNNs at batch 1 (8x8 inputs) and a
256->256 3x3 conv on 14x14 (``w8 executor``: what the executor runs for a W8 conv, and ran for W4
convs before; ``w8 / w4 / w2 packed``: the packed conv kernel, im2col + tiles of 4 channels x 4
pixels), with each conv's arithmetic intensity (MACs per int8 weight byte = output pixels).
Writes benchmarks/results/packed.json.
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


# -- convs ---------------------------------------------------------------------------------------
BIG_CONV = ("big 256->256 3x3 @14x14", 256, 256, 3, 1, 1, 14, 14)
#: Most distinct convs in a stream stack (the demo convs' weights are a few KB: a stack of --stack-mb
#: of them would be thousands of layers, timing Python's call overhead).
MAX_CONV_STACK = 64


def demo_convs() -> list[tuple]:
    """``(name, cin, cout, k, stride, pad, h, w)`` of every groups-1 conv of the demo CNNs at batch 1
    (8x8 inputs), shapes read by hooks on a forward pass, each distinct shape once."""
    from mpsearch.demo.models import DEMO_MODELS

    seen: dict[tuple, str] = {}
    for model_name, ctor in DEMO_MODELS.items():
        model = ctor().eval()
        hooks = []
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Conv2d) and mod.groups == 1:
                def hook(m, inp, out, name=name):
                    key = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0],
                           inp[0].shape[2], inp[0].shape[3])
                    seen.setdefault(key, f"{model_name}.{name}")
                hooks.append(mod.register_forward_hook(hook))
        with torch.no_grad():
            model(torch.zeros(1, 1, 8, 8))
        for h in hooks:
            h.remove()
    return [(name, *key) for key, name in seen.items()]


def _conv_op(bits: int, shape: tuple, seed: int) -> ir.Conv:
    _, cin, cout, k, stride, pad, _, _ = shape
    g = torch.Generator().manual_seed(seed)
    lo = -(1 << (bits - 1))
    w = torch.randint(lo, -lo, (cout, cin, k, k), dtype=torch.int8, generator=g)
    b = torch.randint(-1000, 1000, (cout,), dtype=torch.int32, generator=g)
    return ir.Conv(name="y", inputs=("x",), weight=w, bias=b, bias_shift=0, stride=(stride, stride),
                   padding=(pad,) * 4, input_zp=3, w_bits=bits, a_bits=8)


def _conv_kernels(shape: tuple, seed: int) -> dict[str, tuple[ir.Conv, object]]:
    from mpsearch.execution.kernels import KERNELS
    from mpsearch.execution.kernels.layers import layer_corr

    cpu = torch.device("cpu")
    ops = {b: _conv_op(b, shape, seed + b) for b in (8, 4, 2)}
    return {
        "w8 executor": (ops[8], KERNELS["conv"](ops[8], cpu, "auto")),  # what W8 (and before, W4) convs ran
        "w8 packed": (ops[8], pk.prep_packed_conv(ops[8], layer_corr(ops[8], cpu), bits=8)),
        "w4 packed": (ops[4], pk.prep_packed_conv(ops[4], layer_corr(ops[4], cpu))),
        "w2 packed": (ops[2], pk.prep_packed_conv(ops[2], layer_corr(ops[2], cpu))),
    }


def measure_conv(shape: tuple, stack_mb: float, repeats: int) -> dict:
    """Hot and stream times of one conv shape at batch 1 (as :func:`measure`), every output checked
    bit for bit against the int64 reference first; ``macs_per_weight_byte``: the arithmetic intensity
    of the weights at 8 bits (output pixels: each weight is used once per output pixel)."""
    _, cin, cout, k, stride, pad, h, wd = shape
    n_layers = min(MAX_CONV_STACK, max(1, int(stack_mb * 2**20 // (cout * cin * k * k))))
    stacks = [_conv_kernels(shape, seed=10 * i) for i in range(n_layers)]
    x = torch.randint(-128, 128, (1, cin, h, wd), dtype=torch.int8, generator=torch.Generator().manual_seed(cin))
    names = list(stacks[0])
    for name in names:
        op, run = stacks[0][name]
        xp = torch.nn.functional.pad(x.long(), list(op.padding), value=op.input_zp)  # taps outside hold zp
        ref = torch.nn.functional.conv2d((xp - op.input_zp).double(), op.weight.double(),
                                         stride=op.stride).round().long() + op.bias.long()[:, None, None]
        if not torch.equal(run(x).long(), ref):
            raise SystemExit(f"{name} is not bit-exact on {shape}")
    hot: dict[str, list[float]] = {k_: [] for k_ in names}
    stream: dict[str, list[float]] = {k_: [] for k_ in names}
    calls = 10
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
            if rnd >= 2:
                hot[name].append(t_hot)
                stream[name].append(t_stream)
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    return {"shape": list(shape[1:]), "n_layers_in_stack": n_layers, "macs_per_weight_byte": oh * ow,
            "weight_bytes_int8": cout * cin * k * k, "macs": oh * ow * cout * cin * k * k,
            "hot_ms": {k_: 1e3 * statistics.median(v) for k_, v in hot.items()},
            "stream_ms": {k_: 1e3 * statistics.median(v) for k_, v in stream.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--stack-mb", type=float, default=48.0)
    ap.add_argument("--convs", action="store_true", help="also the demo CNNs' convs and a 256->256 3x3 conv")
    ap.add_argument("--convs-only", action="store_true", help="only the convs")
    ap.add_argument("--big-conv-only", action="store_true", help="of the convs, only the 256->256 one")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not pk.usable(torch.device("cpu")):
        raise SystemExit("the packed kernels need numba and AVX-512 VNNI on this CPU")
    load0 = os.getloadavg()
    results: dict = {}
    for n in ([] if args.convs_only else args.sizes):
        r = measure(n, args.stack_mb, args.repeats)
        results[str(n)] = r
        for mode in ("hot_ms", "stream_ms"):
            t = r[mode]
            w8 = min(t["w8 numba"], t["w8 packed"])
            print(f"{n}x{n} {mode[:-3]:6s} " + "  ".join(f"{k} {v:.4f} ms" for k, v in t.items())
                  + f"  | best W8 / W4 = {w8 / t['w4 packed']:.2f}x, best W8 / W2 = {w8 / t['w2 packed']:.2f}x")
    if args.convs or args.convs_only:
        results["convs"] = {}
        for shape in [*demo_convs(), BIG_CONV] if not args.big_conv_only else [BIG_CONV]:
            r = measure_conv(shape, args.stack_mb, args.repeats)
            results["convs"][shape[0]] = r
            for mode in ("hot_ms", "stream_ms"):
                t = r[mode]
                w8 = min(t["w8 executor"], t["w8 packed"])
                print(f"{shape[0]} {shape[1:]} {mode[:-3]:6s} " + "  ".join(f"{k} {v:.4f} ms" for k, v in t.items())
                      + f"  | best W8 / W4 = {w8 / t['w4 packed']:.2f}x, w8 executor / W4 = "
                      f"{t['w8 executor'] / t['w4 packed']:.2f}x  (MAC / weight byte {r['macs_per_weight_byte']})")
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
