"""AdaRound ("adaround", Nagel et al. 2020): learn, per weight, whether to round down or up.

Contract: min-max scales as round-to-nearest; the code of each weight is ``floor(w / S) + h``
with ``h`` in {0, 1} learned to minimise the layer's OUTPUT error on its calibration inputs,
``mean ||f(x; W~) - f(x; W)||^2`` (f: the layer's own linear / conv op, bias excluded), plus the
annealed regulariser ``lambda * sum(1 - |2 h(V) - 1|^beta)`` that pushes the soft rounding
``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` (zeta 1.1, gamma -0.1) to 0 or 1.
``V`` starts where ``h(V)`` equals the fractional part of ``w / S`` (the soft weight starts at
the float weight); ``beta`` anneals from ``beta_start`` to ``beta_end`` after a warm-up without
the regulariser; the result rounds ``h(V) >= 0.5`` up. Adam, minibatches of rows of the inputs
drawn with ``seed``. Needs data; Linear, Conv1d and Conv2d (any groups).

Speed: for a Linear or an ungrouped conv the output error is an exact quadratic in the weight
error, ``mean ||dW x||^2 = sum_r dW_r H dW_r^T / (n_rows out)`` with ``H = X^T X`` over ALL the
calibration rows (``X``: one row per output position, im2col for convs), so each step costs one
``(out, fan_in) x (fan_in, fan_in)`` product instead of a forward and backward pass of the layer
on a minibatch, and the objective is the whole calibration set's, not a minibatch's
(``objective="gram"``, the default; ``"minibatch"`` is the paper's stochastic form, and what
grouped convs use).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_choice, check_int, check_number
from mpsearch.quant.methods._base import MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import check_inputs, input_rows, layer_forward, minmax_qparams, uniform_result
from mpsearch.quant.quantizer import from_rows, to_rows
from mpsearch.quant.spec import QuantSpec

_ZETA, _GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundConfig(MethodConfig):
    """Options of AdaRound.

    Attributes:
        n_iter: Adam steps.
        lr: Adam's learning rate on ``V``.
        reg_weight: ``lambda``, weight of the rounding regulariser.
        beta_start / beta_end: annealing range of the regulariser's exponent.
        warmup: fraction of the steps without the regulariser, in [0, 1).
        batch_size: calibration examples (dim 0 of the inputs) per step.
        seed: draws the minibatches.
        objective: "gram" (exact full-data output error through ``H = X^T X``, where the layer
            allows it) or "minibatch" (the layer's forward on ``batch_size`` examples a step).
    """

    n_iter: int = 500
    lr: float = 1e-2
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    batch_size: int = 64
    seed: int = 0
    objective: str = "gram"

    def __post_init__(self) -> None:
        w = "AdaRoundConfig"
        check_int(self.n_iter, w, "n_iter", min=1)
        check_number(self.lr, w, "lr", min=0, min_exclusive=True)
        check_number(self.reg_weight, w, "reg_weight", min=0)
        check_number(self.beta_start, w, "beta_start", min=0, min_exclusive=True)
        check_number(self.beta_end, w, "beta_end", min=0, min_exclusive=True)
        check_number(self.warmup, w, "warmup", min=0, max=1, max_exclusive=True)
        check_int(self.batch_size, w, "batch_size", min=1)
        check_int(self.seed, w, "seed", min=0)
        check_choice(self.objective, w, "objective", ("gram", "minibatch"))


def _h(v: Tensor) -> Tensor:
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0, 1)


class AdaRound(WeightMethod):
    """Learned up/down rounding that minimises the layer's output error on calibration data."""

    name = "adaround"
    config_cls = AdaRoundConfig
    needs_data = True
    layer_kinds = ("linear", "conv1d", "conv2d")

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        cfg: AdaRoundConfig = self.config  # type: ignore[assignment]
        x = calib_inputs
        check_inputs(layer, weight, x, self.name, name)  # type: ignore[arg-type]
        scale, zero_point = minmax_qparams(weight, spec)
        rows = to_rows(weight, spec)
        s = scale.reshape(-1, 1)
        z = zero_point.reshape(-1, 1).float()
        base = torch.floor(rows / s)
        frac = (rows / s - base).clamp(0.01, 0.99)  # keep V finite; exact 0 / 1 start near the edge
        v0 = -torch.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1)
        v = v0.clone().requires_grad_(True)
        opt = torch.optim.Adam([v], lr=cfg.lr)
        gen = torch.Generator().manual_seed(cfg.seed)
        n = x.shape[0]  # type: ignore[union-attr]
        gram = cfg.objective == "gram" and getattr(layer, "groups", 1) == 1
        with torch.no_grad():
            if gram:  # mean over outputs of (dW x)^2 = sum(dW H * dW) / (rows * out)
                xr = input_rows(layer, x, name).double()  # type: ignore[arg-type]
                h = (xr.T @ xr / (xr.shape[0] * weight.shape[0])).float()
                w2 = weight.reshape(weight.shape[0], -1)
            else:
                target_all = layer_forward(layer, x, weight)  # type: ignore[arg-type]
        warm = int(cfg.warmup * cfg.n_iter)
        loss_rec = 0.0
        for it in range(cfg.n_iter):
            code = torch.clamp(base + _h(v) + z, spec.qmin, spec.qmax)
            w_soft = from_rows((code - z) * s, weight.shape, spec)
            if gram:
                dw = w_soft.reshape(w2.shape) - w2
                rec = ((dw @ h) * dw).sum()
            else:
                idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
                xb, tb = x[idx], target_all[idx]  # type: ignore[index]
                rec = (layer_forward(layer, xb, w_soft) - tb).pow(2).mean()
            loss = rec
            if it >= warm:
                t = (it - warm) / max(1, cfg.n_iter - warm)
                beta = cfg.beta_end + 0.5 * (cfg.beta_start - cfg.beta_end) * (1 + math.cos(math.pi * t))
                loss = rec + cfg.reg_weight * (1 - (2 * _h(v) - 1).abs().pow(beta)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_rec = float(rec.detach())
        with torch.no_grad():
            up = (_h(v) >= 0.5).float()
            codes = torch.clamp(base + up + z, spec.qmin, spec.qmax)
            flipped = float((up != torch.round(rows / s - base)).float().mean())
        return uniform_result(self.name, from_rows(codes, weight.shape, spec), scale, zero_point, spec,
                              info={"n_iter": cfg.n_iter, "last_reconstruction_mse": loss_rec, "objective": "gram" if gram else "minibatch",
                                    "fraction_rounded_against_nearest": flipped})
