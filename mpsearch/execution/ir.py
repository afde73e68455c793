"""The integer program: a list of integer ops (frozen dataclasses) and its two float boundaries.

Values are named tensors with a leading batch dimension. Every tensor parameter of an op is an
integer tensor whose shape broadcasts against the op's output WITHOUT the batch dimension
(``()`` per tensor, ``(C, 1, 1)`` per channel of an ``N, C, H, W`` tensor). Dtypes: weights int8
(any width 2..8 fits), bias / multipliers / shifts / zero points / bounds int32.

The only float steps are the boundaries, outside the integer path, and, where integer-only is
not asked for, declared float islands (``dequant`` -> ``float_op`` / ``wo_linear`` -> ``quantize``).

* :class:`InputQuant` turns the float input into integer codes,
  ``clamp(round(x / scale) + zero_point, qmin, qmax)`` (IEEE float32 division, round half to
  even: the same integers as the fake-quant model's input quantizer);
* :class:`OutputSpec` says how to read the integer logits: ``scale * (q - zero_point)``.

Semantics of each op (``x``, ``y`` integer tensors, int64 where a product needs it):

* ``conv`` / ``linear``: ``acc = (sum(w * (x - input_zp)) << bias_shift) + bias``, int32 (int8 x
  int8 products; padding holds ``input_zp``, the code of a real 0). ``bias_shift`` (0..16) gives
  the bias bits below S_w * S_a where the int32 range allows (it is 0 in the textbook form).
* ``requant``: ``y = clamp(round((x - zp_in) * multiplier / 2^shift) + zp_out, lo, hi)`` in
  ``out_dtype``; ``round`` is ``rounding`` ("half_up": add ``2^(shift-1)`` then shift right).
* ``clamp``: ``y = clamp(x, lo, hi)``; ``add``: ``y = a + b`` (int32); ``cat``: concatenation.
* ``maxpool``: window max (padding is ``-inf``); ``avgpool_sum``: window SUM (padding holds
  ``pad_value``), the division by the window size is folded into the next rescale;
  ``sum_reduce``: sum over ``dims``; ``reshape``: reshape to ``(N, *shape)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from mpsearch.execution.calls import decode, encode  # noqa: F401  (the call templates of ShapeOp / FloatOp)


@dataclass(frozen=True, eq=False)
class Op:
    """Base of every integer op: ``name`` is its output value, ``inputs`` the values it reads.

    ``source`` names what it was built from (fx node and module) for reports and errors.
    """

    KIND: ClassVar[str] = ""
    name: str
    inputs: tuple[str, ...]
    source: str = ""

    def tensors(self) -> dict[str, Tensor]:
        """The op's tensor parameters by field name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), Tensor)}


@dataclass(frozen=True, eq=False)
class Conv(Op):
    KIND: ClassVar[str] = "conv"
    weight: Tensor = field(default=None)  # type: ignore[assignment]  # int8 (Cout, Cin/groups, kh, kw)
    bias: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (Cout,), scale S_w * S_a / 2^bias_shift
    bias_shift: int = 0
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (left, right, top, bottom)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    input_zp: int = 0
    spatial_dims: int = 2  # 1 for Conv1d (run as 2-d with height 1)
    w_bits: int = 8
    a_bits: int = 8


@dataclass(frozen=True, eq=False)
class Linear(Op):
    KIND: ClassVar[str] = "linear"
    weight: Tensor = field(default=None)  # type: ignore[assignment]  # int8 (Cout, Cin)
    bias: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (Cout,), scale S_w * S_a / 2^bias_shift
    bias_shift: int = 0
    input_zp: int = 0
    w_bits: int = 8
    a_bits: int = 8


@dataclass(frozen=True, eq=False)
class Requant(Op):
    KIND: ClassVar[str] = "requant"
    zp_in: Tensor = field(default=None)  # type: ignore[assignment]
    multiplier: Tensor = field(default=None)  # type: ignore[assignment]
    shift: Tensor = field(default=None)  # type: ignore[assignment]
    zp_out: Tensor = field(default=None)  # type: ignore[assignment]
    lo: Tensor = field(default=None)  # type: ignore[assignment]
    hi: Tensor = field(default=None)  # type: ignore[assignment]
    out_dtype: str = "int8"
    bits: int | None = None  # bit-width of the codes when it produces a quantized activation
    rounding: str = "half_up"


