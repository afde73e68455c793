"""BitPlan: the answer of a search, keyed by module name, with YAML/JSON round-trip."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from mpsearch.core.formats import (
    DEFAULT_METHOD,
    FLOAT_A_BITS,
    check_format,
    check_method,
    format_fields,
    format_key,
    parse_format_key,
)
from mpsearch.core.checks import check_number
from mpsearch.core.io import check_keys, dump_structured, read_structured
from mpsearch.core.types import check_bits
from mpsearch.errors import ConfigError, rule_error, unknown_name


@dataclass(frozen=True)
class LayerBits:
    """Bit-widths chosen for one layer: weights and the layer's input activation, and its format.

    The format fields are those of :class:`~mpsearch.core.types.Candidate` (see
    :mod:`mpsearch.core.formats`): ``group_size`` (per-group weight scales along the input
    features), ``w_zero_point`` (asymmetric weights), ``a_mode`` ("static" or
    "dynamic_per_token"); ``a_bits == 16`` is weight-only. Their defaults are today's integer
    pair, and a plan file leaves them out, so a plan of plain pairs reads and writes as before.
    ``method`` is the weight quantization method (default "rtn", left out of the file too).
    """

    w_bits: int
    a_bits: int
    group_size: int | None = None
    w_zero_point: bool = False
    a_mode: str = "static"
    method: str = DEFAULT_METHOD

    def __post_init__(self) -> None:
        check_method(self.method, "LayerBits")
        check_bits(self.w_bits, "LayerBits", "w_bits")
        check_bits(self.a_bits, "LayerBits", "a_bits")
        gran = "per_group" if self.group_size is not None else "per_channel"
        check_format("LayerBits", self.w_bits, self.a_bits, gran, self.group_size, self.w_zero_point, self.a_mode)

    @property
    def key(self) -> str:
        """``"w4a8"``, or a format key such as ``"w4a16g128z"`` or ``"w4a8+gptq"`` (equal to its candidate's key)."""
        return format_key(self.w_bits, self.a_bits, self.group_size, self.w_zero_point, self.a_mode, self.method)

    @property
    def bits_key(self) -> str:
        """The key without the method (``"w4a8"`` for ``"w4a8+gptq"``)."""
        return format_key(self.w_bits, self.a_bits, self.group_size, self.w_zero_point, self.a_mode)

    @property
    def weight_only(self) -> bool:
        """True when the layer's input activation stays float (``a_bits == 16``)."""
        return self.a_bits == FLOAT_A_BITS

    @classmethod
    def from_candidate(cls, c: Any) -> "LayerBits":
        """The bits (and format) of a :class:`~mpsearch.core.types.Candidate`."""
        return cls(c.w_bits, c.a_bits, c.group_size, c.w_zero_point, c.a_mode, getattr(c, "method", DEFAULT_METHOD))

    @classmethod
    def parse(cls, key: str, where: str = "") -> "LayerBits":
        """``"w4a8"`` -> ``LayerBits(4, 8)``; ``"w4a16g128"`` -> its format (any candidate key)."""
        f = parse_format_key(key, where)
        return cls(f["w_bits"], f["a_bits"], f["group_size"], f["w_zero_point"], f["a_mode"], f["method"])

    def to_dict(self) -> dict[str, Any]:
        """``{w_bits, a_bits}`` plus the format fields that differ from their defaults."""
        return {"w_bits": self.w_bits, "a_bits": self.a_bits, **format_fields(self)}


#: keys of one layer in a plan file (the format fields may be left out)
LAYER_KEYS = ("w_bits", "a_bits", "group_size", "w_zero_point", "a_mode", "method")


_PLAN_KEYS = ("version", "layers", "totals", "objective", "solver", "status", "optimal", "gap", "solve_time_s", "meta")


@dataclass(frozen=True)
class BitPlan:
    """Per-layer bit-widths and what they cost.

    Attributes:
        layers: module name -> chosen :class:`LayerBits` (in the model's order).
        totals: resource name -> total over the plan (e.g. ``size_bytes``, ``bops``).
        objective: total omega (expected loss increase) where known.
        solver: what produced the plan ("cbc", "highs", "optuna-tpe", "uniform", ...).
        status: solver status in words ("optimal", "time_limit", "given", ...).
        optimal: True only when the solver proved optimality.
        gap: relative optimality gap where the solver reports one.
        solve_time_s: wall time of the solve.
        meta: anything else worth keeping (budgets, seed); plain data only.
    """

    layers: Mapping[str, LayerBits]
    totals: Mapping[str, float] = field(default_factory=dict)
    objective: float | None = None
    solver: str = "given"
    status: str = "given"
    optimal: bool = False
    gap: float | None = None
    solve_time_s: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Mapping) or not self.layers:
            raise rule_error("BitPlan", "layers", "a non-empty mapping of layer name -> LayerBits", self.layers)
        for name, bits in self.layers.items():
            if not isinstance(bits, LayerBits):
                raise rule_error("BitPlan", f"layers.{name}", "a LayerBits", bits)

    # -- mapping-like access ------------------------------------------------------------
    def __getitem__(self, name: str) -> LayerBits:
        try:
            return self.layers[name]
        except KeyError:
            raise unknown_name("layer", name, self.layers, "BitPlan") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, name: object) -> bool:
        return name in self.layers

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def uniform(cls, layer_names: Iterable[str], w_bits: int, a_bits: int) -> "BitPlan":
        """Every layer at the same bit-widths (e.g. W8A8 or W4A4)."""
        names = [getattr(n, "name", n) for n in layer_names]
        bits = LayerBits(w_bits, a_bits)
        return cls(layers={n: bits for n in names}, solver="uniform", status="given",
                   meta={"uniform": bits.key})

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data keyed by module name (floats kept exactly; JSON/YAML safe)."""
        return {
            "version": 1,
            "layers": {n: b.to_dict() for n, b in self.layers.items()},
            "totals": {k: _plain_number(v) for k, v in self.totals.items()},
            "objective": _plain_number(self.objective),
            "solver": self.solver,
            "status": self.status,
            "optimal": bool(self.optimal),
            "gap": _plain_number(self.gap),
            "solve_time_s": _plain_number(self.solve_time_s),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "plan") -> "BitPlan":
        """Inverse of :meth:`to_dict`, refusing unknown keys and bad bit-widths."""
        check_keys(data, _PLAN_KEYS, where, required=("layers",))
        if data.get("version", 1) != 1:
            raise rule_error(where, "version", "1", data.get("version"))
        raw_layers = data["layers"]
        if not isinstance(raw_layers, Mapping) or not raw_layers:
            raise rule_error(where, "layers", "a non-empty mapping of layer name -> {w_bits, a_bits}", raw_layers)
        layers = {}
        for name, rec in raw_layers.items():
            check_keys(rec, LAYER_KEYS, where, f"layers.{name}", required=("w_bits", "a_bits"))
            w_bits = check_bits(rec["w_bits"], where, f"layers.{name}.w_bits")
            a_bits = check_bits(rec["a_bits"], where, f"layers.{name}.a_bits")
            try:
                layers[str(name)] = LayerBits(w_bits, a_bits, rec.get("group_size"), rec.get("w_zero_point", False),
                                              rec.get("a_mode", "static"), rec.get("method", DEFAULT_METHOD))
            except ConfigError as exc:  # name the file and the layer, then the rule
                raise ConfigError(f"{where}: layers.{name}: {exc}") from None
        totals = data.get("totals") or {}
        if not isinstance(totals, Mapping):
            raise rule_error(where, "totals", "a mapping of resource -> number", totals)
        meta = data.get("meta") or {}
        if not isinstance(meta, Mapping):
            raise rule_error(where, "meta", "a mapping", meta)

        def number(value: Any, key: str) -> float | None:  # a file's number: NaN and inf are allowed as written
            return check_number(value, where, key, finite=False, allow_none=True)

        return cls(
            layers=layers,
            totals={str(k): float(number(v, f"totals.{k}") if v is not None else math.nan) for k, v in totals.items()},
            objective=number(data.get("objective"), "objective"),
            solver=str(data.get("solver", "given")),
            status=str(data.get("status", "given")),
            optimal=bool(data.get("optimal", False)),
            gap=number(data.get("gap"), "gap"),
            solve_time_s=number(data.get("solve_time_s"), "solve_time_s"),
            meta=dict(meta),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as YAML (or JSON when the path ends in .json), atomically."""
        dump_structured(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "BitPlan":
        """Read a plan written by :meth:`save` (or by hand)."""
        data = read_structured(path)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: must hold a mapping with a 'layers' key, but got {type(data).__name__}")
        return cls.from_dict(data, where=str(path))

    def check_layers(self, valid_names: Iterable[str], where: str = "plan") -> None:
        """Raise if the plan names a layer that is not in ``valid_names``."""
        valid = list(valid_names)
        valid_set = set(valid)
        for name in self.layers:
            if name not in valid_set:
                raise unknown_name("layer", name, valid, where)


def _plain_number(v: Any) -> Any:
    """Turn numpy scalars into Python numbers; keep None; ints stay ints."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    f = float(v)
    if f.is_integer() and abs(f) < 2**53 and not isinstance(v, float):
        return int(f)
    if math.isnan(f):
        return None
    return f
