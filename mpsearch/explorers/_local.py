"""Local improvement trials: moves around the best plan so far, proposed as ordinary trials.

Sampling plus repair finds the region of good plans; the last few percent on several budgets
at once come from a local search that the explorers interleave with their own proposals.
Every plan it proposes is handed out by ``ask`` and evaluated like any other trial (it is
counted in ``n_trials``); nothing is evaluated behind the caller's back.

Neighbourhood of a feasible choice ``c`` (an ejection chain): for every unit ``j`` and key
``k != c[j]``, set ``j`` to ``k``, then re-project the other units: lower them until every
budget holds (:func:`mpsearch.explorers._repair.lower`: best omega increase per weighted
violation) and raise them into the remaining slack (:func:`~mpsearch.explorers._repair.fill`:
best omega drop per weighted slack, no ceiling). The neighbours are ranked by the table's
omega, the same surrogate the repair uses; with ``omega`` as the objective the ranking is the
objective itself, with a user metric (accuracy, measured latency) it only orders the
proposals and the told metric decides which plan is best. Only neighbours whose surrogate
omega is below the incumbent's are proposed, and each distinct plan once.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from mpsearch.explorers._repair import fill, lower
from mpsearch.explorers._space import SearchSpace

_MIN_GAIN = 1e-12  # relative omega drop below which a neighbour does not count as better


class LocalSearch:
    """Improving neighbours of an incumbent choice, best surrogate omega first.

    Args:
        space: the search space (units, budgets).
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._cache: dict[tuple[int, ...], list[tuple[float, tuple[int, ...]]]] = {}

    def omega(self, choice: Sequence[int]) -> float:
        """Surrogate omega of a choice (summed over the free units; pinned layers add a constant)."""
        om, _ = self.space.arrays()
        return float(om[np.arange(self.space.n_units), np.asarray(choice, dtype=np.int64)].sum())

    def neighbours(self, choice: Sequence[int]) -> list[tuple[float, tuple[int, ...]]]:
        """(surrogate omega, choice) of the feasible neighbours better than ``choice``, best first."""
        key = tuple(int(k) for k in choice)
        if key in self._cache:
            return self._cache[key]
        space = self.space
        base = self.omega(key)
        found: dict[tuple[int, ...], float] = {}
        for j, unit in enumerate(space.units):
            frozen = np.zeros(space.n_units, dtype=bool)
            frozen[j] = True
            for k in range(len(unit.keys)):
                if k == key[j]:
                    continue
                moved = list(key)
                moved[j] = k
                projected = lower(space, moved, frozen) if k > key[j] else moved
                if projected is None:
                    continue
                cand = tuple(fill(space, projected, None, frozen))
                value = self.omega(cand)
                if value < base - _MIN_GAIN * max(abs(base), 1.0) and space.is_feasible(cand):
                    found[cand] = value
        ranked = sorted(((v, c) for c, v in found.items()), key=lambda vc: (vc[0], vc[1]))
        if len(self._cache) > 64:  # incumbents change a few dozen times per search at most
            self._cache.clear()
        self._cache[key] = ranked
        return ranked

    def propose(self, incumbent: Sequence[int], tried: Iterable[tuple[int, ...]]) -> list[int] | None:
        """Best improving neighbour of ``incumbent`` not in ``tried``; None when there is none."""
        seen = set(tried)
        for _, cand in self.neighbours(incumbent):
            if cand not in seen:
                return list(cand)
        return None


def is_local_turn(trial_index: int, fraction: float) -> bool:
    """Whether trial ``trial_index`` (0-based, past warm-up) is a local one, spread evenly at ``fraction``."""
    return int((trial_index + 1) * fraction) > int(trial_index * fraction)
