"""How reports print the run's metric: accuracy in percent (higher is better) or a language
model's bits per byte (lower is better). Reads the ``metric`` block of a run's summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class MetricView:
    """Column label, formatter and direction of one metric.

    Attributes:
        label: short column prefix ("acc", "bits/byte").
        name: the metric's name ("accuracy", "bits_per_byte").
        higher_is_better: direction used for verdicts.
        percent: the value is a fraction printed in percent.
    """

    label: str
    name: str
    higher_is_better: bool
    percent: bool

    def fmt(self, value: Any) -> str:
        """``"96.10%"`` for a fraction, ``"2.135"`` otherwise, ``"-"`` for None."""
        if value is None:
            return "-"
        return f"{100 * value:.2f}%" if self.percent else f"{value:.4f}"

    def verdict(self, mine: float, theirs: float) -> str:
        """"beats", "ties" or "trails" for ``mine`` against ``theirs``."""
        if mine == theirs:
            return "ties"
        return "beats" if (mine > theirs) == self.higher_is_better else "trails"


ACCURACY = MetricView("acc", "accuracy", True, True)


def metric_view(summary: Mapping[str, Any]) -> MetricView:
    """The view of ``summary["metric"]`` (a task's ``describe()``); accuracy when absent."""
    m = summary.get("metric")
    if not m or m.get("metric") == "accuracy":
        return ACCURACY
    return MetricView(str(m.get("unit") or m["metric"]), str(m["metric"]), bool(m["higher_is_better"]),
                      m.get("unit") == "fraction")
