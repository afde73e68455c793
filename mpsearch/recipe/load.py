"""Reading a recipe file strictly: every key and value checked, errors naming file and key."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Mapping

from mpsearch.allocation import Budgets, check_gap_rel  # numpy only: pulp loads lazily
from mpsearch.core.io import check_keys, read_structured
from mpsearch.errors import rule_error
from mpsearch.recipe.checks import check_recipe
from mpsearch.recipe.specs import (ALLOCATION_METHODS, DATA_SPLITS, RECIPE_VERSION, AllocationSpec, DataSpec, DistillSpec,
                                   FinetuneSpec, HardwareSpec, ParetoSpec, Recipe, SensitivitySpec, ValidationSpec,
                                   is_import_path, is_int, is_pos)


_TOP_KEYS = ("version", "name", "seed", "model", "model_kwargs", "data", "sensitivity", "hardware", "budgets",
             "allocation", "finetune", "validation", "output")


def _section(data: Mapping[str, Any], key: str, cls: type, where: str) -> dict[str, Any]:
    raw = data.get(key)
    if raw is None:
        return {}
    valid = [f.name for f in dataclasses.fields(cls)]
    check_keys(raw, valid, where, key)
    return dict(raw)


def _bits_list(value: Any, where: str, key: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(is_int(b, 2) and b <= 8 for b in value):
        raise rule_error(where, key, "a non-empty list of bit-widths from 2 to 8 such as [2, 4, 8]", value)
    return tuple(sorted(set(value), reverse=True))


def recipe_from_dict(data: Any, where: str = "recipe", base_name: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data, checking every key and value (no imports).

    Sections are checked in file order, so the first error reported is the first in the file.

    Args:
        data: what ``yaml.safe_load`` returned.
        where: the file named in error messages.
        base_name: the default ``name`` (the file stem).
    """
    check_keys(data, _TOP_KEYS, where, required=("version", "model"))
    if data["version"] != RECIPE_VERSION:
        raise rule_error(where, "version", f"{RECIPE_VERSION}", data["version"])
    name, seed, model, model_kwargs = _top_level(data, where, base_name)
    dspec = _data_spec(data, where)
    sspec = _sensitivity_spec(data, where)
    hspec = _hardware_spec(data, where)
    budgets = data.get("budgets") or {}
    if not isinstance(budgets, Mapping):
        raise rule_error(where, "budgets", "a mapping of resource -> limit (120k, 50%, uniform:w4a8)", budgets)
    aspec = _allocation_spec(data, where, budgets)
    fspec = _finetune_spec(data, where)
    vspec = _validation_spec(data, where)
    return Recipe(name=name, model=model, seed=seed, model_kwargs=dict(model_kwargs), data=dspec,
                  sensitivity=sspec, hardware=hspec, budgets=Budgets.parse(budgets, where=f"{where}: budgets"),
                  allocation=aspec, finetune=fspec, validation=vspec, output_dir=_output_dir(data, where), path=where)


def _top_level(data: Mapping[str, Any], where: str, base_name: str) -> tuple[str, int, str, Mapping[str, Any]]:
    """``(name, seed, model, model_kwargs)``, each checked."""
    name = data.get("name", base_name)
    if not isinstance(name, str) or not re.match(r"^[\w.-]+$", name):
        raise rule_error(where, "name", "a non-empty name of letters, digits, '_', '-' or '.'", name)
    seed = data.get("seed", 0)
    if not is_int(seed, 0):
        raise rule_error(where, "seed", "an integer >= 0", seed)
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise rule_error(where, "model", "a demo model name or 'package.module:function'", model)
    model_kwargs = data.get("model_kwargs") or {}
    if not isinstance(model_kwargs, Mapping):
        raise rule_error(where, "model_kwargs", "a mapping of keyword -> value", model_kwargs)
    return name, seed, model, model_kwargs


def _data_spec(data: Mapping[str, Any], where: str) -> DataSpec:
    dspec = DataSpec(**_section(data, "data", DataSpec, where))
    if not isinstance(dspec.source, str) or not (dspec.source == "digits" or is_import_path(dspec.source)):
        raise rule_error(where, "data.source", "'digits' or 'package.module:function'", dspec.source)
    for k in ("batch_size", "calib_batches"):
        if not is_int(getattr(dspec, k), 1):
            raise rule_error(where, f"data.{k}", "an integer >= 1", getattr(dspec, k))
    return dspec


def _sensitivity_spec(data: Mapping[str, Any], where: str) -> SensitivitySpec:
    sspec = SensitivitySpec(**_section(data, "sensitivity", SensitivitySpec, where))
    if not is_int(sspec.n_batches, 1):
        raise rule_error(where, "sensitivity.n_batches", "an integer >= 1", sspec.n_batches)
    if not isinstance(sspec.settings, Mapping):
        raise rule_error(where, "sensitivity.settings", "a mapping of config field -> value", sspec.settings)
    return sspec


