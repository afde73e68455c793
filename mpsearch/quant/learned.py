"""Learned quantization ranges for QAT: LSQ, LSQ+ and PACT (options; the default learns none).

* ``"lsq"`` (Esser et al. 2020): every weight and static activation scale becomes a trained
  parameter; ``y = (clamp(round(x / s) + z, qmin, qmax) - z) s`` with a straight-through round,
  and the scale's gradient multiplied by ``g = 1 / sqrt(n * qmax)`` (n: elements per scale).
* ``"lsq+"`` (Bhalgat et al. 2020): LSQ, and the activations' zero points are trained too
  (a float parameter, rounded with a straight-through estimator so it stays an integer code).
* ``"pact"`` (Choi et al. 2018): each static activation's UPPER clip ``alpha`` is trained
  (``y = clamp(x, lo, alpha)``: gradient 1 w.r.t. alpha where ``x > alpha``), the grid spans
  ``[lo, alpha]`` with ``lo`` the calibrated lower end; weights keep their min-max scales.

:func:`enable_learned_ranges_` attaches a :class:`LearnedRange` as ``.learned`` to each
:class:`~mpsearch.quant.modules.ActQuant` (static, per-tensor or per-channel) and, for LSQ,
:class:`~mpsearch.quant.modules.WeightQuant`; their ``forward`` then defers to it.
:func:`commit_learned_ranges_` writes the learned values back into the ``scale`` / ``zero_point``
buffers (integer zero points; PACT's lower end snaps to the nearest code, at most half a step)
and removes the parameters, so the integer executor sees plain quantizers again.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_choice
from mpsearch.quant.quantizer import from_rows, to_rows
from mpsearch.quant.spec import QuantSpec

LEARNED_RANGES = ("none", "lsq", "lsq+", "pact")


def _round_ste(x: Tensor) -> Tensor:
    return torch.round(x).detach() + (x - x.detach())  # value exactly round(x), gradient 1


def _grad_scale(x: Tensor, g: float) -> Tensor:
    y = x * g
    return x.detach() + (y - y.detach())  # value exactly x, gradient g * dx


class LearnedRange(nn.Module):
    """A trained scale (LSQ), scale and zero point (LSQ+) or upper clip (PACT) of one quantizer."""

    def __init__(self, kind: str, spec: QuantSpec, scale: Tensor, zero_point: Tensor) -> None:
        super().__init__()
        self.kind = check_choice(kind, "LearnedRange", "kind", LEARNED_RANGES[1:])
        self.spec = spec
        self.shape = tuple(scale.shape)
        s = scale.detach().float().reshape(-1, 1).clone()
        z = zero_point.detach().float().reshape(-1, 1).clone()
        if kind == "pact":
            self.register_buffer("lo", (spec.qmin - z) * s)
            self.alpha = nn.Parameter((spec.qmax - z) * s)
        else:
            self.scale = nn.Parameter(s)
            if kind == "lsq+":
                self.zero_point = nn.Parameter(z)
            else:
                self.register_buffer("zero_point", z)

    def _params(self) -> tuple[Tensor, Tensor]:
        """(scale, integer-valued zero point) as ``(n_rows, 1)`` float tensors."""
        qmin, qmax = self.spec.qmin, self.spec.qmax
        if self.kind == "pact":
            scale = (self.alpha - self.lo).clamp_min(1e-8) / (qmax - qmin)
            return scale, torch.clamp(torch.round(qmin - self.lo / scale), qmin, qmax).detach()
        return self.scale.abs().clamp_min(1e-8), torch.clamp(_round_ste(self.zero_point), qmin, qmax)

    def forward(self, x: Tensor) -> Tensor:
        rows = to_rows(x, self.spec).float()
        qmin, qmax = self.spec.qmin, self.spec.qmax
        if self.kind == "pact":
            clipped = torch.minimum(torch.maximum(rows, self.lo), self.alpha)
            scale = (self.alpha - self.lo).clamp_min(1e-8) / (qmax - qmin)
            out = _round_ste((clipped - self.lo) / scale) * scale + self.lo
        else:
            scale, z = self._params()
            scale = _grad_scale(scale, 1.0 / math.sqrt(max(1, rows.shape[1]) * max(1, qmax)))
            code = torch.clamp(_round_ste(rows / scale) + z, qmin, qmax)  # clamp: zero gradient outside
            out = (code - z) * scale
        return from_rows(out, x.shape, self.spec).to(x.dtype)

    def committed(self) -> tuple[Tensor, Tensor]:
        """(scale float32, zero point int32) of the quantizer's parameter shape."""
        with torch.no_grad():
            scale, z = self._params()
        return scale.detach().reshape(self.shape).float(), z.detach().reshape(self.shape).to(torch.int32)


def enable_learned_ranges_(qmodel: nn.Module, kind: str) -> int:
    """Attach learned ranges of ``kind`` to the model's quantizers; returns how many."""
    from mpsearch.quant.modules import ActQuant, WeightQuant

    check_choice(kind, "enable_learned_ranges_", "kind", LEARNED_RANGES)
    if kind == "none":
        return 0
    n = 0
    for m in qmodel.modules():
        if isinstance(m, ActQuant) and m.mode == "quantize" and m.spec.granularity in ("per_tensor", "per_channel"):
            m.learned = LearnedRange(kind, m.spec, m.scale, m.zero_point)
            n += 1
        elif isinstance(m, WeightQuant) and kind in ("lsq", "lsq+") and m.spec.bits <= 8:
            m.learned = LearnedRange("lsq", m.spec, m.scale, m.zero_point)
            n += 1
    return n


def commit_learned_ranges_(qmodel: nn.Module) -> int:
    """Write learned ranges into the quantizers' buffers and drop them; returns how many."""
    n = 0
    for m in qmodel.modules():
        learned = getattr(m, "learned", None)
        if isinstance(learned, LearnedRange):
            scale, zero_point = learned.committed()
            m.scale = scale.to(m.scale.device)
            m.zero_point = zero_point.to(m.zero_point.device)
            m.learned = None
            n += 1
    return n
