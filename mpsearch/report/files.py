"""The results directory of a recipe run, ``<output.dir>/<name>/``.

``plan.yaml``, ``sensitivity.json``, ``sensitivity.csv`` (omega table), ``cost_table.json``,
``pareto.csv``, ``pareto.json``, ``pareto.png``, ``baselines.json``, ``validation.json``,
``integer_model/``, ``report.md`` and ``summary.json``. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mpsearch.core.io import dump_structured
from mpsearch.report.markdown import write_report
from mpsearch.report.plain import plain, table_to_dict
from mpsearch.report.plots import plot_pareto
from mpsearch.report.summary import RunHeader, RunRecord, omega_rows
from mpsearch.report.tables import write_csv


def write_run_files(out: Path, header: RunHeader, run: RunRecord) -> None:
    """Write everything but the summary: the integer model, plan, tables, Pareto files, validation."""
    if run.integer_model is not None:
        run.integer_model.save(out / "integer_model")
    run.plan.save(out / "plan.yaml")
    dump_structured(plain(run.sens.to_dict()), out / "sensitivity.json")
    dump_structured(table_to_dict(run.table), out / "cost_table.json")
    write_csv(out / "sensitivity.csv", omega_rows(run))
    if run.front is not None:
        _write_pareto(out, header, run)
    dump_structured(plain(run.baselines), out / "baselines.json")
    if run.validation is not None:
        dump_structured(plain(run.validation.to_dict()), out / "validation.json")


def _write_pareto(out: Path, header: RunHeader, run: RunRecord) -> None:
    res = run.front.resource  # type: ignore[union-attr]
    others = [k for k in run.table.resource_names if k != res]
    write_csv(out / "pareto.csv", run.frontier, [res, "omega", *others, "acc_ptq", "bits"])
    dump_structured(plain({"resource": res, "points": run.frontier, "baselines": run.baselines,
                           "chosen": run.chosen, "frontier": run.front.to_dict()}),  # type: ignore[union-attr]
                    out / "pareto.json")
    plot_pareto(out / "pareto.png", res, run.frontier, run.baselines, run.chosen,
                title=f"{header.name}: {header.model} on {run.profile.name}", metric=header.metric)


def write_summary(out: Path, summary: Mapping[str, Any]) -> None:
    """``summary.json`` and ``report.md`` from a run's summary (:func:`~mpsearch.report.summary.run_summary`)."""
    dump_structured(summary, out / "summary.json")
    write_report(out / "report.md", summary)