def _hardware_spec(data: Mapping[str, Any], where: str) -> HardwareSpec:
    h = _section(data, "hardware", HardwareSpec, where)
    hspec = HardwareSpec(profile=h.get("profile", HardwareSpec.profile),
                         w_bits=_bits_list(h.get("w_bits"), where, "hardware.w_bits"),
                         a_bits=_bits_list(h.get("a_bits"), where, "hardware.a_bits"),
                         batch=h.get("batch", HardwareSpec.batch))
    if not is_int(hspec.batch, 1):
        raise rule_error(where, "hardware.batch", "an integer >= 1 (the deployment batch size)", hspec.batch)
    if not isinstance(hspec.profile, str) or not hspec.profile:
        raise rule_error(where, "hardware.profile", "a profile name or a path to a profile YAML", hspec.profile)
    return hspec


def _allocation_spec(data: Mapping[str, Any], where: str, budgets: Mapping[str, Any]) -> AllocationSpec:
    """The allocation section; the Pareto resource defaults to the first budget's."""
    a = _section(data, "allocation", AllocationSpec, where)
    pareto_raw = a.pop("pareto", {}) if "pareto" in a else {}
    pspec = None
    if pareto_raw is not None:
        check_keys(pareto_raw, ("resource", "n_points"), where, "allocation.pareto")
        default_res = next(iter(budgets), "size_bytes")
        pspec = ParetoSpec(resource=pareto_raw.get("resource", default_res), n_points=pareto_raw.get("n_points", 12))
        if not is_int(pspec.n_points, 2):
            raise rule_error(where, "allocation.pareto.n_points", "an integer >= 2", pspec.n_points)
    aspec = AllocationSpec(**a, pareto=pspec)
    if aspec.method not in ALLOCATION_METHODS:
        raise rule_error(where, "allocation.method", f"one of {', '.join(ALLOCATION_METHODS)}", aspec.method)
    if not is_int(aspec.n_trials, 1):
        raise rule_error(where, "allocation.n_trials", "an integer >= 1", aspec.n_trials)
    check_gap_rel(aspec.gap_rel, where, "allocation.gap_rel")
    return aspec


def _finetune_spec(data: Mapping[str, Any], where: str) -> FinetuneSpec | None:
    if data.get("finetune") is None:
        return None
    f = _section(data, "finetune", FinetuneSpec, where)
    distill = _distill_spec(f.pop("distill", None), where)
    fspec = FinetuneSpec(**f, distill=distill)
    if not is_int(fspec.epochs, 0):
        raise rule_error(where, "finetune.epochs", "an integer >= 0", fspec.epochs)
    if not is_pos(fspec.lr):
        raise rule_error(where, "finetune.lr", "a number > 0", fspec.lr)
    if not is_int(fspec.batch_size, 1):
        raise rule_error(where, "finetune.batch_size", "an integer >= 1", fspec.batch_size)
    if fspec.seed is not None and not is_int(fspec.seed, 0):
        raise rule_error(where, "finetune.seed", "an integer >= 0 (or absent: the recipe's seed)", fspec.seed)
    return fspec


def _distill_spec(raw: Any, where: str) -> DistillSpec | None:
    if raw is None or raw is False:
        return None
    check_keys(raw, ("temperature", "alpha"), where, "finetune.distill")
    dist = DistillSpec(**raw)
    if not is_pos(dist.temperature):
        raise rule_error(where, "finetune.distill.temperature", "a number > 0", dist.temperature)
    if isinstance(dist.alpha, bool) or not isinstance(dist.alpha, (int, float)) or not 0 <= dist.alpha <= 1:
        raise rule_error(where, "finetune.distill.alpha", "a number in [0, 1]", dist.alpha)
    return dist


def _validation_spec(data: Mapping[str, Any], where: str) -> ValidationSpec:
    vspec = ValidationSpec(**_section(data, "validation", ValidationSpec, where))
    if vspec.split not in DATA_SPLITS:
        raise rule_error(where, "validation.split", f"one of {', '.join(DATA_SPLITS)}", vspec.split)
    if not isinstance(vspec.integer, bool):
        raise rule_error(where, "validation.integer", "true or false", vspec.integer)
    return vspec


def _output_dir(data: Mapping[str, Any], where: str) -> str:
    out = data.get("output") or {}
    check_keys(out, ("dir",), where, "output")
    output_dir = out.get("dir", "runs")
    if not isinstance(output_dir, str) or not output_dir:
        raise rule_error(where, "output.dir", "a folder path", output_dir)
    return output_dir


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
