"""The allocation problem in solver form: a multiple-choice knapsack over layer groups.

A *group* is a tie group (layers that must take the same candidate) or a single layer. A
tie group becomes ONE set of choice variables whose objective and resources are the sums
over its layers: exact, and smaller than one variable set per layer plus equalities.

Before a solver sees the problem, three exact reductions are applied:

* pins keep only the pinned candidate of a group;
* a candidate that is no better than another of the same group on the objective and on
  every budgeted resource (and strictly worse on one, or equal and listed later) is dropped:
  swapping it for the dominating one never breaks a budget nor raises the objective, so the
  optimum is unchanged;
* per group, the smallest value of each row is moved into a constant and each row is scaled
  to a largest coefficient of 1, so that solver tolerances are relative to the data.

Arrays are dense ``(n_groups, k_max)`` (k_max = most candidates of any group), padded where a
group has fewer candidates; a 10 000-layer x 6-candidate table is a few 60 000-element arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mpsearch.core.cost_table import CostTable
from mpsearch.errors import ConfigError


class Problem:
    """One candidate per group; minimize ``objective``; each ``rows[name]`` total <= its limit.

    Attributes:
        table: the cost table it came from.
        objective_name: "omega" or a resource name (the infeasibility diagnosis minimizes one).
        row_names: the budgeted resources, in row order.
        n_groups: groups (tie groups and untied layers).
        var_group, var_pos: for each solver variable, its group and its candidate position
            within the group's candidate list (the candidates of the group's first layer).
        group_ptr: variables of group ``g`` are ``group_ptr[g]:group_ptr[g + 1]``.
        cost: scaled, shifted objective per variable; ``cost_const``/``cost_scale`` undo it.
        coef: ``(n_rows, n_vars)`` scaled, shifted resource per variable; ``row_const`` and
            ``row_scale`` undo it: ``total = row_const + row_scale * (coef @ x)``.
        lo, hi: per budgeted resource, smallest / largest total over assignments that respect
            ties and pins (each group on its own, ignoring the other budgets).
        n_candidates: variables before dominance pruning (after pins).
    """

    def __init__(self, table: CostTable, objective: str, row_names: Sequence[str],
                 pins: Mapping[int, str | tuple[int, int]] | None = None, prune: bool = True) -> None:
        self.table = table
        self.objective_name = objective
        self.row_names = tuple(row_names)
        self._build_groups(table)
        values = [table.omega if objective == "omega" else table.resources[objective]]
        values += [table.resources[r] for r in self.row_names]
        dense = np.stack([self._aggregate(v) for v in values])  # (1 + n_rows, G, K)
        allowed = self._valid.copy()
        for layer_idx, pin in (pins or {}).items():  # candidate keys (allocation/pins.py) or (w, a) pairs
            g = self.layer_group[layer_idx]
            key = pin if isinstance(pin, str) else f"w{pin[0]}a{pin[1]}"
            pos = ([p for p, c in enumerate(self.group_cands[g]) if c.key == key] or
                   [p for p, c in enumerate(self.group_cands[g]) if not isinstance(pin, str)
                    and (c.w_bits, c.a_bits) == tuple(pin)])
            row = allowed[g] & (np.arange(self.k_max) == pos[0]) if pos else None
            if row is None or not row.any():
                name = table.layers[layer_idx]
                raise ConfigError(f"pins: {name!r} must be pinned to one of its candidates "
                                  f"{[c.key for c in self.group_cands[g]]} (and agree with pins on layers tied "
                                  f"to it), but got {key}")
            allowed[g] = row
        masked = np.where(allowed[None], dense, np.nan)
        self.lo = np.nansum(np.nanmin(masked[1:], axis=2), axis=1) if self.row_names else np.zeros(0)
        self.hi = np.nansum(np.nanmax(masked[1:], axis=2), axis=1) if self.row_names else np.zeros(0)
        self.n_candidates = int(allowed.sum())
        keep = _undominated(dense, allowed) if prune else allowed
        self.var_group, self.var_pos = np.nonzero(keep)  # row-major: sorted by group
        self.n_vars = len(self.var_group)
        self.group_ptr = np.zeros(self.n_groups + 1, dtype=np.int64)
        self.group_ptr[1:] = np.cumsum(keep.sum(axis=1))
        flat = dense[:, self.var_group, self.var_pos]  # (1 + n_rows, n_vars)
        # Shift: subtract each group's smallest value (a constant of every assignment).
        mins = np.minimum.reduceat(flat, self.group_ptr[:-1], axis=1)  # (1 + n_rows, G)
        shifted = flat - mins[:, self.var_group]
        scale = shifted.max(axis=1) if self.n_vars else np.ones(len(flat))
        scale = np.where(scale > 0, scale, 1.0)
        scaled = shifted / scale[:, None]
        self.cost, self.coef = scaled[0], scaled[1:]
        self.cost_const, self.cost_scale = float(mins[0].sum()), float(scale[0])
        self.row_const, self.row_scale = mins[1:].sum(axis=1), scale[1:]

    # -- groups ---------------------------------------------------------------------------
    def _build_groups(self, table: CostTable) -> None:
        n = table.n_layers
        group_of = np.full(n, -1, dtype=np.int64)
        members: list[list[int]] = []
        tied = {table.index_of(name): gi for gi, grp in enumerate(table.ties) for name in grp}
        tie_group: dict[int, int] = {}
        for i in range(n):  # groups ordered by their first layer
            if i in tied:
                t = tied[i]
                if t not in tie_group:
                    tie_group[t] = len(members)
                    members.append([])
                group_of[i] = tie_group[t]
                members[tie_group[t]].append(i)
            else:
                group_of[i] = len(members)
                members.append([i])
        self.layer_group = group_of
        self.n_groups = len(members)
        self.group_cands = [table.candidates[m[0]] for m in members]
        sizes = np.diff(table.offsets)
        self.k_max = int(sizes.max())
        # layer_rows[i, p]: table row of layer i for its group's candidate p (-1 = padding).
        pos = np.arange(self.k_max)
        layer_rows = np.where(pos[None] < sizes[:, None], table.offsets[:-1, None] + pos[None], -1)
        for m in members:
            if len(m) > 1:
                first = [c.key for c in table.candidates[m[0]]]  # a key names one format (w4a16g128z)
                for i in m[1:]:
                    lookup = {c.key: j for j, c in enumerate(table.candidates[i])}
                    layer_rows[i, :len(first)] = [int(table.offsets[i]) + lookup[k] for k in first]
        self.layer_rows = layer_rows
        self._valid = pos[None] < np.array([len(c) for c in self.group_cands])[:, None]

    def _aggregate(self, per_row: np.ndarray) -> np.ndarray:
        """Sum a per-table-row array over each group's layers: ``(n_groups, k_max)``, padded 0."""
        ok = self.layer_rows >= 0
        layer_idx, pos = np.nonzero(ok)
        flat_index = self.layer_group[layer_idx] * self.k_max + pos
        out = np.bincount(flat_index, weights=per_row[self.layer_rows[layer_idx, pos]],
                          minlength=self.n_groups * self.k_max)
        return out.reshape(self.n_groups, self.k_max)

    # -- between solver space and table space ---------------------------------------------
    def scale_limits(self, limits: Sequence[float]) -> np.ndarray:
        """Budget limits in the solver's shifted, scaled units."""
        return (np.asarray(limits, dtype=np.float64) - self.row_const) / self.row_scale

    def table_rows(self, chosen_vars: np.ndarray) -> np.ndarray:
        """Table row of every layer, given the chosen variable of every group."""
        pos = self.var_pos[np.asarray(chosen_vars, dtype=np.int64)]  # per group
        return self.layer_rows[np.arange(len(self.layer_group)), pos[self.layer_group]]

    def vars_of_rows(self, rows: np.ndarray) -> np.ndarray | None:
        """Chosen variable per group for a table assignment (None if it uses a pruned candidate)."""
        out = np.empty(self.n_groups, dtype=np.int64)
        for g in range(self.n_groups):
            layer = int(np.nonzero(self.layer_group == g)[0][0])
            p = int(np.nonzero(self.layer_rows[layer] == rows[layer])[0][0])
            hit = np.nonzero(self.var_pos[self.group_ptr[g]:self.group_ptr[g + 1]] == p)[0]
            if not len(hit):
                return None
            out[g] = self.group_ptr[g] + hit[0]
        return out


def _undominated(dense: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Mask of candidates not dominated within their group (see module docstring)."""
    n_val, n_groups, k_max = dense.shape
    keep = allowed.copy()
    for j in range(k_max):
        for k in range(k_max):
            if j == k:
                continue
            le = np.all(dense[:, :, k] <= dense[:, :, j], axis=0)
            lt = np.any(dense[:, :, k] < dense[:, :, j], axis=0)
            keep[:, j] &= ~(allowed[:, k] & le & (lt | (k < j)))
    return keep


@dataclass(frozen=True)
class Core:
    """What a solver backend reads of a problem: the groups left free after reduced-cost fixing.

    Attributes have the meaning they have in :class:`Problem` (solver units).
    """

    cost: np.ndarray  # (n_vars,)
    coef: np.ndarray  # (n_rows, n_vars)
    var_group: np.ndarray  # (n_vars,), sorted
    group_ptr: np.ndarray  # (n_groups + 1,)

    @property
    def n_vars(self) -> int:
        return len(self.cost)

    @property
    def n_groups(self) -> int:
        return len(self.group_ptr) - 1
