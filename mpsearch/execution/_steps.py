"""How a program runs: its ops grouped into steps, each one kernel call.

A step is one op, or a conv / linear and the requant of its accumulator fused into one kernel
(``kernels.FUSED``; numba on CPU), so the int32 accumulator is never written to memory. A value
is fused away only when exactly one op reads it and nobody asked to see it (``keep``, the program
output). The fused step runs at the producer's place; the requant it absorbs reads nothing else,
so the order stays valid. Fusion changes no integer: each fused kernel is tested to give the
integers of its ops run apart. Before fusing, a requant that reads a max pool or a reshape alone
runs before it where that gives the same integers (:mod:`._reorder`), so the conv before the pool
can fuse it; ``Step.ops`` still names the program's ops (each once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import torch
from torch import Tensor

from mpsearch.execution import ir
from mpsearch.execution._reorder import commute_requants
from mpsearch.execution.kernels import FUSED, prepare_add_group, KERNELS


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
    visible = set(keep) | ({output} if output is not None else set())
    order = commute_requants(ops, visible)  # (index in ops, op): requants moved before pools / reshapes
    run = [op for _, op in order]
    readers: dict[str, list[int]] = {}
    for i, op in enumerate(run):
        for name in op.inputs:
            readers.setdefault(name, []).append(i)
    steps: list[Step] = []
    groups = _add_groups(run, readers, visible, device, gemm)
    absorbed: set[int] = {j for group in groups.values() for j in group[0][1:]}
    for i, op in enumerate(run):
        if i in absorbed:
            continue
        if i in groups:
            members, inputs, kernel = groups[i]
            out_name = run[members[-1]].name if members[-1] > i else op.name  # the post op's, else the add's
            steps.append(Step(tuple(order[j][0] for j in members), inputs, out_name, kernel))
            continue
        users = readers.get(op.name, [])
        if len(users) == 1 and op.name not in visible:
            j = users[0]
            prep = FUSED.get((op.KIND, run[j].KIND))
            if prep is not None and run[j].inputs == (op.name,):
                kernel = prep(op, run[j], device, gemm)
                if kernel is not None:
                    steps.append(Step((order[i][0], order[j][0]), op.inputs, run[j].name, kernel))
                    absorbed.add(j)
                    continue
        steps.append(Step((order[i][0],), op.inputs, op.name, KERNELS[op.KIND](op, device, gemm)))
    return steps


def _add_groups(run: Sequence[ir.Op], readers: dict[str, list[int]], visible: Collection[str],
                device: torch.device, gemm: str) -> dict[int, tuple[list[int], tuple[str, ...], Callable[..., Tensor]]]:
    """Add index -> (indices of the add, the requants that alone feed it and the requant or clamp that
    alone reads it, in that order; the step's inputs; its kernel) where ``kernels.prepare_add_group`` runs
    them as one kernel. A requant that its producer's kernel can fuse (a conv's) stays there."""
    producer = {op.name: i for i, op in enumerate(run)}
    groups: dict[int, tuple[list[int], tuple[str, ...], Callable[..., Tensor]]] = {}

    def alone(name: str, reader: int) -> bool:
        return readers.get(name) == [reader] and name not in visible

    for i, op in enumerate(run):
        if not isinstance(op, ir.Add) or len(op.inputs) != 2:
            continue
        pre: list[int | None] = []
        for name in op.inputs:
            p = producer.get(name)
            src = producer.get(run[p].inputs[0]) if p is not None and run[p].inputs else None
            fusable = (src is not None and (run[src].KIND, "requant") in FUSED
                       and alone(run[src].name, p))  # type: ignore[arg-type]
            ok = (p is not None and isinstance(run[p], ir.Requant) and len(run[p].inputs) == 1 and alone(name, i)
                  and not fusable)
            pre.append(p if ok else None)
        users = readers.get(op.name, [])
        q = users[0] if len(users) == 1 and op.name not in visible else None
        post = q if q is not None and isinstance(run[q], (ir.Requant, ir.Clamp)) and run[q].inputs == (op.name,) \
            else None
        if pre == [None, None] and post is None:
            continue
        parts = [(i, op)] + [(j, run[j]) for j in pre if j is not None] + ([(post, run[post])] if post is not None else [])
        apart = _composed(op, [run[j] if j is not None else None for j in pre],
                          run[post] if post is not None else None, device, gemm)
        kernel = prepare_add_group(tuple(run[j] if j is not None else None for j in pre),  # type: ignore[arg-type]
                           run[post] if post is not None else None, apart, device, gemm)
        if kernel is None:
            continue
        inputs = tuple(run[j].inputs[0] if j is not None else name for j, name in zip(pre, op.inputs))
        groups[i] = ([j for j, _ in parts], inputs, kernel)
    return groups


def _composed(add: ir.Add, pre: list[ir.Op | None], post: ir.Op | None, device: torch.device,
              gemm: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The add group's ops run apart, each with its own kernel (for inputs a fused kernel does not take)."""
    kernels = [KERNELS[op.KIND](op, device, gemm) if op is not None else None for op in (*pre, add, post)]
    ka, kb, k_add, k_post = kernels

    def run(a: Tensor, b: Tensor) -> Tensor:
        y = k_add(ka(a) if ka is not None else a, kb(b) if kb is not None else b)  # type: ignore[misc]
        return k_post(y) if k_post is not None else y

    return run


def last_reads(steps: Sequence[Step]) -> dict[str, int]:
    """Value name -> index of the last step that reads it (when it can be freed)."""
    last: dict[str, int] = {}
    for k, step in enumerate(steps):
        for name in step.inputs:
            last[name] = k
    return last
