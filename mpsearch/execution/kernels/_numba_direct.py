"""The numba register-blocked direct conv (:mod:`._numba_conv`) as the kernel of a
groups-1 ``conv`` or of a ``linear`` (a 1x1 conv of one pixel), optionally with the ``requant``
that reads its accumulator fused into its epilogue.

The fused kernel returns exactly the requant's integers: the epilogue computes the same int32
accumulator and applies the same one-pass int64 rescale, without writing the int32 tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mpsearch.errors import rule_error
from mpsearch.execution import ir
from mpsearch.execution.kernels import _numba_conv
from mpsearch.execution.kernels._base import DTYPES, Kernel
from mpsearch.execution.kernels._parallel import run_split
from mpsearch.execution.kernels.requant import channel_consts


def prep_direct(op: ir.Conv | ir.Linear, corr: Tensor, requant: ir.Requant | None = None) -> Kernel | None:
    """The direct-conv kernel of ``op`` (int8 codes in; int32 accumulator out, or the requant's codes).

    Args:
        op: a groups-1 conv or a linear.
        corr: int32 ``(Cout,)``: bias with the zero-point correction folded in (:func:`.layers.layer_corr`).
        requant: the requant to fuse, reading ``op``'s output; its constants must be per tensor or
            per output channel and its rounding half up.

    Returns:
        The kernel, or None where the fusion does not apply (the caller runs the ops apart).
    """
    w = op.weight
    if isinstance(op, ir.Conv):
        if op.groups != 1:
            return None
        w_ohwi = w.permute(0, 2, 3, 1)
        (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation
        kh, kw = w.shape[2], w.shape[3]
        geom = (kh, kw, sh, sw, dh, dw, pt, pb, pl, pr)
        spatial_dims = op.spatial_dims
    else:
        w_ohwi = w.reshape(w.shape[0], 1, 1, w.shape[1])
        geom = (1, 1, 1, 1, 1, 1, 0, 0, 0, 0)
        spatial_dims = 0
    cout = w.shape[0]
    rq: list[np.ndarray] | None = None
    out_dtype = torch.int32
    if requant is not None:
        rq = channel_consts(requant, cout, spatial_dims + 1)
        if rq is None:
            return None
        out_dtype = DTYPES[requant.out_dtype]
    wpk, cp = _numba_conv.pack_weights(w_ohwi.to(torch.int8).contiguous().numpy())
    consts = _numba_conv.pack_epilogue(corr.to(torch.int32).numpy(), rq)
    shift, zp, has_rq = int(op.bias_shift), int(op.input_zp), requant is not None
    kernel = _numba_conv.conv_kernel()  # compile (or load from the disk cache) now, not in the first call
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geom

    def run(x: Tensor) -> Tensor:
        if spatial_dims == 0:  # linear: (..., C) -> one pixel per row
            lead = x.shape[:-1]
            xh = x.reshape(-1, 1, 1, x.shape[-1])
        else:
            xh = (x.unsqueeze(2) if spatial_dims == 1 else x).permute(0, 2, 3, 1)  # NHWC (a view after a conv)
        if xh.dtype != torch.int8:
            raise rule_error(f"integer op {op.name!r}", "input dtype", "int8 codes", xh.dtype)
        xh = xh.contiguous()
        n, h, w_in = xh.shape[0], xh.shape[1], xh.shape[2]
        oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
        ow = (w_in + pl + pr - (kw - 1) * dw - 1) // sw + 1
        out = torch.empty(n, oh, ow, cout, dtype=out_dtype)
        xn, on, c = xh.numpy(), out.numpy(), xh.shape[3]

        def part(lo: int, hi: int) -> None:  # images lo..hi-1
            kernel(xn[lo:hi].reshape(-1), (hi - lo, h, w_in, c), wpk, cp, consts, shift, geom, zp, has_rq,
                   on[lo:hi].reshape(-1, cout))

        run_split(part, n, oh * ow * cout)
        if spatial_dims == 0:
            return out.reshape(*lead, cout)
        y = out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        return y.squeeze(2) if spatial_dims == 1 else y

    return run
