"""Matmuls between two activations (attention's QK^T and AV): not layers, but MACs all the same.

They have no weight, so nothing is quantized and no bit-width is chosen for them; their
operands are activations, so they cost ``MACs x a_bits x a_bits`` bit-operations, and model-level
MACs are wrong without them. Discovery records them with a :class:`torch.overrides.TorchFunctionMode`
active during its one forward, so the torch.fx run and the forward-hook run see the same ops.

Counted ops and MACs (dense: a causal mask does not halve them, as a dense kernel computes all):

* ``F.scaled_dot_product_attention(q [..., L, d], k [..., S, d], v [..., S, dv])``:
  QK^T = prod(q.shape[:-2]) * L * S * d, AV = prod(q.shape[:-2]) * L * S * dv (grouped-query
  attention counts q's heads, as its math kernel repeats k and v);
* ``torch.matmul`` / ``@`` / ``bmm`` / ``baddbmm``: output elements x the contracted length;
* ``torch.einsum`` of two operands: the product of the sizes of all its indices.

An op is skipped when an operand is an ``nn.Parameter`` or a view of one (a weight matmul, not
between activations), or when it runs inside a quantizable layer (the layer's own MACs count it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class ActivationMatmul:
    """One call of a matmul between two activations.

    Attributes:
        name: ``<innermost module>.<op>`` (``_1``, ``_2`` ... for repeats in one module), e.g.
            ``blocks.0.attn.sdpa``; the same in fx and hooks mode.
        op: "sdpa", "matmul", "bmm", "baddbmm" or "einsum".
        input_shapes: shapes of the tensor operands (q, k, v for sdpa), batch included.
        output_shape: shape of the result, batch included.
        macs: multiply-accumulates for one example (batch divided out, as ``Layer.macs``).
    """

    name: str
    op: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    macs: int


@dataclass(frozen=True)
class MatmulCall:
    """What the recorder saw: MACs of the whole call (all examples) and where it ran."""

    scope: str
    op: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    macs_total: int


def _is_weight(t: Any) -> bool:
    return isinstance(t, nn.Parameter) or isinstance(getattr(t, "_base", None), nn.Parameter)


def _sdpa_macs(args: tuple[Any, ...], kwargs: dict[str, Any], out: torch.Tensor) -> tuple[list[Any], int]:
    q, k, v = (list(args) + [kwargs.get(n) for n in ("query", "key", "value")[len(args):]])[:3]
    n_q, n_kv = q.shape[-2], k.shape[-2]
    qk = math.prod(q.shape[:-1]) * n_kv * q.shape[-1]  # [..., L, d] x [..., d, S]
    av = out.numel() * n_kv  # [..., L, S] x [..., S, dv]
    return [q, k, v], qk + av


def _matmul_macs(left: torch.Tensor, right: torch.Tensor, out: torch.Tensor) -> tuple[list[Any], int]:
    contracted = left.shape[-1] if left.dim() > 0 else 1
    return [left, right], out.numel() * contracted


def _einsum_macs(args: tuple[Any, ...]) -> tuple[list[Any], int] | None:
    equation, *ops = args
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    if not isinstance(equation, str) or len(ops) != 2 or not all(isinstance(t, torch.Tensor) for t in ops):
        return None
    sizes: dict[str, int] = {}
    for sub, t in zip(equation.split("->")[0].split(","), ops):
        sub = sub.strip()
        if "..." in sub:  # one symbol per broadcast dim, aligned from the right
            n_ell = t.dim() - (len(sub) - 3)
            sub = sub.replace("...", "".join(chr(0x100 + n_ell - 1 - i) for i in range(n_ell)))
        for ch, n in zip(sub, t.shape):
            sizes[ch] = max(sizes.get(ch, 1), int(n))
    return list(ops), math.prod(sizes.values())


#: torch function -> op name. ``Tensor.__rmatmul__(self, other)`` is ``other @ self``.
OPS: dict[Any, str] = {
    F.scaled_dot_product_attention: "sdpa",
    torch.matmul: "matmul", torch.Tensor.matmul: "matmul", torch.Tensor.__matmul__: "matmul",
    torch.Tensor.__rmatmul__: "rmatmul",
    torch.bmm: "bmm", torch.Tensor.bmm: "bmm",
    torch.baddbmm: "baddbmm", torch.Tensor.baddbmm: "baddbmm",
    torch.einsum: "einsum",
}


def _operands_and_macs(op: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                       out: Any) -> tuple[list[Any], int] | None:
    if not isinstance(out, torch.Tensor):
        return None
    if op == "sdpa":
        return _sdpa_macs(args, kwargs, out)
    if op == "einsum":
        return _einsum_macs(args)
    tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    if op == "baddbmm":
        tensors = tensors[1:3]  # (input, batch1, batch2)
    elif op == "rmatmul":
        tensors = tensors[1::-1]
    if len(tensors) < 2:
        return None
    return _matmul_macs(tensors[0], tensors[1], out)


class MatmulRecorder(TorchFunctionMode):
    """Records activation matmuls while active.

    Args:
        scope: returns ``(innermost module name, inside a quantizable layer?)`` at call time;
            the fx and hooks walks each supply their own.
    """

    def __init__(self, scope: Callable[[], tuple[str, bool]]) -> None:
        super().__init__()
        self.scope = scope
        self.calls: list[MatmulCall] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        op = OPS.get(func) if _hashable(func) else None
        if op is not None:
            found = _operands_and_macs(op, args, kwargs, out)
            if found is not None and not any(_is_weight(t) for t in found[0]):
                scope, inside_layer = self.scope()
                if not inside_layer:
                    self.calls.append(MatmulCall(
                        scope, "matmul" if op == "rmatmul" else op,
                        tuple(tuple(t.shape) for t in found[0] if isinstance(t, torch.Tensor)),
                        tuple(out.shape), int(found[1])))
        return out


def _hashable(func: Any) -> bool:
    try:
        hash(func)
        return True
    except TypeError:
        return False


def name_matmuls(calls: list[MatmulCall], batch_size: int) -> tuple[ActivationMatmul, ...]:
    """Name each call ``<scope>.<op>`` (suffix ``_k`` for the k-th repeat) and divide out the batch.

    MACs that do not split into ``batch_size`` examples are kept whole (as for layers).
    """
    used: dict[str, int] = {}
    out = []
    for c in calls:
        base = f"{c.scope}.{c.op}" if c.scope else c.op
        k = used.get(base, 0)
        used[base] = k + 1
        macs = c.macs_total // batch_size if batch_size > 0 and c.macs_total % batch_size == 0 else c.macs_total
        out.append(ActivationMatmul(base if k == 0 else f"{base}_{k}", c.op, c.input_shapes, c.output_shape, macs))
    return tuple(out)
