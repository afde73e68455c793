"""The recipe's sections as frozen dataclasses, and the value rules they share."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mpsearch.allocation import DEFAULT_GAP_REL  # numpy only: pulp loads lazily
from mpsearch.errors import ConfigError

RECIPE_VERSION = 1
ALLOCATION_METHODS = ("ilp", "optuna", "rl")
DATA_SPLITS = ("train", "val", "test")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_int(v: Any, lo: int) -> bool:
    """An int (not a bool) of at least ``lo``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def is_pos(v: Any) -> bool:
    """A finite number (not a bool) above 0."""
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
