"""Calibrator contract: watch batches of a tensor, then choose its scale and zero point.

Every calibrator:

* is built with the :class:`~mpsearch.quant.spec.QuantSpec` it calibrates for (its layout,
  i.e. granularity / axis / group size, decides what is tracked per row) and keyword options
  of its own (``percentile=99.99``, ``n_grid=100``, ...), and stores them, nothing more;
* takes batches with :meth:`Calibrator.observe` (no gradient, any number of calls);
* returns ``(scale, zero_point)`` from :meth:`Calibrator.compute`, float32 / int32 tensors of
  the spec's parameter shape, following the conventions of :mod:`mpsearch.quant.quantizer`.
  ``compute(spec)`` may be called with another spec of the same layout (other bits, symmetry
  or scale kind), so one calibration serves several bit-widths;
* raises :class:`~mpsearch.errors.ConfigError` from ``compute`` when it has seen no data.

Calibrators that need the values themselves (percentile, MSE, KL) keep a uniform random
sample of at most ``max_samples`` elements per row (seeded, so results are reproducible);
below that cap they see every value exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from mpsearch.core.checks import check_int
from mpsearch.errors import ConfigError, rule_error
from mpsearch.quant.quantizer import param_shape, to_rows
from mpsearch.quant.spec import QuantSpec


class Calibrator(ABC):
    """Base class; see the module docstring for the contract."""

    name: ClassVar[str] = ""

    def __init__(self, spec: QuantSpec) -> None:
        if not isinstance(spec, QuantSpec):
            raise rule_error(f"{type(self).__name__}", "spec", "a QuantSpec", spec)
        self.spec = spec
        self.shape: tuple[int, ...] | None = None  # parameter shape, fixed by the first batch
        self.n_batches = 0
        self.min_val: Tensor | None = None  # running per-row min / max, shape (n_rows,)
        self.max_val: Tensor | None = None

    def observe(self, x: Tensor) -> None:
        """Record one batch of the tensor being calibrated."""
        x = x.detach()
        shape = param_shape(x.shape, self.spec)
        if self.shape is not None and shape != self.shape:
            raise ConfigError(f"{type(self).__name__}: every observed batch must give scales of shape "
                              f"{self.shape}, but a batch of shape {tuple(x.shape)} gives {shape}")
        self.shape = shape
        rows = to_rows(x, self.spec).float()
        finite = torch.isfinite(rows)
        if not bool(finite.all()):
            raise ConfigError(f"{type(self).__name__}: observed values must be finite, but the batch holds "
                              f"{int((~finite).sum())} NaN/inf values")
        lo, hi = torch.aminmax(rows, dim=1)
        self.min_val = lo if self.min_val is None else torch.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else torch.maximum(self.max_val, hi)
        self.n_batches += 1
        self._observe_rows(rows)

    def _observe_rows(self, rows: Tensor) -> None:
        """Hook for subclasses that keep more than min / max (rows: (n_rows, n_elements))."""

    def compute(self, spec: QuantSpec | None = None) -> tuple[Tensor, Tensor]:
        """Scale and zero point for ``spec`` (default: the spec given at construction)."""
        spec = self.spec if spec is None else spec
        if spec.layout != self.spec.layout:
            raise ConfigError(f"{type(self).__name__}: compute(spec) must use the layout it observed "
                              f"{self.spec.layout}, but got {spec.layout}")
        if self.min_val is None or self.shape is None:
            raise ConfigError(f"{type(self).__name__}: compute() needs at least one observed batch, but got none")
        scale, zero_point = self._compute_rows(spec)
        return scale.reshape(self.shape), zero_point.reshape(self.shape)

    @abstractmethod
    def _compute_rows(self, spec: QuantSpec) -> tuple[Tensor, Tensor]:
        """Per-row (scale, zero_point), each of shape (n_rows,)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec}, n_batches={self.n_batches})"


class SampledCalibrator(Calibrator):
    """A calibrator that keeps a bounded uniform sample of each row's values."""

    def __init__(self, spec: QuantSpec, max_samples: int = 1 << 20, seed: int = 0) -> None:
        super().__init__(spec)
        check_int(max_samples, type(self).__name__, "max_samples", min=16)
        self.max_samples = max_samples
        self._generator = torch.Generator().manual_seed(seed)
        self._keep = 1.0  # fraction of each new batch kept, halved whenever the sample overflows
        self._chunks: list[Tensor] = []
        self._n_kept = 0

    def _observe_rows(self, rows: Tensor) -> None:
        chunk = self._subsample(rows, self._keep)
        self._chunks.append(chunk)
        self._n_kept += chunk.shape[1]
        while self._n_kept > self.max_samples:  # halve everything kept so far: stays uniform
            self._keep /= 2
            self._chunks = [self._subsample(c, 0.5) for c in self._chunks]
            self._n_kept = sum(c.shape[1] for c in self._chunks)

    def _subsample(self, rows: Tensor, fraction: float) -> Tensor:
        if fraction >= 1.0:
            return rows.clone()
        n = max(1, int(round(rows.shape[1] * fraction)))
        idx = torch.randperm(rows.shape[1], generator=self._generator)[:n].to(rows.device)
        return rows[:, idx]

    @property
    def samples(self) -> Tensor:
        """Kept values, (n_rows, n_kept)."""
        return torch.cat(self._chunks, dim=1)

    def __getstate__(self) -> dict[str, Any]:  # torch.Generator does not pickle / deepcopy
        state = dict(self.__dict__)
        state["_generator"] = self._generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gen = torch.Generator()
        gen.set_state(state["_generator"])
        state["_generator"] = gen
        self.__dict__.update(state)
