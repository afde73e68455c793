"""Integer kernels of the ops in :mod:`mpsearch.execution.ir`, on CPU and CUDA.

``KERNELS[kind](op, device)`` prepares one op (moves and reshapes its constants, precomputes the
zero-point correction) and returns a function of the op's input tensors. Every tensor these
functions touch is an integer tensor: int8 operands, int32 accumulators, int64 for the
products of a rescale. Matrix products go through :func:`int_matmul` (``torch._int_mm``:
int8 x int8 -> int32), an int32 ``addmm``, or -- on CPU when numba is installed -- the
register-blocked ``vpmaddwd`` direct conv of :mod:`mpsearch.execution._direct` (groups-1 convs and
linears) and the kernels of :mod:`mpsearch.execution._numba_kernels` (same integers, faster).

``FUSED[(producer, consumer)]`` prepares one kernel for two ops (a conv / linear and the requant
of its accumulator); :mod:`mpsearch.execution._steps` decides where it applies.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import _numba_kernels, ir
from mpsearch.execution._direct import prep_direct
from mpsearch.execution._requant import DTYPES, prep_requant, scalar_or

log = logging.getLogger("mpsearch")

Kernel = Callable[..., Tensor]
_FALLBACK_LOGGED: set[str] = set()


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


GEMMS = ("auto", "int_mm", "int32", "numba")
#: Below this reduction length the numba dot-product kernel loses to torch's int32 matmul
#: (too few vpmaddwd per output to pay for the horizontal sum); "numba" then uses "int32".
NUMBA_MIN_K = 32


def resolve_gemm(gemm: str, device: torch.device) -> str:
    """The GEMM backend for ``device``: "auto" is ``_int_mm`` on CUDA; on CPU it is "numba" when
    numba is installed, else the int32 matmul.

    On CPU ``torch._int_mm`` (oneDNN s8s8s32) measured about 4x slower than an int32 matmul of the
    same int8 values, and the numba int16 kernel 3-5x faster than the int32 matmul for K >= 32
    (benchmarks/bench_executor.py); all are exact integer arithmetic. "numba" without numba
    installed, or on a non-CPU device, falls back to "int32".
    """
    if gemm == "auto":
        gemm = "int_mm" if device.type == "cuda" else "numba"
    if gemm == "numba" and (device.type != "cpu" or not _numba_kernels.available()):
        return "int32"
    return gemm


def int_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for int8 ``a (M, K)`` and ``b (K, N)`` with int32 accumulation -> int32 ``(M, N)``.

    CUDA's ``_int_mm`` needs ``M > 16`` and ``K``, ``N`` multiples of 8: the operands are padded
    with zeros (which add nothing) and the result sliced. Where ``_int_mm`` refuses, an int32
    matmul is used instead and a log line says so (once per device type).
    """
    m, k = a.shape
    n = b.shape[1]
    if a.is_cuda:
        mp, kp, np_ = max(m, 17), _round_up(max(k, 8), 8), _round_up(max(n, 8), 8)
        if (mp, kp) != (m, k):
            a = F.pad(a, (0, kp - k, 0, mp - m))
        if (kp, np_) != (k, n):
            b = F.pad(b, (0, np_ - n, 0, kp - k))
        return torch._int_mm(a.contiguous(), b.contiguous())[:m, :n]
    try:
        return torch._int_mm(a, b)
    except RuntimeError as exc:  # an older build or an odd shape: int32 matmul, still integer
        key = a.device.type
        if key not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(key)
            log.info("int_matmul: torch._int_mm refused %s x %s on %s (%s); using an int32 matmul",
                     tuple(a.shape), tuple(b.shape), key, str(exc).splitlines()[0])
        return a.to(torch.int32) @ b.to(torch.int32)


class _Gemm:
    """``(cols @ w) * 2^k + corr`` for one weight: int8 ``_int_mm``, an int32 ``addmm`` or the
    numba int16 kernel.

    The int32 form multiplies the same int8 values widened to int32, with the ``2^k`` folded into
    its int32 copy of the weight (the conversion checked that it cannot overflow). The numba form
    sums int16 x int16 products in int32, then shifts and adds ``corr``: the same integers.
    """

    def __init__(self, w_kn: Tensor, corr: Tensor, k: int, backend: str) -> None:
        if backend == "numba" and w_kn.shape[0] < NUMBA_MIN_K:
            backend = "int32"
        self.backend, self.k = backend, k
        self.corr = corr
        if backend == "int32":
            self.w = (w_kn.to(torch.int32) << k).contiguous()
        elif backend == "numba":
            # (N, K) rows of int16 weights: each output is one contiguous dot product along K
            self.w_nk = w_kn.t().to(torch.int16).contiguous().numpy()
            self.corr_np = corr.contiguous().numpy()
            _numba_kernels.kernel()  # compile (or load from the disk cache) now, not in the first call
        else:
            self.w = w_kn.contiguous()

    @property
    def in_dtype(self) -> torch.dtype:
        return {"int32": torch.int32, "numba": torch.int16}.get(self.backend, torch.int8)

    def __call__(self, cols: Tensor) -> Tensor:
        if self.backend == "int32":
            return torch.addmm(self.corr, cols, self.w)
        if self.backend == "numba":
            a = cols.contiguous().numpy()  # int16 (M, K), shares memory
            return torch.from_numpy(_numba_kernels.gemm_i16(a, self.w_nk, self.corr_np, self.k))
        acc = int_matmul(cols, self.w)
        if self.k:
            acc = acc << self.k
        return acc.add_(self.corr)


