"""Omega and size of (bits, method) candidates from the method's ACTUAL output (issue #16).

For a candidate quantized by method ``m`` (not round-to-nearest) the cost table runs ``m`` on the
layer's weight and uses what it produced:

``omega_m = mean_trace_W * ||Q_rtn(W) - W||^2 * E_out(m) / E_out(rtn)``  (+ the activation term)

where ``E_out(q) = sum_x ||f(x; W_q, b_q) - f(x; W, b)||^2`` is the layer's output error on the
calibration inputs (its own forward: linear or conv, the method's new bias included, so bias
correction counts). This is ``||dW||^2`` weighted by the layer's input Hessian ``E[x x^T]``
(GPTQ's proxy), scaled so that round-to-nearest keeps exactly HAWQ's figure: the ratio is what
the method gains or loses on that layer. Without calibration inputs (no batches, or an
embedding, whose inputs are indices) the plain weight error is used: ``omega_m = mean_trace_W *
||W_m - W||^2``. A method that needs data and gets none is an error naming the method.

The size of a non-uniform method's row is its codes plus the codebook it actually stored
(``MethodResult.extra_bits``; :func:`mpsearch.hardware.methods.method_size_bytes`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.func import functional_call

from mpsearch.core.cost_table import CostTable
from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError
from mpsearch.quant.methods import capture_inputs, get_method, make_method

#: calibration examples kept per layer for the methods and the output errors
MAX_EXAMPLES = 256


def check_method_data(table: CostTable, has_data: bool) -> None:
    """A data-needing method without calibration batches: ConfigError naming the layer, the method and the rule."""
    if has_data:
        return
    for name, cands in zip(table.layers, table.candidates):
        for c in cands:
            if get_method(c.method).needs_data:
                raise ConfigError(f"cost_table: layer {name!r} ({c.key}): method {c.method!r} needs calibration data "
                                  f"(it replays the layer on its inputs), so calib_batches must be given, but got "
                                  f"None; give calibration batches (or distilled data) or leave {c.method!r} out "
                                  f"of methods")


def layer_inputs(model: torch.nn.Module, layers: Sequence[Layer], calib_batches: Sequence[Any] | None
                 ) -> dict[str, torch.Tensor]:
    """Float input activations of the linear / conv layers on the calibration batches (none: {})."""
    if calib_batches is None:
        return {}
    names = [lay.name for lay in layers if lay.kind != "embedding"]
    return capture_inputs(model, names, calib_batches, max_examples=MAX_EXAMPLES) if names else {}


def _output_error(module: torch.nn.Module, x: torch.Tensor, ref: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> float:
    params = {"weight": weight.to(ref.dtype)}
    if bias is not None:
        params["bias"] = bias.to(ref.dtype)
    with torch.no_grad():
        out = functional_call(module, params, (x,))
    return float(((out.double() - ref.double()) ** 2).sum())


class LayerMethods:
    """Runs methods on one layer and remembers the round-to-nearest reference (one per weight spec)."""

    def __init__(self, name: str, module: torch.nn.Module, inputs: torch.Tensor | None) -> None:
        self.name, self.module, self.inputs = name, module, inputs
        self._ref = None
        self._rtn: dict[Any, float] = {}
        self.results: dict[tuple[str, Any], Any] = {}

    def _float_out(self) -> torch.Tensor:
        if self._ref is None:
            with torch.no_grad():
                self._ref = self.module(self.inputs)
        return self._ref

    def run(self, method: str, spec: Any) -> Any:
        """The method's :class:`MethodResult` on this layer under ``spec`` (cached)."""
        key = (method, spec)
        if key not in self.results:
            m = make_method(method, where=f"cost_table: layer {self.name!r}")
            self.results[key] = m.quantize_weight(self.module.weight, spec, calib_inputs=self.inputs,
                                                  layer=self.module, name=self.name)
        return self.results[key]

    def omega_weight_error(self, method: str, spec: Any, rtn_w_err: float) -> float:
        """The ``||dW||^2`` figure to scale by the curvature (module docstring)."""
        res = self.run(method, spec)
        w = self.module.weight.detach().float()
        if self.inputs is None:
            return float(((res.weight_dq.double() - w.double()) ** 2).sum())
        if spec not in self._rtn:
            rtn = self.run("rtn", spec)
            self._rtn[spec] = _output_error(self.module, self.inputs, self._float_out(), rtn.weight_dq, None)
        base = self._rtn[spec]
        err = _output_error(self.module, self.inputs, self._float_out(), res.weight_dq, res.bias)
        if base <= 0.0:  # round-to-nearest is exact on these inputs: fall back to the weight error
            return float(((res.weight_dq.double() - w.double()) ** 2).sum())
        return rtn_w_err * err / base
