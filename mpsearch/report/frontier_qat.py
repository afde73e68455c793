"""The report's "Frontier before and after QAT" section: ``summary["frontier_qat"]`` (a few Pareto
points fine-tuned like the chosen plan, pipeline/frontier_qat.py) beside the uniform plans."""

from __future__ import annotations

from typing import Any, Callable, Mapping


def frontier_qat_section(s: Mapping[str, Any], fmt: Callable[[Any], str], label: str) -> list[str]:
    """Markdown lines: one row per fine-tuned frontier point, then the uniform plans' PTQ/QAT;
    ``fmt`` writes a metric value, ``label`` names the metric. Empty when no point was fine-tuned."""
    rows = s.get("frontier_qat") or []
    if not rows:
        return []
    res = s.get("pareto_resource") or "size_bytes"
    n = len(s.get("frontier") or [])
    L = ["## Frontier before and after QAT", "",
         f"{len(rows)} of the {n} Pareto points, evenly spread along `{res}`, fine-tuned with the same QAT "
         "as the chosen plan (`finetune.frontier_points`; summary.json `frontier_qat`).", "",
         f"| plan | {res} | omega | {label} PTQ | {label} QAT |", "|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| frontier point {r['frontier_index'] + 1} | {r[res]:.6g} | {r['omega']:.4g} | "
                 f"{fmt(r.get('acc_ptq'))} | {fmt(r.get('acc_qat'))} |")
    c = s.get("chosen") or {}
    if c.get(res) is not None:
        L.append(f"| chosen (mixed) | {c[res]:.6g} | {c['omega']:.4g} | {fmt(c.get('acc_ptq'))} | {fmt(c.get('acc_qat'))} |")
    for k, b in (s.get("baselines") or {}).items():
        if b.get(res) is not None:
            L.append(f"| uniform {k.upper()} | {b[res]:.6g} | {b['omega']:.4g} | {fmt(b.get('acc_ptq'))} | "
                     f"{fmt(b.get('acc_qat'))} |")
    return L + [""]
