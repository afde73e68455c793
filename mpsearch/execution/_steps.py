"""How a program runs: its ops grouped into steps, each one kernel call.

A step is one op, or a conv / linear and the requant of its accumulator fused into one kernel
(``kernels.FUSED``; numba on CPU), so the int32 accumulator is never written to memory. A value
is fused away only when exactly one op reads it and nobody asked to see it (``keep``, the program
output). The fused step runs at the producer's place; the requant it absorbs reads nothing else,
so the order stays valid. Fusion changes no integer: each fused kernel is tested to give the
integers of its ops run apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution.kernels import FUSED, KERNELS


@dataclass(frozen=True)
class Step:
    """One kernel call: ``ops`` (indices into the program, producer first) read ``inputs`` and
    produce ``output`` (the last op's value)."""

    ops: tuple[int, ...]
    inputs: tuple[str, ...]
    output: str
    kernel: Callable[..., Tensor]


def plan_steps(ops: Sequence[ir.Op], device: torch.device, gemm: str, keep: Collection[str] = (),
               output: str | None = None) -> list[Step]:
    """The steps that run ``ops`` on ``device`` with the ``gemm`` backend.

    Args:
        ops: the program's ops, in a valid execution order.
        device: where the kernels run.
        gemm: the GEMM backend name (``kernels.GEMMS``).
        keep: value names that must be produced (never fused away).
        output: the program's output value (never fused away).
    """
    readers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for name in op.inputs:
            readers.setdefault(name, []).append(i)
    visible = set(keep) | ({output} if output is not None else set())
    steps: list[Step] = []
    absorbed: set[int] = set()
    for i, op in enumerate(ops):
        if i in absorbed:
            continue
        users = readers.get(op.name, [])
        if len(users) == 1 and op.name not in visible:
            j = users[0]
            prep = FUSED.get((op.KIND, ops[j].KIND))
            if prep is not None and ops[j].inputs == (op.name,):
                kernel = prep(op, ops[j], device, gemm)
                if kernel is not None:
                    steps.append(Step((i, j), op.inputs, ops[j].name, kernel))
                    absorbed.add(j)
                    continue
        steps.append(Step((i,), op.inputs, op.name, KERNELS[op.KIND](op, device, gemm)))
    return steps


def last_reads(steps: Sequence[Step]) -> dict[str, int]:
    """Value name -> index of the last step that reads it (when it can be freed)."""
    last: dict[str, int] = {}
    for k, step in enumerate(steps):
        for name in step.inputs:
            last[name] = k
    return last
