"""The recipe's sections as frozen dataclasses, each checking its own rules when built.

A spec built in Python names itself in a message (``"DataSpec: batch_size must be an integer
>= 1, but got -1"``); :func:`~mpsearch.recipe.load_recipe` re-raises it naming the file and the
dotted key (``"r.yaml: data.batch_size must be ..."``). :class:`Recipe` names its ``path``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mpsearch.allocation import DEFAULT_GAP_REL, Budgets, check_gap_rel, check_max_drop  # numpy only: pulp loads lazily
from mpsearch.core.checks import check_bool, check_choice, check_int, check_number, fail, normalize_bits
from mpsearch.core.formats import KEY_RULE, WEIGHT_METHODS
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError

RECIPE_VERSION = 1
ALLOCATION_METHODS = ("ilp", "optuna", "rl")
DATA_SPLITS = ("train", "val", "test")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME_CHARS = re.compile(r"[\w.-]+")
_NAME = re.compile(r"[A-Za-z0-9_][\w.-]*")  # one path component, never "." or "..": results go to <dir>/<name>


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


#: Data that ships with mpsearch's demos: scikit-learn's digits, the standard library's own text.
BUILTIN_SOURCES = ("digits", "stdlib_text")


@dataclass(frozen=True)
class DataSpec:
    """Where the batches come from: ``source`` is "digits", "stdlib_text" or an import path.

    ``calibration: distilled`` makes sensitivity, calibration and fine-tuning read ZeroQ data
    distilled from the model's BatchNorm statistics (labels: the float model's predictions)
    instead of the source's train split; validation and test stay real. ``distill_iters`` is
    the number of Adam steps per distilled batch.
    """

    source: str = "digits"
    batch_size: int = 128
    calib_batches: int = 4
    calibration: str = "real"
    distill_iters: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not (self.source in BUILTIN_SOURCES or is_import_path(self.source)):
            raise fail("DataSpec", "source", "'digits', 'stdlib_text' or 'package.module:function'", self.source)
        check_int(self.batch_size, "DataSpec", "batch_size", min=1)
        check_int(self.calib_batches, "DataSpec", "calib_batches", min=1)
        check_choice(self.calibration, "DataSpec", "calibration", ("real", "distilled"))
        check_int(self.distill_iters, "DataSpec", "distill_iters", min=1)


@dataclass(frozen=True)
class SensitivitySpec:
    """Sensitivity method, how many train batches it reads, and its config fields."""

    method: str = "hessian"
    n_batches: int = 2
    settings: Mapping[str, Any] = field(default_factory=dict)
    # measure omega where the second-order model breaks (mpsearch.sensitivity.calibrate)
    calibrate: bool = True
    calibrate_factor: float = 2.0
    calibrate_max_evaluations: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:  # which methods exist: sensitivity_config's lookup
            raise fail("SensitivitySpec", "method", "a sensitivity method name such as 'hessian'", self.method)
        check_int(self.n_batches, "SensitivitySpec", "n_batches", min=1)
        check_bool(self.calibrate, "SensitivitySpec", "calibrate", rule="true or false")
        check_number(self.calibrate_factor, "SensitivitySpec", "calibrate_factor", min=1)
        check_int(self.calibrate_max_evaluations, "SensitivitySpec", "calibrate_max_evaluations", min=0)
        if not isinstance(self.settings, Mapping):
            raise fail("SensitivitySpec", "settings", "a mapping of config field -> value", self.settings)


@dataclass(frozen=True)
class HardwareSpec:
    """The profile (name or path), the user's candidate bit-widths (None: all allowed), and the
    deployment batch size that latency is predicted for (LUT entries are keyed by batch).

    ``w_bits`` / ``a_bits`` are kept as the distinct widths, widest first (a list or one int is
    accepted); which of them the profile runs is :func:`~mpsearch.recipe.check_recipe`'s check."""

    profile: str = "gap8-pulp-nn"
    w_bits: tuple[int, ...] | None = None
    a_bits: tuple[int, ...] | None = None
    batch: int = 1
    formats: tuple[str, ...] | None = None  # LLM weight formats ("w4a16g128", "w16a16") of linear/embedding layers
    methods: tuple[str, ...] | None = None  # weight quantization methods paired with every bit candidate (#16)

    def __post_init__(self) -> None:
        for key in ("w_bits", "a_bits"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, normalize_bits(getattr(self, key), "HardwareSpec", key))
        if self.formats is not None:
            if isinstance(self.formats, str) or not isinstance(self.formats, (list, tuple)) or not self.formats:
                raise fail("HardwareSpec", "formats", 'a non-empty list of format keys such as ["w4a16g128", "w16a16"]',
                           self.formats)
            keys = []
            for i, k in enumerate(self.formats):
                try:
                    keys.append(Candidate.parse(k, "HardwareSpec").key)
                except ConfigError:
                    raise fail("HardwareSpec", f"formats[{i}]", KEY_RULE, k) from None
            object.__setattr__(self, "formats", tuple(dict.fromkeys(keys)))
        if self.methods is not None:
            if isinstance(self.methods, str) or not isinstance(self.methods, (list, tuple)) or not self.methods:
                raise fail("HardwareSpec", "methods", "a non-empty list of weight quantization methods such as "
                           "[rtn, gptq]", self.methods)
            for i, m in enumerate(self.methods):
                if not isinstance(m, str) or m not in WEIGHT_METHODS:
                    raise fail("HardwareSpec", f"methods[{i}]", f"one of {', '.join(WEIGHT_METHODS)}", m)
            object.__setattr__(self, "methods", tuple(dict.fromkeys(self.methods)))
        check_int(self.batch, "HardwareSpec", "batch", min=1, rule="an integer >= 1 (the deployment batch size)")
        if not isinstance(self.profile, str) or not self.profile:
            raise fail("HardwareSpec", "profile", "a profile name or a path to a profile YAML", self.profile)


