"""Kernels of weight-only linear layers (``wo_linear``: float activations, integer weights).

* up to 4 bits, groups of whole blocks of 128 input features (or one group a row), on a CPU with
  AVX-512 (:func:`prep_packed_w4`): the codes packed two a byte and dequantised in registers,
  float32 activations and sums (:mod:`._numba_packed_float`), for calls of one row (decoding);
  calls of more rows run the kernels below;
* 4 bits, symmetric or with zero points, groups of 32 / 64 / 128 / 256 input features, output
  features a multiple of 16:
  ``torch.ops.aten._weight_int4pack_mm_for_cpu`` on the weight packed once by
  ``_convert_weight_to_int4pack_for_cpu`` (CPU);
* 8 bits per output channel, symmetric: ``torch.ops.aten._weight_int8pack_mm``;
* any other width or layout (2, 3 bits, ...): the codes are kept bit-packed (8 codes in ``bits``
  bytes, :func:`pack_bits`) and unpacked to float32 per call (``(codes - zp) * scale``); no float
  copy of the weight is kept.

Torch's two packed kernels run in bfloat16 (activations and scales rounded to it, float32 out): that is
their fast path on CPU; with float32 inputs they measured 30-100x slower (1024x1024, batch 64:
117 ms against 1.9 ms), slower than float32 ``F.linear``. Their outputs are within bfloat16
rounding of the simulation's (relative 1e-2); the unpacked form's and the packed w4 kernel's within
float32 rounding (the packed kernel's dequantised weights are the simulation's bit for bit).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels._base import Backend, Kernel

INT4_GROUPS = (32, 64, 128, 256)
#: the dtype of the packed kernels' activations and scales (their fast path on CPU)
FAST_DTYPE = torch.bfloat16


def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Unsigned codes (each < ``2^bits``, ``bits`` <= 7) packed densely: 8 codes in ``bits`` bytes (uint8)."""
    flat = codes.reshape(-1).to(torch.int64)
    flat = torch.cat([flat, flat.new_zeros((-len(flat)) % 8)]).view(-1, 8)
    shifts = torch.arange(8, device=flat.device) * bits
    words = (flat << shifts).sum(1)  # < 2^(8 bits) <= 2^56: fits int64
    out = (words[:, None] >> (8 * torch.arange(bits, device=flat.device))) & 0xFF
    return out.to(torch.uint8).reshape(-1)


def unpack_bits(packed: Tensor, bits: int, count: int) -> Tensor:
    """The first ``count`` codes of :func:`pack_bits`'s output (int32 for up to 3 bits, else int64)."""
    if bits == 2:  # four codes a byte: shifts on the bytes themselves, no wider word
        shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=packed.device)
        return ((packed[:, None] >> shifts) & 3).reshape(-1)[:count].to(torch.int32)
    wide = torch.int32 if bits <= 3 else torch.int64  # 8 codes of <= 3 bits fit 24 bits
    by = packed.view(-1, bits).to(wide)
    words = by[:, 0].clone()
    for i in range(1, bits):
        words |= by[:, i] << (8 * i)
    codes = (words[:, None] >> (bits * torch.arange(8, device=by.device, dtype=wide))) & ((1 << bits) - 1)
    return codes.reshape(-1)[:count]


def _unpacked(op: ir.WeightOnlyLinear, device: torch.device) -> Kernel:
    n, k = op.codes.shape
    bits = int(op.w_bits)
    low = int(op.codes.min())
    # below 8 bits the codes are kept packed (``bits`` / 8 bytes a weight) and unpacked per call
    packed = pack_bits(op.codes.to(torch.int64) - low, bits).to(device) if bits < 8 else op.codes.to(device)
    g = op.scale.shape[1]
    scale = op.scale.to(device=device, dtype=torch.float32).unsqueeze(-1)
    zp = op.zp.to(device=device, dtype=torch.float32).unsqueeze(-1)
    bias = None if op.bias is None else op.bias.to(device=device, dtype=torch.float32)

    def run(x: Tensor) -> Tensor:
        codes = (unpack_bits(packed, bits, n * k) + low) if bits < 8 else packed
        w = ((codes.float().reshape(n, g, k // g) - zp) * scale).reshape(n, k)  # the simulation's values
        return F.linear(x.float(), w, bias)

    return run


def _int4(op: ir.WeightOnlyLinear, device: torch.device) -> Kernel | None:
    n, k = op.codes.shape
    if device.type != "cpu" or op.w_bits != 4 or op.group_size not in INT4_GROUPS or k % op.group_size or n % 16:
        return None  # (the CPU int4 pack needs N divisible by 16)
    offset = 8 if int(op.codes.min()) < 0 else 0  # the kernel reads codes 0..15: (q - 8) * s + zero
    if int(op.codes.min()) + offset < 0 or int(op.codes.max()) + offset > 15:
        return None
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu((op.codes.to(torch.int32) + offset), 1)
    scale = op.scale.float()
    zero = (8 - offset - op.zp.float()) * scale  # (q + offset - 8) * s + zero == (q - zp) * s
    sz = torch.stack([scale.t(), zero.t()], dim=-1).to(FAST_DTYPE).contiguous()  # (K / G, N, 2)
    bias = None if op.bias is None else op.bias.float()
    group = int(op.group_size)

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(-1, k).to(FAST_DTYPE).contiguous(), packed, group, sz)
        y = y.float().reshape(*lead, n)
        return y if bias is None else y + bias

    return run


def _int8(op: ir.WeightOnlyLinear, device: torch.device) -> Kernel | None:
    n, k = op.codes.shape
    if device.type != "cpu" or op.w_bits > 8 or op.scale.shape[1] != 1 or bool((op.zp != 0).any()):
        return None
    codes, scale = op.codes.contiguous(), op.scale.reshape(-1).to(FAST_DTYPE).contiguous()
    bias = None if op.bias is None else op.bias.float()

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, k).to(FAST_DTYPE).contiguous(), codes, scale)
        y = y.float().reshape(*lead, n)
        return y if bias is None else y + bias

    return run


