"""Helpers shared by the methods: build results, replay a layer on its inputs, flatten inputs.

``layer_forward`` applies a weight the way the layer does (F.linear / F.conv with the layer's
geometry). ``input_rows`` turns calibration inputs into the rows ``X`` (``(n_rows, fan_in)``)
whose product with ``weight.reshape(out, -1).T`` is the layer's output before the bias (conv
inputs are unfolded: ``F.unfold`` orders features channel-major then kernel position, the same
order as ``weight.reshape(out, -1)``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mpsearch.errors import ConfigError
from mpsearch.quant.methods._base import FLOAT_BITS, MethodResult, layer_kind, uniform_extra_bits
from mpsearch.quant.quantizer import dequantize, from_rows, minmax, qparams, to_rows
from mpsearch.quant.spec import QuantSpec


def uniform_result(method: str, codes: Tensor, scale: Tensor, zero_point: Tensor, spec: QuantSpec,
                   bias: Tensor | None = None, info: dict[str, Any] | None = None) -> MethodResult:
    """A uniform :class:`MethodResult` from integer codes (``weight_dq`` is their exact dequantization)."""
    codes = codes.to(torch.int32)
    return MethodResult(method=method, weight_dq=dequantize(codes, scale, zero_point, spec), codes=codes,
                        scale=scale.float(), zero_point=zero_point.to(torch.int32), codebook=None,
                        codebook_int=None, bias=bias, extra_bits=uniform_extra_bits(codes.shape, spec),
                        is_uniform=True, integer_codebook=False, run_time_s=0.0, info=dict(info or {}))


def codebook_result(method: str, weight_shape: torch.Size, spec: QuantSpec, codes_rows: Tensor, codebook: Tensor,
                    codebook_int: Tensor | None = None, row_scale: Tensor | None = None,
                    info: dict[str, Any] | None = None) -> MethodResult:
    """A non-uniform :class:`MethodResult` from per-row codes ``(n_rows, n)`` and a codebook ``(n_rows, K)``."""
    codebook = codebook.float()
    codes_rows = codes_rows.long()
    dq_rows = codebook.gather(1, codes_rows)
    n_rows, k = codebook.shape
    integer = codebook_int is not None
    extra = n_rows * (k * 8 + FLOAT_BITS) if integer else n_rows * k * FLOAT_BITS
    return MethodResult(method=method, weight_dq=from_rows(dq_rows, weight_shape, spec),
                        codes=from_rows(codes_rows, weight_shape, spec).to(torch.int32),
                        scale=None if row_scale is None else row_scale.float(), zero_point=None,
                        codebook=codebook, codebook_int=None if codebook_int is None else codebook_int.to(torch.int32),
                        bias=None, extra_bits=int(extra), is_uniform=False, integer_codebook=integer,
                        run_time_s=0.0, info=dict(info or {}))


def minmax_qparams(weight: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Round-to-nearest's scale and zero point: the weight's own per-row min and max."""
    lo, hi = minmax(weight, spec)
    return qparams(lo, hi, spec)


def row_view(x: Tensor, spec: QuantSpec) -> Tensor:
    """``to_rows`` (re-exported so the methods import one place)."""
    return to_rows(x, spec)


def grouped_conv_reason(layer: nn.Module | None) -> str | None:
    """Why a Hessian-over-the-fan-in method cannot take ``layer`` (a grouped conv), or None."""
    if layer is not None and layer_kind(layer).startswith("conv") and layer.groups != 1:  # type: ignore[union-attr]
        return f"it needs groups == 1 (one Hessian over the whole fan-in), and this conv has groups={layer.groups}"  # type: ignore[union-attr]
    return None


def layer_forward(layer: nn.Module | None, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The layer's output on ``x`` with ``weight`` (and ``bias``) in place of its own."""
    kind = layer_kind(layer)
    if kind == "linear":
        return F.linear(x, weight, bias)
    if kind == "conv2d":
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)  # type: ignore[union-attr]
    if kind == "conv1d":
        return F.conv1d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)  # type: ignore[union-attr]
    raise ConfigError(f"layer_forward: layer must be a Linear, Conv1d or Conv2d, but got {type(layer).__name__}")


def layer_bias(layer: nn.Module | None) -> Tensor | None:
    """The layer's float bias (detached float32 copy), or None."""
    b = getattr(layer, "bias", None) if layer is not None else None
    return None if b is None else b.detach().float().clone()


def input_rows(layer: nn.Module | None, x: Tensor, name: str = "layer") -> Tensor:
    """Calibration inputs as ``(n_rows, fan_in)``: one row per output position (groups must be 1 for convs)."""
    kind = layer_kind(layer)
    if kind == "linear":
        return x.reshape(-1, x.shape[-1])
    if kind in ("conv1d", "conv2d"):
        if layer.groups != 1:  # type: ignore[union-attr]
            raise ConfigError(f"layer {name!r}: input rows need groups == 1, but got groups={layer.groups}")  # type: ignore[union-attr]
        if kind == "conv1d":
            x = x.unsqueeze(2)
            k, s, p, d = (1, *layer.kernel_size), (1, *layer.stride), (0, *layer.padding), (1, *layer.dilation)  # type: ignore[union-attr]
        else:
            k, s, p, d = layer.kernel_size, layer.stride, layer.padding, layer.dilation  # type: ignore[union-attr]
        cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (N, C*kh*kw, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise ConfigError(f"layer {name!r}: input rows need a Linear or Conv layer, but got {type(layer).__name__}")


def check_inputs(layer: nn.Module | None, weight: Tensor, x: Tensor, method: str, name: str) -> None:
    """Refuse calibration inputs whose feature size does not match the layer's weight."""
    kind = layer_kind(layer)
    want = weight.shape[1] * (layer.groups if kind.startswith("conv") else 1)  # type: ignore[union-attr]
    got = x.shape[-1] if kind == "linear" else (x.shape[1] if x.dim() >= 2 else None)
    if got != want:
        raise ConfigError(f"layer {name!r}: method {method!r} needs calib_inputs with {want} input features "
                          f"(the weight's fan-in), but got a tensor of shape {tuple(x.shape)}")
