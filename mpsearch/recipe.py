"""Recipes: one YAML file (``version: 1``) that describes a whole mpsearch run.

    recipe = load_recipe("recipes/demo.yaml")      # strict: every key and value checked here
    result = run_recipe(recipe)                     # mpsearch.pipeline

Every section is a frozen dataclass checked when built. :func:`load_recipe` also does every
check that is cheap, so a bad recipe stops before any heavy work: the profile loads, the
import paths import, the budgets parse, the candidate bits are allowed by the profile, the
sensitivity settings build their config. Messages name the file, the dotted key, the rule
and the value (``"demo.yaml: hardware.w_bits must be ..., but got [3]"``).

Schema (defaults in brackets)::

    version: 1
    name: demo                      # [file stem] results go to <output.dir>/<name>/
    seed: 0                         # [0] seeds sensitivity probes, explorers, QAT data order
    model: resnet_tiny              # a demo model name, or "package.module:function" -> nn.Module
    model_kwargs: {}                # keyword arguments for an imported model function
    data:
      source: digits                # [digits] or "package.module:function" -> {"train","val","test"}
      batch_size: 128               # [128] images per batch
      calib_batches: 4              # [4] batches for calibration and the activation term
    sensitivity:
      method: hessian               # [hessian] hessian | eigen | fisher | empirical
      n_batches: 2                  # [2] batches of the train split it reads
      settings: {max_probes: 32}    # fields of the method's config (HessianConfig, ...); with several
                                    # candidate a_bits, hessian's activations defaults to true
    hardware:
      profile: gap8-pulp-nn         # shipped name or path to a profile YAML
      w_bits: [2, 4, 8]             # [all the profile runs]
      a_bits: [8]                   # [all the profile runs]
    budgets:                        # resource -> limit; each may be absolute (120k), relative
      size_bytes: uniform:w4a8      # (50%: of the way from smallest to largest total) or the
                                    # total of a uniform plan (uniform:w4a8)
    allocation:
      method: ilp                   # [ilp] ilp | optuna | rl
      solver: cbc                   # [cbc] ILP engine (cbc | highs)
      gap_rel: 0.0001               # [1e-4] stop once proven within this relative gap; 0: prove the optimum
      n_trials: 200                 # [200] optuna trials / rl episodes
      pareto: {resource: size_bytes, n_points: 12}   # [first budget's resource, 12]; null: no sweep
    finetune:                       # [null: no QAT]
      epochs: 3
      lr: 0.001
      batch_size: 64
      distill: {temperature: 4.0, alpha: 0.5}     # [null: hard labels only]
      seed: 0                       # [the recipe's seed] order of the training examples
    validation:
      split: test                   # [test] split used for accuracy and integer validation
      integer: true                 # [true] run the integer executor and export it
    output:
      dir: results                  # [results] relative to the working directory
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mpsearch.allocation import DEFAULT_GAP_REL, check_gap_rel  # numpy only: pulp loads lazily
from mpsearch.core.io import check_keys, read_structured
from mpsearch.errors import ConfigError, MpsearchError, rule_error

RECIPE_VERSION = 1
ALLOCATION_METHODS = ("ilp", "optuna", "rl")
DATA_SPLITS = ("train", "val", "test")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_UNIFORM = re.compile(r"^uniform:w(\d+)a(\d+)$")


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _is_pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def is_import_path(text: Any) -> bool:
    """True for ``"package.module:function"``."""
    return isinstance(text, str) and bool(_IMPORT_PATH.match(text))


def import_object(path: str, where: str, key: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``; errors name the file, the key and the fix."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise ConfigError(f"{where}: {key} must name an importable module, but importing {module_name!r} "
                          f"failed with {type(exc).__name__}: {exc} (fix: check the spelling, or put the module "
                          f"on PYTHONPATH)") from None
    obj = getattr(module, attr, None)
    if not callable(obj):
        raise ConfigError(f"{where}: {key} must name a callable in {module_name!r}, but {attr!r} is "
                          f"{'missing' if obj is None else type(obj).__name__} (fix: use 'module:function')")
    return obj


def parse_uniform(value: Any) -> tuple[int, int] | None:
    """``"uniform:w4a8"`` -> ``(4, 8)``; anything else -> None."""
    if isinstance(value, str):
        m = _UNIFORM.match(value.strip())
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


@dataclass(frozen=True)
class DataSpec:
    """Where the batches come from: ``source`` is "digits" or an import path."""

    source: str = "digits"
    batch_size: int = 128
    calib_batches: int = 4


@dataclass(frozen=True)
class SensitivitySpec:
    """Sensitivity method, how many train batches it reads, and its config fields."""

    method: str = "hessian"
    n_batches: int = 2
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HardwareSpec:
    """The profile (name or path), the user's candidate bit-widths (None: all allowed), and the
    deployment batch size that latency is predicted for (LUT entries are keyed by batch)."""

    profile: str = "gap8-pulp-nn"
    w_bits: tuple[int, ...] | None = None
    a_bits: tuple[int, ...] | None = None
    batch: int = 1


@dataclass(frozen=True)
class ParetoSpec:
    """The frontier sweep: which resource, how many budgets."""

    resource: str = "size_bytes"
    n_points: int = 12


@dataclass(frozen=True)
class AllocationSpec:
    """How bits are chosen: exact ILP, or an explorer (optuna / rl) on the omega proxy."""

    method: str = "ilp"
    solver: str = "cbc"
    gap_rel: float = DEFAULT_GAP_REL
    n_trials: int = 200
    pareto: ParetoSpec | None = field(default_factory=ParetoSpec)


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation from the float model: soft-target temperature and weight."""

    temperature: float = 4.0
    alpha: float = 0.5


