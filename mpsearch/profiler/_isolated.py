"""Timing one layer isolated, for the profiler: a one-layer integer program built from the layer's
signature -- its conv / linear op and the requantization of its accumulator (int32 -> a_bits codes,
one dyadic rescale) -- run with the executor's own kernels on random codes of the pair's ranges.
With numba on CPU the two ops run as one fused kernel, as the executor runs them."""

from __future__ import annotations

import time
from typing import Any

import torch

from mpsearch.core.profile import LatencyStat
from mpsearch.core.types import Layer
from mpsearch.profiler._timing import stat_of, sync


def _one_layer_ops(layer: Layer, w_bits: int, a_bits: int, generator: torch.Generator) -> list[Any]:
    """[conv-or-linear op, requant op] for ``layer`` with random codes of the pair's ranges."""
    from mpsearch.execution import ir

    w_max = 2 ** (w_bits - 1) - 1  # symmetric weights: [-w_max, w_max]
    cout = int(layer.weight_shape[0])
    weight = torch.randint(-w_max, w_max + 1, tuple(layer.weight_shape), generator=generator, dtype=torch.int8)
    bias = torch.randint(-1000, 1000, (cout,), generator=generator, dtype=torch.int32)
    input_zp = -(2 ** (a_bits - 1)) + 3  # an asymmetric zero point inside the a_bits code range
    if layer.kind == "linear":
        main = ir.Linear(name="acc", inputs=("x",), weight=weight, bias=bias, input_zp=input_zp,
                         w_bits=w_bits, a_bits=a_bits)
        per_channel: tuple[int, ...] = (cout,)
    else:
        nd = len(layer.weight_shape) - 2
        kernel = tuple(int(k) for k in layer.weight_shape[2:])
        stride = tuple(int(s) for s in (layer.stride or (1,) * nd))
        pads = tuple(int(p) for p in (layer.padding or tuple(k // 2 for k in kernel)))
        if nd == 1:
            weight = weight.unsqueeze(2)  # the executor runs Conv1d as 2-d with height 1
            kernel, stride, pads = (1, *kernel), (1, *stride), (0, *pads)
        main = ir.Conv(name="acc", inputs=("x",), weight=weight, bias=bias, stride=stride,  # type: ignore[arg-type]
                       padding=(pads[1], pads[1], pads[0], pads[0]), groups=int(layer.groups or 1),
                       input_zp=input_zp, spatial_dims=nd, w_bits=w_bits, a_bits=a_bits)
        per_channel = (cout,) + (1,) * nd
    lo, hi = -(2 ** (a_bits - 1)), 2 ** (a_bits - 1) - 1
    requant = ir.Requant(
        name="y", inputs=("acc",), zp_in=torch.zeros((), dtype=torch.int32),
        multiplier=torch.randint(2 ** 29, 2 ** 30, per_channel, generator=generator, dtype=torch.int32),
        shift=torch.full(per_channel, 40, dtype=torch.int32), zp_out=torch.tensor(lo, dtype=torch.int32),
        lo=torch.tensor(lo, dtype=torch.int32), hi=torch.tensor(hi, dtype=torch.int32), out_dtype="int8",
        bits=a_bits)
    return [main, requant]


def time_isolated_layer(layer: Layer, pair: tuple[int, int], device: torch.device, batch: int,
                        warmup: int, repeats: int, seed: int = 0) -> LatencyStat:
    """Time the conv / linear kernel + requant epilogue of ``layer`` at ``batch`` examples."""
    from mpsearch.execution._steps import plan_steps

    g = torch.Generator().manual_seed(seed)
    w_bits, a_bits = pair
    ops = _one_layer_ops(layer, w_bits, a_bits, g)
    # as the executor runs them: with numba, the requant fused into the conv / linear kernel
    kernels = [step.kernel for step in plan_steps(ops, device, "auto", output=ops[-1].name)]
    lo, hi = -(2 ** (a_bits - 1)), 2 ** (a_bits - 1) - 1
    shape = (batch, *layer.input_shape[1:])
    x = torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int8).to(device)

    def once() -> None:
        y = x
        for k in kernels:
            y = k(y)

    samples = []
    for i in range(warmup + repeats):
        sync(device)
        t0 = time.perf_counter()
        once()
        sync(device)
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1e3)
    return stat_of(samples)
