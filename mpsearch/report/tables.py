"""CSV files and the rich summary table printed at the end of a run."""

from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any, Mapping, Sequence

from mpsearch.core.io import write_text_atomic
from mpsearch.report.metric import metric_view


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Write dict rows as CSV atomically; columns default to the union of keys in first-seen order."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            for k in r:
                seen.setdefault(k, None)
        columns = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    write_text_atomic(path, buf.getvalue())


def _kb(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e3:.2f} kB"


def print_summary(summary: Mapping[str, Any], file: Any = None) -> None:
    """Print the end-of-run table: chosen plan vs uniform baselines, then where files went.

    Args:
        summary: ``rows`` (label, size_bytes, latency_ms, bops, omega, acc_ptq, acc_qat,
            acc_int: the run's metric), ``results_dir``, ``title`` and ``metric`` (how to print it).
        file: stream (default: sys.stdout as it is now).
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, width=130, soft_wrap=False, highlight=False)
    table = Table(title=summary.get("title", "mpsearch run"))
    m = metric_view(summary)
    for col in ("plan", "size", "latency_ms", "GBOPs", "omega", f"{m.label} PTQ", f"{m.label} QAT", f"{m.label} int"):
        table.add_column(col, justify="left" if col == "plan" else "right")
    for r in summary["rows"]:
        lat = r.get("latency_ms")
        table.add_row(str(r["label"]), _kb(r.get("size_bytes")), "-" if lat is None else f"{lat:.4g}",
                      "-" if r.get("bops") is None else f"{r['bops'] / 1e9:.4g}",
                      "-" if r.get("omega") is None else f"{r['omega']:.4g}",
                      m.fmt(r.get("acc_ptq")), m.fmt(r.get("acc_qat")), m.fmt(r.get("acc_int")))
    console.print(table)
    for line in summary.get("notes", ()):
        console.print(line)
    if summary.get("results_dir"):
        console.print(f"results: {summary['results_dir']}")
