"""Logarithmic / power-of-two quantization ("log2", Miyashita et al. 2016).

Contract: per row of the spec, the representable values are 0 and ``+-S 2^-j`` for
``j = 0 .. L - 1``, ``L = 2^(bits-1) - 1`` magnitudes (``2L + 1 = 2^bits - 1`` values: one code
is unused), with ``S`` the row's largest magnitude (so the largest weight is exact). Each weight
takes the NEAREST representable value (linear distance, not log distance). Codes index the sorted
codebook. Multiplying by ``2^-j`` is a shift. For ``bits <= 4`` (``2^(L-1) <= 64``) the codebook is
an integer one, ``S / 2^(L-1) * {0, +-1, +-2, ..., +-2^(L-1)}`` in int8, and the result says so
(``integer_codebook=True``); wider codebooks do not fit int8 and are float tables. Data-free.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mpsearch.quant.methods._base import MethodResult, WeightMethod
from mpsearch.quant.methods._common import codebook_result
from mpsearch.quant.methods.kmeans import check_codebook_bits
from mpsearch.quant.quantizer import to_rows
from mpsearch.quant.spec import QuantSpec


def log_levels(bits: int) -> Tensor:
    """Sorted integer-valued levels ``2^(L-1) * {0, +-2^-j}`` as float64, ``(2L + 1,)``."""
    n_mag = 2 ** (bits - 1) - 1
    mags = 2.0 ** torch.arange(n_mag - 1, -1, -1, dtype=torch.float64)  # 2^(L-1) .. 1
    return torch.sort(torch.cat([-mags, torch.zeros(1, dtype=torch.float64), mags])).values


class Log2(WeightMethod):
    """Zero and signed powers of two times a per-row scale; nearest value."""

    name = "log2"
    is_uniform = False

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        rows = to_rows(weight, spec).double().cpu()
        check_codebook_bits(self.name, name, spec, 1 << 16)  # only bits <= 8: a row needs no minimum size
        levels = log_levels(spec.bits)  # integer-valued
        top = float(levels.max())
        amax = rows.abs().amax(1)
        row_scale = torch.where(amax > 0, amax / top, torch.ones_like(amax))  # S / 2^(L-1)
        codebook = row_scale[:, None] * levels[None, :]
        mids = (codebook[:, 1:] + codebook[:, :-1]) / 2
        codes = torch.searchsorted(mids.contiguous(), rows.contiguous())
        integer = top <= 127
        return codebook_result(self.name, weight.shape, spec, codes, codebook.float(),
                               levels.expand_as(codebook) if integer else None,
                               row_scale if integer else None, info={"n_magnitudes": 2 ** (spec.bits - 1) - 1})
