"""Proofs that the integer path has no float op: :class:`DtypeAudit` records the dtype of every aten
op that runs; :func:`float_instructions` and :func:`float_llvm_ops` read the compiled code of the
kernels the dispatch mode cannot see into (numba), and :func:`integer_multiply_adds` finds the
integer SIMD multiply-adds their speed comes from."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class DtypeAudit(TorchDispatchMode):
    """A dispatch mode that records ``(op, dtypes)`` of every aten op run inside it.

    Example::

        with DtypeAudit() as audit:
            imodel.run(codes)
        assert not audit.float_ops

    Attributes:
        ops: every op seen, as ``(op name, tuple of input and output tensor dtypes)``.
        float_ops: the ops among them that read or produce a floating-point (or complex) tensor.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple[torch.dtype, ...]]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten((args, kwargs or {}, out))
        dtypes = tuple(t.dtype for t in flat if isinstance(t, torch.Tensor))
        self.ops.append((str(func), dtypes))
        return out

    @property
    def float_ops(self) -> list[tuple[str, tuple[torch.dtype, ...]]]:
        return [(name, d) for name, d in self.ops if any(x.is_floating_point or x.is_complex for x in d)]


# -- compiled code (numba kernels): what the dispatch mode cannot see --------------------------------
#: scalar / packed single, double or half precision suffixes of x86 SIMD float instructions.
_FP = r"(?:[sp][sdh])"
#: floating-point instructions of x86 assembly (AT&T or Intel syntax, SSE / VEX / EVEX forms):
#: arithmetic, min / max, square roots and reciprocals, rounding, dot products, fused multiply-adds
#: (``vfmadd231ps``, ``vfnmsub213sd``, ...), every conversion (``cvt*``), and float compares. The
#: ``v?`` prefix must be followed directly by the operation, so integer SIMD (``vp...``:
#: ``vpaddd``, ``vpmaddwd``, ``vpdpwssd``) and general-purpose integer instructions (``addq``,
#: ``imulq``, ``divl``, ``cmpq``) never match. Data moves, logic and shuffles of the float domain
#: (``vmovups``, ``vxorps``, ``vshufps``) are not arithmetic and also move integers: not matched.
FLOAT_INSTRUCTION = re.compile(
    r"\bv?(?:add|sub|mul|div|min|max|sqrt|rcp(?:14|28)?|rsqrt(?:14|28)?|round|rndscale|scalef|getexp|getmant|"
    r"reduce|range|fixupimm|addsub|hadd|hsub|dp(?:bf16)?)" + _FP + r"\b"
    r"|\bv?f(?:n?m(?:add|sub)|maddsub|msubadd)\d*" + _FP + r"\b"
    r"|\bv?cvt\w*"
    r"|\bv?u?comis[sdh]\b"
    r"|\bv?cmp\w*" + _FP + r"\b"
)
#: the integer multiply-adds of x86 SIMD: SSE2 / AVX2 ``pmaddwd`` (int16 pairs -> int32) and the
#: VNNI forms that also add into the accumulator (AVX-512 VNNI, AVX-VNNI): ``vpdpwssd`` (int16),
#: ``vpdpbusd`` (uint8 x int8), and their saturating ``...s`` variants.
INTEGER_MULTIPLY_ADD = re.compile(r"\b(?:v?pmaddwd|vpdpwssds?|vpdpbusds?)\b")
#: floating-point instructions of LLVM IR.
FLOAT_LLVM = re.compile(r"\b(?:fadd|fsub|fmul|fdiv|frem|fneg|fcmp|sitofp|uitofp|fptosi|fptoui|fpext|fptrunc)\b")


def float_instructions(asm: str) -> list[str]:
    """Every floating-point instruction in x86 assembly text (empty for integer-only code)."""
    return [m.group(0) for m in FLOAT_INSTRUCTION.finditer(asm)]


def float_llvm_ops(llvm_ir: str) -> list[str]:
    """Every floating-point operation in LLVM IR text (empty for integer-only code)."""
    return [m.group(0) for m in FLOAT_LLVM.finditer(llvm_ir)]


def integer_multiply_adds(asm: str) -> list[str]:
    """The lines of x86 assembly text that run an integer SIMD multiply-add (see
    :data:`INTEGER_MULTIPLY_ADD`), e.g. ``vpmaddwd %ymm1, %ymm2, %ymm3``."""
    return [line.strip() for line in asm.splitlines() if INTEGER_MULTIPLY_ADD.search(line)]
