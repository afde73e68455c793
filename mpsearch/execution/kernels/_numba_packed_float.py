"""Packed int4 weight-only matrix-vector kernel with float activations (w4a16: numba + AVX-512):
the codes stay packed two a byte in memory (:func:`._numba_packed.pack_rows` at 4 bits, the
block-split layout) and are dequantised in registers, so the kernel reads half a byte per weight.

**Dequantisation by table** (:func:`_microkernel`). For one row ``n`` and one group ``g`` the 16
possible weights are ``table[t] = float32(t + low - zp[n, g]) * scale[n, g]`` (``t`` the stored
nibble, ``low`` the code of nibble 0): one ``vaddps`` and one ``vmulps`` per row and group. A
nibble then becomes its float weight with one ``vpermps`` (which reads only the low 4 bits of each
index lane: no mask), so 32 codes cost one ``vpmovzxbd``, one shift, two ``vpermps`` and two FMAs.
The table's values are bit for bit the simulation's dequantised weights ``(codes - zp) * scale``
in float32 (``t + low - zp`` is a small integer, exact in float32; one rounding, the product), so
the kernel differs from dequantise-then-``F.linear`` only in the order of the float32 sums.

Groups are whole blocks of 128 codes (``group_size`` a multiple of 128, or one group per row).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpsearch.execution.kernels._numba_jit import load_numba
from mpsearch.execution.kernels._numba_packed import ROWS

#: Codes in one block (64 bytes, two nibbles a byte): a group spans whole blocks.
BLOCK = 128

_fdot: Any = None
_KERNEL: list[Callable[..., None]] = []


def _microkernel() -> Any:
    """The numba intrinsic ``packed_fdot(x, xoff, w, woff, n_blocks, sz, goff, bpg, acc)``.

    ``acc[r] = sum_{b < n_blocks} sum_{j < 128} table(r, b // bpg)[u(r, b, j)] * x[xoff + 128 b + j]``
    for ``r < ROWS`` (float32: FMAs into two 16-lane vectors, low and high nibbles, added, then the
    16 lanes summed as a tree: upper half to lower half, 4 times). ``u(r, b, j)`` is the nibble of byte ``j % 64`` (low for ``j < 64``)
    at ``w[woff + 64 (ROWS b + r) + j % 64]`` (:func:`pack_tiles`); ``table(r, g)[t] = (t + sz[i + 1])
    * sz[i]`` with ``i = goff + 2 (ROWS g + r)``. ``x``, ``sz``, ``acc`` float32; ``w`` uint8.
    """
    global _fdot
    if _fdot is not None:
        return _fdot
    load_numba()
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def packed_fdot(typingctx: Any, x: Any, xoff: Any, w: Any, woff: Any, n_blocks: Any, sz: Any, goff: Any,
                    bpg: Any, acc: Any) -> Any:
        for a in (x, sz, acc):
            if not (isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C"):
                return None
        if not (isinstance(w, types.Array) and w.dtype == types.uint8 and w.layout == "C"):
            return None
        i64t = types.int64
        sig = types.void(x, i64t, w, i64t, i64t, sz, i64t, i64t, acc)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            def data(i: int) -> Any:
                return context.make_array(signature.args[i])(context, builder, args[i]).data

            x_ptr, w_ptr, sz_ptr, acc_ptr = data(0), data(2), data(5), data(8)
            i8, i32, i64, f32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
            v16f, v16i, v16b = ir.VectorType(f32, 16), ir.VectorType(i32, 16), ir.VectorType(i8, 16)
            mod = builder.module
            perm = mod.globals.get("llvm.x86.avx512.permvar.sf.512") or ir.Function(
                mod, ir.FunctionType(v16f, [v16f, v16i]), name="llvm.x86.avx512.permvar.sf.512")
            fma = mod.globals.get("llvm.fma.v16f32") or ir.Function(
                mod, ir.FunctionType(v16f, [v16f, v16f, v16f]), name="llvm.fma.v16f32")

            def c64(v: int) -> Any:
                return ir.Constant(i64, v)

            def splat(value: Any) -> Any:
                vec = builder.insert_element(ir.Constant(v16f, None), value, ir.Constant(i32, 0))
                return builder.shuffle_vector(vec, ir.Constant(v16f, None), ir.Constant(v16i, [0] * 16))

            x_base = builder.gep(x_ptr, [args[1]])
            w_base = builder.gep(w_ptr, [args[3]])
            sz_base = builder.gep(sz_ptr, [args[6]])
            iota = ir.Constant(v16f, [float(t) for t in range(16)])
            four = ir.Constant(v16i, [4] * 16)
            entry = builder.block
            loop = builder.append_basic_block("fdot_loop")
            done = builder.append_basic_block("fdot_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            blk = builder.phi(i64)
            blk.add_incoming(c64(0), entry)
            grp = builder.phi(i64)  # the block's group, counted (no division in the loop)
            grp.add_incoming(c64(0), entry)
            cnt = builder.phi(i64)  # blocks of the group already done
            cnt.add_incoming(c64(0), entry)
            accs = []  # two chains of FMAs per row (low and high nibbles), so 8 are in flight
            for _ in range(2 * ROWS):
                phi = builder.phi(v16f)
                phi.add_incoming(ir.Constant(v16f, [0.0] * 16), entry)
                accs.append(phi)
            xs = []  # the block's 128 activations: 8 vectors of 16
            for i in range(8):
                p = builder.gep(x_base, [builder.add(builder.mul(blk, c64(BLOCK)), c64(16 * i))])
                xs.append(builder.load(builder.bitcast(p, v16f.as_pointer()), align=4))
            new = []
            g_base = builder.mul(grp, c64(2 * ROWS))
            for r in range(ROWS):
                sv = splat(builder.load(builder.gep(sz_base, [builder.add(g_base, c64(2 * r))])))
                cv = splat(builder.load(builder.gep(sz_base, [builder.add(g_base, c64(2 * r + 1))])))
                table = builder.fmul(builder.fadd(iota, cv), sv)
                a, b = accs[2 * r], accs[2 * r + 1]
                wb = builder.gep(w_base, [builder.add(builder.mul(blk, c64(64 * ROWS)), c64(64 * r))])
                for i in range(4):
                    by = builder.load(builder.bitcast(builder.gep(wb, [c64(16 * i)]), v16b.as_pointer()), align=1)
                    lo = builder.zext(by, v16i)  # vpermps reads bits 0-3: the low nibble
                    hi = builder.lshr(lo, four)
                    a = builder.call(fma, [builder.call(perm, [table, lo]), xs[i], a])
                    b = builder.call(fma, [builder.call(perm, [table, hi]), xs[4 + i], b])
                new += [a, b]
            blk_next = builder.add(blk, c64(1))
            cnt_next = builder.add(cnt, c64(1))
            wrap = builder.icmp_signed("==", cnt_next, args[7])
            blk.add_incoming(blk_next, loop)
            grp.add_incoming(builder.add(grp, builder.zext(wrap, i64)), loop)
            cnt.add_incoming(builder.select(wrap, c64(0), cnt_next), loop)
            for phi, value in zip(accs, new):
                phi.add_incoming(value, loop)
            builder.cbranch(builder.icmp_signed("<", blk_next, args[4]), loop, done)
            builder.position_at_end(done)
            for r in range(ROWS):  # the 16 lanes summed as a tree: halves added, 4 steps deep
                value = builder.fadd(new[2 * r], new[2 * r + 1])
                width = 16
                while width > 1:
                    width //= 2
                    vt = ir.VectorType(f32, width)
                    low = builder.shuffle_vector(value, value, ir.Constant(ir.VectorType(i32, width), list(range(width))))
                    high = builder.shuffle_vector(value, value, ir.Constant(ir.VectorType(i32, width),
                                                                            list(range(width, 2 * width))))
                    value = builder.fadd(low, high)
                    assert value.type == vt
                builder.store(builder.extract_element(value, ir.Constant(i32, 0)), builder.gep(acc_ptr, [c64(r)]))
            return context.get_dummy_value()

        return sig, codegen

    _fdot = packed_fdot
    return packed_fdot


def pack_tiles(codes: np.ndarray, scale: np.ndarray, cz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed 4-bit codes ``(N, K)``, float32 ``scale`` and ``cz`` ``(N, G)`` -> the kernel's two
    streams: uint8 ``(Np / ROWS, Kp / 128, ROWS, 64)`` (each block of :func:`._numba_packed.pack_rows`
    at 4 bits, the ROWS rows of a tile side by side, so the weights are read in one sequential
    pass) and float32 ``(Np / ROWS, G, ROWS, 2)`` (scale and ``cz`` of each row and group, padded rows 0)."""
    from mpsearch.execution.kernels._numba_packed import pack_rows

    rows = pack_rows(codes, 4)
    n_pad = rows.shape[0]
    tiles = rows.reshape(n_pad // ROWS, ROWS, -1, 64).transpose(0, 2, 1, 3)
    sz = np.zeros((n_pad, scale.shape[1], 2), np.float32)
    sz[:len(scale), :, 0], sz[:len(scale), :, 1] = scale, cz
    sz = sz.reshape(n_pad // ROWS, ROWS, -1, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(tiles), np.ascontiguousarray(sz)


def wo_linear_py(x: Any, w: Any, k_pad: int, sz: Any, bpg: int, bias: Any, out: Any) -> None:
    """``out[m, n] = sum_k W[n, k] x[m, k] + bias[n]`` in float32 with ``W`` dequantised in registers.

    ``x`` float32 ``(M, K)`` C-contiguous; ``w``, ``sz``: :func:`pack_tiles`'s arrays; ``bpg``: blocks
    of 128 codes per group; ``bias`` float32 ``(N,)`` (zeros where the layer has none); ``out`` float32 ``(M, N)``.
    """
    rows, k = x.shape
    n_out = out.shape[1]
    n_blocks = k_pad // BLOCK
    n_groups = sz.shape[1]
    xb = np.zeros((rows, k_pad), np.float32)  # x padded with zeros (which add nothing) to whole blocks
    for m in range(rows):
        for t in range(k):
            xb[m, t] = x[m, t]
    acc = np.zeros(ROWS, np.float32)
    x_flat, w_flat, sz_flat = xb.reshape(-1), w.reshape(-1), sz.reshape(-1)
    for tile in range(w.shape[0]):
        r0 = tile * ROWS
        n_rows = min(ROWS, n_out - r0)
        for m in range(rows):
            _fdot(x_flat, m * k_pad, w_flat, tile * n_blocks * ROWS * 64, n_blocks, sz_flat,
                  tile * n_groups * ROWS * 2, bpg, acc)
            for r in range(n_rows):
                out[m, r0 + r] = acc[r] + bias[r0 + r]


def wo_linear_kernel() -> Callable[..., None]:
    """:func:`wo_linear_py` compiled by numba (compiled or loaded from the disk cache once)."""
    if not _KERNEL:
        from mpsearch.execution.kernels._numba_jit import jit

        _microkernel()
        _KERNEL.append(jit(wo_linear_py))
    return _KERNEL[0]
