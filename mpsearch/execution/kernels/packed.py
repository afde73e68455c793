"""Packed low-bit kernels: layers of 4 bits or fewer keep their weights packed at their width and
run on kernels that read the packed bytes (:mod:`._numba_packed`), so fewer bits move fewer bytes.

* ``linear`` with ``w_bits`` 2 (four codes a byte) or 3-4 (two codes a byte; 3-bit codes fit an
  int4 nibble): int8 activations times the packed codes with AVX-512 VNNI ``vpdpbusd``, int32
  sums, optionally with the ``requant`` that reads the accumulator fused in (the same integers
  as every other backend: tested bit for bit against the int64 reference);
* groups-1 ``conv`` at those widths (:func:`prep_packed_conv`): int8 im2col, then the packed codes
  in tiles of 4 channels x 4 output pixels (each weight vector unpacked once for 4 pixels); per call
  where it measured faster than the int8 path (:data:`PACKED_CONV_MIN_MACS`), else the int8 path;
* storage (:func:`stored_arrays`, :func:`restored_tensor`): ``weights.npz`` keeps the weight codes
  of every layer under 8 bits packed densely at their width (:func:`.weight_only.pack_bits`,
  offset-binary ``code + 2^(bits-1)``), so the file shrinks with the bits.

The kernels run where :func:`usable`: CPU, numba installed, AVX-512 VNNI. Elsewhere (and for
8-bit layers, grouped convs, reductions of 2^16 or more) the backend's own kernels run.
The weight-only float path (w4a16) has its own packed kernel: :func:`.weight_only.prep_packed_w4`.
:data:`ENABLED` turns the packed kernels off (benchmarks use it to time the unpacked form).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mpsearch.errors import rule_error
from mpsearch.execution import ir
from mpsearch.execution.kernels import _numba_jit
from mpsearch.execution.kernels._base import DTYPES, Kernel
from mpsearch.execution.kernels.requant import channel_consts
from mpsearch.execution.kernels.weight_only import pack_bits, unpack_bits

#: The backends whose low-bit linears run packed ("int32" and "int_mm" stay the plain torch forms).
BACKENDS = frozenset({"numba", "int_mm_fused"})
#: ``ENABLED[0]``: whether :func:`packed_kernel` may return a kernel (a switch for benchmarks).
ENABLED = [True]
#: Longest reduction the packed kernels take: ``255 * 128`` times ``K`` stays inside int32.
MAX_K = 1 << 16
_USABLE: list[bool] = []


def usable(device: torch.device) -> bool:
    """Whether the packed kernels run on ``device``: a CPU with AVX-512 VNNI, numba installed."""
    if device.type != "cpu" or not _numba_jit.available():
        return False
    if not _USABLE:
        from mpsearch.execution.kernels._numba_packed import vnni_available

        _USABLE.append(vnni_available())
    return _USABLE[0]


def kernel_bits(w_bits: int) -> int | None:
    """The width a ``w_bits`` layer is packed at in memory for the kernels (2 or 4), or None (8 bits)."""
    if w_bits <= 2:
        return 2
    return 4 if w_bits <= 4 else None


def _fits(codes: Tensor, bits: int) -> bool:
    lo = -(1 << (bits - 1))
    return bool(int(codes.min()) >= lo and int(codes.max()) <= -lo - 1)


def prep_packed_linear(op: ir.Linear, corr: Tensor, requant: ir.Requant | None = None) -> Kernel | None:
    """The packed kernel of a low-bit ``linear`` (int8 codes in; the int32 accumulator out, or the
    fused requant's codes), or None where it does not apply (the caller runs another kernel).

    Args:
        op: the linear layer; its ``w_bits`` picks the packing (:func:`kernel_bits`).
        corr: int32 ``(Cout,)``: bias with the zero-point correction folded in (:func:`.layers.layer_corr`).
        requant: the requant that alone reads ``op``'s accumulator, fused into the epilogue.
    """
    from mpsearch.execution.kernels import _numba_packed as nk

    bits = kernel_bits(int(op.w_bits))
    w = op.weight
    if bits is None or w.dim() != 2 or w.shape[1] >= MAX_K or not _fits(w, bits):
        return None
    cout, k = w.shape
    rq: list[np.ndarray] | None = None
    out_dtype = torch.int32
    if requant is not None:
        rq = channel_consts(requant, cout, 1)
        if rq is None:
            return None
        out_dtype = DTYPES[requant.out_dtype]
    consts = np.zeros((6, cout), np.int64)
    consts[0] = corr.to(torch.int64).numpy()
    if rq is not None:
        consts[1:] = np.stack([np.broadcast_to(np.asarray(t, np.int64), (cout,)) for t in rq])
    wpk = nk.pack_rows(w.to(torch.int8).numpy(), bits)  # the only copy of the weight kept
    k_pad = wpk.shape[1] * 8 // bits
    shift, has_rq = int(op.bias_shift), requant is not None
    kernel = nk.linear_kernel()  # compile (or load from the disk cache) now, not in the first call

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, k)
        if x2.dtype != torch.int8:
            x2 = x2.to(torch.int8)  # (int8 codes held in a wider dtype)
        x2 = x2.contiguous()
        out = torch.empty(x2.shape[0], cout, dtype=out_dtype)
        kernel(x2.numpy(), wpk, bits, k_pad, shift, consts, has_rq, out.numpy())
        return out.reshape(*lead, cout)

    run.packed_weight = wpk  # type: ignore[attr-defined]  # (tests and benchmarks read its size)
    return run


def prep_packed_conv(op: ir.Conv, corr: Tensor, requant: ir.Requant | None = None,
                     bits: int | None = None) -> Kernel | None:
    """The packed kernel of a low-bit groups-1 ``conv`` (:mod:`._numba_packed_conv`: int8 im2col, the
    packed weights in tiles of 4 channels x 4 pixels; int8 codes in, the int32 accumulator or the
    fused requant's codes out, NCHW views of NHWC memory), or None where it does not apply.
    ``bits`` overrides the packing width (8: the same kernel on int8 weights, for benchmarks)."""
    from mpsearch.execution.kernels import _numba_packed as nk
    from mpsearch.execution.kernels import _numba_packed_conv as nc

    bits = bits or kernel_bits(int(op.w_bits))
    w = op.weight
    cout = w.shape[0]
    k = w[0].numel()
    if bits is None or op.groups != 1 or k >= MAX_K or not _fits(w, bits):
        return None
    rq: list[np.ndarray] | None = None
    out_dtype = torch.int32
    if requant is not None:
        rq = channel_consts(requant, cout, op.spatial_dims + 1)
        if rq is None:
            return None
        out_dtype = DTYPES[requant.out_dtype]
    consts = np.zeros((6, cout), np.int64)
    consts[0] = corr.to(torch.int64).numpy()
    if rq is not None:
        consts[1:] = np.stack([np.broadcast_to(np.asarray(t, np.int64), (cout,)) for t in rq])
    wpk = nk.pack_rows(w.permute(0, 2, 3, 1).reshape(cout, k).to(torch.int8).numpy(), bits)  # (kh, kw, C) order
    k_pad = wpk.shape[1] * 8 // bits
    (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation
    kh, kw = w.shape[2], w.shape[3]
    shift, zp, has_rq, spatial = int(op.bias_shift), int(op.input_zp), requant is not None, op.spatial_dims
    im2col, gemm = nc.kernel("im2col"), nc.kernel("gemm")

    def run(x: Tensor) -> Tensor:
        if x.dtype != torch.int8:
            raise rule_error(f"integer op {op.name!r}", "input dtype", "int8 codes", x.dtype)
        xh = (x.unsqueeze(2) if spatial == 1 else x).permute(0, 2, 3, 1).contiguous()  # NHWC
        n, h, wd, _ = xh.shape
        oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
        ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
        rows = n * oh * ow
        rows_pad = -(-rows // nk.PIX) * nk.PIX
        cols = np.zeros((rows_pad, k_pad), np.int8)
        sum_x = np.zeros(rows_pad, np.int64)
        im2col(xh.numpy(), (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), zp, cols, sum_x)
        out = torch.empty(n, oh, ow, cout, dtype=out_dtype)
        gemm(cols, sum_x, wpk, bits, shift, consts, has_rq, out.view(rows, cout).numpy())
        y = out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory
        return y.squeeze(2) if spatial == 1 else y

    run.packed_weight = wpk  # type: ignore[attr-defined]
    return run


def packed_kernel(op: ir.Op, device: torch.device, requant: ir.Requant | None = None) -> Kernel | None:
    """The packed kernel for ``op`` (with ``requant`` fused where given) on ``device``, or None
    where none applies: the registration hook of :mod:`mpsearch.execution.kernels`."""
    if not ENABLED[0] or not isinstance(op, (ir.Linear, ir.Conv)) or kernel_bits(int(op.w_bits)) is None:
        return None
    if not usable(device):
        return None
    from mpsearch.execution.kernels.layers import layer_corr

    if isinstance(op, ir.Linear):
        return prep_packed_linear(op, layer_corr(op, device), requant)
    return _hybrid_conv(op, layer_corr(op, device), requant)


#: A packed conv call needs at least this many MACs and at most this many output pixels (batch x
#: OH x OW) to run packed; other calls run the int8 path (:func:`.intmm_cpu.prep_hybrid`). Measured
#: at batch 1 (benchmarks/bench_packed.py --convs): the demo CNNs' convs (0.04-0.6 M MACs) ran
#: 0.6-0.9x the int8 path packed (fixed costs: im2col buffer, two calls), 64->64 3x3 on 8x8 (2.4 M)
#: about even, 256->256 3x3 on 14x14 (116 M) 1.8-2.4x; at 256 pixels or more the int8 path's
#: ``torch._int_mm`` runs.
PACKED_CONV_MIN_MACS = 2_000_000
PACKED_CONV_MAX_PIXELS = 255


def _hybrid_conv(op: ir.Conv, corr: Tensor, requant: ir.Requant | None) -> Kernel | None:
    from mpsearch.execution.kernels.intmm_cpu import prep_hybrid

    packed = prep_packed_conv(op, corr, requant)
    int8 = prep_hybrid(op, requant) if packed is not None else None
    if packed is None or int8 is None:
        return None
    cout, per_pixel = op.weight.shape[0], op.weight[0].numel()

    def run(x: Tensor) -> Tensor:
        n, h, w = x.shape[0], x.shape[-2] if op.spatial_dims == 2 else 1, x.shape[-1]
        (pl, pr, pt, pb), (sh, sw), (dh, dw) = op.padding, op.stride, op.dilation
        kh, kw = op.weight.shape[2], op.weight.shape[3]
        pixels = n * ((h + pt + pb - (kh - 1) * dh - 1) // sh + 1) * ((w + pl + pr - (kw - 1) * dw - 1) // sw + 1)
        if pixels <= PACKED_CONV_MAX_PIXELS and pixels * cout * per_pixel >= PACKED_CONV_MIN_MACS:
            return packed(x)
        return int8(x)

    run.packed_weight = packed.packed_weight  # type: ignore[attr-defined]
    return run


# -- storage ---------------------------------------------------------------------------------
def storage_bits(op: ir.Op) -> int | None:
    """The width ``op``'s weight codes are stored at in ``weights.npz`` (its ``w_bits`` below 8), or None."""
    bits = getattr(op, "w_bits", 8)
    if isinstance(op, (ir.Conv, ir.Linear)) and bits < 8:
        return int(bits)
    if isinstance(op, ir.WeightOnlyLinear) and bits < 8:
        return int(bits)
    return None


def _weight_field(op: ir.Op) -> str:
    return "codes" if isinstance(op, ir.WeightOnlyLinear) else "weight"


def stored_arrays(op: ir.Op) -> dict[str, np.ndarray]:
    """``op``'s tensors as the arrays written to ``weights.npz``: the weight codes of a layer under 8
    bits packed at ``w_bits`` (uint8, :func:`.weight_only.pack_bits` of ``code + 2^(w_bits-1)``)."""
    arrays = {field: t.cpu().numpy() for field, t in op.tensors().items()}
    bits = storage_bits(op)
    field = _weight_field(op)
    if bits is not None and field in arrays:
        codes = torch.from_numpy(arrays[field]).to(torch.int64)
        if _fits(codes, bits):
            arrays[field] = pack_bits(codes + (1 << (bits - 1)), bits).numpy()
    return arrays


def restored_tensor(array: Any, info: dict[str, Any], w_bits: int | None) -> Tensor:
    """A tensor read back from ``weights.npz``: packed codes (a uint8 array whose ``graph.json``
    entry says int8) unpacked to the recorded shape; any other array as it is."""
    t = array if isinstance(array, Tensor) else torch.from_numpy(np.array(array, copy=True))
    if info.get("dtype") != "int8" or t.dtype != torch.uint8 or w_bits is None or w_bits >= 8:
        return t
    shape = tuple(info["shape"])
    count = int(np.prod(shape)) if shape else 1
    codes = unpack_bits(t, int(w_bits), count).to(torch.int64) - (1 << (int(w_bits) - 1))
    return codes.to(torch.int8).reshape(shape)
