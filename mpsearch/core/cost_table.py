"""CostTable: omega and resource costs for every layer x candidate, plus ties.

Stored flat (one row per layer x candidate, rows of a layer contiguous, ``offsets`` marks
where each layer starts) so that a 10 000-layer table is a handful of numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mpsearch.core.checks import check_iterable, shown
from mpsearch.core.formats import format_fields
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError, rule_error, unknown_name

_RESERVED = ("layer", "w_bits", "a_bits", "omega", "w_granularity", "group_size", "w_zero_point", "a_mode",
             "omega_source", "method")
#: Where an omega figure came from (``sources["omega"]``): the second-order model alone, the model
#: checked against a measurement that agreed with it, or the measured loss increase itself.
OMEGA_SOURCES = ("predicted", "checked", "measured")


@dataclass(frozen=True, eq=False)
class CostTable:
    """Per layer x candidate: ``omega`` and named resources; ``ties`` of layer names.

    Attributes:
        layers: layer names in model order.
        candidates: per layer, its candidates (same order as the rows).
        offsets: int array, ``offsets[i]:offsets[i+1]`` are layer ``i``'s rows.
        omega: float array, one per row: expected loss increase.
        resources: resource name -> float array, one per row (``size_bytes``, ``bops``, ...).
        ties: groups of layer names that must take the same candidate.
        sources: resource name -> per-row string array saying where each number came
            from (e.g. "lut" / "roofline"); optional. ``sources["omega"]``, where present, says
            which omega figures were measured (one of :data:`OMEGA_SOURCES` per row; absent:
            all predicted); it round-trips through :meth:`to_records` as ``omega_source``.
    """

    layers: tuple[str, ...]
    candidates: tuple[tuple[Candidate, ...], ...]
    offsets: np.ndarray
    omega: np.ndarray
    resources: Mapping[str, np.ndarray]
    ties: tuple[tuple[str, ...], ...] = ()
    sources: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_rows = int(self.offsets[-1]) if len(self.offsets) else 0
        if len(self.offsets) != len(self.layers) + 1:
            raise rule_error("CostTable", "offsets", f"of length n_layers + 1 = {len(self.layers) + 1}", len(self.offsets))
        if len(self.omega) != n_rows:
            raise rule_error("CostTable", "omega", f"of length {n_rows} (one per row)", len(self.omega))
        for name, arr in self.resources.items():
            if len(arr) != n_rows:
                raise rule_error("CostTable", f"resources.{name}", f"of length {n_rows} (one per row)", len(arr))
        index = {n: i for i, n in enumerate(self.layers)}
        if len(index) != len(self.layers):
            dup = [n for n in self.layers if self.layers.count(n) > 1][0]
            raise rule_error("CostTable", "layers", "unique names", dup)
        object.__setattr__(self, "_index", index)
        for group in self.ties:
            for name in group:
                if name not in index:
                    raise unknown_name("layer", name, self.layers, "CostTable ties")
            keys0 = [c.key for c in self.candidates[index[group[0]]]]
            for name in group[1:]:
                keys = [c.key for c in self.candidates[index[name]]]
                if sorted(keys) != sorted(keys0):
                    raise ConfigError(
                        f"CostTable: tied layers must have the same candidates, but {group[0]!r} has {keys0} "
                        f"and {name!r} has {keys}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], ties: Iterable[Iterable[str]] | None = None,
                     where: str = "records") -> "CostTable":
        """Build a table from plain dicts ``{layer, w_bits, a_bits, omega, <resource>: value}``.

        Every record must carry the same resource names. Layers keep the order in which
        they first appear; a layer's records need not be adjacent.
        """
        by_layer: dict[str, list[tuple[Candidate, float, dict[str, float], str]]] = {}
        resource_names: tuple[str, ...] | None = None
        check_iterable(records, where, "records", "a list of records {layer, w_bits, a_bits, omega, <resource>}")
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise rule_error(where, f"[{i}]", "a mapping", rec)
            if not all(isinstance(k, str) for k in rec):  # a file's keys; sorted() below needs one type
                raise rule_error(where, f"[{i}]", "a mapping with string keys", shown(rec))
            for key in ("layer", "w_bits", "a_bits", "omega"):
                if key not in rec:
                    raise ConfigError(f"{where}: [{i}] must have key {key!r}, but it has {sorted(rec)}")
            for key in ("w_bits", "a_bits"):  # an int, or a float or text that is one ("8", 8.0)
                try:
                    int(rec[key])
                except (TypeError, ValueError, OverflowError):
                    raise rule_error(where, f"[{i}].{key}", "an integer bit-width", shown(rec[key])) from None
            res = tuple(sorted(k for k in rec if k not in _RESERVED))
            if resource_names is None:
                resource_names = res
            elif res != resource_names:
                raise ConfigError(f"{where}: [{i}] must have the same resources as the first record "
                                  f"{list(resource_names)}, but got {list(res)}")
            group_size = rec.get("group_size")
            gran = rec.get("w_granularity", "per_group" if group_size is not None else "per_channel")
            try:
                cand = Candidate(int(rec["w_bits"]), int(rec["a_bits"]), gran, group_size,
                                 rec.get("w_zero_point", False), rec.get("a_mode", "static"), rec.get("method", "rtn"))
            except ConfigError as exc:
                raise ConfigError(f"{where}: [{i}] layer {rec['layer']!r}: {exc}") from None
            omega = _finite(rec["omega"], where, f"[{i}].omega")
            values = {k: _finite(rec[k], where, f"[{i}].{k}") for k in res}
            source = rec.get("omega_source", "predicted")
            if source not in OMEGA_SOURCES:
                raise rule_error(where, f"[{i}].omega_source", f"one of {', '.join(OMEGA_SOURCES)}", source)
            rows = by_layer.setdefault(str(rec["layer"]), [])
            if any(r[0] == cand for r in rows):
                raise ConfigError(f"{where}: [{i}] layer {rec['layer']!r} must list each candidate once, "
                                  f"but {cand.key} appears twice")
            rows.append((cand, omega, values, source))
        if not by_layer:
            raise rule_error(where, "records", "non-empty", [])
        names = tuple(by_layer)
        offsets = np.zeros(len(names) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(by_layer[n]) for n in names])
        flat = [row for n in names for row in by_layer[n]]
        omega = np.array([r[1] for r in flat], dtype=np.float64)
        resources = {k: np.array([r[2][k] for r in flat], dtype=np.float64) for k in resource_names or ()}
        candidates = tuple(tuple(r[0] for r in by_layer[n]) for n in names)
        omega_src = np.array([r[3] for r in flat], dtype=object)
        # an all-predicted table has no omega sources, as before measured figures existed
        sources = {"omega": omega_src} if any(s != "predicted" for s in omega_src) else {}
        ties = [list(check_iterable(g, where, f"ties[{k}]", "a list of layer names"))
                for k, g in enumerate(check_iterable(ties or (), where, "ties", "a list of lists of layer names"))]
        return cls(layers=names, candidates=candidates, offsets=offsets, omega=omega, resources=resources,
                   ties=tuple(tuple(str(x) for x in g) for g in ties if len(g) > 1), sources=sources)

    def to_records(self) -> list[dict[str, Any]]:
        """Plain dicts, one per layer x candidate (inverse of :meth:`from_records`)."""
        out = []
        for i, name in enumerate(self.layers):
            for j, cand in enumerate(self.candidates[i]):
                row = int(self.offsets[i]) + j
                rec: dict[str, Any] = {"layer": name, "w_bits": cand.w_bits, "a_bits": cand.a_bits,
                                       **format_fields(cand), "omega": float(self.omega[row])}
                for k, arr in self.resources.items():
                    rec[k] = float(arr[row])
                if "omega" in self.sources:
                    rec["omega_source"] = str(self.sources["omega"][row])
                out.append(rec)
        return out

    # -- lookups ------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def resource_names(self) -> tuple[str, ...]:
        return tuple(self.resources)

    def index_of(self, layer: str) -> int:
        """Position of ``layer`` in :attr:`layers`."""
        try:
            return self._index[layer]  # type: ignore[attr-defined]
        except KeyError:
            raise unknown_name("layer", layer, self.layers, "CostTable") from None

    def rows_of(self, layer: str) -> range:
        """Row indices of ``layer``'s candidates."""
        i = self.index_of(layer)
        return range(int(self.offsets[i]), int(self.offsets[i + 1]))

    def row_of(self, layer: str, w_bits: int | str, a_bits: int | None = None) -> int:
        """Row index of ``layer`` at ``(w_bits, a_bits)``, or at a candidate key (``row_of(name, "w4a16g128")``).

        With a pair, the candidate whose key is the plain ``w<w>a<a>`` wins; else the first
        candidate with those bits (a layer whose candidates are formats only).
        """
        i = self.index_of(layer)
        cands = self.candidates[i]
        if isinstance(w_bits, str):
            want = Candidate.parse(w_bits, "CostTable.row_of").key
            hits = [j for j, c in enumerate(cands) if c.key == want]
        else:
            want = f"w{w_bits}a{a_bits}"
            hits = ([j for j, c in enumerate(cands) if c.key == want]
                    or [j for j, c in enumerate(cands) if c.w_bits == w_bits and c.a_bits == a_bits])
        if hits:
            return int(self.offsets[i]) + hits[0]
        keys = [c.key for c in cands]
        raise ConfigError(f"CostTable: layer {layer!r} candidate must be one of {keys}, but got {want}")

    # -- evaluating an assignment ---------------------------------------------------------
    def rows_for_plan(self, plan: BitPlan | Mapping[str, LayerBits]) -> np.ndarray:
        """Row index chosen for each layer (in table order) by a plan covering every layer."""
        layers = plan.layers if isinstance(plan, BitPlan) else plan
        missing = [n for n in self.layers if n not in layers]
        if missing:
            raise ConfigError(f"plan must give bits for every layer of the table, but it lacks {missing[:5]}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        return np.array([self.row_of(n, layers[n].key) for n in self.layers], dtype=np.int64)

    def totals(self, rows: Sequence[int] | np.ndarray) -> dict[str, float]:
        """Sum of each resource, and ``omega``, over the chosen rows (one per layer)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = {k: float(arr[rows].sum()) for k, arr in self.resources.items()}
        out["omega"] = float(self.omega[rows].sum())
        return out

    def plan_from_rows(self, rows: Sequence[int] | np.ndarray, **fields: Any) -> BitPlan:
        """Turn one chosen row per layer into a :class:`BitPlan` with totals and objective."""
        rows = np.asarray(rows, dtype=np.int64)
        layers = {}
        for i, name in enumerate(self.layers):
            j = int(rows[i]) - int(self.offsets[i])
            if not 0 <= j < len(self.candidates[i]):
                raise rule_error("CostTable.plan_from_rows", f"rows[{i}]",
                                 f"a row of layer {name!r} ({self.offsets[i]}..{self.offsets[i + 1] - 1})", int(rows[i]))
            c = self.candidates[i][j]
            layers[name] = LayerBits.from_candidate(c)
        totals = self.totals(rows)
        objective = totals.pop("omega")
        fields.setdefault("objective", objective)
        return BitPlan(layers=layers, totals=totals, **fields)

    def extremes(self, resource: str) -> tuple[float, float]:
        """Smallest and largest total of ``resource`` over all assignments (ties ignored)."""
        if resource not in self.resources:
            raise unknown_name("resource", resource, self.resources, "CostTable")
        arr = self.resources[resource]
        lo = hi = 0.0
        for i in range(self.n_layers):
            seg = arr[self.offsets[i]:self.offsets[i + 1]]
            lo += float(seg.min())
            hi += float(seg.max())
        return lo, hi


def _finite(value: Any, where: str, key: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise rule_error(where, key, "a finite number", value) from None
    if not math.isfinite(f):
        raise rule_error(where, key, "a finite number", value)
    return f
