"""Uniform affine quantization (the survey's Section III), one convention used everywhere.

Conventions (the integer executor reproduces exactly these):

* **Zero point is added**: ``q = clamp(round(r / S) + zp, qmin, qmax)`` and
  ``r~ = S * (q - zp)``. ``zp`` is an integer in ``[qmin, qmax]`` (it is the integer code of
  the real value 0, which is always exactly representable). In the survey's form
  ``Q(r) = round(r / S) - Z``, ``r~ = S (Q + Z)`` this is ``zp = -Z``; the PyTorch, ONNX and
  TFLite operators use our sign. Symmetric specs have ``zp = 0``.
* **Rounding is half-to-even** (``torch.round``, IEEE ``nearbyint``): ``round(2.5) = 2``,
  ``round(-2.5) = -2``, ``round(3.5) = 4``. ``r / S`` is an IEEE float32 division (not a
  multiplication by ``1 / S``), so the executor quantizes a float input with
  ``torch.round(x / scale)`` and gets the same integers. (torch's ``fake_quantize_*`` ops
  multiply by ``1 / S``; they agree with us except, rarely, on exact ties such as the
  extreme value of a full-range symmetric tensor, which sits at ``qmax + 0.5``.)
* **Scales** (``alpha``/``beta`` = observed min / max, widened to include 0):
  asymmetric ``S = (beta - alpha) / (qmax - qmin)`` and ``zp = qmin - round(alpha / S)``;
  symmetric signed full range ``S = 2 max(|alpha|, |beta|) / (2^b - 1)`` (the survey's
  full-range formula; PyTorch uses the same), symmetric restricted range
  ``S = max(|alpha|, |beta|) / (2^(b-1) - 1)``, symmetric unsigned ``S = beta / qmax``.
  A zero range gives ``S = 1``. ``power_of_two`` rounds ``S`` up to the next ``2^k``
  (``S`` already a power of two is kept), and ``zp`` is recomputed with it.
* **Layout**: every tensor is viewed as rows, one row per quantization group
  (:func:`to_rows`): per-tensor is one row; per-channel moves ``axis`` first and flattens
  the rest; per-group further splits each channel's row into ``group_size`` pieces; per-token
  is one row per index of all but the last dimension (each token of ``[.., T, D]``). Scale and
  zero point have shape ``()`` / ``(C,)`` / ``(C, n_groups)`` / ``shape[:-1]``; scale float32,
  zero point int32.
* **STE**: :func:`fake_quantize` passes the gradient unchanged where the rounded code lies in
  ``[qmin, qmax]`` and zero where it is clipped; no gradient flows to scale or zero point.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from mpsearch.errors import ConfigError, rule_error
from mpsearch.quant.spec import QuantSpec


# -- layout --------------------------------------------------------------------------------
def param_shape(shape: tuple[int, ...] | torch.Size, spec: QuantSpec) -> tuple[int, ...]:
    """Shape of scale / zero point for a tensor of ``shape`` under ``spec``."""
    if spec.granularity == "per_tensor":
        return ()
    if spec.granularity == "per_token":  # one per row of the last dimension: shape[:-1]
        return tuple(int(d) for d in shape[:-1])
    if spec.axis >= len(shape):
        raise rule_error("QuantSpec", "axis", f"< the tensor's number of dimensions ({len(shape)})", spec.axis)
    n_channels = int(shape[spec.axis])
    if spec.granularity == "per_channel":
        return (n_channels,)
    per_channel = 1
    for i, d in enumerate(shape):
        if i != spec.axis:
            per_channel *= int(d)
    if per_channel % spec.group_size:  # type: ignore[operator]
        raise rule_error("QuantSpec", "group_size", f"a divisor of the {per_channel} elements per channel",
                         spec.group_size)
    return (n_channels, per_channel // spec.group_size)  # type: ignore[operator]


def to_rows(x: Tensor, spec: QuantSpec) -> Tensor:
    """View ``x`` as ``(n_groups_total, elements_per_group)``: one row per scale."""
    shape = param_shape(x.shape, spec)
    if spec.granularity == "per_tensor":
        return x.reshape(1, -1)
    if spec.granularity == "per_token":
        return x.reshape(-1, x.shape[-1]) if x.dim() else x.reshape(1, 1)
    moved = x.movedim(spec.axis, 0) if spec.axis else x
    if spec.granularity == "per_channel":
        return moved.reshape(shape[0], -1)
    return moved.reshape(shape[0] * shape[1], spec.group_size)  # type: ignore[arg-type]


def from_rows(rows: Tensor, shape: tuple[int, ...] | torch.Size, spec: QuantSpec) -> Tensor:
    """Inverse of :func:`to_rows` for a tensor of ``shape``."""
    if spec.granularity in ("per_tensor", "per_token"):
        return rows.reshape(shape)
    moved_shape = (shape[spec.axis],) + tuple(d for i, d in enumerate(shape) if i != spec.axis)
    moved = rows.reshape(moved_shape)
    return moved.movedim(0, spec.axis) if spec.axis else moved


def minmax(x: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Per-group min and max of ``x`` with the shape of the scale (float32)."""
    rows = to_rows(x.detach(), spec).float()
    shape = param_shape(x.shape, spec)
    lo, hi = torch.aminmax(rows, dim=1)
    return lo.reshape(shape), hi.reshape(shape)