def _windows(x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
    """Sliding windows of ``x (N, C, H, W)`` -> ``(N, C, OH, OW, kh, kw)`` (a strided view)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    x = x.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw)
    if dh > 1 or dw > 1:
        x = x[..., ::dh, ::dw]
    return x


def _as_2d(x: Tensor, spatial_dims: int) -> Tensor:
    return x.unsqueeze(2) if spatial_dims == 1 else x


def _from_2d(y: Tensor, spatial_dims: int) -> Tensor:
    return y.squeeze(2) if spatial_dims == 1 else y


def _layer_corr(op: ir.Conv | ir.Linear, device: torch.device) -> Tensor:
    """int32 ``bias - (zp * sum(w) << k)`` per output channel: ``sum(w * (x - zp)) << k + bias`` is
    then ``sum(w * x) << k + corr`` (the zero-point correction folded into the bias)."""
    w = op.weight.to(device).to(torch.int32)
    w_sum = w.sum(tuple(range(1, w.dim())), dtype=torch.int32)
    return (op.bias.to(device) - (op.input_zp * w_sum << op.bias_shift)).to(torch.int32)


def _prep_conv(op: ir.Conv, device: torch.device, gemm: str) -> Kernel:
    """Convolution. With numba on CPU: groups 1 runs the register-blocked direct conv
    (:mod:`._direct`), depthwise the channels-last numba depthwise kernel. Otherwise im2col + GEMM
    in channels-last order (columns ordered (kh, kw, C), the weight permuted to match), and
    depthwise as an int32 multiply-add per tap."""
    w = op.weight.to(device)
    cout, cin_g, kh, kw = w.shape
    groups = op.groups
    cg = cout // groups
    k = op.bias_shift
    corr = _layer_corr(op, device)
    depthwise = cin_g == 1 and groups > 1
    backend = resolve_gemm(gemm, device)
    if groups == 1 and backend == "numba":
        return prep_direct(op, corr)  # type: ignore[return-value]  # never None without a requant
    dw_numba = depthwise and cg == 1 and backend == "numba"
    if dw_numba:  # (kh, kw, C) int32 taps; the numba kernel shifts and adds corr itself
        w_taps = w.reshape(cout, kh, kw).permute(1, 2, 0).to(torch.int32).contiguous().numpy()
        corr_np = corr.contiguous().numpy()
        dw_kernel = _numba_kernels.depthwise_kernel()
        in_dtype = torch.int8
    elif depthwise:
        w_dw = (w.reshape(groups, cg, kh * kw).to(torch.int32) << k)  # (G, mult, kk)
        in_dtype = torch.int32
    else:
        # per group: (kh * kw * Cin/G, Cout/G), rows in (kh, kw, c) order like the columns
        w_rows = w.permute(0, 2, 3, 1).reshape(cout, kh * kw * cin_g)
        gemms = [_Gemm(w_rows[g * cg:(g + 1) * cg].t(), corr[g * cg:(g + 1) * cg], k, backend)
                 for g in range(groups)]
        in_dtype = gemms[0].in_dtype
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation

    def run(x: Tensor) -> Tensor:
        xh = _as_2d(x, op.spatial_dims).permute(0, 2, 3, 1)  # NHWC (a view when x came from a conv)
        if pl or pr or pt or pb:
            xh = F.pad(xh, (0, 0, pl, pr, pt, pb), value=op.input_zp)
        if dw_numba:
            xh = xh.contiguous()  # int8 codes (the IR's conv input)
            nb, hp, wp = xh.shape[0], xh.shape[1], xh.shape[2]
            oh_, ow_ = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
            out = torch.empty(nb, oh_, ow_, cout, dtype=torch.int32)
            dw_kernel(xh.numpy(), w_taps, corr_np, k, (sh, sw), (dh, dw), out.numpy())
            return _from_2d(out.permute(0, 3, 1, 2), op.spatial_dims)
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
        return _from_2d(acc.permute(0, 3, 1, 2), op.spatial_dims)  # NCHW view of NHWC memory

    return run


def _prep_linear(op: ir.Linear, device: torch.device, gemm: str) -> Kernel:
    w = op.weight.to(device)
    k = op.bias_shift
    corr = _layer_corr(op, device)
    backend = resolve_gemm(gemm, device)
    if backend == "numba":  # the direct conv of one pixel per row
        return prep_direct(op, corr)  # type: ignore[return-value]  # never None without a requant
    g = _Gemm(w.t(), corr, k, backend)

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        acc = g(x.reshape(-1, x.shape[-1]).to(g.in_dtype).contiguous())
        return acc.reshape(*lead, w.shape[0])

    return run


def _prep_requant(op: ir.Requant, device: torch.device, gemm: str) -> Kernel:
    return prep_requant(op, device, resolve_gemm(gemm, device) == "numba")


def _prep_layer_requant(op: ir.Conv | ir.Linear, rq: ir.Requant, device: torch.device, gemm: str) -> Kernel | None:
    """A groups-1 conv or a linear with the requant of its accumulator in its epilogue (numba on
    CPU only), or None where that fusion does not apply."""
    if resolve_gemm(gemm, device) != "numba" or (isinstance(op, ir.Conv) and op.groups != 1):
        return None
    return prep_direct(op, _layer_corr(op, device), rq)


def _prep_clamp(op: ir.Clamp, device: torch.device, gemm: str) -> Kernel:
    lo, hi = scalar_or(op.lo.to(device)), scalar_or(op.hi.to(device))

    def run(x: Tensor) -> Tensor:
        if isinstance(lo, int) and isinstance(hi, int):
            return x.clamp(lo, hi)
        lo_t = lo.to(x.dtype) if isinstance(lo, Tensor) else torch.tensor(lo, dtype=x.dtype, device=x.device)
        hi_t = hi.to(x.dtype) if isinstance(hi, Tensor) else torch.tensor(hi, dtype=x.dtype, device=x.device)
        return torch.minimum(torch.maximum(x, lo_t), hi_t)

    return run


def _prep_add(op: ir.Add, device: torch.device, gemm: str) -> Kernel:
    return lambda a, b: a.to(torch.int32) + b.to(torch.int32)


def _prep_cat(op: ir.Cat, device: torch.device, gemm: str) -> Kernel:
    dtype = DTYPES[op.out_dtype]
    return lambda *xs: torch.cat([x.to(dtype) for x in xs], dim=op.dim)


def _prep_maxpool(op: ir.MaxPool, device: torch.device, gemm: str) -> Kernel:
    native = [True]  # F.max_pool2d takes integer tensors on CPU; elsewhere fall back to windows

    def run(x: Tensor) -> Tensor:
        x = _as_2d(x, op.spatial_dims)
        if any(op.padding):
            x = F.pad(x, op.padding, value=torch.iinfo(x.dtype).min)
        if native[0]:
            try:
                y = F.max_pool2d(x, op.kernel, op.stride, 0, op.dilation)
                return _from_2d(y, op.spatial_dims)
            except (RuntimeError, NotImplementedError):
                native[0] = False
        win = _windows(x, op.kernel, op.stride, op.dilation)
        return _from_2d(win.amax(dim=(-2, -1)), op.spatial_dims)

    return run


def _prep_avgpool_sum(op: ir.AvgPoolSum, device: torch.device, gemm: str) -> Kernel:
    def run(x: Tensor) -> Tensor:
        x = _as_2d(x, op.spatial_dims)
        if any(op.padding):
            x = F.pad(x, op.padding, value=op.pad_value)
        if x.shape[2] == op.kernel[0] and x.shape[3] == op.kernel[1]:  # global: a plain sum
            return _from_2d(x.sum((2, 3), keepdim=True, dtype=torch.int32), op.spatial_dims)
        win = _windows(x, op.kernel, op.stride, (1, 1))
        return _from_2d(win.sum((-2, -1), dtype=torch.int32), op.spatial_dims)

    return run


def _prep_sum_reduce(op: ir.SumReduce, device: torch.device, gemm: str) -> Kernel:
    return lambda x: x.sum(op.dims, keepdim=op.keepdim, dtype=torch.int32)


def _prep_reshape(op: ir.Reshape, device: torch.device, gemm: str) -> Kernel:
    return lambda x: x.reshape(x.shape[0], *op.shape)


#: op kind -> prepare(op, device, gemm backend) -> kernel(*inputs).
KERNELS: dict[str, Callable[[ir.Op, torch.device, str], Kernel]] = {
    "conv": _prep_conv,  # type: ignore[dict-item]
    "linear": _prep_linear,  # type: ignore[dict-item]
    "requant": _prep_requant,  # type: ignore[dict-item]
    "clamp": _prep_clamp,  # type: ignore[dict-item]
    "add": _prep_add,  # type: ignore[dict-item]
    "cat": _prep_cat,  # type: ignore[dict-item]
    "maxpool": _prep_maxpool,  # type: ignore[dict-item]
    "avgpool_sum": _prep_avgpool_sum,  # type: ignore[dict-item]
    "sum_reduce": _prep_sum_reduce,  # type: ignore[dict-item]
    "reshape": _prep_reshape,  # type: ignore[dict-item]
}

#: (producer kind, consumer kind) -> prepare(producer, consumer, device, gemm backend) -> one kernel
#: that runs both (the consumer reading the producer's output alone), or None where it does not apply.
FUSED: dict[tuple[str, str], Callable[[ir.Op, ir.Op, torch.device, str], Kernel | None]] = {
    ("conv", "requant"): _prep_layer_requant,  # type: ignore[dict-item]
    ("linear", "requant"): _prep_layer_requant,  # type: ignore[dict-item]
}
