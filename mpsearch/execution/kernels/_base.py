"""The contract of an integer kernel and of a kernel backend, and how to add one.

**Kernel.** A kernel runs one op of the integer program (:mod:`mpsearch.execution.ir`), or two
fused ops, on tensors: ``kernel(*inputs) -> output``. It is made once per op by a *prepare*
function, ``prepare(op, device, backend) -> Kernel``, when the program is placed on a device
(:meth:`IntegerModel.to`): everything that depends only on the op (constants moved to the
device, weights packed, zero-point corrections folded into the bias, numba code compiled or
loaded from its cache) happens there, not in the kernel. Rules every kernel keeps:

* integers only: int8 codes in, int32 accumulators, int64 only inside a rescale; no float
  tensor and no float instruction (the tests run kernels under
  :class:`~mpsearch.execution.audit.DtypeAudit` and read compiled code with
  :func:`~mpsearch.execution.audit.float_instructions`);
* the exact integers of the op's semantics in :mod:`~mpsearch.execution.ir` -- every backend
  gives the same integers as every other, bit for bit (tested against int64 references);
* inputs and outputs carry the batch dimension first; an output may be a view (e.g. NCHW over
  NHWC memory), and a kernel must accept such views as inputs.

**Backend.** A backend is one way to run the kernels: ``IntegerModel.to(gemm=NAME)`` picks it
by name ("auto" picks per device, :data:`~mpsearch.execution.kernels.AUTO`). A backend
(:class:`Backend`) supplies

* :meth:`Backend.gemm`: the matrix product ``(cols @ w) << shift + corr`` that the generic
  conv (im2col) and linear kernels call;
* :meth:`Backend.kernel`: its own kernel for an op, or None to run the generic one
  (:data:`~mpsearch.execution.kernels.GENERIC`) with its GEMM;
* :meth:`Backend.fused`: one kernel for a producer and the consumer that alone reads it (pairs
  listed in :attr:`Backend.fuses`), or None where the ops run apart; :meth:`Backend.fused_add`:
  one kernel for a residual add with the requants around it;
* :meth:`Backend.usable`: whether it runs on a device here; where not, "int32" runs instead.

How to add a kernel for a new op kind (an op family such as LayerNorm or softmax): write
``prepare_<kind>(op, device, backend)`` in a module of this folder named after the family, list
it in that module's ``KERNELS = {kind: prepare}``, and add the module to ``FAMILIES`` in
``kernels/__init__.py``. Every kind in ``ir.OPS`` must have a generic kernel (tested).

How to add a backend (say torch's int4 weight-only kernels, or a CUDA path): subclass
:class:`Backend` (or ``Int32Backend`` of :mod:`.gemm` to keep the int32 GEMM) in a new module of
this folder, give it a ``name``, override what it runs faster, and add an instance to
``BACKENDS`` in ``kernels/__init__.py``. Return None from :meth:`Backend.kernel` for every op it
does not handle; test it against the "int32" backend on the same programs (tests/execution).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Protocol

import torch
from torch import Tensor

from mpsearch.execution import ir

Kernel = Callable[..., Tensor]
#: dtype names of the integer program -> torch dtypes.
DTYPES = {"int8": torch.int8, "int32": torch.int32}


class Gemm(Protocol):
    """``(cols @ w) << shift + corr`` for one prepared weight: ``cols (M, K)`` of ``in_dtype``
    holding int8 values -> int32 ``(M, N)``."""

    @property
    def in_dtype(self) -> torch.dtype: ...

    def __call__(self, cols: Tensor) -> Tensor: ...


class Backend:
    """One way to run the integer kernels (see the module docstring for the contract)."""

    #: the name users pass as ``IntegerModel.to(gemm=...)``.
    name: ClassVar[str] = ""
    #: (producer kind, consumer kind) pairs that :meth:`fused` may run as one kernel.
    fuses: ClassVar[frozenset[tuple[str, str]]] = frozenset()

    def usable(self, device: torch.device) -> bool:
        """Whether this backend runs on ``device`` here (default: everywhere)."""
        return True

    def gemm(self, w_kn: Tensor, corr: Tensor, shift: int) -> Gemm:
        """The matrix product for the int8 weight ``w_kn (K, N)``, int32 ``corr (N,)``, ``shift``."""
        raise NotImplementedError(f"backend {self.name!r} has no GEMM")

    def kernel(self, op: ir.Op, device: torch.device) -> Kernel | None:
        """This backend's own kernel for ``op``, or None to run the generic kernel with :meth:`gemm`."""
        return None

    def fused(self, producer: ir.Op, consumer: ir.Op, device: torch.device) -> Kernel | None:
        """One kernel running ``producer`` then ``consumer`` (which reads only its output), or None."""
        return None

    def fused_add(self, pre: tuple[ir.Requant | None, ir.Requant | None], post: ir.Requant | ir.Clamp | None,
                  apart: Callable[[Tensor, Tensor], Tensor], device: torch.device) -> Kernel | None:
        """One kernel ``(a, b) -> post(pre[0](a) + pre[1](b))`` for an add, the requants that alone
        feed it (None: the operand as is) and the requant or clamp that alone reads it (None: the
        sum), or None; ``apart`` runs the same ops apart (for inputs the kernel does not take)."""
        return None


def scalar_or(t: Tensor) -> int | Tensor:
    """A one-element tensor as a Python int (cheaper to broadcast), any other tensor as is."""
    return int(t.reshape(-1)[0]) if t.numel() == 1 else t


def as_2d(x: Tensor, spatial_dims: int) -> Tensor:
    """``(N, C, W)`` of a 1-d op as ``(N, C, 1, W)``; a 2-d op's input unchanged."""
    return x.unsqueeze(2) if spatial_dims == 1 else x


def from_2d(y: Tensor, spatial_dims: int) -> Tensor:
    """Inverse of :func:`as_2d`."""
    return y.squeeze(2) if spatial_dims == 1 else y
