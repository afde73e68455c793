"""Fit a roofline to measured layer latencies (used by the profiler for unmeasured shapes).

Model, the same one :func:`mpsearch.hardware.layer_costs` evaluates::

    latency_ms = max(ops / ops_per_s[pair], bytes / bytes_per_s) * 1e3 + overhead_ms

with one ``ops_per_s`` per (w, a) pair, one ``bytes_per_s`` and one ``overhead_ms`` shared.
The fit minimises the squared log-ratio of predicted to measured latency (relative error,
so a 10 us layer counts as much as a 10 ms one). Parameters live in log space (rates) and
as a logistic fraction of the smallest latency (overhead, so it stays in ``[0, t_min)``);
a small Nelder-Mead search runs from the best of a few closed-form starts: for a fixed
overhead ``o`` the noise-free rates are the upper envelopes
``ops_per_s = max(ops / (t - o))`` and ``bytes_per_s = max(bytes / (t - o))``.

With no memory-bound sample, ``bytes_per_s`` is only bounded below; the fit returns a value
at which every sample stays compute-bound (and likewise for rates of memory-bound pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from mpsearch.core.profile import Roofline
from mpsearch.errors import ConfigError
from mpsearch.hardware._check import Reader, pair_key


@dataclass(frozen=True)
class RooflineSample:
    """One measured layer: its pair key ("w8a8"), ops (2 x MACs x n), bytes and latency."""

    pair: str
    ops: float
    bytes: float
    latency_ms: float


def _samples(measurements: Iterable[RooflineSample | Mapping[str, Any]]) -> list[RooflineSample]:
    r = Reader("fit_roofline")
    out = []
    for i, m in enumerate(measurements):
        if isinstance(m, Mapping):
            r.mapping(m, f"measurements[{i}]", ("pair", "ops", "bytes", "latency_ms"),
                      required=("pair", "ops", "bytes", "latency_ms"))
            m = RooflineSample(m["pair"], m["ops"], m["bytes"], m["latency_ms"])
        if not isinstance(m, RooflineSample):
            raise r.fail(f"measurements[{i}]", "a RooflineSample or a mapping {pair, ops, bytes, latency_ms}", m)
        w, a = r.pair_key(m.pair, f"measurements[{i}].pair")
        ops = r.number(m.ops, f"measurements[{i}].ops", strict=False)
        nbytes = r.number(m.bytes, f"measurements[{i}].bytes", strict=False)
        if ops == 0 and nbytes == 0:
            raise r.fail(f"measurements[{i}]", "a sample with ops or bytes > 0", m)
        out.append(RooflineSample(pair_key(w, a), ops, nbytes, r.number(m.latency_ms, f"measurements[{i}].latency_ms")))
    if not out:
        raise ConfigError("fit_roofline: measurements must hold at least one sample, but got none")
    return out


def _nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 0.5,
                 max_iter: int = 4000, tol: float = 1e-14) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (standard coefficients 1, 2, 0.5, 0.5)."""
    n = len(x0)
    simplex = np.vstack([x0] + [x0 + step * np.eye(n)[i] for i in range(n)])
    values = np.array([f(x) for x in simplex])
    for _ in range(max_iter):
        order = np.argsort(values)
        simplex, values = simplex[order], values[order]
        if values[-1] - values[0] <= tol and np.max(np.abs(simplex[1:] - simplex[0])) <= 1e-10:
            break
        centroid = simplex[:-1].mean(axis=0)
        xr = centroid + (centroid - simplex[-1])
        fr = f(xr)
        if fr < values[0]:
            xe = centroid + 2.0 * (centroid - simplex[-1])
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(xc)
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:  # shrink towards the best point
                simplex[1:] = simplex[0] + 0.5 * (simplex[1:] - simplex[0])
                values[1:] = [f(x) for x in simplex[1:]]
    return simplex[int(np.argmin(values))]


def fit_roofline(measurements: Iterable[RooflineSample | Mapping[str, Any]],
                 overhead_ms: float | None = None) -> Roofline:
    """Fit ``ops_per_s`` per pair, ``bytes_per_s`` and ``overhead_ms`` to measured latencies.

    Args:
        measurements: samples (:class:`RooflineSample` or mappings with ``pair``, ``ops``,
            ``bytes``, ``latency_ms``); ops = 2 x MACs x n_examples, bytes as in
            :func:`mpsearch.hardware.roofline_work`.
        overhead_ms: fix the per-layer overhead instead of fitting it.

    Returns:
        A :class:`Roofline` whose ``ops_per_s`` has one entry per pair seen.

    Raises:
        ConfigError: no samples, or a malformed one (bad pair key, latency <= 0, ...).
    """
    samples = _samples(measurements)
    pairs = sorted({s.pair for s in samples})
    pid = np.array([pairs.index(s.pair) for s in samples])
    ops = np.array([s.ops for s in samples])
    nbytes = np.array([s.bytes for s in samples])
    t_ms = np.array([s.latency_ms for s in samples])
    t_min = float(t_ms.min())
    if overhead_ms is not None:
        fixed = Reader("fit_roofline").number(overhead_ms, "overhead_ms", strict=False)
        if fixed >= t_min:
            raise ConfigError(f"fit_roofline: overhead_ms must be below the smallest latency {t_min}, but got {fixed}")
    k = len(pairs)
    log_t = np.log(t_ms)

    def overhead(u: float) -> float:
        return fixed if overhead_ms is not None else t_min * (1 - 1e-9) / (1.0 + math.exp(-u))

    def unpack(x: np.ndarray) -> tuple[np.ndarray, float, float]:
        return np.exp(x[:k]), float(np.exp(x[k])), overhead(float(np.clip(x[k + 1], -60, 60)))

    def loss(x: np.ndarray) -> float:
        rate, bw, o = unpack(x)
        pred = np.maximum(ops / rate[pid], nbytes / bw) * 1e3 + o
        return float(np.sum((np.log(pred) - log_t) ** 2))

    def start(frac: float) -> np.ndarray:
        o = fixed if overhead_ms is not None else frac * t_min
        y_s = (t_ms - o) * 1e-3
        rate = np.array([max(np.max(ops[pid == j] / y_s[pid == j]), 1e-30) for j in range(k)])
        bw = max(float(np.max(nbytes / y_s)), 1e-30)
        u = 0.0 if overhead_ms is not None else math.log(max(frac, 1e-12) / max(1 - frac, 1e-12))
        return np.concatenate([np.log(rate), [math.log(bw), u]])

    starts = [start(f) for f in ((0.0,) if overhead_ms is not None else (1e-6, 0.25, 0.5, 0.75, 0.95))]
    x = min(starts, key=loss)
    for _ in range(3):  # restarts: Nelder-Mead can collapse its simplex early on kinks of max()
        x = _nelder_mead(loss, x, step=0.3)
    rate, bw, o = unpack(x)
    if overhead_ms is None and o < 1e-9 * t_min:
        o = 0.0
    return Roofline(ops_per_s={p: float(rate[j]) for j, p in enumerate(pairs)}, bytes_per_s=bw, overhead_ms=o)
