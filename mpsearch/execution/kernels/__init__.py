"""Integer kernels of the ops in :mod:`mpsearch.execution.ir`, and the backends that run them.

``KERNELS[kind](op, device, gemm)`` prepares one op for ``device`` with the backend named
``gemm`` and returns a function of the op's input tensors; ``FUSED[(producer, consumer)](op,
consumer_op, device, gemm)`` prepares one kernel for two ops, or returns None where the backend
does not fuse them (:mod:`mpsearch.execution._steps` decides where fusion is asked for). The
contract of a kernel and of a backend, and how to add either, is in :mod:`._base`.

Where things live:

* generic kernels, one module per op family (torch, any device): :mod:`.layers` (conv,
  linear), :mod:`.requant`, :mod:`.elementwise` (clamp, add, cat, reshape), :mod:`.pooling`
  (maxpool, avgpool_sum, sum_reduce), :mod:`.islands` (data moves and declared float islands),
  :mod:`.activations` (activation matmul and mul, embedding lookup), :mod:`.ibert` (I-BERT
  integer GELU, softmax, LayerNorm), :mod:`.weight_only` (weight-only linear: torch's int4 / int8
  weight kernels);
* backends: :mod:`.gemm` ("int32", "int_mm": the torch GEMMs), :mod:`.numba_cpu` ("numba":
  compiled CPU kernels in :mod:`._numba_direct`, :mod:`._numba_conv`, :mod:`._numba_kernels`),
  :mod:`.intmm_cpu` ("int_mm_fused": ``torch._int_mm`` with numba im2col and fused epilogues,
  :mod:`._numba_intmm`; "auto" on a CPU with VNNI or AMX).
"""

from __future__ import annotations

from typing import Callable

import torch

from mpsearch.errors import rule_error
from mpsearch.execution import ir
from mpsearch.execution.kernels import (activations, elementwise, ibert, islands, layers, packed, pooling, requant,
                                      weight_only)
from mpsearch.execution.kernels._base import Backend, Kernel
from mpsearch.execution.kernels.gemm import Int32Backend, IntMmBackend, int_matmul
from mpsearch.execution.kernels.intmm_cpu import IntMmFusedBackend
from mpsearch.execution.kernels.numba_cpu import NUMBA_MIN_K, NumbaBackend

__all__ = ["AUTO", "BACKENDS", "FUSED", "GEMMS", "GENERIC", "KERNELS", "NUMBA_MIN_K", "Backend", "Kernel",
           "backend_for", "int_matmul", "prepare_add_group", "resolve_gemm"]

Prepare = Callable[[ir.Op, torch.device, Backend], Kernel]

#: the op families of generic kernels; a new family is a module with a ``KERNELS`` table, listed here.
FAMILIES = (layers, requant, elementwise, pooling, islands, activations, ibert, weight_only)


def _merge(families: tuple[object, ...]) -> dict[str, Prepare]:
    table: dict[str, Prepare] = {}
    for family in families:
        new: dict[str, Prepare] = getattr(family, "KERNELS")
        clash = sorted(set(table) & set(new))
        if clash:
            raise ValueError(f"kernels: op kinds {clash} have kernels in two families (one is {family!r})")
        table.update(new)
    return table


#: op kind -> prepare(op, device, backend) -> kernel: the torch form every backend falls back to.
GENERIC: dict[str, Prepare] = _merge(FAMILIES)

#: backend name -> backend; a new backend is an instance listed here.
BACKENDS: dict[str, Backend] = {b.name: b for b in (IntMmBackend(), Int32Backend(), NumbaBackend(),
                                                     IntMmFusedBackend())}
#: what "auto" picks per device type, the first usable backend in order (any other device:
#: "int32"). On a CPU with int8 dot products (VNNI, AMX) "int_mm_fused" measured 3-10x the numba
#: GEMMs (benchmarks/bench_vs_fbgemm.py); without them numba measured 3-5x faster than torch's
#: int32 matmul, which was about 4x faster than ``torch._int_mm`` there.
AUTO: dict[str, tuple[str, ...]] = {"cuda": ("int_mm",), "cpu": ("int_mm_fused", "numba")}
#: the names ``IntegerModel.to(gemm=...)`` accepts.
GEMMS = ("auto", *BACKENDS)


def resolve_gemm(gemm: str, device: torch.device) -> str:
    """The backend that runs for ``gemm`` on ``device``: "auto" is :data:`AUTO`'s pick; a backend
    that cannot run there (numba off CPU or not installed) gives way to "int32"."""
    if gemm == "auto":
        gemm = next((g for g in AUTO.get(device.type, ()) if BACKENDS[g].usable(device)), "int32")
    if gemm not in BACKENDS:
        raise rule_error("kernels", "gemm", f"one of {', '.join(GEMMS)}", gemm)
    return gemm if BACKENDS[gemm].usable(device) else "int32"


def backend_for(gemm: str, device: torch.device) -> Backend:
    """The :class:`Backend` that :func:`resolve_gemm` names."""
    return BACKENDS[resolve_gemm(gemm, device)]


def _prepare(op: ir.Op, device: torch.device, gemm: str) -> Kernel:
    """``op``'s kernel: the backend's own where it has one, else the generic one with its GEMM."""
    backend = backend_for(gemm, device)
    kernel = packed.packed_kernel(op, device) if backend.name in packed.BACKENDS else None  # low-bit layers
    kernel = kernel if kernel is not None else backend.kernel(op, device)
    return kernel if kernel is not None else GENERIC[op.KIND](op, device, backend)


def _prepare_fused(producer: ir.Op, consumer: ir.Op, device: torch.device, gemm: str) -> Kernel | None:
    backend = backend_for(gemm, device)
    if backend.name in packed.BACKENDS and isinstance(consumer, ir.Requant):
        kernel = packed.packed_kernel(producer, device, consumer)
        if kernel is not None:
            return kernel
    return backend.fused(producer, consumer, device)


#: op kind -> prepare(op, device, gemm name) -> kernel(*inputs).
KERNELS: dict[str, Callable[[ir.Op, torch.device, str], Kernel]] = {kind: _prepare for kind in GENERIC}

#: (producer kind, consumer kind) -> prepare(producer, consumer, device, gemm name) -> one kernel
#: that runs both (the consumer reading the producer's output alone), or None where it does not apply.
FUSED: dict[tuple[str, str], Callable[[ir.Op, ir.Op, torch.device, str], Kernel | None]] = {
    pair: _prepare_fused for backend in BACKENDS.values() for pair in sorted(backend.fuses)}


def prepare_add_group(pre: tuple[ir.Requant | None, ir.Requant | None], post: ir.Requant | ir.Clamp | None,
                      apart: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
                      gemm: str) -> Kernel | None:
    """One kernel for an add with the requants that alone feed it and the requant or clamp that
    alone reads it (:meth:`Backend.fused_add` of the backend ``gemm`` names), or None."""
    return backend_for(gemm, device).fused_add(pre, post, apart, device)
