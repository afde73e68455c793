"""Run a recipe end to end (``run_recipe``), and the steps the smaller CLI commands share."""

from mpsearch.pipeline.run import RunResult, run_recipe, summary_rows

__all__ = ["RunResult", "run_recipe", "summary_rows"]
