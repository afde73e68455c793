"""Flags and helpers shared by the recipe-driven commands."""

from __future__ import annotations

import argparse
from typing import Any


def add_budget_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", action="append", default=None, metavar="RESOURCE=VALUE",
                        help="a budget, repeatable: absolute (size_bytes=120k, latency_ms=2.5, bops=2G), relative "
                             "(size_bytes=50%%: half way from the smallest to the largest total) or the total of a "
                             "uniform plan (size_bytes=uniform:w4a8). Replaces the recipe's budgets.")


def budgets_from_flags(values: list[str] | None) -> Any:
    """``["size_bytes=120k", ...]`` -> :class:`~mpsearch.allocation.Budgets` (None without flags).

    Read here once, so a typo stops before any heavy work; resolved later against the table.
    """
    from mpsearch.allocation import Budgets

    return Budgets.parse(values, where="--budget") if values else None


def load(path: str, output_dir: str | None = None) -> Any:
    from mpsearch.recipe import load_recipe

    recipe = load_recipe(path)
    return recipe.with_output_dir(output_dir) if output_dir else recipe
