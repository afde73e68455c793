"""The Pareto plot: omega vs a resource (left) and accuracy vs that resource (right), with the
chosen plan and the uniform-bit baselines marked. matplotlib is imported lazily (Agg backend)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

_MARKERS = {"w8a8": "s", "w4a8": "^", "w4a4": "v", "w2a8": "D", "w2a2": "x"}


def _unit(resource: str) -> tuple[str, float]:
    """Axis label and divisor for a resource (bytes shown in kB)."""
    if resource == "size_bytes":
        return "size (kB)", 1e3
    if resource == "bops":
        return "BOPs (G)", 1e9
    return resource, 1.0


def plot_pareto(path: str | os.PathLike[str], resource: str, frontier: Sequence[Mapping[str, Any]],
                baselines: Mapping[str, Mapping[str, Any]], chosen: Mapping[str, Any] | None = None,
                title: str = "") -> Path:
    """Draw the frontier and write a PNG atomically.

    Args:
        path: where the PNG goes.
        resource: the swept resource (x axis).
        frontier: points with ``resource``, ``omega`` and optionally ``acc_ptq`` / ``acc_qat``.
        baselines: label (``"w4a8"``) -> point with the same keys.
        chosen: the chosen plan's point (same keys), drawn as a star.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    label, div = _unit(resource)
    has_acc = any(p.get("acc_ptq") is not None for p in [*frontier, *baselines.values()])
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6, 4.2), squeeze=False)
    ax = axes[0][0]
    xs = [p[resource] / div for p in frontier]
    ax.step(xs, [p["omega"] for p in frontier], where="post", color="tab:blue", alpha=0.4)
    ax.plot(xs, [p["omega"] for p in frontier], "o", color="tab:blue", label="ILP frontier (mixed)")
    for name, p in baselines.items():
        ax.plot(p[resource] / div, p["omega"], _MARKERS.get(name, "P"), color="tab:red", ms=9,
                label=f"uniform {name.upper()}")
    if chosen is not None:
        ax.plot(chosen[resource] / div, chosen["omega"], "*", color="tab:green", ms=16, label="chosen plan")
    ax.set_xlabel(label)
    ax.set_ylabel("omega (expected loss increase)")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("omega vs " + label)
    if has_acc:
        ax = axes[0][1]
        for key, style, name in (("acc_ptq", "o-", "frontier PTQ"), ("acc_qat", "s-", "frontier QAT")):
            pts = [(p[resource] / div, 100 * p[key]) for p in frontier if p.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), style, alpha=0.8, label=name)
        for name, p in baselines.items():
            for key, fill in (("acc_ptq", "none"), ("acc_qat", "tab:red")):
                if p.get(key) is not None:
                    ax.plot(p[resource] / div, 100 * p[key], _MARKERS.get(name, "P"), color="tab:red", ms=9,
                            mfc=fill, label=f"uniform {name.upper()} {key[4:].upper()}")
        if chosen is not None:
            for key, fill in (("acc_ptq", "none"), ("acc_qat", "tab:green")):
                if chosen.get(key) is not None:
                    ax.plot(chosen[resource] / div, 100 * chosen[key], "*", color="tab:green", ms=16, mfc=fill,
                            label=f"chosen {key[4:].upper()}")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("accuracy vs " + label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