@dataclass(frozen=True, eq=False)
class Clamp(Op):
    KIND: ClassVar[str] = "clamp"
    lo: Tensor = field(default=None)  # type: ignore[assignment]
    hi: Tensor = field(default=None)  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Add(Op):
    KIND: ClassVar[str] = "add"


@dataclass(frozen=True, eq=False)
class Cat(Op):
    KIND: ClassVar[str] = "cat"
    dim: int = 1  # including the batch dimension
    out_dtype: str = "int32"


@dataclass(frozen=True, eq=False)
class MaxPool(Op):
    KIND: ClassVar[str] = "maxpool"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    spatial_dims: int = 2


@dataclass(frozen=True, eq=False)
class AvgPoolSum(Op):
    KIND: ClassVar[str] = "avgpool_sum"
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    spatial_dims: int = 2


@dataclass(frozen=True, eq=False)
class SumReduce(Op):
    KIND: ClassVar[str] = "sum_reduce"
    dims: tuple[int, ...] = (2, 3)  # including the batch dimension
    keepdim: bool = False


@dataclass(frozen=True, eq=False)
class Reshape(Op):
    KIND: ClassVar[str] = "reshape"
    shape: tuple[int, ...] = ()  # per-sample shape


@dataclass(frozen=True, eq=False)
class ShapeOp(Op):
    """A data move (transpose, permute, slicing, split, ...): ``fn`` (``kernels.islands.SHAPE_FNS``) on
    the call template ``call`` (``calls.encode``); ``select`` picks one tensor of a tuple result."""

    KIND: ClassVar[str] = "shape_op"
    fn: str = ""
    call: Any = None
    select: int | None = None


@dataclass(frozen=True, eq=False)
class Dequant(Op):
    """Float island entry: ``y = float32((x - zp) * scale)``."""

    KIND: ClassVar[str] = "dequant"
    scale: Tensor = field(default=None)  # type: ignore[assignment]  # float64, broadcastable to a sample
    zp: Tensor = field(default=None)  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Quantize(Op):
    """Float island exit: ``clamp(round(x / scale) + zp, qmin, qmax)``, the ActQuant's own rounding."""

    KIND: ClassVar[str] = "quantize"
    scale: Tensor = field(default=None)  # type: ignore[assignment]  # float32
    zp: Tensor = field(default=None)  # type: ignore[assignment]
    qmin: int = -128
    qmax: int = 127
    bits: int = 8


@dataclass(frozen=True, eq=False)
class FloatOp(Op):
    """A declared float island: ``fn`` (``kernels.islands.FLOAT_FNS``) on ``call``, float32; listed by
    :attr:`IntegerModel.float_ops`."""

    KIND: ClassVar[str] = "float_op"
    fn: str = ""
    call: Any = None
    consts: tuple[Tensor, ...] = ()

    def tensors(self) -> dict[str, Tensor]:
        return {f"const{i}": t for i, t in enumerate(self.consts)}


@dataclass(frozen=True, eq=False)
class Embedding(Op):
    """Integer lookup: ``y = round((codes[i] - zp[i]) * m[i] / 2^s[i])`` (half up), int32."""

    KIND: ClassVar[str] = "embedding"
    codes: Tensor = field(default=None)  # type: ignore[assignment]  # int8 (V, D)
    zp: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (V, 1)
    multiplier: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (V, 1)
    shift: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (V, 1)


@dataclass(frozen=True, eq=False)
class WeightOnlyLinear(Op):
    """Weight-only linear (float activations, not integer-only): ``y = x @ W^T + bias``, float32,
    ``W = (codes - zp) * scale`` per group of ``group_size`` input features (None: per output
    channel), run by torch's int4 / int8 weight kernels where they apply, else unpacked per call."""

    KIND: ClassVar[str] = "wo_linear"
    codes: Tensor = field(default=None)  # type: ignore[assignment]  # int8 (N, K)
    scale: Tensor = field(default=None)  # type: ignore[assignment]  # float32 (N, G)
    zp: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (N, G)
    bias: Tensor | None = None  # float32 (N,)
    group_size: int | None = None
    w_bits: int = 8