@dataclass(frozen=True)
class ParetoSpec:
    """The frontier sweep: which resource, how many budgets."""

    resource: str = "size_bytes"
    n_points: int = 12

    def __post_init__(self) -> None:
        check_int(self.n_points, "ParetoSpec", "n_points", min=2)


@dataclass(frozen=True)
class AllocationSpec:
    """How bits are chosen: exact ILP, or an explorer (optuna / rl) on the omega proxy."""

    method: str = "ilp"
    solver: str = "cbc"
    gap_rel: float = DEFAULT_GAP_REL
    n_trials: int = 200
    pareto: ParetoSpec | None = field(default_factory=ParetoSpec)
    guard: bool = True  # compare the plan with uniform and greedy plans on the val split (pipeline/guard.py)
    k_best: int = 8  # method ilp: the k best plans by omega, the one with the lowest val loss (pipeline/kbest.py); 1: off
    # accuracy-target mode (pipeline/target.py): the smallest `minimize` plan within max_drop of float
    max_drop: float | str | None = None  # metric units (0.005) or a percentage of float ("0.5%")
    minimize: str = "size_bytes"

    def __post_init__(self) -> None:
        check_choice(self.method, "AllocationSpec", "method", ALLOCATION_METHODS)
        if not isinstance(self.solver, str) or not self.solver:  # which solvers exist: check_recipe's lookup
            raise fail("AllocationSpec", "solver", "a solver name such as 'cbc' or 'highs'", self.solver)
        if self.max_drop is not None:
            check_max_drop(self.max_drop, "AllocationSpec", "max_drop")
        check_bool(self.guard, "AllocationSpec", "guard", rule="true or false")
        check_int(self.k_best, "AllocationSpec", "k_best", min=1)
        check_int(self.n_trials, "AllocationSpec", "n_trials", min=1)
        check_gap_rel(self.gap_rel, "AllocationSpec", "gap_rel")


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation from the float model: soft-target temperature and weight."""

    temperature: float = 4.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        check_number(self.temperature, "DistillSpec", "temperature", min=0, min_exclusive=True)
        check_number(self.alpha, "DistillSpec", "alpha", min=0, max=1)


@dataclass(frozen=True)
class FinetuneSpec:
    """QAT of the chosen plan (straight-through estimator)."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    distill: DistillSpec | None = None
    seed: int | None = None  # None: the recipe's seed
    frontier_points: int = 3  # Pareto points fine-tuned the same way, spread along the frontier (0: off)

    def __post_init__(self) -> None:
        check_int(self.epochs, "FinetuneSpec", "epochs", min=0)
        check_int(self.frontier_points, "FinetuneSpec", "frontier_points", min=0,
                  rule="an integer >= 0 (0: no frontier point is fine-tuned)")
        check_number(self.lr, "FinetuneSpec", "lr", min=0, min_exclusive=True)
        check_int(self.batch_size, "FinetuneSpec", "batch_size", min=1)
        check_int(self.seed, "FinetuneSpec", "seed", min=0, allow_none=True,
                  rule="an integer >= 0 (or absent: the recipe's seed)")


