"""The cheap checks that stop a bad recipe before any heavy work, and the sensitivity config."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from mpsearch.core.checks import normalize_bits
from mpsearch.core.io import check_keys
from mpsearch.errors import ConfigError, MpsearchError, rule_error
from mpsearch.recipe.specs import BUILTIN_SOURCES, Recipe, import_object, is_import_path


def sensitivity_config(recipe: Recipe, progress: Callable[[dict[str, Any]], None] | None = None,
                       activation_bits: Sequence[int] = ()) -> Any:
    """The method's config dataclass built from ``sensitivity.settings`` (seed from the recipe).

    Args:
        recipe: the recipe.
        progress: progress callback for configs that take one.
        activation_bits: the candidate activation widths of the cost table. With more than one,
            ``activations`` defaults to True where the config has that field: without the
            activation-Hessian term omega is the same for every activation width, so the
            allocation would spend a BOPs or latency budget on activation bits blindly.
    """
    from mpsearch.sensitivity import METHODS

    where, spec = recipe.path, recipe.sensitivity
    cls = METHODS.get(spec.method)
    if cls is None:
        from mpsearch.errors import unknown_name

        raise unknown_name("sensitivity method", spec.method, METHODS, f"{where}: sensitivity.method")
    config_cls = cls.config_cls
    fields = {f.name for f in dataclasses.fields(config_cls)} - {"progress", "distributed"}
    check_keys(spec.settings, sorted(fields), where, "sensitivity.settings")
    settings = dict(spec.settings)
    if "seed" in fields:
        settings.setdefault("seed", recipe.seed)
    if "activations" in fields and len(set(activation_bits)) > 1:
        settings.setdefault("activations", True)
    for key in ("w_bits", "a_bits"):  # YAML lists (or one int) -> the tuples the configs hold
        value = settings.get(key)
        if value is not None:  # the one bit-list rule; the recipe's order is kept
            normalize_bits(value, where, f"sensitivity.settings.{key}")
            settings[key] = tuple(dict.fromkeys([value] if isinstance(value, int) else value))
    if "progress" in {f.name for f in dataclasses.fields(config_cls)}:
        settings["progress"] = progress
    try:
        return config_cls(**settings)
    except MpsearchError as exc:
        raise ConfigError(f"{where}: sensitivity.settings are invalid: {exc}") from None


def check_recipe(recipe: Recipe) -> None:
    """Every cheap check: profile, bits, imports, sensitivity config, budgets, output folder."""
    from mpsearch.allocation import UniformBudget
    from mpsearch.demo import DEMO_LM_MODELS, DEMO_MODELS
    from mpsearch.errors import unknown_name
    from mpsearch.hardware import load_profile
    from mpsearch.hardware.schema import all_allowed_pairs

    where = recipe.path
    try:
        profile = load_profile(recipe.hardware.profile)
    except MpsearchError as exc:
        raise type(exc)(f"{where}: hardware.profile must name a loadable profile, but {exc} "
                        f"(fix: 'mpsearch profiles' lists them)") from None
    caps = profile.capabilities
    pairs = all_allowed_pairs(caps)
    for key, mine, theirs in (("w_bits", recipe.hardware.w_bits, {w for w, _ in pairs}),
                              ("a_bits", recipe.hardware.a_bits, {a for _, a in pairs})):
        if mine is not None and not set(mine) & theirs:
            raise rule_error(where, f"hardware.{key}", f"bit-widths that profile {profile.name!r} runs "
                             f"({sorted(theirs)})", list(mine))
        if mine is not None and set(mine) - theirs:
            raise rule_error(where, f"hardware.{key}", f"a subset of {sorted(theirs)} (what profile "
                             f"{profile.name!r} runs; fix: drop the others)", list(mine))
    if is_import_path(recipe.model):
        import_object(recipe.model, where, "model")
    elif recipe.model not in DEMO_MODELS and recipe.model not in DEMO_LM_MODELS:
        raise unknown_name("model", recipe.model, [*DEMO_MODELS, *DEMO_LM_MODELS],
                           f"{where}: model must be a demo model or 'package.module:function';")
    else:
        own = "stdlib_text" if recipe.model in DEMO_LM_MODELS else "digits"
        if recipe.data.source != own:
            raise rule_error(where, "data.source", f"{own!r} for the demo model {recipe.model!r} (the data it "
                             "was trained on)", recipe.data.source)
    if recipe.data.source not in BUILTIN_SOURCES:
        import_object(recipe.data.source, where, "data.source")
    sensitivity_config(recipe)
    budgets = recipe.budgets  # parsed when the Recipe was built
    # the resources a cost table of this profile will have (hardware/costs.py LayerCost.resources)
    resources = ["size_bytes", "bops", "latency_ms", *(["energy_uj"] if profile.cost.energy is not None else [])]
    for b in budgets.entries:
        if b.resource not in resources:
            raise unknown_name("resource", b.resource, resources, f"{where}: budgets")
    pareto = recipe.allocation.pareto
    if pareto is not None and pareto.resource not in resources:
        raise unknown_name("resource", pareto.resource, resources, f"{where}: allocation.pareto.resource")
    for b in budgets.entries:
        if isinstance(b, UniformBudget) and b.key is not None:
            runs = tuple(recipe.hardware.formats or ())
            if b.key not in runs:
                raise rule_error(where, f"budgets.{b.resource}", f"a uniform plan of one of hardware.formats "
                                 f"({', '.join(runs) or 'none listed'})", budgets[b.resource])
        elif isinstance(b, UniformBudget) and (b.w_bits, b.a_bits) not in pairs:
            raise rule_error(where, f"budgets.{b.resource}", f"a uniform pair that profile {profile.name!r} runs "
                             f"({', '.join(f'w{w}a{a}' for w, a in sorted(pairs))})", budgets[b.resource])
    if recipe.allocation.method != "ilp":
        from mpsearch.explorers import EXPLORERS

        if recipe.allocation.method not in EXPLORERS:
            raise rule_error(where, "allocation.method", f"one of ilp, {', '.join(EXPLORERS)}", recipe.allocation.method)
    else:
        from mpsearch.allocation import SOLVERS

        if recipe.allocation.solver not in SOLVERS:
            raise unknown_name("solver", recipe.allocation.solver, SOLVERS, f"{where}: allocation.solver")
