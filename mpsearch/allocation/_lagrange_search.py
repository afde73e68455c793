"""The depth-first group branching of :mod:`mpsearch.allocation.lagrange_bb`, as plain Python
compiled by numba (:func:`mpsearch.allocation._lagrange_kernels.kernel`).

A stack entry is a node "group ``g`` takes variable ``j``" below the node on the current path
at depth ``d - 1``, with ``est``, a valid bound of the node (its parent's bound plus the reduced
cost of ``j`` at the parent's multipliers), and the parent's multipliers as the start of its own
search. A node is pruned (and its bound kept in ``closed``) once its bound reaches
``upper - gap_abs - tol``; node fixing removes the variables whose reduced cost reaches that
threshold for the node's subtree, keeping their bound in ``closed`` as well. So when the stack
runs empty the optimum is at least ``min(closed, upper)``; when the node budget runs out, the
entries left on the stack add their ``est``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INF = np.inf
#: Greedy upgrades spent on a rounded node plan.
FILL_MOVES = 10
_bound: Any = None  # the compiled bound search, set before this module's kernel is compiled


def _threshold(upper, gap_abs):
    """Bound at or above which a node is pruned: ``gap_abs`` and float rounding below the
    incumbent; inf without one (nothing is pruned but nodes that hold no plan)."""
    return INF if upper == INF else upper - gap_abs - 1e-12 * (1.0 + abs(upper))


def _allowed(j, g, fixed, banned):
    return fixed[g] == j if fixed[g] >= 0 else banned[j] < 0


def _totals(plan, cost, s, t):
    c = a = b = 0.0
    for g in range(len(plan)):
        c += cost[plan[g]]
        a += s[plan[g]]
        b += t[plan[g]]
    return c, a, b


def _improve(plan, cost, s, t, two, b1, b2, ptr, var_group, fixed, banned):
    """Repair ``plan`` (cheapest objective rise per unit of excess removed, at most one move per
    group), then spend slack on at most ``FILL_MOVES`` best upgrades; True when the result meets
    both rows."""
    n_rep = n_up = 0
    while True:
        c, a, b = _totals(plan, cost, s, t)
        ex1, ex2 = a - b1, (b - b2) if two else -1.0
        repair = ex1 > 0.0 or ex2 > 0.0
        if (repair and n_rep >= len(plan)) or (not repair and n_up >= FILL_MOVES):
            break
        best, bj = INF, -1
        for g in range(len(plan)):
            cur = plan[g]
            for j in range(ptr[g], ptr[g + 1]):
                if j == cur or not _allowed(j, g, fixed, banned):
                    continue
                ds, dt, dc = s[j] - s[cur], t[j] - t[cur], cost[j] - cost[cur]
                if repair:
                    relief = (min(-ds, ex1) / ex1 if ex1 > 0.0 and ds < 0.0 else 0.0)
                    relief += (min(-dt, ex2) / ex2 if ex2 > 0.0 and dt < 0.0 else 0.0)
                    if relief <= 0.0 or (ex1 <= 0.0 and ds > -ex1) or (two and ex2 <= 0.0 and dt > -ex2):
                        continue
                    score = max(dc, 0.0) / relief
                else:
                    if dc >= 0.0 or ds > -ex1 or (two and dt > -ex2):
                        continue
                    use = max(ds, 0.0) / max(-ex1, 1e-300) + (max(dt, 0.0) / max(-ex2, 1e-300) if two else 0.0)
                    score = dc / (use + 1e-12)
                if score < best:
                    best, bj = score, j
        if bj < 0:
            break
        plan[var_group[bj]] = bj
        if repair:
            n_rep += 1
        else:
            n_up += 1
    c, a, b = _totals(plan, cost, s, t)
    return a <= b1 and (not two or b <= b2)


def search_py(cost, s, t, two, b1, b2, ptr, var_group, weight, start, gap_abs, l1, l2, max_nodes):
    """``(plan, upper, bound, n_branched, n_evaluated, finished)``; ``plan[0] = -1`` when no plan
    was found; ``finished``: the stack ran empty (``bound`` is then proven within ``gap_abs``)."""
    n_groups, n = len(ptr) - 1, len(cost)
    fixed = np.full(n_groups, -1, np.int64)
    banned = np.full(n, -1, np.int64)
    path = np.full(n_groups + 2, -1, np.int64)
    kmax = 1
    for g in range(n_groups):
        kmax = max(kmax, ptr[g + 1] - ptr[g])
    cap = (n_groups + 2) * (kmax + 1)
    st_d = np.empty(cap, np.int64)
    st_g = np.empty(cap, np.int64)
    st_j = np.empty(cap, np.int64)
    st_est = np.empty(cap, np.float64)
    st_l = np.empty((cap, 2), np.float64)
    best_plan = np.full(n_groups, -1, np.int64)
    upper = INF
    if start[0] >= 0:
        c, a, b = _totals(start, cost, s, t)
        if a <= b1 and (not two or b <= b2):
            best_plan[:] = start
            upper = c
    plan = np.empty(n_groups, np.int64)
    y = np.empty(n_groups, np.float64)
    kids_j = np.empty(kmax, np.int64)
    kids_e = np.empty(kmax, np.float64)
    closed = INF
    n_eval = n_branch = 0
    sp, depth = 1, 0
    st_d[0], st_g[0], st_j[0], st_est[0], st_l[0, 0], st_l[0, 1] = 0, -1, -1, -INF, l1, l2
    while sp > 0 and n_eval < max_nodes:
        sp -= 1
        d, g0, j0, est = st_d[sp], st_g[sp], st_j[sp], st_est[sp]
        thr = _threshold(upper, gap_abs)
        if est >= thr:
            closed = min(closed, est)
            continue
        for k in range(max(d, 1), depth + 1):  # back to the path of the entry's parent
            if path[k] >= 0:
                fixed[path[k]] = -1
                path[k] = -1
        for j in range(n):
            if banned[j] >= d:
                banned[j] = -1
        if d >= 1:
            fixed[g0] = j0
            path[d] = g0
        depth = d
        n_eval += 1
        nl1, nl2, bound = _bound(st_l[sp, 0], st_l[sp, 1], two, cost, s, t, ptr, fixed, banned, b1, b2, thr)
        bound = max(bound, est)
        if bound >= thr:
            closed = min(closed, bound)
            continue
        # round the node's Lagrangian plan (ties: lightest), repair, upgrade, offer
        for g in range(n_groups):
            bp = INF
            for j in range(ptr[g], ptr[g + 1]):
                if _allowed(j, g, fixed, banned):
                    bp = min(bp, cost[j] + nl1 * s[j] + nl2 * t[j])
            bj, bw, tie = -1, INF, bp + 1e-12 * (1.0 + abs(bp))
            for j in range(ptr[g], ptr[g + 1]):
                if _allowed(j, g, fixed, banned) and cost[j] + nl1 * s[j] + nl2 * t[j] <= tie and weight[j] < bw:
                    bj, bw = j, weight[j]
            plan[g] = bj
            y[g] = bp
        if _improve(plan, cost, s, t, two, b1, b2, ptr, var_group, fixed, banned):
            c, a, b = _totals(plan, cost, s, t)
            if c < upper:
                upper = c
                best_plan[:] = plan
                thr = _threshold(upper, gap_abs)
        if bound >= thr:
            closed = min(closed, bound)
            continue
        # node fixing, and the group to branch on: tied (fractional) groups first, the one whose
        # tied candidates differ most in objective; else the group closest to a tie
        gb, score = -1, -INF
        for g in range(n_groups):
            if fixed[g] >= 0:
                continue
            cnt, m2, tie = 0, INF, y[g] + 1e-9 * (1.0 + abs(y[g]))
            cmin, cmax = INF, -INF
            for j in range(ptr[g], ptr[g + 1]):
                if banned[j] >= 0:
                    continue
                p = cost[j] + nl1 * s[j] + nl2 * t[j]
                e = bound + (p - y[g]) - 1e-12 * (1.0 + abs(p))
                if e >= thr:
                    banned[j] = d
                    closed = min(closed, e)
                    continue
                cnt += 1
                if p <= tie:
                    cmin, cmax = min(cmin, cost[j]), max(cmax, cost[j])
                elif p < m2:
                    m2 = p
            if cnt < 2:
                continue
            sc = 1.0 + (cmax - cmin) if cmax > cmin else -(m2 - y[g])
            if sc > score:
                gb, score = g, sc
        if gb < 0:  # one plan left in the node: it was offered above (if it fits)
            continue
        nk = 0
        for j in range(ptr[gb], ptr[gb + 1]):
            if banned[j] >= 0:
                continue
            p = cost[j] + nl1 * s[j] + nl2 * t[j]
            e = bound + (p - y[gb]) - 1e-12 * (1.0 + abs(p))
            k = nk  # insertion sort, descending estimate (the lowest is pushed last, popped first)
            while k > 0 and kids_e[k - 1] < e:
                kids_e[k], kids_j[k] = kids_e[k - 1], kids_j[k - 1]
                k -= 1
            kids_e[k], kids_j[k] = e, j
            nk += 1
        n_branch += 1
        for k in range(nk):
            st_d[sp], st_g[sp], st_j[sp], st_est[sp] = d + 1, gb, kids_j[k], kids_e[k]
            st_l[sp, 0], st_l[sp, 1] = nl1, nl2
            sp += 1
    low = min(closed, upper)
    for k in range(sp):
        low = min(low, st_est[k])
    return best_plan, upper, low, n_branch, n_eval, sp == 0
