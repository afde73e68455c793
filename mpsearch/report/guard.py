"""The report's "Guard and measured omega" section (issue #21): did the guard change the plan, and why."""

from __future__ import annotations

from typing import Any, Mapping


def guard_section(s: Mapping[str, Any]) -> list[str]:
    """Markdown lines from ``summary["guard"]`` (the plan's ``meta["guard"]``) and ``summary["omega_sources"]``."""
    g, src = s.get("guard"), s.get("omega_sources")
    if not g and not src:
        return []
    L = ["## Guard and measured omega", ""]
    if src:
        L += [f"Omega figures: {src.get('measured', 0)} measured (the second-order prediction was off by more than "
              f"the calibration factor), {src.get('checked', 0)} checked against a measurement and kept, "
              f"{src.get('predicted', 0)} predicted only (`cost_table.json`: `omega_source`).", ""]
    if g:
        better = "higher" if g.get("higher_is_better") else "lower"
        L += [f"The guard scored the plan against every uniform plan within the budgets and the greedy "
              f"weight-MSE plan on the `{g.get('split')}` split ({better} is better). "
              + ("**It changed the plan**: " if g.get("changed") else "It kept the plan: ") + f"{g.get('reason')}. "
              + f"Decided by: {g.get('decided_by', 'metric')}"
              + (" (plans whose metrics tie are compared on the validation loss, lower is better)." if g.get("losses") else "."),
              "", "| plan | score | loss (tie-break) |", "|---|---|---|"]
        losses = g.get("losses", {})
        L += [f"| {label}{' (returned)' if label == g.get('chosen') else ''} | {v:.6g} | "
              f"{format(losses[label], '.6g') if label in losses else '-'} |" for label, v in g.get("values", {}).items()]
        L.append("")
    return L


def guard_line(plan: Any) -> str:
    """One printed line: did the guard (``plan.meta["guard"]``) change the plan, to what, and why.

    Empty when the plan was not guarded (``allocation.guard: false``, or a cost table without data).
    """
    g = plan.meta.get("guard") if hasattr(plan, "meta") else None
    if not g:
        return ""
    head = f"guard: changed the plan to {g.get('chosen')}" if g.get("changed") else "guard: kept the plan"
    return f"{head} (decided by {g.get('decided_by', 'metric')}): {g.get('reason')}"
