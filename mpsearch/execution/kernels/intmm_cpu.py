"""The "int_mm_fused" backend (CPU with VNNI or AMX, numba installed): ``torch._int_mm`` for the
products, numba for everything around them.

* groups-1 convs and linears: the int8 im2col (:func:`._numba_intmm.im2col_py`; none for a 1x1
  stride-1 conv, whose channels-last input already is the matrix), ``torch._int_mm`` (int8 x
  int8 -> int32, oneDNN: ``vpdpbusd`` / AMX tiles on this class of CPU; exact integer arithmetic),
  and one numba epilogue pass that applies the shift and bias and, fused, the requant that alone
  reads the accumulator (:attr:`IntMmFusedBackend.fuses`), writing the int8 codes;
  taken per call where it pays (:func:`mm_pays`, at least :data:`MIN_ROWS` rows), else the numba
  direct kernel (:mod:`._numba_direct`; batch 1, small layers);
* the rest (depthwise and grouped convs, requant) as the numba backend (:mod:`.numba_cpu`) runs it.

Every kernel gives the integers of the generic int32 kernels (tested against int64 references).
Outputs are NCHW views of NHWC memory, as the numba backend's.
"""

from __future__ import annotations

import functools
import sys
import numpy as np
import torch
from torch import Tensor

from mpsearch.errors import rule_error
from mpsearch.execution import ir
from mpsearch.execution.kernels import _numba_intmm
from mpsearch.execution.kernels._base import DTYPES, Kernel
from mpsearch.execution.kernels._numba_direct import prep_direct
from mpsearch.execution.kernels._parallel import run_split
from mpsearch.execution.kernels.layers import layer_corr
from mpsearch.execution.kernels.numba_cpu import NumbaBackend
from mpsearch.execution.kernels.requant import channel_consts

#: CPU flags (``/proc/cpuinfo``) under which oneDNN's int8 GEMM behind ``torch._int_mm`` measured
#: 3-10x the numba kernels (u8 x s8 dot products: AVX-512 VNNI, AVX-VNNI, AMX).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_has_int8_dot() -> bool:
    """True when the CPU has one of :data:`INT8_DOT_FLAGS` (Linux; False where it cannot tell)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in INT8_DOT_FLAGS)


def _geometry(op: ir.Conv | ir.Linear) -> tuple[tuple[int, ...], int]:
    """``((kh, kw, sh, sw, dh, dw, pt, pb, pl, pr), spatial_dims)``; a linear is a 1x1 conv of a pixel."""
    if isinstance(op, ir.Linear):
        return (1, 1, 1, 1, 1, 1, 0, 0, 0, 0), 0
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation
    return (op.weight.shape[2], op.weight.shape[3], sh, sw, dh, dw, pt, pb, pl, pr), op.spatial_dims


def _nhwc(op: ir.Op, x: Tensor, spatial_dims: int) -> Tensor:
    """The int8 input as contiguous ``(N, H, W, C)`` (a view when it came from a channels-last kernel)."""
    if x.dtype != torch.int8:
        raise rule_error(f"integer op {op.name!r}", "input dtype", "int8 codes", x.dtype)
    if spatial_dims == 0:
        return x.reshape(-1, 1, 1, x.shape[-1]).contiguous()
    xh = (x.unsqueeze(2) if spatial_dims == 1 else x).permute(0, 2, 3, 1)
    return xh.contiguous()


def _out_view(out: Tensor, x: Tensor, spatial_dims: int) -> Tensor:
    """``out (N, OH, OW, C)`` as the op's output: NCHW view (or ``(..., C)`` for a linear)."""
    if spatial_dims == 0:
        return out.reshape(*x.shape[:-1], out.shape[-1])
    y = out.permute(0, 3, 1, 2)
    return y.squeeze(2) if spatial_dims == 1 else y


def _epilogue_consts(op: ir.Conv | ir.Linear, requant: ir.Requant | None, spatial_dims: int
                     ) -> tuple[np.ndarray, np.ndarray, torch.dtype] | None:
    cout = op.weight.shape[0]
    rq = None
    if requant is not None:
        rq = channel_consts(requant, cout, spatial_dims + 1)
        if rq is None:
            return None
    packed = _numba_intmm.pack_consts(layer_corr(op, torch.device("cpu")).numpy(), rq)
    if packed is None:
        return None
    out_dtype = DTYPES[requant.out_dtype] if requant is not None else torch.int32
    return packed[0], packed[1], out_dtype


