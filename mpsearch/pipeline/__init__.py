"""Run a recipe end to end (``run_recipe``), and the steps the smaller CLI commands share."""

from mpsearch.pipeline.budgets import check_feasible, resolve_budgets, resource_table, uniform_plan
from mpsearch.pipeline.run import RunResult, run_recipe, summary_rows

__all__ = ["RunResult", "check_feasible", "resolve_budgets", "resource_table", "run_recipe", "summary_rows",
           "uniform_plan"]
