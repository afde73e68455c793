"""Packed low-bit kernels (execution/kernels/packed.py, _numba_packed.py): the block-split packing
round-trips, the packed linear gives the int64 reference's integers bit for bit (int2 / int3 / int4,
odd sizes, several rows, a fused requant), the executor picks it for low-bit layers, and
weights.npz stores low-bit codes packed at their width."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mpsearch.execution import ir
from mpsearch.execution.kernels import FUSED, KERNELS
from mpsearch.execution.kernels import packed as pk
from mpsearch.execution.kernels._numba_packed import codes_per_block, pack_rows, unpack_rows

CPU = torch.device("cpu")
needs_packed = pytest.mark.skipif(not pk.usable(CPU), reason="packed kernels need numba and AVX-512 VNNI")


def _codes(bits: int, shape: tuple[int, int], seed: int) -> torch.Tensor:
    lo = -(1 << (bits - 1))
    return torch.randint(lo, -lo, shape, dtype=torch.int8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_block_split_layout_round_trip_and_size(bits: int) -> None:
    codes = _codes(bits, (7, 300), bits).numpy()
    packed = pack_rows(codes, bits)
    cpb = codes_per_block(bits)
    kp = -(-300 // cpb) * cpb  # 300 codes -> whole blocks of 64 (int8) or 128 (int4, int2)
    assert packed.dtype == np.uint8 and packed.shape == (8, kp * bits // 8)  # 7 rows -> 8 (multiple of 4)
    assert np.array_equal(unpack_rows(packed, bits, 7, 300), codes)


def test_block_split_layout_by_hand() -> None:
    # int4: byte j of a block holds code j (low nibble) and code 64 + j (high nibble), each + 8
    codes = np.zeros((1, 128), np.int8)
    codes[0, 0], codes[0, 64], codes[0, 1], codes[0, 65] = -8, 7, 3, -1
    row = pack_rows(codes, 4)[0]
    assert row[0] == (-8 + 8) | ((7 + 8) << 4) == 0xF0
    assert row[1] == (3 + 8) | ((-1 + 8) << 4) == 0x7B
    assert row[2] == 0x88  # two zero codes
    # int2 (blocks of 32 bytes): byte j holds codes j, 32 + j, 64 + j, 96 + j at bits 0, 2, 4, 6, each + 2
    c2 = np.zeros((1, 128), np.int8)
    c2[0, [0, 32, 64, 96]] = [-2, -1, 0, 1]
    assert pack_rows(c2, 2)[0, 0] == 0 | (1 << 2) | (2 << 4) | (3 << 6) == 0b11100100


def _linear(bits: int, n: int, k: int, seed: int, zp: int = 3, shift: int = 1) -> ir.Linear:
    w = _codes(bits, (n, k), seed)
    b = torch.randint(-5000, 5000, (n,), dtype=torch.int32, generator=torch.Generator().manual_seed(seed + 1))
    return ir.Linear(name="y", inputs=("x",), weight=w, bias=b, bias_shift=shift, input_zp=zp, w_bits=bits, a_bits=8)


def _reference(op: ir.Linear, x: torch.Tensor) -> torch.Tensor:
    acc = (x.long() - op.input_zp) @ op.weight.long().T
    return ((acc << op.bias_shift) + op.bias.long()).to(torch.int32)  # no wrap: values are small


@needs_packed
@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("n, k", [(1, 1), (5, 7), (33, 200), (130, 1000)])
def test_packed_linear_is_bit_exact(bits: int, n: int, k: int) -> None:
    op = _linear(bits, n, k, seed=n + k)
    x = torch.randint(-128, 128, (3, k), dtype=torch.int8, generator=torch.Generator().manual_seed(k))
    run = pk.packed_kernel(op, CPU)
    assert run is not None
    y = run(x)
    assert y.dtype == torch.int32 and torch.equal(y, _reference(op, x))
    assert torch.equal(y, KERNELS["linear"](op, CPU, "int32")(x))  # the torch int32 backend's integers
    kb = 2 if bits == 2 else 4
    cpb = codes_per_block(kb)
    assert run.packed_weight.nbytes == (-(-n // 4) * 4) * (-(-k // cpb) * cpb) * kb // 8  # type: ignore[attr-defined]


@needs_packed
def test_packed_linear_extremes_and_batch_dims() -> None:
    # every weight -8, every input code -128 with zp 127: the largest sums the int4 kernel sees
    k, n = 1000, 6
    w = torch.full((n, k), -8, dtype=torch.int8)
    op = ir.Linear(name="y", inputs=("x",), weight=w, bias=torch.zeros(n, dtype=torch.int32), bias_shift=0,
                   input_zp=127, w_bits=4, a_bits=8)
    x = torch.full((2, 3, k), -128, dtype=torch.int8)
    y = pk.packed_kernel(op, CPU)(x)
    assert y.shape == (2, 3, n) and int(y[0, 0, 0]) == -8 * (-128 - 127) * k == 2040000


@needs_packed
@pytest.mark.parametrize("bits", [2, 4])
def test_fused_requant_matches_the_separate_ops(bits: int) -> None:
    op = _linear(bits, 19, 150, seed=7)
    g = torch.Generator().manual_seed(3)
    rq = ir.Requant(name="z", inputs=("y",), zp_in=torch.tensor(0), multiplier=torch.randint(1 << 20, 1 << 22, (19,), generator=g),
                    shift=torch.full((19,), 30), zp_out=torch.tensor(-5), lo=torch.tensor(-128), hi=torch.tensor(127),
                    out_dtype="int8", bits=8)
    x = torch.randint(-128, 128, (4, 150), dtype=torch.int8, generator=g)
    fused = FUSED[("linear", "requant")](op, rq, CPU, "numba")
    assert fused is not None and hasattr(fused, "packed_weight")
    want = KERNELS["requant"](rq, CPU, "int32")(KERNELS["linear"](op, CPU, "int32")(x))
    got = fused(x)
    assert got.dtype == torch.int8 and torch.equal(got, want)
    assert int(got.min()) < 0 < int(got.max())  # the clamp range is exercised on both sides of zero


@needs_packed
def test_executor_picks_packed_kernels_for_low_bits_only() -> None:
    assert hasattr(KERNELS["linear"](_linear(4, 8, 64, 1), CPU, "numba"), "packed_weight")
    assert hasattr(KERNELS["linear"](_linear(2, 8, 64, 1), CPU, "numba"), "packed_weight")
    assert not hasattr(KERNELS["linear"](_linear(8, 8, 64, 1), CPU, "numba"), "packed_weight")
    assert not hasattr(KERNELS["linear"](_linear(4, 8, 64, 1), CPU, "int32"), "packed_weight")
    pk.ENABLED[0] = False
    try:
        assert not hasattr(KERNELS["linear"](_linear(4, 8, 64, 1), CPU, "numba"), "packed_weight")
    finally:
        pk.ENABLED[0] = True


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_storage_packs_low_bit_codes_at_their_width(bits: int) -> None:
    op = _linear(bits, 37, 11, seed=bits)  # 407 codes: not a multiple of 8
    arrays = pk.stored_arrays(op)
    assert arrays["weight"].dtype == np.uint8 and arrays["weight"].nbytes == 51 * bits  # ceil(407 / 8) groups
    info = {"dtype": "int8", "shape": [37, 11]}
    assert torch.equal(pk.restored_tensor(arrays["weight"], info, bits), op.weight)
    assert torch.equal(pk.restored_tensor(arrays["bias"], {"dtype": "int32", "shape": [37]}, bits), op.bias)
    w8 = _linear(8, 4, 4, seed=1)
    assert pk.stored_arrays(w8)["weight"].dtype == np.int8  # 8-bit codes stay as they are


def test_weights_npz_stores_4_bit_layers_packed(demo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mpsearch.core import BitPlan
    from mpsearch.demo import batches
    from mpsearch.execution import IntegerModel, to_integer
    from mpsearch.quant import quantizable_layer_names, quantize

    model, splits = demo("small_cnn")
    names = quantizable_layer_names(model)
    x = splits.test.tensors[0][:16]
    sizes = {}
    for bits in (8, 4):
        q = quantize(model, BitPlan.uniform(names, bits, 8), batches(splits.train, 256))
        imodel = to_integer(q, splits.example_inputs(2))
        imodel.save(tmp_path / f"w{bits}")
        with np.load(tmp_path / f"w{bits}" / "weights.npz") as npz:
            layers = [op for op in imodel.ops if isinstance(op, (ir.Conv, ir.Linear))]
            stored = [npz[f"{op.name}.weight"] for op in layers]
        n_weights = [op.weight.numel() for op in layers]
        want = [n if bits == 8 else -(-n // 8) * 4 for n in n_weights]  # 8 codes in 4 bytes
        assert [a.nbytes for a in stored] == want
        sizes[bits] = sum(want)
        loaded = IntegerModel.load(tmp_path / f"w{bits}")
        assert torch.equal(loaded.logits_int(x), imodel.logits_int(x))
    assert sizes[4] * 2 >= sizes[8] and sizes[4] * 2 - sizes[8] < 8 * len(n_weights)  # half, up to padding


@needs_packed
def test_packed_kernel_is_integer_only_and_uses_vnni() -> None:
    from mpsearch.execution.audit import float_instructions, float_llvm_ops
    from mpsearch.execution.kernels._numba_jit import jit
    from mpsearch.execution.kernels._numba_packed import _microkernel, linear_py

    _microkernel()
    fn = jit(linear_py, cache=False)  # compiled here (a kernel loaded from the disk cache has no IR text)
    w = pack_rows(np.ones((4, 128), np.int8), 4)
    out = np.zeros((1, 4), np.int32)
    fn(np.ones((1, 128), np.int8), w, 4, 128, 0, np.zeros((6, 4), np.int64), False, out)
    assert out.tolist() == [[128] * 4]
    for llvm in fn.inspect_llvm().values():  # type: ignore[attr-defined]
        assert float_llvm_ops(llvm[llvm.index("define"):]) == []
    for asm in fn.inspect_asm().values():  # type: ignore[attr-defined]
        assert float_instructions(asm) == []
        assert "vpdpbusd" in asm  # the packed codes meet the activations in VNNI dot products
