"""Compiled (numba) kernels of :mod:`mpsearch.allocation.lagrange_bb`: plain Python functions here,
compiled by :func:`kernel` on first use (importing this module imports no numba).

Data of a core with one or two budget rows: ``cost (n,)``, rows ``s (n,)`` and ``t (n,)`` (``t``
all 0 with one row), their limits ``b1``, ``b2`` (``b2 = 0`` with one row), ``ptr`` the group
pointers. A node is the state ``fixed[g]`` (chosen variable or -1) and ``banned[j]`` (depth of
the node that removed ``j`` or -1). Every bound is ``L(l1, l2) = sum_g min_j (cost_j + l1 s_j + l2
t_j) - l1 b1 - l2 b2`` over the node's allowed variables, evaluated in float64 and lowered by a
bound on its rounding error: valid for any ``l1, l2 >= 0``; the searches over the multipliers
only decide how strong it is.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

INF = np.inf
#: Relative tolerance under which two priced costs are tied (left/right derivatives).
TIE = 1e-12
#: Multiplier iterations: inner (row 1, per evaluation of the outer function) and outer (row 2).
INNER_ITERS, OUTER_ITERS = 60, 40
#: Per-term rounding factor of the bound's error: a sum of G priced minima (3 roundings each) and
#: two products is off by at most (G + 3) x 2^-53 x the sum of the magnitudes; 4e-16 > 3.5 x 2^-53.
ERR = 4e-16
#: Relative distance between the upper estimate and the best value at which a search stops.
STOP = 1e-10


def _eval_py(l1, l2, cost, s, t, ptr, fixed, banned, b1, b2):
    """``(L, SL, SR, TL, TR, err)``: the bound, row totals of the left / right selections (ties at
    their largest / smallest ``s``) and a bound on the rounding error of ``L``."""
    total = 0.0
    mag = abs(l1 * b1) + abs(l2 * b2)
    sl = sr = tl = tr = 0.0
    for g in range(len(ptr) - 1):
        lo, hi = ptr[g], ptr[g + 1]
        if fixed[g] >= 0:
            lo, hi = fixed[g], fixed[g] + 1
        best = INF
        for j in range(lo, hi):
            if fixed[g] < 0 and banned[j] >= 0:
                continue
            p = cost[j] + l1 * s[j] + l2 * t[j]
            if p < best:
                best = p
        if best == INF:
            return INF, 0.0, 0.0, 0.0, 0.0, 0.0
        tie = best + TIE * (1.0 + abs(best))
        jl = jr = -1
        for j in range(lo, hi):
            if fixed[g] < 0 and banned[j] >= 0:
                continue
            if cost[j] + l1 * s[j] + l2 * t[j] <= tie:
                if jl < 0 or s[j] > s[jl]:
                    jl = j
                if jr < 0 or s[j] < s[jr]:
                    jr = j
        total += best
        mag += abs(cost[jr]) + abs(l1 * s[jr]) + abs(l2 * t[jr])
        sl += s[jl]
        sr += s[jr]
        tl += t[jl]
        tr += t[jr]
    lb = total - l1 * b1 - l2 * b2
    return lb, sl, sr, tl, tr, ERR * (len(ptr) + 3.0) * mag


def _smin_py(s, ptr, fixed, banned):
    """The smallest total of row ``s`` over the plans of the node."""
    out = 0.0
    for g in range(len(ptr) - 1):
        if fixed[g] >= 0:
            out += s[fixed[g]]
            continue
        m = INF
        for j in range(ptr[g], ptr[g + 1]):
            if banned[j] < 0 and s[j] < m:
                m = s[j]
        out += m
    return out


def _g2(sl, sr, tl, tr, b1, b2):
    """A supergradient in ``l2`` of ``max_l1 L`` at an optimal ``l1``: the mix of the left and
    right selections that meets row 1 exactly (clipped to [0, 1] when ``l1`` is not optimal)."""
    th = 0.0 if sl <= sr else min(1.0, max(0.0, (b1 - sr) / (sl - sr)))
    return th * tl + (1.0 - th) * tr - b2


def _inner_py(l2, l1, cost, s, t, ptr, fixed, banned, b1, b2):
    """``(l1, L - err, g2)`` at the best ``l1`` found for this ``l2`` (line-intersection search on
    the concave piecewise-linear ``L(., l2)``); ``L`` is ``inf`` when no plan meets row 1."""
    f, sl, sr, tl, tr, err = _eval(l1, l2, cost, s, t, ptr, fixed, banned, b1, b2)
    bl, bf, bg = l1, f - err, _g2(sl, sr, tl, tr, b1, b2)
    if f == INF:
        return l1, INF, 0.0
    dl, dr = sl - b1, sr - b1
    if dr <= 0.0 and (dl >= 0.0 or l1 <= 0.0):
        return bl, bf, bg
    if dr > 0.0:
        if _smin(s, ptr, fixed, banned) > b1:
            return l1, INF, 0.0
        la, fa, da = l1, f, dr
        step = max(l1, 1e-6)
        lb = fb = db = -1.0
        for _ in range(INNER_ITERS):
            x = la + step
            f, sl, sr, tl, tr, err = _eval(x, l2, cost, s, t, ptr, fixed, banned, b1, b2)
            if f - err > bf:
                bl, bf, bg = x, f - err, _g2(sl, sr, tl, tr, b1, b2)
            if sl - b1 >= 0.0 >= sr - b1:
                return bl, bf, bg
            if sl - b1 < 0.0:
                lb, fb, db = x, f, sl - b1
                break
            la, fa, da = x, f, sr - b1
            step *= 4.0
        if lb < 0.0:
            return bl, bf, bg
    else:
        lb, fb, db = l1, f, dl
        f, sl, sr, tl, tr, err = _eval(0.0, l2, cost, s, t, ptr, fixed, banned, b1, b2)
        if f - err > bf:
            bl, bf, bg = 0.0, f - err, _g2(sl, sr, tl, tr, b1, b2)
        if sr - b1 <= 0.0:
            return bl, bf, bg
        la, fa, da = 0.0, f, sr - b1
    for _ in range(INNER_ITERS):
        x = (fb - fa + da * la - db * lb) / (da - db)
        if not la < x < lb:
            x = 0.5 * (la + lb)
        upper = fa + da * (x - la)
        f, sl, sr, tl, tr, err = _eval(x, l2, cost, s, t, ptr, fixed, banned, b1, b2)
        if f - err > bf:
            bl, bf, bg = x, f - err, _g2(sl, sr, tl, tr, b1, b2)
        if sl - b1 >= 0.0 >= sr - b1 or upper - bf <= STOP * (1.0 + abs(bf)) or lb - la <= 1e-15 * lb:
            break
        if sr - b1 > 0.0:
            la, fa, da = x, f, sr - b1
        else:
            lb, fb, db = x, f, sl - b1
    return bl, bf, bg


def _bound_py(l1, l2, two, cost, s, t, ptr, fixed, banned, b1, b2, thr):
    """``(l1, l2, bound)``: the best multipliers found from the start ``(l1, l2)`` and their valid
    bound (the LP bound of the node up to the search's stop rule; inf when no plan of the node
    meets one of the rows on its own). Stops early once the bound reaches ``thr`` (pruned)."""
    if two and _smin(t, ptr, fixed, banned) > b2:  # no plan of the node meets row 2
        return l1, l2, INF
    a1, h, g = _inner(l2, l1, cost, s, t, ptr, fixed, banned, b1, b2)
    b_l1, b_l2, best = a1, l2, h
    if not two or h >= thr or g == 0.0 or (g < 0.0 and l2 <= 0.0):
        return b_l1, b_l2, best
    if g > 0.0:
        la, fa, da, l1a = l2, h, g, a1
        step = max(l2, 1e-6)
        lb = -1.0
        for _ in range(OUTER_ITERS):
            x = la + step
            x1, hx, gx = _inner(x, l1a, cost, s, t, ptr, fixed, banned, b1, b2)
            if hx > best:
                b_l1, b_l2, best = x1, x, hx
            if best >= thr or gx == 0.0:
                return b_l1, b_l2, best
            if gx < 0.0:
                lb, fb, db, l1b = x, hx, gx, x1
                break
            la, fa, da, l1a = x, hx, gx, x1
            step *= 4.0
        if lb < 0.0:
            return b_l1, b_l2, best
    else:
        lb, fb, db, l1b = l2, h, g, a1
        x1, hx, gx = _inner(0.0, a1, cost, s, t, ptr, fixed, banned, b1, b2)
        if hx > best:
            b_l1, b_l2, best = x1, 0.0, hx
        if gx <= 0.0 or best >= thr:
            return b_l1, b_l2, best
        la, fa, da, l1a = 0.0, hx, gx, x1
    for _ in range(OUTER_ITERS):
        x = (fb - fa + da * la - db * lb) / (da - db)
        if not la < x < lb:
            x = 0.5 * (la + lb)
        upper = fa + da * (x - la)
        if upper - best <= STOP * (1.0 + abs(best)) or lb - la <= 1e-15 * lb:
            break
        x1, hx, gx = _inner(x, l1a if x - la < lb - x else l1b, cost, s, t, ptr, fixed, banned, b1, b2)
        if hx > best:
            b_l1, b_l2, best = x1, x, hx
        if best >= thr or gx == 0.0:
            break
        if gx > 0.0:
            la, fa, da, l1a = x, hx, gx, x1
        else:
            lb, fb, db, l1b = x, hx, gx, x1
    return b_l1, b_l2, best


_eval: Any = None
_smin: Any = None
_inner: Any = None
_bound: Any = None
_KERNELS: dict[str, Callable[..., Any]] = {}


def kernel(name: str) -> Callable[..., Any]:
    """The compiled ``name`` (``"bound"`` or ``"search"``), compiled (or loaded from numba's disk
    cache) on first use; the helpers it calls are compiled first (numba resolves globals then)."""
    global _eval, _smin, _inner, _bound
    if not _KERNELS:
        import mpsearch.allocation._lagrange_search as search
        from mpsearch.allocation.lagrange_bb import load_numba

        njit = load_numba().njit(cache=True, fastmath=False, nogil=True)
        _eval, _smin = njit(_eval_py), njit(_smin_py)
        globals()["_g2"] = njit(_g2)
        _inner = njit(_inner_py)
        _bound = njit(_bound_py)
        search._bound = _bound
        for helper in ("_threshold", "_allowed", "_totals", "_improve"):
            setattr(search, helper, njit(getattr(search, helper)))
        _KERNELS.update(bound=_bound, search=njit(search.search_py))
    return _KERNELS[name]
