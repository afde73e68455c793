"""Generic kernels of ``conv`` and ``linear`` (torch, any device): im2col and the backend's GEMM in
channels-last order, depthwise convs as an int32 multiply-add per tap.

The int32 accumulator is ``sum(w * (x - zp)) << k + bias``; :func:`layer_corr` folds the
zero-point term into the bias once, so every kernel computes ``sum(w * x) << k + corr``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel, as_2d, from_2d


def layer_corr(op: ir.Conv | ir.Linear, device: torch.device) -> Tensor:
    """int32 ``bias - (zp * sum(w) << k)`` per output channel: ``sum(w * (x - zp)) << k + bias`` is
    then ``sum(w * x) << k + corr`` (the zero-point correction folded into the bias)."""
    w = op.weight.to(device).to(torch.int32)
    w_sum = w.sum(tuple(range(1, w.dim())), dtype=torch.int32)
    return (op.bias.to(device) - (op.input_zp * w_sum << op.bias_shift)).to(torch.int32)


def prepare_conv(op: ir.Conv, device: torch.device, backend: Backend) -> Kernel:
    """Convolution: im2col + the backend's GEMM in channels-last order (columns ordered (kh, kw,
    C), the weight permuted to match), one GEMM per group; depthwise as an int32 multiply-add
    per tap."""
    w = op.weight.to(device)
    cout, cin_g, kh, kw = w.shape
    groups = op.groups
    cg = cout // groups
    k = op.bias_shift
    corr = layer_corr(op, device)
    depthwise = cin_g == 1 and groups > 1
    if depthwise:
        w_dw = (w.reshape(groups, cg, kh * kw).to(torch.int32) << k)  # (G, mult, kk)
        in_dtype = torch.int32
    else:
        # per group: (kh * kw * Cin/G, Cout/G), rows in (kh, kw, c) order like the columns
        w_rows = w.permute(0, 2, 3, 1).reshape(cout, kh * kw * cin_g)
        gemms = [backend.gemm(w_rows[g * cg:(g + 1) * cg].t(), corr[g * cg:(g + 1) * cg], k) for g in range(groups)]
        in_dtype = gemms[0].in_dtype
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation

    def run(x: Tensor) -> Tensor:
        xh = as_2d(x, op.spatial_dims).permute(0, 2, 3, 1)  # NHWC (a view when x came from a conv)
        if pl or pr or pt or pb:
            xh = F.pad(xh, (0, 0, pl, pr, pt, pb), value=op.input_zp)
        xh = xh.to(in_dtype)
        win = xh.unfold(1, (kh - 1) * dh + 1, sh).unfold(2, (kw - 1) * dw + 1, sw)  # (N, OH, OW, C, kh', kw')
        if dh > 1 or dw > 1:
            win = win[..., ::dh, ::dw]
        n, oh, ow = win.shape[0], win.shape[1], win.shape[2]
        if depthwise:
            acc = corr.view(groups, cg).expand(n, oh, ow, groups, cg).clone()
            for i in range(kh * kw):  # int32 multiply-accumulate, one tap at a time
                acc.addcmul_(win[..., i // kw, i % kw].unsqueeze(-1), w_dw[:, :, i])
            acc = acc.reshape(n, oh, ow, cout)
        else:
            cols = win.permute(0, 1, 2, 4, 5, 3)  # (N, OH, OW, kh, kw, C)
            if groups == 1:
                acc = gemms[0](cols.reshape(n * oh * ow, -1))
            else:
                cols = cols.reshape(n * oh * ow, kh * kw, groups, cin_g)
                acc = torch.cat([gemms[g](cols[:, :, g].reshape(n * oh * ow, -1)) for g in range(groups)], dim=1)
            acc = acc.reshape(n, oh, ow, cout)
        return from_2d(acc.permute(0, 3, 1, 2), op.spatial_dims)  # NCHW view of NHWC memory

    return run


def prepare_linear(op: ir.Linear, device: torch.device, backend: Backend) -> Kernel:
    """Linear: the backend's GEMM over the rows of ``x (..., Cin)``."""
    w = op.weight.to(device)
    g = backend.gemm(w.t(), layer_corr(op, device), op.bias_shift)

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        acc = g(x.reshape(-1, x.shape[-1]).to(g.in_dtype).contiguous())
        return acc.reshape(*lead, w.shape[0])

    return run


KERNELS = {"conv": prepare_conv, "linear": prepare_linear}