# -- quantization parameters ----------------------------------------------------------------
def round_up_power_of_two(scale: Tensor) -> Tensor:
    """Smallest ``2^k >= scale`` (exact: uses the float's exponent, no log2)."""
    mantissa, exponent = torch.frexp(scale)  # scale = mantissa * 2^exponent, mantissa in [0.5, 1)
    exponent = torch.where(mantissa == 0.5, exponent - 1, exponent)
    return torch.ldexp(torch.ones_like(scale), exponent)


def qparams(min_val: Tensor | float, max_val: Tensor | float, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Scale and zero point that cover ``[min_val, max_val]`` under ``spec``.

    Args:
        min_val: observed minimum, any shape (per tensor: a scalar).
        max_val: observed maximum, same shape.
        spec: the quantization spec.

    Returns:
        ``(scale, zero_point)``: float32 and int32 tensors of the input shape.
    """
    lo = torch.as_tensor(min_val, dtype=torch.float32)
    hi = torch.as_tensor(max_val, dtype=torch.float32)
    if lo.shape != hi.shape:
        raise ConfigError(f"qparams: min_val and max_val must have the same shape, but got "
                          f"{tuple(lo.shape)} and {tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ConfigError("qparams: min_val and max_val must be finite, but got a NaN or infinity "
                          "(did the calibration data hold one?)")
    lo = torch.minimum(lo, torch.zeros_like(lo))  # zero must be representable exactly
    hi = torch.maximum(hi, torch.zeros_like(hi))
    qmin, qmax = spec.qmin, spec.qmax
    if spec.symmetric:
        if spec.signed:
            amax = torch.maximum(-lo, hi)
            denom = (2**spec.bits - 1) / 2 if not spec.restricted_range else float(qmax)
            scale = amax / denom
        else:  # unsigned symmetric: [0, beta]; negatives clip to 0
            scale = hi / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if spec.scale_kind == "power_of_two":
        scale = round_up_power_of_two(scale)
    if spec.symmetric:
        zero_point = torch.zeros(scale.shape, dtype=torch.int32)
    else:
        zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax).to(torch.int32)
    return scale, zero_point


# -- quantize / dequantize ------------------------------------------------------------------
def _row_params(scale: Tensor, zero_point: Tensor, x: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    want = param_shape(x.shape, spec)
    scale = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    zero_point = torch.as_tensor(zero_point, device=x.device)
    if tuple(scale.shape) != want or tuple(zero_point.shape) != want:
        raise ConfigError(f"quantize: scale and zero_point must have shape {want} for a tensor of shape "
                          f"{tuple(x.shape)} under {spec.granularity}, but got {tuple(scale.shape)} and "
                          f"{tuple(zero_point.shape)}")
    return scale.reshape(-1, 1), zero_point.reshape(-1, 1).to(torch.float32)


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """Integer codes ``clamp(round(x / S) + zp, qmin, qmax)`` as an int32 tensor of x's shape."""
    s, z = _row_params(scale, zero_point, x, spec)
    rows = to_rows(x.detach().float(), spec)
    q = torch.clamp(torch.round(rows / s) + z, spec.qmin, spec.qmax)
    return from_rows(q, x.shape, spec).to(torch.int32)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """Real values ``S * (q - zp)`` (float32) of integer codes ``q``."""
    s, z = _row_params(scale, zero_point, q, spec)
    rows = to_rows(q.float(), spec)
    return from_rows((rows - z) * s, q.shape, spec)


class _FakeQuantSTE(torch.autograd.Function):
    """Quantize-dequantize forward; straight-through backward masked by the clip range."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, s: Tensor, z: Tensor, qmin: int, qmax: int) -> Tensor:
        code = torch.round(rows / s) + z
        inside = (code >= qmin) & (code <= qmax)
        ctx.save_for_backward(inside)
        return (torch.clamp(code, qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec) -> Tensor:
    """``dequantize(quantize(x))`` in x's float dtype, with a straight-through gradient.

    The gradient w.r.t. ``x`` is the incoming gradient where ``round(x / S) + zp`` lies in
    ``[qmin, qmax]`` and 0 where it was clipped.
    """
    s, z = _row_params(scale, zero_point, x, spec)
    rows = to_rows(x, spec)
    out = _FakeQuantSTE.apply(rows.float(), s, z, spec.qmin, spec.qmax)
    return from_rows(out, x.shape, spec).to(x.dtype)


def fake_quantize_minmax(x: Tensor, spec: QuantSpec) -> Tensor:
    """``Q(x)`` with scales from ``x``'s own per-group min and max (a dynamic range).

    Args:
        x: the tensor (a weight, or one batch of an activation).
        spec: how it is quantized.

    Returns:
        The dequantized tensor, same shape and dtype (no gradient through the scales).
    """
    lo, hi = minmax(x, spec)
    scale, zero_point = qparams(lo, hi, spec)
    return fake_quantize(x, scale.to(x.device), zero_point.to(x.device), spec)


# -- weights --------------------------------------------------------------------------------
def _weight_spec(bits: int, spec: QuantSpec | str, symmetric: bool, group_size: int | None,
                 scale_kind: str) -> QuantSpec:
    if isinstance(spec, QuantSpec):
        return replace(spec, bits=bits)
    return QuantSpec(bits=bits, symmetric=symmetric, signed=True, granularity=spec, axis=0,
                     group_size=group_size if spec == "per_group" else None, scale_kind=scale_kind)


def fake_quantize_weight(weight: Tensor, bits: int, spec: QuantSpec | str = "per_channel", *,
                         symmetric: bool = True, group_size: int | None = None,
                         scale_kind: str = "float") -> Tensor:
    """``Q_b(W)`` with min-max scales (default: per output channel, symmetric, signed).

    Args:
        weight: the weight, output channels on axis 0.
        bits: bit-width ``b``.
        spec: a full :class:`QuantSpec` (its ``bits`` is replaced by ``bits``) or a
            granularity name.
        symmetric: used when ``spec`` is a granularity name.
        group_size: elements per group for "per_group".
        scale_kind: used when ``spec`` is a granularity name.

    Returns:
        The dequantized weight, same shape and dtype (no gradient through the scales).
    """
    return fake_quantize_minmax(weight, _weight_spec(bits, spec, symmetric, group_size, scale_kind))


def weight_quantization_error(weight: Tensor, bits: int, spec: QuantSpec | str = "per_channel", **kw: Any) -> float:
    """``||Q_b(W) - W||^2`` (sum of squares), the factor HAWQ multiplies by the mean trace."""
    with torch.no_grad():
        diff = fake_quantize_weight(weight, bits, spec, **kw).double() - weight.double()
        return float((diff * diff).sum())
