"""The machine-code audit: it flags every x86 float instruction and no integer one, and finds the
integer multiply-adds of every x86 generation (AVX2 vpmaddwd, AVX-512 VNNI / AVX-VNNI vpdp*)."""

from __future__ import annotations

import pytest

from mpsearch.execution.audit import float_instructions, float_llvm_ops, integer_multiply_adds

FLOAT_OPS = [
    "vfmadd231ps", "vfmadd213ss", "vfnmadd231pd", "vfmsub132sd", "vfmaddsub213ps", "vmulps", "vaddps", "addss",
    "mulsd", "subsd", "vdivpd", "vsqrtps", "vmaxps", "vminsd", "vrcp14ps", "vroundps", "vrndscaleps", "dpps",
    "vdpbf16ps", "vaddph", "vcvtdq2ps", "vcvtps2dq", "vcvttps2dq", "cvtsi2sdl", "vcvtsi2ss", "cvtss2sd",
    "ucomiss", "vcomisd", "vcmpltps",
]
INTEGER_OPS = [
    "vpmaddwd", "pmaddwd", "vpdpwssd", "vpdpwssds", "vpdpbusd", "vpdpbusds", "vpaddd", "vpaddq", "vpsubd",
    "vpmulld", "vpmullq", "vpmuldq", "vpmaxsq", "vpminsd", "vpcmpgtd", "vpsraq", "vpsllvq", "vpmovsxbw",
    "vpbroadcastd", "vextracti128", "addq", "addl", "subq", "imulq", "mulxq", "divl", "idivq", "cmpq", "cmpl",
    "cmpb", "sarxq", "shlxq", "andnq", "cqto", "cltq", "movsbl", "movswl",
    # data moves, logic and shuffles in the float domain: they move integers too, no arithmetic
    "vmovups", "vmovaps", "vxorps", "vshufps", "vblendps", "vpermps", "vbroadcastss", "movss",
]


@pytest.mark.parametrize("op", FLOAT_OPS)
def test_every_float_instruction_is_found(op: str) -> None:
    for line in (f"\t{op}\t%ymm1, %ymm2, %ymm3", f"\t{{vex}}\t{op}\t%xmm0, %xmm1", f"  {op} zmm0, zmm1, zmm2"):
        assert float_instructions(line) == [op]


@pytest.mark.parametrize("op", INTEGER_OPS)
def test_no_integer_instruction_is_taken_for_float(op: str) -> None:
    assert float_instructions(f"\t{{vex}}\t{op}\t%ymm1, %ymm2, %ymm3\n\t{op}\t%rax, %rbx") == []


def test_integer_multiply_adds_of_every_generation() -> None:
    asm = "\n".join(f"\t{{vex}}\t{op}\t%ymm9, %ymm11, %ymm1" for op in INTEGER_OPS)
    found = [line.split()[1] for line in integer_multiply_adds(asm)]
    assert found == ["vpmaddwd", "pmaddwd", "vpdpwssd", "vpdpwssds", "vpdpbusd", "vpdpbusds"]


def test_float_llvm_ops() -> None:
    ir_text = "%3 = fadd double %1, %2\n%4 = add i32 %a, %b\n%5 = sitofp i64 %4 to double\n%6 = fcmp olt float %x, %y"
    assert float_llvm_ops(ir_text) == ["fadd", "sitofp", "fcmp"]
    assert float_llvm_ops("%r = mul nsw <8 x i32> %a, %b\n%s = sext <16 x i16> %w to <16 x i32>") == []
