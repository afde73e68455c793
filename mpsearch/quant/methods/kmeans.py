"""Non-uniform k-means codebooks: "kmeans" (plain) and "hessian_kmeans" (Hessian-weighted).

Contract: per row of the spec (per_tensor: one codebook for the whole weight; per_channel: one
per output channel; per_group: one per group) the ``K = 2^bits`` centroids minimise
``sum_i h_i (w_i - c(w_i))^2`` and each weight's code is its nearest centroid. ``h_i = 1`` for
"kmeans"; for "hessian_kmeans" ``h_i`` is the Hessian diagonal of the layer's output error for the
weight's input feature, ``H_jj = 2 mean(x_j^2)`` over the calibration input rows (conv: unfolded
rows, groups == 1), so weights that see large inputs get centroids closer to them (needs data).
Rows with at most ``exact_max_n`` values are solved EXACTLY (dynamic programme on the sorted
values: the global optimum); larger rows by Lloyd from seeded k-means++ (a local optimum).
A row with fewer weights than ``K`` is refused. ``integer_codebook=True`` snaps each row's
centroids to ``scale * int8`` (``scale = max|c| / 127``) and re-assigns codes to the snapped
values, so the integer path can look codes up to int8 integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_bool, check_int
from mpsearch.errors import ConfigError
from mpsearch.quant.methods._base import MethodConfig, MethodResult, WeightMethod
from mpsearch.quant.methods._common import check_inputs, codebook_result, grouped_conv_reason, input_rows
from mpsearch.quant.methods._kmeans1d import assign, kmeans_exact, kmeans_lloyd
from mpsearch.quant.quantizer import to_rows
from mpsearch.quant.spec import QuantSpec


@dataclass(frozen=True)
class KMeansConfig(MethodConfig):
    """Options of the k-means methods.

    Attributes:
        max_iter: Lloyd iterations at most (rows above ``exact_max_n``).
        exact_max_n: rows with at most this many weights are solved exactly (DP, ``O(K n^2)``).
        seed: seeds the k-means++ initialisation.
        integer_codebook: snap centroids to ``scale * int8`` per row (see the module docstring).
    """

    max_iter: int = 50
    exact_max_n: int = 64
    seed: int = 0
    integer_codebook: bool = False

    def __post_init__(self) -> None:
        check_int(self.max_iter, "KMeansConfig", "max_iter", min=1)
        check_int(self.exact_max_n, "KMeansConfig", "exact_max_n", min=0)
        check_int(self.seed, "KMeansConfig", "seed", min=0)
        check_bool(self.integer_codebook, "KMeansConfig", "integer_codebook")


def check_codebook_bits(method: str, name: str, spec: QuantSpec, n_per_row: int) -> int:
    """``K = 2^bits`` after checking it fits: bits <= 8 and no more clusters than weights per row."""
    if spec.bits > 8:
        raise ConfigError(f"layer {name!r}: method {method!r} needs bits <= 8 (a codebook of 2^bits entries), "
                          f"but got {spec.bits}")
    k = 2**spec.bits
    if k > n_per_row:
        raise ConfigError(f"layer {name!r}: method {method!r} needs at most as many clusters as weights per "
                          f"codebook row (2^bits = {k} clusters; {spec.granularity} rows hold {n_per_row} "
                          f"weights), but got {k} > {n_per_row}; use fewer bits or a coarser granularity")
    return k


class KMeans(WeightMethod):
    """A codebook of ``2^bits`` k-means centroids per row (non-uniform, data-free)."""

    name = "kmeans"
    config_cls = KMeansConfig
    is_uniform = False

    def _importance(self, weight: Tensor, spec: QuantSpec, x: Tensor | None, layer: nn.Module | None,
                    name: str) -> Tensor:
        return torch.ones_like(weight)

    def _quantize(self, weight: Tensor, spec: QuantSpec, calib_inputs: Tensor | None, layer: nn.Module | None,
                  name: str) -> MethodResult:
        cfg: KMeansConfig = self.config  # type: ignore[assignment]
        rows = to_rows(weight, spec)
        k = check_codebook_bits(self.name, name, spec, rows.shape[1])
        imp = to_rows(self._importance(weight, spec, calib_inputs, layer, name), spec)
        if rows.shape[1] <= cfg.exact_max_n:
            xs, ws = rows.cpu().numpy(), imp.cpu().numpy()
            cents = torch.from_numpy(np.stack([kmeans_exact(xs[i], ws[i], k)[0] for i in range(rows.shape[0])]))
            solver = "exact_dp"
        else:
            cents = kmeans_lloyd(rows.cpu(), imp.cpu(), k, cfg.max_iter, cfg.seed)
            solver = "lloyd_kmeans++"
        cents = cents.double()
        cb_int = row_scale = None
        if cfg.integer_codebook:
            row_scale = (cents.abs().amax(1) / 127).clamp_min(1e-12)
            cb_int = torch.clamp(torch.round(cents / row_scale[:, None]), -128, 127)
            cents = torch.sort(cb_int * row_scale[:, None], dim=1).values
            cb_int = torch.sort(cb_int, dim=1).values
        codes = assign(rows.double().cpu(), cents)
        cost = float((imp.double().cpu() * (rows.double().cpu() - cents.gather(1, codes)) ** 2).sum())
        return codebook_result(self.name, weight.shape, spec, codes, cents.float(), cb_int, row_scale,
                               info={"solver": solver, "weighted_sse": cost, "k": k})


class HessianKMeans(KMeans):
    """k-means weighted by the Hessian diagonal of the layer's output error (needs data)."""

    name = "hessian_kmeans"
    needs_data = True
    layer_kinds = ("linear", "conv1d", "conv2d")

    def unsupported_reason(self, layer: nn.Module | None) -> str | None:
        reason = super().unsupported_reason(layer)
        return reason if reason is not None else grouped_conv_reason(layer)

    def _importance(self, weight: Tensor, spec: QuantSpec, x: Tensor | None, layer: nn.Module | None,
                    name: str) -> Tensor:
        check_inputs(layer, weight, x, self.name, name)  # type: ignore[arg-type]
        xr = input_rows(layer, x, name).double()  # type: ignore[arg-type]
        diag = 2 * (xr * xr).mean(0)  # H_jj, (fan_in,)
        diag = diag + 1e-8 * float(diag.mean()) + 1e-30  # a dead feature keeps a tiny weight
        return diag.float().unsqueeze(0).expand(weight.shape[0], -1).reshape(weight.shape)