@dataclass(frozen=True)
class ValidationSpec:
    """Which split measures accuracy, and whether the integer program is built and checked."""

    split: str = "test"
    integer: bool = True

    def __post_init__(self) -> None:
        check_choice(self.split, "ValidationSpec", "split", DATA_SPLITS)
        check_bool(self.integer, "ValidationSpec", "integer", rule="true or false")


@dataclass(frozen=True)
class Recipe:
    """A whole run. Build with :func:`load_recipe` (or :func:`recipe_from_dict`).

    ``budgets`` are parsed when the recipe is built (a :class:`~mpsearch.allocation.Budgets`,
    which reads as the mapping the user wrote); messages name ``path``.
    """

    name: str
    model: str
    seed: int = 0
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    sensitivity: SensitivitySpec = field(default_factory=SensitivitySpec)
    hardware: HardwareSpec = field(default_factory=HardwareSpec)
    budgets: Mapping[str, Any] = field(default_factory=dict)  # a Budgets once built
    allocation: AllocationSpec = field(default_factory=AllocationSpec)
    finetune: FinetuneSpec | None = None
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    output_dir: str = "runs"
    path: str = "recipe"  # the file it came from (named in messages)

    def __post_init__(self) -> None:
        where = self.path
        if not isinstance(self.name, str) or not _NAME_CHARS.fullmatch(self.name):
            raise fail(where, "name", "a non-empty name of letters, digits, '_', '-' or '.'", self.name)
        if not _NAME.fullmatch(self.name):  # "..", ".hidden", "-rf": not one plain folder under output.dir
            raise fail(where, "name", "a single safe folder name (not starting with '.' or '-')", self.name)
        check_int(self.seed, where, "seed", min=0)
        if not isinstance(self.model, str) or not self.model:
            raise fail(where, "model", "a demo model name or 'package.module:function'", self.model)
        if not isinstance(self.model_kwargs, Mapping):
            raise fail(where, "model_kwargs", "a mapping of keyword -> value", self.model_kwargs)
        if not isinstance(self.budgets, Mapping):
            raise fail(where, "budgets", "a mapping of resource -> limit (120k, 50%, uniform:w4a8)", self.budgets)
        object.__setattr__(self, "budgets", Budgets.parse(self.budgets, where=f"{where}: budgets"))
        if not isinstance(self.output_dir, str) or not self.output_dir:
            raise fail(where, "output.dir", "a folder path", self.output_dir)

    @property
    def results_dir(self) -> Path:
        """``<output.dir>/<name>``."""
        return Path(self.output_dir) / self.name

    def with_output_dir(self, output_dir: str | os.PathLike[str]) -> "Recipe":
        return dataclasses.replace(self, output_dir=str(output_dir))
