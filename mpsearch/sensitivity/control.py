"""A Nystrom control variate for Hutchinson samples (fewer probes for the same error).

After a first round of probes ``S`` (m x n) with data-set HVPs ``Y = (H S^T)^T`` (m x n),
the Nystrom approximation ``A = Y^T M Y`` with ``M = pinv(S Y^T)`` captures the dominant
eigen-directions of the block. A later probe ``v`` then gives the sample

    v^T H v - v^T A v + tr(A),

which is unbiased for ``tr(H)`` for *any* ``A`` built from earlier probes (``v`` is
independent of ``A`` and ``E[v^T A v] = tr(A)``), and has far less variance when ``A``
holds most of the block's Frobenius mass (Hessian spectra are dominated by a few large
eigenvalues). Samples of one round stay independent given the past, so their standard
error remains honest. A layer whose corrected samples spread more than its raw ones on a
round goes back to raw samples for the next (a choice made from past rounds only, so the
mean stays unbiased).
"""

from __future__ import annotations

import torch


class NystromControl:
    """``A = Y^T pinv(S Y^T) Y`` for one layer; gives per-probe corrections ``tr(A) - v^T A v``."""

    def __init__(self, probes: torch.Tensor, hvps: torch.Tensor, rcond: float = 1e-6) -> None:
        s = probes.flatten(1).to(hvps.dtype)
        y = hvps.flatten(1)
        core = (s @ y.T).double()
        core = (core + core.T) / 2  # S H S^T is symmetric up to rounding
        evals, evecs = torch.linalg.eigh(core)
        keep = evals.abs() > rcond * evals.abs().max().clamp_min(1e-300)
        inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
        self.m = (evecs * inv) @ evecs.T  # pinv of the symmetric core, small (m x m)
        self.y = y
        self.trace_a = float(torch.trace(self.m @ (y @ y.T).double()))

    def correction(self, probes: torch.Tensor) -> torch.Tensor:
        """``tr(A) - v^T A v`` for each row ``v`` of ``probes`` (float64, on the CPU)."""
        c = (probes.flatten(1).to(self.y.dtype) @ self.y.T).double()  # (k, m)
        quad = ((c @ self.m) * c).sum(1)
        return (self.trace_a - quad).cpu()
