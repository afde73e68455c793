"""1-D (weighted) k-means: exact dynamic programming for small rows, Lloyd + k-means++ otherwise.

Optimal 1-D clusters are contiguous runs of the sorted values, so the exact optimum of
``sum_i w_i (x_i - c(x_i))^2`` over ``k`` clusters is a dynamic programme over split points of
the sorted values (``O(k n^2)``, used when a row has at most ``exact_max_n`` values). Larger rows
use Lloyd's algorithm (batched over rows; assignment by ``searchsorted`` on the midpoints of the
sorted centroids) from a seeded k-means++ initialisation: a local optimum, not a global one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def kmeans_exact(x: np.ndarray, w: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Globally optimal weighted 1-D k-means of one row: (sorted centroids ``(k,)``, cost)."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order].astype(np.float64), w[order].astype(np.float64)
    n = len(xs)
    cw = np.concatenate([[0.0], np.cumsum(ws)])
    cx = np.concatenate([[0.0], np.cumsum(ws * xs)])
    cxx = np.concatenate([[0.0], np.cumsum(ws * xs * xs)])

    def cost(i: int, j: int) -> float:  # cluster of sorted values i..j-1
        sw = cw[j] - cw[i]
        if sw <= 0:
            return 0.0
        sx = cx[j] - cx[i]
        return max(0.0, (cxx[j] - cxx[i]) - sx * sx / sw)

    inf = float("inf")
    best = np.full((k + 1, n + 1), inf)
    arg = np.zeros((k + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for m in range(1, k + 1):
        for j in range(m, n + 1):
            for i in range(m - 1, j):
                c = best[m - 1, i] + cost(i, j)
                if c < best[m, j]:
                    best[m, j], arg[m, j] = c, i
    cents, j = [], n
    for m in range(k, 0, -1):
        i = arg[m, j]
        sw = cw[j] - cw[i]
        cents.append((cx[j] - cx[i]) / sw if sw > 0 else xs[i])
        j = i
    return np.array(cents[::-1]), float(best[k, n])


def assign(x: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid for each value (rows of ``x`` ``(R, n)``; centroids ``(R, k)`` sorted)."""
    mids = (centroids[:, 1:] + centroids[:, :-1]) / 2
    return torch.searchsorted(mids.contiguous(), x.contiguous())


def kmeans_lloyd(x: Tensor, w: Tensor, k: int, max_iter: int, seed: int) -> Tensor:
    """Weighted Lloyd k-means per row of ``x`` ``(R, n)`` from k-means++ seeds; sorted centroids ``(R, k)``."""
    x64, w64 = x.double(), w.double()
    gen = torch.Generator().manual_seed(seed)
    r, n = x.shape
    rows = torch.arange(r)
    first = torch.multinomial(w64 + 1e-30, 1, generator=gen).squeeze(1)
    cents = [x64[rows, first]]
    d2 = (x64 - cents[0][:, None]) ** 2
    for _ in range(1, k):
        p = d2 * w64
        p = torch.where(p.sum(1, keepdim=True) > 0, p, torch.ones_like(p))  # all points covered: any
        pick = torch.multinomial(p, 1, generator=gen).squeeze(1)
        c = x64[rows, pick]
        cents.append(c)
        d2 = torch.minimum(d2, (x64 - c[:, None]) ** 2)
    c = torch.sort(torch.stack(cents, 1), dim=1).values
    for _ in range(max_iter):
        a = assign(x64, c)
        sw = torch.zeros(r, k, dtype=torch.float64).scatter_add_(1, a, w64)
        sx = torch.zeros(r, k, dtype=torch.float64).scatter_add_(1, a, w64 * x64)
        new = torch.where(sw > 0, sx / sw.clamp_min(1e-300), c)  # an empty cluster keeps its centroid
        new = torch.sort(new, dim=1).values
        if torch.equal(new, c):
            break
        c = new
    return c
