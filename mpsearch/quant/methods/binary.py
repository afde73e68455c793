"""Binary-code quantization ("binary_code", Xu et al. 2018; LQ-Nets): ``w ~ sum_i alpha_i s_i``.

Contract: per row of the spec (per_channel: each output channel), ``bits = b`` scales
``alpha_1 >= ... `` (floats) and ``b`` sign vectors ``s_i`` in {-1, +1}; the representable values
of a row are the ``2^b`` sums ``sum_i alpha_i s_i``, its codebook (code = the bit pattern of
the signs, bit ``i`` set when ``s_i = +1``). Start: greedy residual binarisation
(``s_i = sign(r)``, ``alpha_i = mean |r|``, ``r -= alpha_i s_i``); then ``n_iter`` rounds of
alternating least squares: the ``alpha`` solve ``min ||w - B alpha||^2`` given the signs (exact
least squares), then each weight takes the nearest of the ``2^b`` sums (the exact best signs given
alpha). Data-free. Storage: the ``b`` fp16 scales per row (``extra_bits = n_rows * b * 16``), not
a ``2^b``-entry table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_int
from mpsearch.quant.methods._base import FLOAT_BITS, MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import codebook_result
from mpsearch.quant.methods.kmeans import check_codebook_bits
from mpsearch.quant.quantizer import to_rows
from mpsearch.quant.spec import QuantSpec


@dataclass(frozen=True)
class BinaryCodeConfig(MethodConfig):
    """Options of binary-code quantization.

    Attributes:
        n_iter: alternating least-squares rounds after the greedy start (0: greedy only).
    """

    n_iter: int = 15

    def __post_init__(self) -> None:
        check_int(self.n_iter, "BinaryCodeConfig", "n_iter", min=0)


def _patterns(b: int) -> Tensor:
    """All sign patterns, ``(2^b, b)`` in {-1, +1}; row c has bit i of c as sign i."""
    c = torch.arange(2**b).unsqueeze(1)
    return ((c >> torch.arange(b)) & 1).double() * 2 - 1


class BinaryCode(WeightMethod):
    """Sums of ``bits`` scaled binary vectors per row, fitted by alternating least squares."""

    name = "binary_code"
    config_cls = BinaryCodeConfig
    is_uniform = False

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        cfg: BinaryCodeConfig = self.config  # type: ignore[assignment]
        w = to_rows(weight, spec).double().cpu()
        check_codebook_bits(self.name, name, spec, 1 << 16)  # only bits <= 8: b scales fit any row size
        b = spec.bits
        pats = _patterns(b)  # (K, b)
        r = w.clone()
        alphas, signs = [], []
        for _ in range(b):
            s = torch.where(r >= 0, 1.0, -1.0).double()
            a = r.abs().mean(1)
            alphas.append(a)
            signs.append(s)
            r = r - a[:, None] * s
        alpha = torch.stack(alphas, 1)  # (R, b)
        codes = self._codes(torch.stack(signs, 2))  # (R, n)
        for _ in range(cfg.n_iter):
            bmat = pats[codes]  # (R, n, b)
            sol = torch.linalg.lstsq(bmat, w.unsqueeze(2)).solution.squeeze(2)  # (R, b)
            alpha = torch.where(torch.isfinite(sol), sol, alpha)
            codebook = alpha @ pats.T  # (R, K)
            codes = self._nearest(w, codebook)
        codebook = alpha @ pats.T
        codes = self._nearest(w, codebook)
        res = codebook_result(self.name, weight.shape, spec, codes, codebook.float(),
                              info={"alphas": alpha.float().tolist() if alpha.numel() <= 64 else None,
                                    "sse": float(((w - codebook.gather(1, codes)) ** 2).sum())})
        return replace(res, extra_bits=int(w.shape[0] * b * FLOAT_BITS))

    @staticmethod
    def _codes(signs: Tensor) -> Tensor:
        """Bit pattern of signs ``(R, n, b)`` -> code ``(R, n)``."""
        bits = (signs > 0).long()
        return (bits << torch.arange(signs.shape[2])).sum(2)

    @staticmethod
    def _nearest(w: Tensor, codebook: Tensor) -> Tensor:
        """Code of the nearest codebook value for each weight (ties: the lower code)."""
        order = torch.sort(codebook, dim=1)
        mids = (order.values[:, 1:] + order.values[:, :-1]) / 2
        pos = torch.searchsorted(mids.contiguous(), w.contiguous())
        return order.indices.gather(1, pos)