@dataclass(frozen=True)
class FinetuneSpec:
    """QAT of the chosen plan (straight-through estimator)."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    distill: DistillSpec | None = None
    seed: int | None = None  # None: the recipe's seed


@dataclass(frozen=True)
class ValidationSpec:
    """Which split measures accuracy, and whether the integer program is built and checked."""

    split: str = "test"
    integer: bool = True


@dataclass(frozen=True)
class Recipe:
    """A whole run. Build with :func:`load_recipe` (or :func:`recipe_from_dict`)."""

    name: str
    model: str
    seed: int = 0
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    sensitivity: SensitivitySpec = field(default_factory=SensitivitySpec)
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    budgets: Mapping[str, Any] = field(default_factory=dict)
    allocation: AllocationSpec = field(default_factory=AllocationSpec)
    finetune: FinetuneSpec | None = None
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    output_dir: str = "runs"
    path: str = "recipe"  # the file it came from (named in messages)

    @property
    def results_dir(self) -> Path:
        """``<output.dir>/<name>``."""
        return Path(self.output_dir) / self.name

    def with_output_dir(self, output_dir: str | os.PathLike[str]) -> "Recipe":
        return dataclasses.replace(self, output_dir=str(output_dir))


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
    if not isinstance(value, list) or not value or not all(_is_int(b, 2) and b <= 8 for b in value):
        raise rule_error(where, key, "a non-empty list of bit-widths from 2 to 8 such as [2, 4, 8]", value)
    return tuple(sorted(set(value), reverse=True))


def recipe_from_dict(data: Any, where: str = "recipe", base_name: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data, checking every key and value (no imports).

    Args:
        data: what ``yaml.safe_load`` returned.
        where: the file named in error messages.
        base_name: the default ``name`` (the file stem).
    """
    check_keys(data, _TOP_KEYS, where, required=("version", "model"))
    if data["version"] != RECIPE_VERSION:
        raise rule_error(where, "version", f"{RECIPE_VERSION}", data["version"])
    name = data.get("name", base_name)
    if not isinstance(name, str) or not re.match(r"^[\w.-]+$", name):
        raise rule_error(where, "name", "a non-empty name of letters, digits, '_', '-' or '.'", name)
    seed = data.get("seed", 0)
    if not _is_int(seed, 0):
        raise rule_error(where, "seed", "an integer >= 0", seed)
    model = data["model"]
    if not isinstance(model, str) or not model:
        raise rule_error(where, "model", "a demo model name or 'package.module:function'", model)
    model_kwargs = data.get("model_kwargs") or {}
    if not isinstance(model_kwargs, Mapping):
        raise rule_error(where, "model_kwargs", "a mapping of keyword -> value", model_kwargs)

    d = _section(data, "data", DataSpec, where)
    dspec = DataSpec(**d)
    if not isinstance(dspec.source, str) or not (dspec.source == "digits" or is_import_path(dspec.source)):
        raise rule_error(where, "data.source", "'digits' or 'package.module:function'", dspec.source)
    for k in ("batch_size", "calib_batches"):
        if not _is_int(getattr(dspec, k), 1):
            raise rule_error(where, f"data.{k}", "an integer >= 1", getattr(dspec, k))

    s = _section(data, "sensitivity", SensitivitySpec, where)
    sspec = SensitivitySpec(**s)
    if not _is_int(sspec.n_batches, 1):
        raise rule_error(where, "sensitivity.n_batches", "an integer >= 1", sspec.n_batches)
    if not isinstance(sspec.settings, Mapping):
        raise rule_error(where, "sensitivity.settings", "a mapping of config field -> value", sspec.settings)

    h = _section(data, "hardware", HardwareSpec, where)
    hspec = HardwareSpec(profile=h.get("profile", HardwareSpec.profile),
                         w_bits=_bits_list(h.get("w_bits"), where, "hardware.w_bits"),
                         a_bits=_bits_list(h.get("a_bits"), where, "hardware.a_bits"),
                         batch=h.get("batch", HardwareSpec.batch))
    if not _is_int(hspec.batch, 1):
        raise rule_error(where, "hardware.batch", "an integer >= 1 (the deployment batch size)", hspec.batch)
    if not isinstance(hspec.profile, str) or not hspec.profile:
        raise rule_error(where, "hardware.profile", "a profile name or a path to a profile YAML", hspec.profile)

    budgets = data.get("budgets") or {}
    if not isinstance(budgets, Mapping):
        raise rule_error(where, "budgets", "a mapping of resource -> limit (120k, 50%, uniform:w4a8)", budgets)

    a = _section(data, "allocation", AllocationSpec, where)
    pareto_raw = a.pop("pareto", {}) if "pareto" in a else {}
    pspec = None
    if pareto_raw is not None:
        check_keys(pareto_raw, ("resource", "n_points"), where, "allocation.pareto")
        default_res = next(iter(budgets), "size_bytes")
        pspec = ParetoSpec(resource=pareto_raw.get("resource", default_res), n_points=pareto_raw.get("n_points", 12))
        if not _is_int(pspec.n_points, 2):
            raise rule_error(where, "allocation.pareto.n_points", "an integer >= 2", pspec.n_points)
    aspec = AllocationSpec(**a, pareto=pspec)
    if aspec.method not in ALLOCATION_METHODS:
        raise rule_error(where, "allocation.method", f"one of {', '.join(ALLOCATION_METHODS)}", aspec.method)
    if not _is_int(aspec.n_trials, 1):
        raise rule_error(where, "allocation.n_trials", "an integer >= 1", aspec.n_trials)
    check_gap_rel(aspec.gap_rel, where, "allocation.gap_rel")

    fspec = None
    if data.get("finetune") is not None:
        f = _section(data, "finetune", FinetuneSpec, where)
        dist_raw = f.pop("distill", None)
        dist = None
        if dist_raw is not None and dist_raw is not False:
            check_keys(dist_raw, ("temperature", "alpha"), where, "finetune.distill")
            dist = DistillSpec(**dist_raw)
            if not _is_pos(dist.temperature):
                raise rule_error(where, "finetune.distill.temperature", "a number > 0", dist.temperature)
            if isinstance(dist.alpha, bool) or not isinstance(dist.alpha, (int, float)) or not 0 <= dist.alpha <= 1:
                raise rule_error(where, "finetune.distill.alpha", "a number in [0, 1]", dist.alpha)
        fspec = FinetuneSpec(**f, distill=dist)
        if not _is_int(fspec.epochs, 0):
            raise rule_error(where, "finetune.epochs", "an integer >= 0", fspec.epochs)
        if not _is_pos(fspec.lr):
            raise rule_error(where, "finetune.lr", "a number > 0", fspec.lr)
        if not _is_int(fspec.batch_size, 1):
            raise rule_error(where, "finetune.batch_size", "an integer >= 1", fspec.batch_size)
        if fspec.seed is not None and not _is_int(fspec.seed, 0):
            raise rule_error(where, "finetune.seed", "an integer >= 0 (or absent: the recipe's seed)", fspec.seed)

    v = _section(data, "validation", ValidationSpec, where)
    vspec = ValidationSpec(**v)
    if vspec.split not in DATA_SPLITS:
        raise rule_error(where, "validation.split", f"one of {', '.join(DATA_SPLITS)}", vspec.split)
    if not isinstance(vspec.integer, bool):
        raise rule_error(where, "validation.integer", "true or false", vspec.integer)

    out = data.get("output") or {}
    check_keys(out, ("dir",), where, "output")
    output_dir = out.get("dir", "runs")
    if not isinstance(output_dir, str) or not output_dir:
        raise rule_error(where, "output.dir", "a folder path", output_dir)

    return Recipe(name=name, model=model, seed=seed, model_kwargs=dict(model_kwargs), data=dspec,
                  sensitivity=sspec, hardware=hspec, budgets=dict(budgets), allocation=aspec, finetune=fspec,
                  validation=vspec, output_dir=output_dir, path=where)


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
    if "w_bits" in settings:  # YAML lists -> the tuples the configs hold
        settings["w_bits"] = tuple(settings["w_bits"])
    if "progress" in {f.name for f in dataclasses.fields(config_cls)}:
        settings["progress"] = progress
    try:
        return config_cls(**settings)
    except MpsearchError as exc:
        raise ConfigError(f"{where}: sensitivity.settings are invalid: {exc}") from None


