"""Flags and helpers shared by the recipe-driven commands."""

from __future__ import annotations

import argparse
from typing import Any


def add_budget_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", action="append", default=None, metavar="RESOURCE=VALUE",
                        help="a budget, repeatable: absolute (size_bytes=120k, latency_ms=2.5, bops=2G), relative "
                             "(size_bytes=50%%: half way from the smallest to the largest total) or the total of a "
                             "uniform plan (size_bytes=uniform:w4a8). Replaces the recipe's budgets.")


def budgets_from_flags(values: list[str] | None) -> dict[str, Any] | None:
    """``["size_bytes=120k", ...]`` -> ``{"size_bytes": "120k"}`` (parsed later, against the table)."""
    from mpsearch.errors import ConfigError

    if not values:
        return None
    out: dict[str, Any] = {}
    for spec in values:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--budget must be RESOURCE=VALUE such as size_bytes=120k or size_bytes=50%, but got {spec!r}")
        if name.strip() in out:
            raise ConfigError(f"--budget must name each resource once, but {name.strip()!r} appears twice")
        out[name.strip()] = value.strip()
    return out


def checked_budgets(recipe: Any, budgets: dict[str, Any] | None) -> None:
    """Parse budget flags up front (cheap), so a typo stops before any heavy work."""
    from mpsearch.allocation import parse_budget
    from mpsearch.recipe import parse_uniform

    for k, v in (budgets or {}).items():
        if parse_uniform(v) is None:
            parse_budget((k, v), where="--budget")


def load(path: str, output_dir: str | None = None) -> Any:
    from mpsearch.recipe import load_recipe

    recipe = load_recipe(path)
    return recipe.with_output_dir(output_dir) if output_dir else recipe
