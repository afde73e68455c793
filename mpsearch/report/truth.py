"""Sentences of the report that must say what really happened (issue #18, item 6): which engine
closed the plan and in how long, the uniform plans of the same or nearest size (and plainly when
one of them beats the chosen plan), and why the Pareto sweep has fewer points than asked."""

from __future__ import annotations

from typing import Any, Callable, Mapping

_LP_NAMES = {"highs": "HiGHS", "cbc": "CBC"}


def _engine(name: Any) -> str:
    return _LP_NAMES.get(str(name).lower(), str(name)) if name else "-"


def solved_by(s: Mapping[str, Any]) -> str:
    """What closed the plan, from the plan's meta (``closed_by``, ``lp``, branching counts)."""
    a = s["allocation"]
    meta = a.get("meta") or {}
    t = a.get("solve_time_s")
    took = f" in {t * 1e3:.1f} ms" if isinstance(t, (int, float)) else ""
    if a["method"] != "ilp":
        n = meta.get("n_evaluations")
        return f"the {a['method']} explorer{took}" + (f" ({n} evaluated plans)" if n else "")
    lp, mip, how = _engine(meta.get("lp")), _engine(a.get("solver")), meta.get("closed_by")
    if how == "fixing":
        return (f"the {lp} LP relaxation and reduced-cost fixing{took}: fixing left one candidate per layer, "
                f"so the MIP solver ({mip}) was not called")
    if how == "gap":
        return (f"the {lp} LP relaxation{took}: its rounded plan was within the gap of the LP bound, so the "
                f"MIP solver ({mip}) was not called")
    if how == "branching":
        return (f"group branching on {lp} LPs{took} ({meta.get('branch_nodes')} nodes, {meta.get('branch_lps')} LPs) "
                f"after reduced-cost fixing; the MIP solver ({mip}) was not called")
    if how == "mip":
        return f"the {mip} MIP solver on the core left after {lp} LP reduced-cost fixing{took}"
    return f"{mip}{took}" + (f" (closed by {how})" if how else "")


def nearest_uniform(chosen: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
                    resource: str = "size_bytes") -> tuple[str, Mapping[str, Any]] | None:
    """The uniform plan of the same or nearest ``resource`` to the chosen plan (ties: the larger one)."""
    c = chosen.get(resource)
    pts = [(k, b) for k, b in baselines.items() if b.get(resource) is not None]
    if c is None or not pts:
        return None
    return min(pts, key=lambda kb: (abs(kb[1][resource] - c), -kb[1][resource]))


def uniform_comparison(chosen: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]],
                       better: Callable[[float, float], bool], fmt: Callable[[Any], str]) -> list[str]:
    """Markdown lines comparing the chosen plan with the uniform plan nearest in size, then with every
    uniform plan no larger than it; a uniform plan that is better after PTQ (or QAT) is said plainly."""
    near = nearest_uniform(chosen, baselines)
    if near is None:
        return []
    L: list[str] = []
    key, b = near
    rel = chosen["size_bytes"] / max(b["size_bytes"], 1)
    line = (f"Nearest uniform plan in size: **{key.upper()}** ({b['size_bytes']:.0f} B; the chosen plan is "
            f"{rel:.0%} of it).")
    L.append(line)
    for stage in ("acc_ptq", "acc_qat"):
        cv, bv = chosen.get(stage), b.get(stage)
        if cv is None or bv is None:
            continue
        label = stage[4:].upper()
        if better(bv, cv):
            L.append(f"**Uniform {key.upper()} is better than the chosen plan after {label}: {fmt(bv)} vs {fmt(cv)}.**")
        elif better(cv, bv):
            L.append(f"After {label} the chosen plan beats uniform {key.upper()}: {fmt(cv)} vs {fmt(bv)}.")
        else:
            L.append(f"After {label} the chosen plan and uniform {key.upper()} score the same: {fmt(cv)}.")
    for k, o in baselines.items():  # a smaller uniform plan that scores better is a plain loss
        if k == key or o.get("size_bytes") is None or o["size_bytes"] > chosen["size_bytes"]:
            continue
        if o.get("acc_ptq") is not None and chosen.get("acc_ptq") is not None and better(o["acc_ptq"], chosen["acc_ptq"]):
            L.append(f"**Uniform {k.upper()} is smaller ({o['size_bytes']:.0f} B) and better after PTQ: "
                     f"{fmt(o['acc_ptq'])} vs {fmt(chosen['acc_ptq'])}.**")
    return [" ".join(L), ""]


def pareto_note(s: Mapping[str, Any]) -> str:
    """Why the frontier has fewer points than ``pareto.n_points`` asked (empty when it has as many)."""
    asked, got = s.get("pareto_n_points"), len(s.get("frontier") or [])
    if not asked or got >= asked:
        return ""
    return (f"{asked} budgets were asked, evenly spaced from the smallest reachable total to the total of the "
            f"omega-optimal plan; {asked - got} of them gave a plan already found at a smaller budget (the same "
            f"bits in every layer) or one no better than a smaller point, so {got} distinct plans remain. With "
            f"{s.get('n_layers', '?')} layers and few candidates each, neighbouring budgets often share their "
            f"optimum; ask for fewer points or sweep a finer resource to see more.")


def lsb_sentence(v: Mapping[str, Any]) -> str:
    """The logits' difference in LSBs, with the LSB's size in output units."""
    lsb = v.get("output_scale")
    if not isinstance(lsb, (int, float)) or lsb <= 0:
        return (f"logits within 1 LSB {100 * v['within_1_lsb']:.2f}% (mean |diff| {v['mean_abs_lsb']:.3f} LSB, "
                f"max {v['max_abs_lsb']:.1f} LSB)")
    return (f"logits within 1 LSB {100 * v['within_1_lsb']:.2f}%, where 1 LSB = {lsb:.3g} in logit units "
            f"(mean |diff| {v['mean_abs_lsb']:.3f} LSB = {v['mean_abs_lsb'] * lsb:.3g}, "
            f"max {v['max_abs_lsb']:.1f} LSB = {v['max_abs_lsb'] * lsb:.3g})")
