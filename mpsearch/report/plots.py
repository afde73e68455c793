"""The Pareto plot: omega vs a resource (left) and accuracy vs that resource (right), with the
chosen plan and the uniform-bit baselines marked. matplotlib is imported lazily (Agg backend)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from mpsearch.core.io import umask_mode

_MARKERS = {"w8a8": "s", "w4a8": "^", "w4a4": "v", "w2a8": "D", "w2a2": "x"}


def _unit(resource: str) -> tuple[str, float]:
    """Axis label and divisor for a resource (bytes shown in kB)."""
    if resource == "size_bytes":
        return "size (kB)", 1e3
    if resource == "bops":
        return "BOPs (G)", 1e9
    return resource, 1.0


#: Accuracy points more than this many points below the best are drawn at the axis' foot with their
#: value written, so that one collapsed plan (W2A8 at 56%) does not flatten the others' differences.
ZOOM_POINTS = 5.0


def _accuracy_panel(ax: Any, resource: str, div: float, frontier: Sequence[Mapping[str, Any]],
                    baselines: Mapping[str, Mapping[str, Any]], chosen: Mapping[str, Any] | None,
                    percent: bool = True) -> None:
    """Accuracy vs the resource: PTQ and QAT of one plan side by side (never on top of each other),
    y axis zoomed on the best points, the points below it marked at the foot with their value."""
    xs_all = [p[resource] / div for p in [*frontier, *baselines.values(), *([chosen] if chosen else [])]]
    scale = 100.0 if percent else 1.0  # accuracy in %, any other metric (bits/byte) as it is
    dodge = 0.016 * (max(xs_all) - min(xs_all) or 1.0)  # PTQ left, QAT right of the plan's x
    pts: list[tuple[float, float, str, dict[str, Any]]] = []  # x, y (%), label, style
    for key, mk, shift in (("acc_ptq", "o", -dodge), ("acc_qat", "s", dodge)):
        for i, p in enumerate(q for q in frontier if q.get(key) is not None):
            style = {"marker": mk, "color": "tab:blue", "ms": 5, "mfc": "none" if key == "acc_ptq" else "tab:blue"}
            if i == 0:  # one legend entry per series, drawn with the series' own marker
                ax.plot([], [], linestyle="none", label=f"frontier {key[4:].upper()}", mew=1.4, **style)
            pts.append((p[resource] / div + shift, scale * p[key], "_", style))
    for name, p in baselines.items():
        for key, shift in (("acc_ptq", -dodge), ("acc_qat", dodge)):
            if p.get(key) is not None:
                pts.append((p[resource] / div + shift, scale * p[key], f"uniform {name.upper()} {key[4:].upper()}",
                            {"marker": _MARKERS.get(name, "P"), "color": "tab:red", "ms": 8,
                             "mfc": "none" if key == "acc_ptq" else "tab:red"}))
    if chosen is not None:
        for key, shift in (("acc_ptq", -dodge), ("acc_qat", dodge)):
            if chosen.get(key) is not None:
                pts.append((chosen[resource] / div + shift, scale * chosen[key], f"chosen {key[4:].upper()}",
                            {"marker": "*", "color": "tab:green", "ms": 11,
                             "mfc": "none" if key == "acc_ptq" else "tab:green"}))
    if not pts:
        return
    top = max(y for _, y, _, _ in pts)
    # zoom on the best only for a higher-is-better percentage; other metrics show their whole range
    shown = [y for _, y, _, _ in pts if not percent or y >= top - ZOOM_POINTS]
    lo, hi = min(shown), top
    pad = max(0.15, 0.08 * (hi - lo))
    foot = lo - pad
    for line_key in ("acc_ptq", "acc_qat"):  # the frontier's line, clipped at the foot like its points
        line = [(p[resource] / div, max(scale * p[line_key], foot)) for p in frontier if p.get(line_key) is not None]
        if line:
            ax.plot(*zip(*line), "-", color="tab:blue", alpha=0.35 if line_key == "acc_ptq" else 0.2)
    for x, y, lab, style in pts:
        if y < foot:
            ax.plot(x, foot, linestyle="none", label=lab, **{**style, "marker": "v"})
            ax.annotate(f"{y:.1f}%", (x, foot), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=style["color"])
        else:
            ax.plot(x, y, linestyle="none", label=lab, mew=1.4, **style)
    ax.set_ylim(foot - pad * 0.5, hi + pad)
    if any(y < foot for _, y, _, _ in pts):
        ax.text(0.01, 0.01, "v: below the axis (value written)", transform=ax.transAxes, fontsize=7, color="0.4")


def plot_pareto(path: str | os.PathLike[str], resource: str, frontier: Sequence[Mapping[str, Any]],
                baselines: Mapping[str, Mapping[str, Any]], chosen: Mapping[str, Any] | None = None,
                title: str = "", metric: Mapping[str, Any] | None = None) -> Path:
    """Draw the frontier and write a PNG atomically.

    Args:
        path: where the PNG goes.
        resource: the swept resource (x axis).
        frontier: points with ``resource``, ``omega`` and optionally ``acc_ptq`` / ``acc_qat``.
        baselines: label (``"w4a8"``) -> point with the same keys.
        chosen: the chosen plan's point (same keys), drawn as a star.
        title: figure title.
        metric: the run's metric (``summary["metric"]``); None or ``accuracy`` draws percent.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    label, div = _unit(resource)
    has_acc = any(p.get("acc_ptq") is not None for p in [*frontier, *baselines.values()])
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    # a true log axis: omega spans decades; a plan with omega 0 (nothing quantized away) has no
    # place on it and is listed in the legend instead of sitting on a fake "0" tick
    pos = [p for p in frontier if p["omega"] > 0]
    xs = [p[resource] / div for p in pos]
    ax.step(xs, [p["omega"] for p in pos], where="post", color="tab:blue", alpha=0.4)
    ax.plot(xs, [p["omega"] for p in pos], "o", color="tab:blue", ms=5, label="ILP frontier (mixed)")
    zero = [f"{p[resource] / div:.4g}" for p in frontier if p["omega"] <= 0]
    for name, p in baselines.items():
        if p["omega"] > 0:
            ax.plot(p[resource] / div, p["omega"], _MARKERS.get(name, "P"), color="tab:red", ms=9, mfc="none",
                    mew=1.6, label=f"uniform {name.upper()}")
        else:
            zero.append(f"{name.upper()}")
    if chosen is not None and chosen["omega"] > 0:
        ax.plot(chosen[resource] / div, chosen["omega"], "*", color="tab:green", ms=14, mfc="none", mew=1.6,
                label="chosen plan")
    if zero:
        ax.plot([], [], " ", label=f"omega 0 (not drawn): {', '.join(zero)}")
    ax.set_xlabel(label)
    ax.set_ylabel("omega (expected loss increase)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("omega vs " + label)
    if has_acc:
        ax = axes[0][1]
        name = str((metric or {}).get("metric") or "accuracy")
        _accuracy_panel(ax, resource, div, frontier, baselines, chosen, percent=name == "accuracy")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%)" if name == "accuracy" else f"{name.replace('_', ' ')} ({(metric or {}).get('unit', '')})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(("accuracy" if name == "accuracy" else name.replace("_", " ")) + " vs " + label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, umask_mode())  # a plain file's permissions, not mkstemp's 0600
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
