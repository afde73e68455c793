"""Reading a recipe file strictly: every key checked here, every value by its spec, errors naming file and key.

The specs (:mod:`mpsearch.recipe.specs`) hold the value rules; this module reads the file's
structure (unknown keys, sections, defaults that depend on other sections) and re-raises a
spec's error naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from mpsearch.core.checks import check_int
from mpsearch.core.io import check_keys, read_structured
from mpsearch.errors import MpsearchError, in_context
from mpsearch.recipe.checks import check_recipe
from mpsearch.recipe.specs import (RECIPE_VERSION, AllocationSpec, DataSpec, DistillSpec, FinetuneSpec, HardwareSpec,
                                   ParetoSpec, Recipe, SensitivitySpec, ValidationSpec)


_TOP_KEYS = ("version", "name", "seed", "model", "model_kwargs", "data", "sensitivity", "hardware", "budgets",
             "allocation", "finetune", "validation", "output")


def _section(data: Mapping[str, Any], key: str, cls: type, where: str) -> dict[str, Any]:
    raw = data.get(key)
    if raw is None:
        return {}
    valid = [f.name for f in dataclasses.fields(cls)]
    check_keys(raw, valid, where, key)
    return dict(raw)


@contextmanager
def _naming(where: str, section: str) -> Iterator[None]:
    """A spec's own error (``"DataSpec: batch_size ..."``) re-raised as ``"{where}: {section}.batch_size ..."``."""
    try:
        yield
    except MpsearchError as exc:
        raise in_context(exc, where, section) from None


def recipe_from_dict(data: Any, where: str = "recipe", base_name: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data, checking every key and value (no imports).

    Sections are checked in file order, so the first error reported is the first in the file.

    Args:
        data: what ``yaml.safe_load`` returned.
        where: the file named in error messages.
        base_name: the default ``name`` (the file stem).
    """
    check_keys(data, _TOP_KEYS, where, required=("version", "model"))
    check_int(data["version"], where, "version", min=RECIPE_VERSION, max=RECIPE_VERSION, rule=f"{RECIPE_VERSION}")
    # The top-level values are checked first (they come first in a file); the sections are added below.
    recipe = Recipe(name=data.get("name", base_name), model=data["model"], seed=data.get("seed", 0),
                    model_kwargs=data.get("model_kwargs") or {}, path=where)
    budgets = data.get("budgets") or {}
    sections = dict(data=_data_spec(data, where), sensitivity=_sensitivity_spec(data, where),
                    hardware=_hardware_spec(data, where), allocation=_allocation_spec(data, where, budgets),
                    finetune=_finetune_spec(data, where), validation=_validation_spec(data, where))
    return dataclasses.replace(recipe, **sections, budgets=budgets, output_dir=_output_dir(data, where))


def _data_spec(data: Mapping[str, Any], where: str) -> DataSpec:
    fields = _section(data, "data", DataSpec, where)
    with _naming(where, "data"):
        return DataSpec(**fields)


def _sensitivity_spec(data: Mapping[str, Any], where: str) -> SensitivitySpec:
    fields = _section(data, "sensitivity", SensitivitySpec, where)
    with _naming(where, "sensitivity"):
        return SensitivitySpec(**fields)


def _hardware_spec(data: Mapping[str, Any], where: str) -> HardwareSpec:
    fields = _section(data, "hardware", HardwareSpec, where)
    with _naming(where, "hardware"):
        return HardwareSpec(**fields)


def _allocation_spec(data: Mapping[str, Any], where: str, budgets: Any) -> AllocationSpec:
    """The allocation section; the Pareto resource defaults to the first budget's."""
    a = _section(data, "allocation", AllocationSpec, where)
    pareto_raw = a.pop("pareto", {}) if "pareto" in a else {}
    pspec = None
    if pareto_raw is not None:
        check_keys(pareto_raw, ("resource", "n_points"), where, "allocation.pareto")
        default_res = next(iter(budgets), "size_bytes") if isinstance(budgets, Mapping) else "size_bytes"
        with _naming(where, "allocation.pareto"):
            pspec = ParetoSpec(resource=pareto_raw.get("resource", default_res), n_points=pareto_raw.get("n_points", 12))
    with _naming(where, "allocation"):
        return AllocationSpec(**a, pareto=pspec)


def _finetune_spec(data: Mapping[str, Any], where: str) -> FinetuneSpec | None:
    if data.get("finetune") is None:
        return None
    f = _section(data, "finetune", FinetuneSpec, where)
    distill = _distill_spec(f.pop("distill", None), where)
    with _naming(where, "finetune"):
        return FinetuneSpec(**f, distill=distill)


def _distill_spec(raw: Any, where: str) -> DistillSpec | None:
    if raw is None or raw is False:
        return None
    check_keys(raw, ("temperature", "alpha"), where, "finetune.distill")
    with _naming(where, "finetune.distill"):
        return DistillSpec(**raw)


def _validation_spec(data: Mapping[str, Any], where: str) -> ValidationSpec:
    fields = _section(data, "validation", ValidationSpec, where)
    with _naming(where, "validation"):
        return ValidationSpec(**fields)


def _output_dir(data: Mapping[str, Any], where: str) -> Any:
    """``output.dir`` as written (:class:`Recipe` checks it)."""
    out = data.get("output") or {}
    check_keys(out, ("dir",), where, "output")
    return out.get("dir", "runs")


def load_recipe(path: str | os.PathLike[str], check: bool = True) -> Recipe:
    """Read a recipe file strictly and (with ``check``) run every cheap check.

    Raises:
        ConfigError / UnknownNameError: naming the file, the key, the rule and the fix.
    """
    path = Path(path)
    data = read_structured(path)
    recipe = recipe_from_dict(data, where=str(path), base_name=path.stem)
    if check:
        check_recipe(recipe)
    return recipe
