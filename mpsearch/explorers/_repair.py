"""Repair strategies: make a sampled choice feasible (registry :data:`REPAIRS`).

* ``"greedy"`` (default): while a budget is exceeded, take the single move (one unit to a
  cheaper candidate) with the smallest omega increase per unit of weighted violation removed,
  the violation summed over ALL budgets with weight ``1 / limit`` (:func:`lower`); then raise
  lowered units back toward the sample, best omega drop per unit of weighted slack first,
  while the budgets still hold (:func:`fill`). Cheap (vectorised numpy).
* ``"haq"``: HAQ's rule: lower the *last* free layer by one step, then the one before it,
  cycling from the end, until every budget holds.

:class:`~mpsearch.explorers._space.SearchSpace.repair` applies them and falls back to a
feasible anchor where they cannot meet several budgets at once.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

REL_TOL = 1e-9  # budgets are met up to this relative slack (float sums)


class RepairSpace(Protocol):
    """What a repair reads from a search space (:class:`~mpsearch.explorers._space.SearchSpace`).

    Declared here so that this module needs nothing from ``_space`` (which imports it).
    """

    n_units: int
    limits: np.ndarray  # absolute limit per budgeted resource
    fixed_totals: np.ndarray  # resource totals of the pinned layers, per budgeted resource

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(omega (n_units, n_keys), resources (n_res, n_units, n_keys)), +inf where a unit has fewer keys."""

    def is_feasible(self, choice: Sequence[int]) -> bool:
        """Whether ``choice`` meets every budget."""


def lower(space: RepairSpace, choice: Sequence[int], frozen: np.ndarray | None = None) -> list[int] | None:
    """Lower units until every budget holds; None if that is impossible with ``frozen`` kept.

    Each step takes the move (unit j to key k) with the smallest omega increase per unit of
    weighted violation removed, where the violation of budget r is ``max(total_r - limit_r, 0)
    / limit_r`` summed over ALL budgets (a Lagrangian-style weight ``1 / limit_r`` on every
    violated budget; a move's credit is capped at the violation it removes, so it does not
    over-lower). ``frozen``: bool per unit, units that must not move.
    """
    om, res = space.arrays()
    limits = np.maximum(space.limits, 1e-300)  # normalizes violations; a 0 limit must not divide by 0
    choice = np.array(choice, dtype=np.int64)
    idx = np.arange(space.n_units)
    for _ in range(int(np.isfinite(om).sum()) + 1):
        cur_res = res[:, idx, choice]  # (n_res, n_units)
        totals = space.fixed_totals + cur_res.sum(axis=1)
        over = np.maximum(totals - limits, 0.0) / limits
        if not np.any(over > REL_TOL):
            return choice.tolist()
        # move unit j to key k: new normalized violation, omega change; shapes (n_units, n_keys)
        new_totals = totals[:, None, None] - cur_res[:, :, None] + res  # (n_res, n_units, n_keys)
        new_over = (np.maximum(new_totals - limits[:, None, None], 0.0) / limits[:, None, None]).sum(axis=0)
        gain = over.sum() - new_over
        d_omega = om - om[idx, choice][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(gain > 1e-15, np.maximum(d_omega, 0.0) / gain - (d_omega < 0) * gain, np.inf)
        if frozen is not None:
            score[frozen] = np.inf
        j, k = np.unravel_index(int(np.argmin(score)), score.shape)
        if not np.isfinite(score[j, k]):
            return None
        choice[int(j)] = int(k)
    return None


def fill(space: RepairSpace, choice: Sequence[int], ceiling: Sequence[int] | None = None,
         frozen: np.ndarray | None = None) -> list[int]:
    """Raise units into the budgets' slack, best omega drop per unit of weighted slack used first.

    A move's use of the slack is the largest, over the budgets, of its resource increase divided
    by that budget's remaining slack (so a move that eats a nearly exhausted budget is dear).
    ``ceiling``: highest key per unit (the sample, for repair); None lets every unit rise to
    its dearest key (the local search). The choice must already be feasible.
    """
    om, res = space.arrays()
    limits = space.limits * (1 + REL_TOL)
    choice = np.array(choice, dtype=np.int64)
    idx = np.arange(space.n_units)
    keys = np.arange(om.shape[1])
    allowed = np.isfinite(om)
    if ceiling is not None:
        allowed &= keys[None, :] <= np.asarray(ceiling)[:, None]
    if frozen is not None:
        allowed[frozen] = False
    while True:
        cur_res = res[:, idx, choice]
        totals = space.fixed_totals + cur_res.sum(axis=1)
        slack = np.maximum(limits - totals, 1e-300)
        d_res = np.where(allowed[None], res - cur_res[:, :, None], np.inf)  # (n_res, n_units, n_keys)
        fits = np.all(totals[:, None, None] + d_res <= limits[:, None, None], axis=0)
        gain = om[idx, choice][:, None] - om
        use = (np.maximum(d_res, 0.0) / slack[:, None, None]).max(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(fits & allowed & (gain > 1e-15), gain / np.maximum(use, 1e-12), -np.inf)
        j, k = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[j, k]):
            return choice.tolist()
        choice[int(j)] = int(k)


def _greedy(space: RepairSpace, choice: list[int]) -> list[int]:
    lowered = lower(space, choice)
    if lowered is None:
        return list(choice)  # SearchSpace.repair falls back to the cheapest plan or the anchor
    return fill(space, lowered, ceiling=choice)


def _haq(space: RepairSpace, choice: list[int]) -> list[int]:
    choice = list(choice)
    while not space.is_feasible(choice):
        lowered = False
        for j in reversed(range(space.n_units)):
            if choice[j] > 0:
                choice[j] -= 1
                lowered = True
                if space.is_feasible(choice):
                    return choice
        if not lowered:
            break
    return choice


#: Repair strategies: name -> function(space, choice) -> choice.
REPAIRS: dict[str, Callable[[RepairSpace, list[int]], list[int]]] = {"greedy": _greedy, "haq": _haq}
