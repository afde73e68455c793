"""Packed low-bit matrix-vector kernels (numba + AVX-512 VNNI; optional ``fast`` extra): the weights
stay packed at their width in memory (int8 one a byte, int4 two, int2 four) and are unpacked in
registers, so a kernel reads ``w_bits / 8`` bytes per weight.

**Block-split layout** (:func:`pack_rows`). A row of ``K`` codes is cut into blocks of ``B * c``
codes (``c = 8 / bits`` codes a byte, ``B`` = :func:`block_bytes`: 64, or 32 for int2 so that a
block is 128 codes); byte ``j`` of a block holds codes ``j``, ``B + j``, ... ``B (c - 1) + j`` of
the block at bits ``0, bits, 2 bits, ...``, each stored offset-binary ``u = code + 2^(bits-1)``
(unsigned, ``0 .. 2^bits - 1``). One vector load then gives ``c`` vectors of ``B`` consecutive
codes with one shift and one mask each: no shuffles. Rows are padded
with zero codes to whole blocks and to a multiple of :data:`ROWS`.

**Microkernel** (:func:`_microkernel`, LLVM vector IR): ``acc[r] = sum_j u[r, j] * x[j]`` for
:data:`ROWS` rows at once over ``n_blocks`` blocks. int8 ``x``: ``vpdpbusd`` (64 u8 x s8
products into 16 int32 lanes per instruction); int16 ``x``: ``vpdpwssd`` (32 s16 x s16 products).
The caller subtracts ``2^(bits-1) * sum(x)`` to return to signed codes. Every product and sum is
an exact integer: ``u * x`` is at most ``255 * 2^15`` and a row sums at most ``2^16`` of them for
int8 ``x`` (``K < 2^16``), so nothing overflows int32 (the layer's own sum is checked to fit int32
by the conversion, as for every other kernel).

Where the CPU lacks AVX-512 VNNI (:func:`vnni_available`), the packed kernels are not used and the
existing kernels run (:mod:`.packed`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpsearch.execution.kernels._numba_jit import load_numba

#: Weight rows per microkernel call (their x block is loaded once for all of them).
ROWS = 4
#: x rows per microkernel call in the conv kernel (:func:`gemm_py`): each unpacked weight vector feeds
#: ``ROWS x PIX`` accumulators held in registers.
PIX = 4
#: The widths stored packed.
PACKED_BITS = (2, 4, 8)

_dot: Any = None


def block_bytes(bits: int) -> int:
    """Bytes of one row's block (one vector load): 64 (512 bits), 32 for int2 (128 codes a block)."""
    return 32 if bits == 2 else 64


