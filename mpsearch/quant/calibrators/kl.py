"""KL (entropy) calibration: the clip threshold whose quantized histogram loses least
information, in the manner of TensorRT's INT8 entropy calibrator (Migacz, 2017)."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from mpsearch.core.checks import check_int
from mpsearch.quant.calibrators._base import SampledCalibrator
from mpsearch.quant.quantizer import qparams
from mpsearch.quant.spec import QuantSpec


def kl_threshold(magnitudes: np.ndarray, n_levels: int, n_bins: int = 2048, n_candidates: int = 256) -> float:
    """Clip threshold ``T`` on ``|x|`` minimizing ``KL(P || Q)``.

    ``P`` is the histogram of ``|x|`` over ``[0, T]`` with the mass above ``T`` added to its
    last bin; ``Q`` is the histogram over ``[0, T]`` without that mass, merged into
    ``n_levels`` equal chunks and spread back evenly over each chunk's non-empty bins (what
    ``n_levels`` codes can represent). Empty bins of ``Q`` count as ``1e-12`` (large, finite KL).
    Candidate thresholds are bin edges from ``n_levels`` bins up to ``n_bins`` (about
    ``n_candidates`` of them, evenly spaced).
    """
    amax = float(magnitudes.max()) if magnitudes.size else 0.0
    if amax <= 0.0 or n_levels >= n_bins:
        return amax
    hist, _ = np.histogram(magnitudes, bins=n_bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    bin_width = amax / n_bins
    step = max(1, (n_bins - n_levels) // n_candidates)
    best_i, best_kl = n_bins, np.inf
    for i in list(range(n_levels, n_bins, step)) + [n_bins]:
        kept = hist[:i]
        p = kept.copy()
        p[i - 1] += hist[i:].sum()  # outliers pile into the last kept bin
        bounds = np.linspace(0, i, n_levels + 1).astype(np.int64)
        nonzero = (kept > 0).astype(np.float64)
        chunk_sum = np.add.reduceat(kept, bounds[:-1])
        chunk_nz = np.add.reduceat(nonzero, bounds[:-1])
        per_bin = np.divide(chunk_sum, chunk_nz, out=np.zeros_like(chunk_sum), where=chunk_nz > 0)
        q = np.repeat(per_bin, np.diff(bounds)) * nonzero
        if q.sum() <= 0:
            continue
        pn = p / p.sum()
        qn = np.maximum(q / q.sum(), 1e-12)  # an empty Q bin under P mass: large but finite KL
        mask = pn > 0
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i * bin_width


class KlCalibrator(SampledCalibrator):
    """Entropy calibration per row; the threshold clips ``[min, max]`` to ``[-T, T]``.

    The number of levels matched against the histogram is the spec's ``n_levels`` when the
    row is one-sided and the spec can use every code on one side (asymmetric or unsigned),
    else half of it. Exact zeros are left out of the histogram: the zero point represents
    them exactly whatever the range, and a spike in bin 0 (half of a ReLU output) would
    otherwise dominate the divergence and pull the threshold far down.
    """

    name = "kl"

    def __init__(self, spec: QuantSpec, n_bins: int = 2048, n_candidates: int = 256, max_samples: int = 1 << 20,
                 seed: int = 0) -> None:
        super().__init__(spec, max_samples=max_samples, seed=seed)
        check_int(n_bins, "KlCalibrator", "n_bins", min=16)
        check_int(n_candidates, "KlCalibrator", "n_candidates", min=1)
        self.n_bins = n_bins
        self.n_candidates = n_candidates

    def _compute_rows(self, spec: QuantSpec) -> tuple[Tensor, Tensor]:
        rows = self.samples.double().cpu().numpy()
        lo = self.min_val.clone()  # type: ignore[union-attr]
        hi = self.max_val.clone()  # type: ignore[union-attr]
        for r in range(rows.shape[0]):
            one_sided = bool(lo[r] >= 0 or hi[r] <= 0)
            n_levels = spec.n_levels if one_sided and (not spec.symmetric or not spec.signed) else spec.n_levels // 2
            mags = np.abs(rows[r])
            # Exact zeros (post-ReLU) are exact at any range; left in bin 0 they would swamp the KL.
            t = kl_threshold(mags[mags > 0], n_levels, self.n_bins, self.n_candidates)
            lo[r] = max(float(lo[r]), -t)
            hi[r] = min(float(hi[r]), t)
        return qparams(lo, hi, spec)
