"""GPTQ-style Hessian-aware rounding ("gptq", Frantar et al. 2022) of linear and conv layers.

Contract: ``W`` is viewed as ``(out, fan_in)`` (conv: ``weight.reshape(out, -1)``, inputs
unfolded in the same feature order). ``H = 2 X^T X / n`` over the ``n`` input rows of the
calibration data; dead features (``H_ii = 0``) get ``H_ii = 1`` and zero weight; damping adds
``damp * mean(diag H)`` to the diagonal. Scales and zero points are round-to-nearest's min-max
ones of the ORIGINAL weight (per tensor / channel / group of ``group_size`` consecutive input
features: static groups), so the result sits on the same grid as RTN. Columns are quantized one
by one, left to right (``block_size`` at a time with lazy batch updates); the error of column
``i``, divided by ``U_ii`` where ``U`` is the upper Cholesky factor of ``H^-1``, is fed back
into the not yet quantized columns: ``W[:, j] -= err * U[i, j]`` for ``j > i``. This minimises
``||(W~ - W) X^T||^2`` greedily; it needs data. Conv layers need ``groups == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_int, check_number
from mpsearch.errors import ConfigError
from mpsearch.quant.methods._base import MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import (check_inputs, grouped_conv_reason, input_rows, minmax_qparams,
                                             uniform_result)
from mpsearch.quant.spec import QuantSpec


@dataclass(frozen=True)
class GptqConfig(MethodConfig):
    """Options of GPTQ.

    Attributes:
        damp: fraction of the mean Hessian diagonal added to the diagonal (> 0 keeps H invertible).
        block_size: columns per lazy-update block (the result does not depend on it up to float rounding).
    """

    damp: float = 0.01
    block_size: int = 128

    def __post_init__(self) -> None:
        check_number(self.damp, "GptqConfig", "damp", min=0, min_exclusive=True)
        check_int(self.block_size, "GptqConfig", "block_size", min=1)


def hessian(rows: Tensor) -> Tensor:
    """``2 X^T X / n`` (float64) of input rows ``X`` ``(n, fan_in)``."""
    x = rows.double()
    return 2.0 * x.T @ x / max(1, x.shape[0])


def _expand(param: Tensor, out: int, fan_in: int, spec: QuantSpec) -> Tensor:
    """A per-row parameter laid out per weight element, ``(out, fan_in)``."""
    if spec.granularity == "per_tensor":
        return param.reshape(1, 1).expand(out, fan_in)
    if spec.granularity == "per_channel":
        return param.reshape(out, 1).expand(out, fan_in)
    return param.reshape(out, -1).repeat_interleave(spec.group_size, dim=1)  # type: ignore[arg-type]


class Gptq(WeightMethod):
    """Column-by-column rounding with Hessian-weighted error feedback."""

    name = "gptq"
    config_cls = GptqConfig
    needs_data = True
    layer_kinds = ("linear", "conv1d", "conv2d")

    def unsupported_reason(self, layer: nn.Module | None) -> str | None:
        reason = super().unsupported_reason(layer)
        return reason if reason is not None else grouped_conv_reason(layer)

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        cfg: GptqConfig = self.config  # type: ignore[assignment]
        check_inputs(layer, weight, calib_inputs, self.name, name)  # type: ignore[arg-type]
        if spec.axis != 0 and spec.granularity != "per_tensor":
            raise ConfigError(f"layer {name!r}: method 'gptq' needs spec.axis == 0 (output channels), but got {spec.axis}")
        out = weight.shape[0]
        w = weight.reshape(out, -1).double().clone()
        fan_in = w.shape[1]
        x_rows = input_rows(layer, calib_inputs, name)  # type: ignore[arg-type]
        h = hessian(x_rows)
        dead = torch.diag(h) == 0
        h[dead, dead] = 1.0
        w[:, dead] = 0.0
        h += torch.eye(fan_in, dtype=h.dtype) * cfg.damp * float(torch.diag(h).mean())
        u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
        scale, zero_point = minmax_qparams(weight, spec)  # RTN's grid, of the original weight
        s = _expand(scale.double(), out, fan_in, spec)
        z = _expand(zero_point.double(), out, fan_in, spec)
        q = torch.zeros_like(w)
        for i1 in range(0, fan_in, cfg.block_size):
            i2 = min(i1 + cfg.block_size, fan_in)
            wb = w[:, i1:i2].clone()
            errs = torch.zeros_like(wb)
            ub = u[i1:i2, i1:i2]
            for j in range(i2 - i1):
                col = wb[:, j]
                code = torch.clamp(torch.round(col / s[:, i1 + j]) + z[:, i1 + j], spec.qmin, spec.qmax)
                q[:, i1 + j] = code
                err = (col - (code - z[:, i1 + j]) * s[:, i1 + j]) / ub[j, j]
                wb[:, j:] -= err.unsqueeze(1) * ub[j, j:].unsqueeze(0)
                errs[:, j] = err
            w[:, i2:] -= errs @ u[i1:i2, i2:]
        return uniform_result(self.name, q.reshape(weight.shape), scale, zero_point, spec,
                              info={"damp": cfg.damp, "n_input_rows": int(x_rows.shape[0])})
