"""The best plan so far, written atomically every N told trials, so a killed search leaves a plan.

A search of hundreds of trials (each a PTQ evaluation, say) can be killed at any moment: a
SIGKILL, an out-of-memory kill, a lost machine. :class:`Checkpoint` rewrites the plan file with
the best successful plan after every ``every`` told trials and once
more at the end (with how many evaluations it has seen, so the file shows how far the search
got), through :meth:`BitPlan.save` (a temp file, fsync, ``os.replace``), so the file
on disk is always a whole plan: the previous best or the new one, never half of either.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from mpsearch.core.checks import check_int
from mpsearch.explorers._base import Explorer

#: Default trials between two writes of the best plan.
DEFAULT_EVERY = 10


class Checkpoint:
    """Writes ``explorer``'s best plan to ``path`` every ``every`` told trials.

    Args:
        explorer: the explorer whose ``best()`` is written.
        path: the plan file (YAML, or JSON by suffix), loadable with :meth:`BitPlan.load`.
        every: told trials between writes (>= 1).
    """

    def __init__(self, explorer: Explorer, path: str | os.PathLike[str], every: int = DEFAULT_EVERY) -> None:
        check_int(every, "search", "checkpoint_every", min=1)
        self.explorer = explorer
        self.path = Path(path)
        self.every = every
        self.n_told = 0
        self.n_writes = 0
        self._written: Any = None  # (best trial id, evaluations, final) of the plan on disk

    def told(self) -> None:
        """Count one told trial; write the best plan when ``every`` have been told since the last check."""
        self.n_told += 1
        if self.n_told % self.every == 0:
            self.write(final=False)

    def write(self, final: bool) -> bool:
        """Write the best plan if there is one and this state is not on disk already; returns whether it wrote."""
        best = self.explorer.best()
        if best is None:
            return False
        n_evaluations = len(self.explorer.evaluations())
        if self._written == (best.trial_id, n_evaluations, final):
            return False
        info = {"explorer": self.explorer.name, "best_trial": int(best.trial_id),
                "n_evaluations": n_evaluations, "n_trials": self.explorer.n_trials, "final": bool(final),
                "metrics": {k: float(v) for k, v in best.metrics.items()}}
        # no wall times in the file (as plan.yaml of a run): same trials, same bytes
        meta = {k: v for k, v in best.plan.meta.items() if not k.endswith("time_s")}
        plan = replace(best.plan, solve_time_s=None, meta={**meta, "search_checkpoint": info})
        plan.save(self.path)
        self._written = (best.trial_id, n_evaluations, final)
        self.n_writes += 1
        return True