def check_recipe(recipe: Recipe) -> None:
    """Every cheap check: profile, bits, imports, sensitivity config, budgets, output folder."""
    from mpsearch.allocation import parse_budget
    from mpsearch.demo import DEMO_MODELS
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
    elif recipe.model not in DEMO_MODELS:
        raise unknown_name("model", recipe.model, DEMO_MODELS,
                           f"{where}: model must be a demo model or 'package.module:function';")
    elif recipe.data.source != "digits":
        raise rule_error(where, "data.source", f"'digits' for the demo model {recipe.model!r}", recipe.data.source)
    if recipe.data.source != "digits":
        import_object(recipe.data.source, where, "data.source")
    sensitivity_config(recipe)
    for res, value in recipe.budgets.items():
        uni = parse_uniform(value)
        if uni is not None:
            if uni not in pairs:
                raise rule_error(where, f"budgets.{res}", f"a uniform pair that profile {profile.name!r} runs "
                                 f"({', '.join(f'w{w}a{a}' for w, a in sorted(pairs))})", value)
            continue
        parse_budget((str(res), value), where=f"{where}: budgets")
    if recipe.allocation.method != "ilp":
        from mpsearch.explorers import EXPLORERS

        if recipe.allocation.method not in EXPLORERS:
            raise rule_error(where, "allocation.method", f"one of ilp, {', '.join(EXPLORERS)}", recipe.allocation.method)
    else:
        from mpsearch.allocation import SOLVERS

        if recipe.allocation.solver not in SOLVERS:
            raise unknown_name("solver", recipe.allocation.solver, SOLVERS, f"{where}: allocation.solver")
