"""The numba backend ("numba"; CPU, with the optional ``fast`` extra): compiled integer kernels that
give the torch kernels' integers, faster.

* groups-1 convs and linears: the register-blocked direct conv (:mod:`._numba_direct`), fused
  with the requant that alone reads the accumulator (:attr:`NumbaBackend.fuses`);
* depthwise convs (one filter per channel): the channels-last depthwise kernel;
* grouped convs: im2col with the int16 GEMM (:func:`._numba_kernels.gemm_i16`) for reductions of
  at least :data:`NUMBA_MIN_K`, else the int32 GEMM;
* requant: one pass over a channels-last or contiguous input (:func:`numba_requant`).

numba is imported only when a kernel is prepared (:mod:`._numba_jit`); :meth:`NumbaBackend.usable`
checks that it is installed without importing it.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels import _numba_jit, _numba_kernels, rowops_cpu
from mpsearch.execution.kernels._base import Kernel, as_2d, from_2d
from mpsearch.execution.kernels._parallel import run_split
from mpsearch.execution.kernels._numba_direct import prep_direct
from mpsearch.execution.kernels.gemm import Int32Backend, Int32Gemm
from mpsearch.execution.kernels.layers import layer_corr
from mpsearch.execution.kernels.requant import prep_requant

#: Below this reduction length the numba dot-product kernel loses to torch's int32 matmul
#: (too few vpmaddwd per output to pay for the horizontal sum); the int32 GEMM runs instead.
NUMBA_MIN_K = 32


class NumbaGemm:
    """``(cols @ w) << k + corr``: int16 x int16 products summed in int32, then shifted and ``corr``
    added -- the integers of the int32 GEMM."""

    in_dtype = torch.int16

    def __init__(self, w_kn: Tensor, corr: Tensor, k: int) -> None:
        # (N, K) rows of int16 weights: each output is one contiguous dot product along K
        self.w_nk = w_kn.t().to(torch.int16).contiguous().numpy()
        self.corr_np = corr.contiguous().numpy()
        self.k = k
        _numba_kernels.kernel()  # compile (or load from the disk cache) now, not in the first call

    def __call__(self, cols: Tensor) -> Tensor:
        a = cols.contiguous().numpy()  # int16 (M, K), shares memory
        return torch.from_numpy(_numba_kernels.gemm_i16(a, self.w_nk, self.corr_np, self.k))


def numba_requant(op: ir.Requant, m: Tensor, s: Tensor, offset: Tensor, lo: int | Tensor, hi: int | Tensor,
                   out_dtype: torch.dtype) -> Callable[[Tensor], Tensor | None] | None:
    """The numba one-pass requant (``(x * m + offset) >> s``, clamp, cast; int64 inside) for a
    rescale whose constants are per tensor or per channel (dim 1), or None where it does not apply.

    The returned function takes int8 or int32 ``x`` whose memory is contiguous with channels last
    (``x.movedim(1, -1)`` contiguous: a conv's output) or plain contiguous with per-tensor
    constants, and returns None for any other input (the caller then runs the torch form).
    """
    consts = [m, offset, s] + [t if isinstance(t, Tensor) else torch.tensor(t, dtype=torch.int64) for t in (lo, hi)]
    per_channel = max(t.numel() for t in consts) > 1
    if per_channel and not all(t.numel() == 1 or (t.dim() >= 1 and t.shape[1:].numel() == 1) for t in consts):
        return None  # constants vary along more than the channel dim
    # torch broadcasts a (C, 1, ..., 1) constant of d dims along dim 1 of a (d + 1)-dim x only
    ch_dims = {t.dim() for t in consts if t.numel() > 1}
    max_dim = max(t.dim() for t in consts)
    flat = [t.reshape(-1).to(torch.int64).contiguous() for t in consts]
    n_ch = max(t.numel() for t in flat)
    kernel = _numba_kernels.requant_kernel()
    tiled: dict[int, list[object]] = {}

    def consts_for(cols: int) -> list[object]:
        if cols not in tiled:  # each constant as an int64 (cols,) array, repeated along the row
            tiled[cols] = [t.expand(cols).contiguous().numpy() if t.numel() == 1 else t.numpy() for t in flat]
        return tiled[cols]

    def run(x: Tensor) -> Tensor | None:
        if x.dtype not in (torch.int8, torch.int32) or x.device.type != "cpu" or x.dim() < max(1, max_dim):
            return None  # (a constant with more dims than x would change the result's shape)
        if per_channel and ch_dims != {x.dim() - 1}:
            return None
        if x.dim() >= 2 and x.movedim(1, -1).is_contiguous() and (not per_channel or x.shape[1] == n_ch):
            xm, back = x.movedim(1, -1), True
        elif not per_channel and x.is_contiguous():
            xm, back = x, False
        else:
            return None
        cols = xm.shape[-1] if xm.dim() else 1
        if cols == 0 or xm.numel() == 0:
            return None
        out = torch.empty(xm.shape, dtype=out_dtype)
        xn, on, k = xm.reshape(-1, cols).numpy(), out.view(-1, cols).numpy(), consts_for(cols)
        run_split(lambda lo, hi: kernel(xn[lo:hi], *k, on[lo:hi]), len(xn), cols)
        return out.movedim(-1, 1) if back else out

    return run



def _prep_depthwise(op: ir.Conv, corr: Tensor) -> Kernel:
    """Depthwise conv (one filter per channel) with the channels-last numba kernel, which shifts
    and adds ``corr`` itself."""
    w = op.weight
    cout, _, kh, kw = w.shape
    w_taps = w.reshape(cout, kh, kw).permute(1, 2, 0).to(torch.int32).contiguous().numpy()  # (kh, kw, C)
    corr_np = corr.contiguous().numpy()
    dw_kernel = _numba_kernels.depthwise_kernel()
    k = op.bias_shift
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation

    def run(x: Tensor) -> Tensor:
        xh = as_2d(x, op.spatial_dims).permute(0, 2, 3, 1)  # NHWC (a view when x came from a conv)
        if pl or pr or pt or pb:
            xh = F.pad(xh, (0, 0, pl, pr, pt, pb), value=op.input_zp)
        xh = xh.contiguous()  # int8 codes (the IR's conv input)
        nb, hp, wp = xh.shape[0], xh.shape[1], xh.shape[2]
        oh, ow = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
        out = torch.empty(nb, oh, ow, cout, dtype=torch.int32)
        xn, on = xh.numpy(), out.numpy()
        run_split(lambda lo, hi: dw_kernel(xn[lo:hi], w_taps, corr_np, k, (sh, sw), (dh, dw), on[lo:hi]), nb,
                  oh * ow * cout)
        return from_2d(out.permute(0, 3, 1, 2), op.spatial_dims)

    return run


class NumbaBackend(Int32Backend):
    """Compiled CPU kernels (see the module docstring); the int32 torch kernels for the rest."""

    name = "numba"
    fuses = frozenset({("conv", "requant"), ("linear", "requant")})

    def usable(self, device: torch.device) -> bool:
        return device.type == "cpu" and _numba_jit.available()

    def gemm(self, w_kn: Tensor, corr: Tensor, shift: int) -> NumbaGemm | Int32Gemm:
        if w_kn.shape[0] < NUMBA_MIN_K:
            return super().gemm(w_kn, corr, shift)
        return NumbaGemm(w_kn, corr, shift)

    def kernel(self, op: ir.Op, device: torch.device) -> Kernel | None:
        if isinstance(op, ir.Linear) or (isinstance(op, ir.Conv) and op.groups == 1):
            return prep_direct(op, layer_corr(op, device))  # never None without a requant
        if isinstance(op, ir.Conv) and op.weight.shape[1] == 1 and op.groups == op.weight.shape[0]:
            return _prep_depthwise(op, layer_corr(op, device))
        if isinstance(op, ir.Requant):
            return prep_requant(op, device, fast=numba_requant)
        if isinstance(op, ir.MaxPool):
            return rowops_cpu.prep_maxpool(op)
        return None

    def fused(self, producer: ir.Op, consumer: ir.Op, device: torch.device) -> Kernel | None:
        """A groups-1 conv or a linear with the requant of its accumulator in its epilogue."""
        if not isinstance(consumer, ir.Requant) or not isinstance(producer, (ir.Conv, ir.Linear)):
            return None
        if isinstance(producer, ir.Conv) and producer.groups != 1:
            return None
        return prep_direct(producer, layer_corr(producer, device), consumer)

    def fused_add(self, pre: tuple[ir.Requant | None, ir.Requant | None], post: ir.Requant | ir.Clamp | None,
                  apart: Callable[[Tensor, Tensor], Tensor], device: torch.device) -> Kernel | None:
        """The add, its requants and its clamp in one pass (:func:`.rowops_cpu.prep_add_group`)."""
        return rowops_cpu.prep_add_group(pre, post, apart)
