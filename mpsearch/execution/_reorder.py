"""Run a requant before the data move that feeds it, where that gives the same integers.

``requant(maxpool(x)) == maxpool(requant(x))`` bit for bit when the requant is the same map at
every pixel (constants per tensor or per channel) and never decreasing (multiplier >= 0): a
rounding to nearest (half up or half to even) of ``x * m / 2^s`` with ``m >= 0``, plus a zero
point and a clamp, is a non-decreasing function ``f`` of ``x``, and ``f(max(a, b)) ==
max(f(a), f(b))`` for any such ``f`` (ties included). A reshape commutes with a requant whose
constants are all per tensor (one map for every element), and a flatten of a conv's output with
a requant whose per-feature constants repeat one value per channel (the conv's per-channel scale
carried through the flatten: the requant then runs per channel before the flatten). A ReLU or other clamp is already a
bound of the requant (``convert`` folds it), non-decreasing too.

What it buys: the conv before the pool (or the flatten) then writes the requant's int8 codes in
its epilogue (``kernels.FUSED``), and the pool reads bytes instead of int32 -- what fbgemm does
(quantize the conv output, pool the bytes). :func:`commute_requants` is applied to the steps only
(``_steps.plan_steps``), never to the stored program: the values it renames stay visible under
their old names whenever somebody asks for them (``keep``), and then nothing moves.
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Sequence

from mpsearch.execution import ir


def _per_pixel(op: ir.Requant, sample_ndim: int, per_channel_ok: bool) -> bool:
    """Whether every constant of ``op`` is one value per tensor (or per channel, dim 1 of a sample
    of ``sample_ndim`` dims, where ``per_channel_ok``), so it is the same map at every pixel."""
    for t in op.tensors().values():
        if t.numel() == 1 and t.dim() <= sample_ndim:
            continue
        if per_channel_ok and t.dim() == sample_ndim and t.shape[1:].numel() == 1:
            continue
        return False
    return True


def _per_channel_before_flatten(move: ir.Reshape, rq: ir.Requant, src: ir.Op | None) -> ir.Requant | None:
    """``rq`` with its constants per channel of the conv output ``src`` that ``move`` flattens,
    where a constant is per feature of the flattened sample but the same at every pixel of a channel
    (a per-channel scale carried through the flatten); else None."""
    if not isinstance(src, ir.Conv) or len(move.shape) != 1:
        return None
    chans, feats = src.weight.shape[0], move.shape[0]
    if feats % chans:
        return None
    shape = (chans,) + (1,) * src.spatial_dims
    new = {}
    for field, t in rq.tensors().items():
        if t.numel() == 1 and t.dim() <= 1:
            continue
        if t.shape != (feats,):
            return None
        rows = t.reshape(chans, feats // chans)
        if not bool((rows == rows[:, :1]).all()):
            return None
        new[field] = rows[:, 0].reshape(shape).contiguous()
    return dataclasses.replace(rq, **new)


def _commutes(move: ir.Op, rq: ir.Requant) -> bool:
    if isinstance(move, ir.Reshape):
        return _per_pixel(rq, 1 + len(move.shape), per_channel_ok=False)
    if isinstance(move, ir.MaxPool):
        # every window must hold a real pixel (padding is -inf before and the int8 minimum after):
        # no padding, or padding of at most kernel - 1 per side without dilation
        (pl, pr, pt, pb), (kh, kw) = move.padding, move.kernel
        no_pad_window = not any(move.padding) or (move.dilation == (1, 1) and max(pl, pr) < kw and max(pt, pb) < kh)
        return (no_pad_window and bool((rq.multiplier >= 0).all())
                and _per_pixel(rq, 1 + move.spatial_dims, per_channel_ok=True))
    return False


def commute_requants(ops: Sequence[ir.Op], visible: Collection[str]) -> list[tuple[int, ir.Op]]:
    """``ops`` with each ``maxpool`` / ``reshape`` whose output only a requant reads run after that
    requant instead (the requant renamed ``<name>/before``, the move producing the requant's
    value), as ``(index of the op in ops, op)`` in a valid execution order; values named in
    ``visible`` are never renamed away."""
    readers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for name in op.inputs:
            readers.setdefault(name, []).append(i)
    producer = {op.name: op for op in ops}
    out: list[tuple[int, ir.Op]] = []
    moved: set[int] = set()
    for i, op in enumerate(ops):
        if i in moved:
            continue
        users = readers.get(op.name, [])
        if (isinstance(op, (ir.MaxPool, ir.Reshape)) and len(users) == 1 and op.name not in visible
                and len(op.inputs) == 1):
            j = users[0]
            rq = ops[j]
            early = None
            if isinstance(rq, ir.Requant) and rq.inputs == (op.name,):
                if _commutes(op, rq):
                    early = rq
                elif isinstance(op, ir.Reshape):
                    early = _per_channel_before_flatten(op, rq, producer.get(op.inputs[0]))
            if early is not None:
                early = dataclasses.replace(early, name=f"{rq.name}/before", inputs=op.inputs)
                out.append((j, early))
                out.append((i, dataclasses.replace(op, name=rq.name, inputs=(early.name,))))
                moved.add(j)
                continue
        out.append((i, op))
    return out
