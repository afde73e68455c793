"""The report's "Accuracy target" section (issue #15 item 4): the drop asked for, met on validation, and the test drop."""

from __future__ import annotations

from typing import Any, Mapping


def target_section(s: Mapping[str, Any]) -> list[str]:
    """Markdown lines from ``summary["target"]`` (what accuracy-target mode put in the plan's meta); [] without it."""
    t = s.get("target")
    if not t:
        return []
    test = ("-" if t.get("test_drop") is None else f"{t['test_drop']:.4g} (metric {t['test_metric']:.6g})")
    return ["## Accuracy target", "",
            f"`allocation.max_drop`: the smallest `{t.get('minimize')}` plan on the exact frontier whose validation "
            f"metric is within {t['max_drop']:.4g} of float (metric units; > 0 is worse). "
            f"{t.get('target_evaluations')} of {t.get('target_frontier_points')} frontier points were measured on the "
            "validation split; the test split took no part in the choice.", "",
            "| split | float | plan | drop | allowed |", "|---|---|---|---|---|",
            f"| val | {t.get('float_val_metric', float('nan')):.6g} | {t['val_metric']:.6g} | {t['val_drop']:.4g} | "
            f"{t['max_drop']:.4g} |",
            f"| test | - | {'-' if t.get('test_metric') is None else format(t['test_metric'], '.6g')} | {test} | - |", ""]
