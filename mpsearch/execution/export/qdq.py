"""QuantizeLinear / DequantizeLinear pairs for the plan's tensors, and the rules for their types.

Storage types (``ExportConfig.low_bits``):

* 8 bits: int8 (signed spec) or uint8; 16 bits: int16 / uint16 (opset >= 21);
* 2..4 bits: int4 / uint4 where the opset has them (>= 21, ``low_bits="int4"``, the default),
  else, with ``low_bits="int8"``, int8 / uint8 holding the narrow codes (the metadata says so);
* 5..7 bits: int8 / uint8 holding the codes.

A tensor whose integer range ``[qmin, qmax]`` is narrower than its storage type's (2/3-bit codes
in int4, 4-bit codes in int8, restricted ranges) gets a float ``Clip`` before its
QuantizeLinear at ``S (qmin - zp)`` and ``S (qmax - zp)``: ``round(clip(x) / S) + zp`` then equals
the simulation's ``clamp(round(x / S) + zp, qmin, qmax)`` (rounding is monotone), so ONNX
Runtime saturates where the simulation clamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mpsearch.errors import UnsupportedModelError
from mpsearch.execution.export._graph import ELEM_RANGES, GraphBuilder
from mpsearch.quant.quantizer import quantize

#: first opset with int4 / uint4 / int16 Q/DQ types and blocked (per-group) DequantizeLinear
OPSET_INT4 = 21
#: first opset with per-axis QuantizeLinear / DequantizeLinear
OPSET_MIN = 13


@dataclass(frozen=True)
class TensorRecord:
    """What the metadata says about one quantized tensor."""

    name: str  # module path (weights: "<layer>.weight"; activations: the ActQuant's path)
    bits: int
    storage: str  # ONNX element type holding the codes
    granularity: str
    clipped: bool  # a float Clip narrows the storage range to [qmin, qmax]

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "storage": self.storage, "granularity": self.granularity,
                "clipped": self.clipped}


def storage_type(bits: int, signed: bool, opset: int, low_bits: str, what: str) -> str:
    """The ONNX element type holding ``bits``-bit codes, or UnsupportedModelError naming the rule."""
    sign = "" if signed else "u"
    if bits == 16:
        if opset < OPSET_INT4:
            raise UnsupportedModelError(
                f"export_onnx: {what} is 16-bit; opset must be >= {OPSET_INT4} for {sign}int16 "
                f"QuantizeLinear/DequantizeLinear, but got opset {opset}")
        return f"{sign}int16"
    if bits > 8:
        raise UnsupportedModelError(f"export_onnx: {what} must have 2..8 or 16 bits, but has {bits}")
    if bits <= 4 and low_bits == "int4":
        if opset < OPSET_INT4:
            raise UnsupportedModelError(
                f"export_onnx: {what} is {bits}-bit; opset must be >= {OPSET_INT4} for {sign}int4 tensors "
                f"(the first opset with 4-bit types), but got opset {opset}. Use opset={OPSET_INT4} or later, or "
                "low_bits='int8' to store 2..4-bit codes in int8 (stated in the model's metadata)")
        return f"{sign}int4"
    return f"{sign}int8"


def _zp_array(zero_point: torch.Tensor, storage: str, shape: tuple[int, ...]) -> np.ndarray:
    return zero_point.detach().cpu().to(torch.int64).reshape(shape).numpy()


def act_qdq(g: GraphBuilder, x: str, aq: Any, where: str, opset: int, low_bits: str) -> tuple[str, TensorRecord]:
    """Float ``x`` -> (Clip) -> QuantizeLinear -> DequantizeLinear with ``aq``'s frozen parameters.

    Args:
        g: the graph being built.
        x: the float value to quantize.
        aq: a frozen static :class:`~mpsearch.quant.modules.ActQuant`.
        where: its module path (node names and the metadata use it).
        opset, low_bits: see :func:`storage_type`.

    Returns:
        ``(dequantized value name, record for the metadata)``.
    """
    spec = aq.spec
    storage = storage_type(spec.bits, spec.signed, opset, low_bits, f"activation quantizer {where!r}")
    scale = aq.scale.detach().cpu().float()
    zp = aq.zero_point.detach().cpu()
    attrs: dict[str, Any] = {}
    if spec.granularity == "per_channel":
        attrs["axis"] = int(spec.axis)
    elif spec.granularity != "per_tensor":
        raise UnsupportedModelError(f"export_onnx: activation quantizer {where!r} is {spec.granularity}; a static "
                                    "QDQ pair holds per-tensor or per-channel scales only")
    shape = tuple(scale.shape)
    s_name = g.const(scale.numpy(), where + ".scale", "float32")
    z_name = g.const(_zp_array(zp, storage, shape), where + ".zero_point", storage)
    lo, hi = ELEM_RANGES[storage]
    clipped = (spec.qmin, spec.qmax) != (lo, hi)
    if clipped:
        if spec.granularity != "per_tensor":
            raise UnsupportedModelError(f"export_onnx: activation quantizer {where!r} is per-channel with a range "
                                        f"[{spec.qmin}, {spec.qmax}] narrower than {storage}'s; only per-tensor "
                                        "narrow ranges are expressed (as a float Clip)")
        s, z = float(scale), int(zp)
        x = g.add("Clip", [x, g.const(np.float32(s * (spec.qmin - z)), where + ".min"),
                           g.const(np.float32(s * (spec.qmax - z)), where + ".max")], where)
    q = g.add("QuantizeLinear", [x, s_name, z_name], where, **attrs)
    out = g.add("DequantizeLinear", [q, s_name, z_name], where, **attrs)
    return out, TensorRecord(where, spec.bits, storage, spec.granularity, clipped)


def weight_dq(g: GraphBuilder, layer: Any, where: str, opset: int, low_bits: str,
              transpose: bool = False) -> tuple[str, TensorRecord, np.ndarray, np.ndarray]:
    """Integer codes of ``layer``'s weight as an initializer, then DequantizeLinear.

    The codes are the simulation's (``quantize`` with the layer's scale and zero point), so the
    dequantized weight equals ``layer.quantized_weight()``. Per-group scales become a blocked
    DequantizeLinear (``block_size``, opset 21) along the input features.

    Args:
        transpose: store ``W^T`` (``[in, out]``, as MatMul reads it) instead of ``W``.

    Returns:
        ``(dequantized weight, record, scale array, zero point array)`` (scales as stored).
    """
    wq = layer.weight_quant
    spec = wq.spec
    storage = storage_type(spec.bits, True, opset, low_bits, f"weight of {where!r}")
    weight = layer.weight.detach().cpu().float()
    codes = quantize(weight, wq.scale.cpu(), wq.zero_point.cpu(), spec).to(torch.int64).numpy()
    scale = wq.scale.detach().cpu().float().numpy()
    zp = wq.zero_point.detach().cpu().to(torch.int64).numpy()
    attrs: dict[str, Any] = {}
    if spec.granularity == "per_channel":
        if spec.axis != 0:
            raise UnsupportedModelError(f"export_onnx: weight of {where!r} is per-channel on axis {spec.axis}; "
                                        "only axis 0 (output channels) is exported")
        attrs["axis"] = 1 if transpose else 0
    elif spec.granularity == "per_group":
        if opset < OPSET_INT4:
            raise UnsupportedModelError(
                f"export_onnx: weight of {where!r} has per-group scales (group_size {spec.group_size}); opset "
                f"must be >= {OPSET_INT4} for a blocked DequantizeLinear, but got opset {opset}")
        if codes.ndim != 2 or spec.axis != 0:
            raise UnsupportedModelError(f"export_onnx: weight of {where!r} has per-group scales on a "
                                        f"{codes.ndim}-d weight; groups are exported for 2-d (linear, embedding) "
                                        "weights only")
        attrs["block_size"] = int(spec.group_size)
        attrs["axis"] = 0 if transpose else 1
    elif spec.granularity != "per_tensor":
        raise UnsupportedModelError(f"export_onnx: weight of {where!r} is {spec.granularity}, which has no "
                                    "DequantizeLinear form")
    if transpose:
        codes = codes.T
        scale, zp = (scale.T, zp.T) if scale.ndim == 2 else (scale, zp)
    w = g.const(codes, where + ".weight", storage)
    s = g.const(scale, where + ".weight_scale", "float32")
    z = g.const(zp, where + ".weight_zero_point", storage)
    out = g.add("DequantizeLinear", [w, s, z], where, **attrs)
    return out, TensorRecord(where + ".weight", spec.bits, storage, spec.granularity, False), scale, zp
