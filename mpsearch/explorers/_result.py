"""Values an explorer reports: one evaluation, and the result of a whole search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mpsearch.core.plan import BitPlan


@dataclass(frozen=True)
class Trial:
    """A plan handed out by :meth:`Explorer.ask`, to be evaluated and told back by ``id``."""

    id: int
    plan: BitPlan


@dataclass(frozen=True)
class Evaluation:
    """One told trial: the plan, its metrics (omega, resources, user metrics), failure flag."""

    trial_id: int
    plan: BitPlan
    metrics: Mapping[str, float]
    failed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "failed": self.failed,
                "metrics": {k: float(v) for k, v in self.metrics.items()},
                "layers": {n: b.key for n, b in self.plan.layers.items()}}


def parse_objectives(objectives: Mapping[str, str] | Sequence[str] | str | None) -> tuple[tuple[str, str], ...]:
    """``{"accuracy": "maximize", "size_bytes": "minimize"}`` or names (all minimized)."""
    from mpsearch.errors import rule_error

    if objectives is None:
        return (("omega", "minimize"),)
    if isinstance(objectives, str):
        objectives = [objectives]
    items = list(objectives.items()) if isinstance(objectives, Mapping) else [(o, "minimize") for o in objectives]
    if not items:
        raise rule_error("explorer", "objectives", "non-empty", objectives)
    for name, direction in items:
        if direction not in ("minimize", "maximize"):
            raise rule_error("explorer", f"objectives.{name}", '"minimize" or "maximize"', direction)
    return tuple((str(n), str(d)) for n, d in items)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether point ``a`` dominates ``b`` (all objectives as minimized values)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(evals: Sequence[Evaluation], objectives: Sequence[tuple[str, str]]) -> list[Evaluation]:
    """Non-dominated, distinct-plan evaluations among the successful ones (O(n^2), n = trials)."""
    sign = [1.0 if d == "minimize" else -1.0 for _, d in objectives]
    seen: set[tuple[str, ...]] = set()
    pts = []
    for e in evals:
        if e.failed:
            continue
        key = tuple(b.key for b in e.plan.layers.values())
        if key in seen:
            continue
        seen.add(key)
        pts.append((e, [s * float(e.metrics[n]) for s, (n, _) in zip(sign, objectives)]))
    return [e for e, p in pts if not any(dominates(q, p) for _, q in pts)]


@dataclass(frozen=True)
class SearchResult:
    """What :func:`mpsearch.explorers.search` returns.

    Attributes:
        explorer: explorer name ("optuna", "rl").
        objectives: (metric, direction) pairs, first one decides ``best``.
        budgets: resource -> absolute limit every evaluated plan meets.
        best: best successful plan on the first objective (None if every trial failed).
        best_metrics: its metrics.
        evaluations: every told trial in trial-id order (all workers, resumed runs included).
        pareto: non-dominated plans when there are several objectives, else ``()``.
        n_evaluations: told trials (failed ones included).
        n_failed: failed evaluations.
        wall_time_s: wall time of this call (not of earlier, resumed runs).
        meta: plain data (sampler, seed, storage, ...).
    """

    explorer: str
    objectives: tuple[tuple[str, str], ...]
    budgets: Mapping[str, float]
    best: BitPlan | None
    best_metrics: Mapping[str, float]
    evaluations: tuple[Evaluation, ...]
    pareto: tuple[BitPlan, ...] = ()
    n_evaluations: int = 0
    n_failed: int = 0
    wall_time_s: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON/YAML."""
        return {
            "explorer": self.explorer,
            "objectives": {n: d for n, d in self.objectives},
            "budgets": dict(self.budgets),
            "best": None if self.best is None else self.best.to_dict(),
            "best_metrics": {k: float(v) for k, v in self.best_metrics.items()},
            "pareto": [p.to_dict() for p in self.pareto],
            "n_evaluations": self.n_evaluations,
            "n_failed": self.n_failed,
            "wall_time_s": self.wall_time_s,
            "evaluations": [e.to_dict() for e in self.evaluations],
            "meta": dict(self.meta),
        }