def codes_per_block(bits: int) -> int:
    """Codes in one block of a row packed at ``bits``: 64 for int8, 128 for int4 and int2."""
    return block_bytes(bits) * (8 // bits)


def vnni_available() -> bool:
    """Whether this CPU runs AVX-512 VNNI (``vpdpbusd`` / ``vpdpwssd`` on 512-bit vectors)."""
    try:
        import llvmlite.binding as llvm
    except ImportError:
        return False
    feats = llvm.get_host_cpu_features()
    return all(feats.get(f, False) for f in ("avx512vnni", "avx512bw", "avx512f"))


def pack_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Signed codes ``(N, K)`` (each in ``-2^(bits-1) .. 2^(bits-1)-1``) -> uint8 ``(Np, Kp * bits / 8)``
    in the block-split layout; ``Kp`` is ``K`` rounded up to whole blocks, ``Np`` is ``N`` rounded
    up to :data:`ROWS` (padding holds code 0)."""
    n, k = codes.shape
    c, cpb = 8 // bits, codes_per_block(bits)
    kp, np_ = -(-k // cpb) * cpb, -(-n // ROWS) * ROWS
    off = 1 << (bits - 1)
    u = np.full((np_, kp), off, np.uint16)
    u[:n, :k] = codes.astype(np.int16) + off
    nb = block_bytes(bits)
    u = u.reshape(np_, kp // cpb, c, nb)  # (row, block, which code of a byte, byte)
    packed = np.zeros((np_, kp // cpb, nb), np.uint16)
    for i in range(c):
        packed |= u[:, :, i, :] << (bits * i)
    return packed.astype(np.uint8).reshape(np_, -1)


def unpack_rows(packed: np.ndarray, bits: int, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_rows`: the signed int8 codes ``(n, k)``."""
    c = 8 // bits
    by = packed.reshape(packed.shape[0], -1, 1, block_bytes(bits)).astype(np.int16)
    shifts = (np.arange(c, dtype=np.int16) * bits).reshape(1, 1, c, 1)
    u = (by >> shifts) & ((1 << bits) - 1)
    return (u.reshape(packed.shape[0], -1)[:n, :k] - (1 << (bits - 1))).astype(np.int8)


def _microkernel() -> Any:
    """The numba intrinsic ``packed_dot(x, xoff, x_stride, w, woff, row_stride, n_blocks, bits, pix, acc)``.

    ``acc[P r + p] = sum_{b < n_blocks} sum_{j < B c} u(r, b, j) * x[xoff + p x_stride + B c b + j]``
    (int32) for ``r < ROWS`` and ``p < P = pix`` (a literal 1 or :data:`PIX`: P rows of ``x``, e.g.
    the output pixels of a conv, share each unpacked weight vector), where ``u(r, b, j) = (w[woff + r * row_stride + B b + j % B] >> (bits * (j // B)))
    & (2^bits - 1)`` and ``B`` = :func:`block_bytes`. ``x`` int8 (``vpdpbusd``) or int16 (``vpdpwssd``); ``w`` uint8; ``acc`` int32;
    all C-contiguous; ``bits`` a literal 2, 4 or 8; ``n_blocks >= 1``. With several x rows the
    ``ROWS x P`` accumulators stay in registers and each weight vector is unpacked once for all P.
    """
    global _dot
    if _dot is not None:
        return _dot
    load_numba()
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def packed_dot(typingctx: Any, x: Any, xoff: Any, x_stride: Any, w: Any, woff: Any, row_stride: Any,
                   n_blocks: Any, bits: Any, pix: Any, acc: Any) -> Any:
        if not (isinstance(x, types.Array) and x.dtype in (types.int8, types.int16) and x.layout == "C"):
            return None
        if not (isinstance(w, types.Array) and w.dtype == types.uint8 and w.layout == "C"):
            return None
        if not (isinstance(acc, types.Array) and acc.dtype == types.int32 and acc.layout == "C"):
            return None
        if not isinstance(bits, types.IntegerLiteral) or bits.literal_value not in PACKED_BITS:
            return None
        if not isinstance(pix, types.IntegerLiteral) or pix.literal_value not in (1, PIX):
            return None
        nbits, n_pix = int(bits.literal_value), int(pix.literal_value)
        wide_x = x.dtype == types.int16
        i64t = types.int64
        sig = types.void(x, i64t, i64t, w, i64t, i64t, i64t, bits, pix, acc)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            def data(i: int) -> Any:
                return context.make_array(signature.args[i])(context, builder, args[i]).data

            x_ptr, w_ptr, acc_ptr = data(0), data(3), data(9)
            nb = block_bytes(nbits)
            i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
            # one block of u: nb bytes; the VNNI vectors: nb / 4 int32 lanes (512 or 256 bits)
            vu, vacc, v32i16 = ir.VectorType(i8, nb), ir.VectorType(i32, nb // 4), ir.VectorType(i16, 32)
            mod = builder.module
            width = 8 * nb
            name = f"llvm.x86.avx512.vpdpwssd.{width}" if wide_x else f"llvm.x86.avx512.vpdpbusd.{width}"
            fnty = ir.FunctionType(vacc, [vacc, vacc, vacc])
            vnni = mod.globals.get(name) or ir.Function(mod, fnty, name=name)
            c = 8 // nbits

            def c64(v: int) -> Any:
                return ir.Constant(i64, v)

            x_bases = [builder.gep(x_ptr, [builder.add(args[1], builder.mul(args[2], c64(p)))]) for p in range(n_pix)]
            w_rows = [builder.gep(w_ptr, [builder.add(args[4], builder.mul(args[5], c64(r)))]) for r in range(ROWS)]
            entry = builder.block
            loop = builder.append_basic_block("pdot_loop")
            done = builder.append_basic_block("pdot_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            blk = builder.phi(i64)
            blk.add_incoming(c64(0), entry)
            accs = []
            for _ in range(ROWS * n_pix):
                phi = builder.phi(vacc)
                phi.add_incoming(ir.Constant(vacc, None), entry)
                accs.append(phi)
            # x of this block, per x row: c chunks of nb codes (int8: one vector; int16: nb / 32 of 32 lanes)
            x_chunks = []
            for x_base in x_bases:
                chunks = []
                for i in range(c):
                    start = builder.add(builder.mul(blk, c64(nb * c)), c64(nb * i))
                    p = builder.gep(x_base, [start])
                    if wide_x:
                        vx = ir.VectorType(i16, nb // 2)  # the int16 lanes of one VNNI operand
                        p16 = builder.bitcast(p, vx.as_pointer())
                        parts = [builder.load(builder.gep(p16, [c64(h)]), align=2) for h in range(2)]
                        chunks.append([builder.bitcast(h, vacc) for h in parts])
                    else:
                        chunks.append([builder.bitcast(builder.load(builder.bitcast(p, vu.as_pointer()), align=1), vacc)])
                x_chunks.append(chunks)
            mask = ir.Constant(vu, [(1 << nbits) - 1] * nb)
            halves = [ir.Constant(ir.VectorType(i32, nb // 2), list(range(h * nb // 2, (h + 1) * nb // 2)))
                      for h in range(2)]
            new = list(accs)
            for r in range(ROWS):
                p = builder.gep(w_rows[r], [builder.mul(blk, c64(nb))])
                wv = builder.load(builder.bitcast(p, vu.as_pointer()), align=1)
                for i in range(c):
                    u = wv if nbits == 8 else builder.and_(
                        wv if i == 0 else builder.lshr(wv, ir.Constant(vu, [nbits * i] * nb)), mask)
                    if wide_x:  # u widened to int16 lanes, in two operands of nb / 2 lanes
                        u16 = builder.zext(u, ir.VectorType(i16, nb))
                        ops = [builder.bitcast(builder.shuffle_vector(u16, ir.Constant(ir.VectorType(i16, nb), None), idx),
                                               vacc) for idx in halves]
                    else:
                        ops = [builder.bitcast(u, vacc)]
                    for q in range(n_pix):  # one unpacked weight vector, every x row
                        for h, op in enumerate(ops):
                            new[r * n_pix + q] = builder.call(vnni, [new[r * n_pix + q], op, x_chunks[q][i][h]])
            blk_next = builder.add(blk, c64(1))
            blk.add_incoming(blk_next, loop)
            for phi, value in zip(accs, new):
                phi.add_incoming(value, loop)
            builder.cbranch(builder.icmp_signed("<", blk_next, args[6]), loop, done)
            builder.position_at_end(done)
            for r, value in enumerate(new):  # the lanes summed as a tree (halves added)
                width = nb // 4
                while width > 1:
                    width //= 2
                    halves_idx = [ir.Constant(ir.VectorType(i32, width), list(range(o, o + width))) for o in (0, width)]
                    value = builder.add(*[builder.shuffle_vector(value, value, idx) for idx in halves_idx])
                builder.store(builder.extract_element(value, ir.Constant(i32, 0)), builder.gep(acc_ptr, [c64(r)]))
            return context.get_dummy_value()

        return sig, codegen

    _dot = packed_dot
    return packed_dot


_KERNEL: list[Callable[..., None]] = []


def linear_py(x: Any, w: Any, bits: int, k_pad: int, shift: int, consts: Any, has_rq: bool, out: Any) -> None:
    """``out[m, n]`` = the int32 accumulator ``(sum_k codes[n, k] * x[m, k]) << shift + corr[n]`` of a
    linear layer whose weights are packed by :func:`pack_rows`, or with ``has_rq`` its requant
    ``clamp((int64(acc) * m[n] + off[n]) >> s[n], lo[n], hi[n])`` (the fused epilogue of
    :mod:`._numba_conv`; ``consts`` rows ``corr, m, off, s, lo, hi``, int64 ``(6, N)``).

    ``x`` int8 ``(M, K)`` C-contiguous; ``w`` uint8 ``(Np, Kp bits / 8)``; ``out`` ``(M, N)`` int32 or
    the requant's int8. The int32 sum wraps as the other kernels' int32 sums do (the conversion
    proved it does not overflow).
    """
    rows, k = x.shape
    n_out = out.shape[1]
    row_bytes = w.shape[1]
    xb = np.zeros((rows, k_pad), np.int8)  # x padded with zeros (which add nothing) to whole blocks
    sum_x = np.zeros(rows, np.int64)
    for m in range(rows):
        dst, src = xb[m], x[m]
        for t in range(k):
            dst[t] = src[t]
            sum_x[m] += src[t]
    off = np.int64(1) << (bits - 1)  # the offset of the stored unsigned codes
    acc = np.zeros(ROWS, np.int32)
    for r0 in range(0, w.shape[0], ROWS):
        n_rows = min(ROWS, n_out - r0)
        if n_rows <= 0:
            break
        for m in range(rows):
            if bits == 4:
                _dot(xb, m * k_pad, 0, w, r0 * row_bytes, row_bytes, row_bytes // 64, 4, 1, acc)
            elif bits == 2:
                _dot(xb, m * k_pad, 0, w, r0 * row_bytes, row_bytes, row_bytes // 32, 2, 1, acc)
            else:
                _dot(xb, m * k_pad, 0, w, r0 * row_bytes, row_bytes, row_bytes // 64, 8, 1, acc)
            for r in range(n_rows):
                n = r0 + r
                s = np.int64(acc[r]) - off * sum_x[m]  # sum(codes * x), exact as an int32 sum
                a = np.int32((s << shift) + consts[0, n])  # wraps as an int32 sum does
                if has_rq:
                    y = (np.int64(a) * consts[1, n] + consts[2, n]) >> consts[3, n]
                    out[m, n] = min(max(y, consts[4, n]), consts[5, n])
                else:
                    out[m, n] = a


def linear_kernel() -> Callable[..., None]:
    """:func:`linear_py` compiled by numba (compiled or loaded from the disk cache once)."""
    if not _KERNEL:
        from mpsearch.execution.kernels._numba_jit import jit

        _microkernel()
        _KERNEL.append(jit(linear_py))
    return _KERNEL[0]


def gemm_py(cols: Any, sum_x: Any, w: Any, bits: int, shift: int, consts: Any, has_rq: bool, out: Any) -> None:
    """``out (M, N)`` from ``cols (Mp, Kp)`` int8 (``Mp`` a multiple of ``PIX``, ``M <= Mp``) and ``w``
    :func:`._numba_packed.pack_rows` at ``bits`` (``Np`` rows, ``Kp * bits / 8`` bytes each); ``consts``
    int64 ``(6, N)``: ``corr, m, off, s, lo, hi``; see the module docstring."""
    rows, k_pad = cols.shape
    n_pix, n_out = out.shape
    row_bytes = w.shape[1]
    off = np.int64(1) << (bits - 1)
    acc = np.zeros(ROWS * PIX, np.int32)  # (the literal 4 below is PIX: the intrinsic takes a literal)
    flat = cols.reshape(-1)
    for r0 in range(0, w.shape[0], ROWS):
        n_rows = min(ROWS, n_out - r0)
        for m0 in range(0, rows, PIX):
            if bits == 4:
                _dot(flat, m0 * k_pad, k_pad, w, r0 * row_bytes, row_bytes, row_bytes // 64, 4, 4, acc)
            elif bits == 2:
                _dot(flat, m0 * k_pad, k_pad, w, r0 * row_bytes, row_bytes, row_bytes // 32, 2, 4, acc)
            else:
                _dot(flat, m0 * k_pad, k_pad, w, r0 * row_bytes, row_bytes, row_bytes // 64, 8, 4, acc)
            for p in range(min(PIX, n_pix - m0)):
                m = m0 + p
                for r in range(n_rows):
                    n = r0 + r
                    s = np.int64(acc[r * PIX + p]) - off * sum_x[m]  # sum(codes * x), exact as an int32 sum
                    a = np.int32((s << shift) + consts[0, n])  # wraps as an int32 sum does
                    if has_rq:
                        y = (np.int64(a) * consts[1, n] + consts[2, n]) >> consts[3, n]
                        out[m, n] = min(max(y, consts[4, n]), consts[5, n])
                    else:
                        out[m, n] = a


_GEMM: list[Callable[..., None]] = []


def gemm_kernel() -> Callable[..., None]:
    """:func:`gemm_py` compiled by numba (compiled or loaded from the disk cache once)."""
    if not _GEMM:
        from mpsearch.execution.kernels._numba_jit import jit

        _microkernel()
        _GEMM.append(jit(gemm_py))
    return _GEMM[0]
