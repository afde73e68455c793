"""DtypeAudit: record the dtype of every aten op that runs, to prove an integer path has no float op."""

from __future__ import annotations

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