def prep_packed_w4(op: ir.WeightOnlyLinear, device: torch.device) -> Kernel | None:
    """The packed w4a16 kernel (:mod:`._numba_packed_float`: codes two a byte, dequantised in
    registers, float32 activations and sums), or None where it does not apply: not a CPU with
    AVX-512 (:func:`.packed.usable`), over 4 bits, groups not whole blocks of 128 codes."""
    from mpsearch.execution.kernels import _numba_packed_float as nf
    from mpsearch.execution.kernels.packed import ENABLED, usable

    n, k = op.codes.shape
    groups = op.scale.shape[1]
    if not ENABLED[0] or op.w_bits > 4 or not usable(device) or (groups > 1 and (k // groups) % nf.BLOCK):
        return None
    lo, hi = int(op.codes.min()), int(op.codes.max())
    low = -8 if lo < 0 else 0  # the code of stored nibble 0
    if lo < low or hi > low + 15:
        return None
    cz = (low - op.zp.to(torch.int64)).to(torch.float32).numpy()  # small integers: exact
    codes = (op.codes.to(torch.int16) - low - 8).to(torch.int8).numpy()  # nibble t - 8
    wpk, sz = nf.pack_tiles(codes, op.scale.to(torch.float32).numpy(), cz)
    k_pad = wpk.shape[1] * nf.BLOCK
    bpg = k_pad // nf.BLOCK if groups == 1 else k // groups // nf.BLOCK
    bias = np.zeros(n, np.float32) if op.bias is None else op.bias.to(torch.float32).numpy().copy()
    kernel = nf.wo_linear_kernel()  # compile (or load from the disk cache) now, not in the first call

    def run(x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, k).to(torch.float32).contiguous()
        out = torch.empty(x2.shape[0], n, dtype=torch.float32)
        kernel(x2.numpy(), wpk, k_pad, sz, bpg, bias, out.numpy())
        return out.reshape(*lead, n)

    run.packed_weight = wpk  # type: ignore[attr-defined]  # (tests and benchmarks read its size)
    return run


#: Most rows (tokens) per call that run on the packed w4 kernel; calls of more rows run what ran
#: before (torch's int4 / int8 kernels, else the unpacked form). It reads the weights once per row,
#: so at 2+ rows torch's int4 kernel measured as fast or faster (1024x1024: 0.125 vs 0.119 ms at
#: 2 rows, 0.77 vs 0.60 ms at 16; 1 row: 0.077 vs 0.106 ms).
PACKED_MAX_ROWS = 1


def prepare_wo_linear(op: ir.WeightOnlyLinear, device: torch.device, backend: Backend) -> Kernel:
    """The fastest kernel that runs ``op`` on ``device``: the packed w4 kernel (float32) for calls
    of at most :data:`PACKED_MAX_ROWS` rows where it applies; otherwise int4 pack, int8 pack, else unpacked."""
    other = _int4(op, device) or _int8(op, device) or _unpacked(op, device)
    packed = prep_packed_w4(op, device)
    if packed is None:
        return other
    k = op.codes.shape[1]

    def run(x: Tensor) -> Tensor:
        return packed(x) if x.numel() <= PACKED_MAX_ROWS * k else other(x)

    run.packed_weight = packed.packed_weight  # type: ignore[attr-defined]
    return run

KERNELS = {"wo_linear": prepare_wo_linear}