@dataclass(frozen=True, eq=False)
class Const(Op):
    """A constant int32 value (no inputs), e.g. a learned positional embedding."""

    KIND: ClassVar[str] = "const"
    value: Tensor = field(default=None)  # type: ignore[assignment]  # int32, a sample's shape


@dataclass(frozen=True, eq=False)
class ActMatmul(Op):
    """``y = (a - a_zp) @ (b - b_zp)`` of two activations (int8 x int8 -> int32), e.g. QK^T, AV."""

    KIND: ClassVar[str] = "act_matmul"
    a_zp: int = 0
    b_zp: int = 0


@dataclass(frozen=True, eq=False)
class ActMul(Op):
    """``y = (a - a_zp) * (b - b_zp)`` elementwise (broadcasting), int32."""

    KIND: ClassVar[str] = "act_mul"
    a_zp: int = 0
    b_zp: int = 0


@dataclass(frozen=True, eq=False)
class IGelu(Op):
    """I-BERT integer GELU of ``x - zp``, int32, rounded by ``2^out_shift`` (``kernels.ibert``)."""

    KIND: ClassVar[str] = "igelu"
    zp: int = 0
    q_b: int = 0
    q_c: int = 0
    clip: int = 0
    out_shift: int = 0


@dataclass(frozen=True, eq=False)
class ISoftmax(Op):
    """I-BERT integer softmax along ``dim``, int32 at ``2^-out_bits``; ``mask`` True -> 0 (``kernels.ibert``)."""

    KIND: ClassVar[str] = "isoftmax"
    dim: int = -1
    q_ln2: int = 1
    q_b: int = 0
    q_c: int = 0
    out_bits: int = 16
    mask: Tensor | None = None


@dataclass(frozen=True, eq=False)
class ISilu(Op):
    """Integer SiLU of ``x - zp`` from i-exp, int32 at ``S 2^(out_shift - sig_bits)`` (``kernels.ibert``)."""

    KIND: ClassVar[str] = "isilu"
    zp: int = 0
    q_ln2: int = 1
    q_b: int = 0
    q_c: int = 0
    sig_bits: int = 15
    out_shift: int = 0


@dataclass(frozen=True, eq=False)
class ILayerNorm(Op):
    """Integer LayerNorm (last dim) of ``x - zp``, times ``gamma`` plus ``beta``, int32 (``kernels.ibert``)."""

    KIND: ClassVar[str] = "ilayernorm"
    zp: int = 0
    eps_q: int = 0  # eps at the input's scale squared
    norm_bits: int = 8
    gamma: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (D,)
    beta: Tensor = field(default=None)  # type: ignore[assignment]  # int32 (D,)


#: op kind -> class (used by load and by the kernel registry).
OPS: dict[str, type[Op]] = {c.KIND: c for c in (Conv, Linear, Requant, Clamp, Add, Cat, MaxPool, AvgPoolSum,
                                                SumReduce, Reshape, ShapeOp, Dequant, Quantize, FloatOp, Embedding, Const,
                                                WeightOnlyLinear, ActMatmul, ActMul, IGelu, ISoftmax, ISilu,
                                                ILayerNorm)}


@dataclass(frozen=True)
class InputQuant:
    """Float -> integer boundary for one model input (outside the integer path)."""

    name: str  # value name of the codes
    source: str
    scale: float
    zero_point: int
    qmin: int
    qmax: int
    bits: int
    sample_shape: tuple[int, ...]
    kind: str = "quant"  # "index": integer indices (token ids) passed through as int64

    def __call__(self, x: Tensor) -> Tensor:
        if self.kind == "index":
            return x.to(torch.int64)
        scale = torch.tensor(self.scale, dtype=torch.float32, device=x.device)
        q = torch.round(x.float() / scale) + self.zero_point  # the same float32 division as fake quant
        return torch.clamp(q, self.qmin, self.qmax).to(torch.int8)


@dataclass(frozen=True)
class OutputSpec:
    """How to read the integer output: real value ``scale * (q - zero_point)``."""

    name: str
    scale: float
    zero_point: int
    sample_shape: tuple[int, ...]