def prep_gemm_conv(op: ir.Conv | ir.Linear, requant: ir.Requant | None = None) -> Kernel | None:
    """A groups-1 conv or a linear as im2col + ``torch._int_mm`` + the numba epilogue (with
    ``requant`` fused when given); None where it does not apply (grouped conv, a requant whose
    constants are not per channel or whose rounding is half to even)."""
    if isinstance(op, ir.Conv) and op.groups != 1:
        return None
    geom, spatial_dims = _geometry(op)
    packed = _epilogue_consts(op, requant, spatial_dims)
    if packed is None:
        return None
    consts, m32, out_dtype = packed
    w = op.weight
    cout = w.shape[0]
    w_kn = w.permute(0, 2, 3, 1).reshape(cout, -1).t().contiguous() if w.dim() == 4 else w.t().contiguous()
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geom
    direct = kh == kw == sh == sw == 1 and not (pt or pb or pl or pr)  # the input is the matrix
    im2col, epilogue = _numba_intmm.kernel("im2col"), _numba_intmm.kernel("epilogue")
    shift, zp, has_rq = int(op.bias_shift), int(op.input_zp), requant is not None
    out_np = np.int8 if out_dtype == torch.int8 else np.int32

    def run_linear(x: Tensor) -> Tensor:  # rows of features: the input is the matrix (less Python per call)
        if x.dtype != torch.int8:
            raise rule_error(f"integer op {op.name!r}", "input dtype", "int8 codes", x.dtype)
        acc = torch._int_mm(x.reshape(-1, x.shape[-1]).contiguous(), w_kn).numpy()
        out = np.empty((len(acc), cout), out_np)
        run_split(lambda lo, hi: epilogue(acc[lo:hi], shift, consts, m32, has_rq, out[lo:hi]), len(acc), cout)
        return torch.from_numpy(out).view(*x.shape[:-1], cout)

    if spatial_dims == 0:
        return run_linear

    def run(x: Tensor) -> Tensor:
        xh = _nhwc(op, x, spatial_dims)
        n, h, wd, c = xh.shape
        oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
        ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
        if direct:
            cols = xh.view(n * h * wd, c)
        else:
            cols = torch.empty(n * oh * ow, kh * kw * c, dtype=torch.int8)
            xn, cn, geo, per = xh.numpy(), cols.numpy(), (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), oh * ow
            run_split(lambda lo, hi: im2col(xn[lo:hi], geo, zp, cn[lo * per:hi * per]), n, per * kh * kw * c)
        acc = torch._int_mm(cols, w_kn).numpy()
        out = torch.empty(n, oh, ow, cout, dtype=out_dtype)
        on = out.view(-1, cout).numpy()
        run_split(lambda lo, hi: epilogue(acc[lo:hi], shift, consts, m32, has_rq, on[lo:hi]), len(acc), cout)
        return _out_view(out, x, spatial_dims)

    return run


#: Smallest product rows (output pixels, or linear rows) that take the ``torch._int_mm`` path; below
#: it the numba direct kernel's lower call overhead wins (batch 1: 10 vs 16-20 us per layer).
MIN_ROWS = 256
#: Smallest reduction length that takes it (a first conv of 1 channel, K = 9: numba 2x faster).
MIN_K = 16


def mm_pays(op: ir.Conv | ir.Linear) -> bool:
    """Whether ``torch._int_mm`` beat the numba direct kernel on ``op``'s shape at ``MIN_ROWS`` rows
    or more (measured on the demo layers, benchmarks/bench_vs_fbgemm.py): a reduction of at least
    :data:`MIN_K`, and at least 24 output channels or a 1x1 kernel (a 3x3 conv of 16 channels
    to 16: 1.0 vs 0.66 ms at batch 256, the im2col not paid back)."""
    w = op.weight
    k_len = w[0].numel()
    one_by_one = w.dim() == 2 or w.shape[2] * w.shape[3] == 1
    return k_len >= MIN_K and (w.shape[0] >= 24 or one_by_one)


def prep_hybrid(op: ir.Conv | ir.Linear, requant: ir.Requant | None = None) -> Kernel | None:
    """``op`` (groups 1), with ``requant`` fused when given: the ``torch._int_mm`` path for calls of
    at least :data:`MIN_ROWS` rows where :func:`mm_pays`, else the numba direct kernel (the same
    integers); None where the fusion does not apply."""
    direct = prep_direct(op, layer_corr(op, torch.device("cpu")), requant)
    if direct is None or not mm_pays(op):
        return direct
    mm = prep_gemm_conv(op, requant)
    if mm is None:
        return direct
    cin = op.weight.shape[1]

    def run(x: Tensor) -> Tensor:
        rows = x.numel() // cin  # input pixels (a linear: rows)
        return mm(x) if rows >= MIN_ROWS else direct(x)

    return run


class IntMmFusedBackend(NumbaBackend):
    """``torch._int_mm`` products with numba im2col and epilogues (see the module docstring)."""

    name = "int_mm_fused"
    fuses = NumbaBackend.fuses

    def usable(self, device: torch.device) -> bool:
        return super().usable(device) and cpu_has_int8_dot()

    def kernel(self, op: ir.Op, device: torch.device) -> Kernel | None:
        if isinstance(op, ir.Linear) or (isinstance(op, ir.Conv) and op.groups == 1):
            return prep_hybrid(op)
        return super().kernel(op, device)

    def fused(self, producer: ir.Op, consumer: ir.Op, device: torch.device) -> Kernel | None:
        if not isinstance(consumer, ir.Requant) or not isinstance(producer, (ir.Conv, ir.Linear)):
            return None
        if isinstance(producer, ir.Conv) and producer.groups != 1:
            return None
        return prep_hybrid(producer, consumer)

