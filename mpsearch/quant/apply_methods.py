"""Apply each plan layer's weight quantization method (``LayerBits.method``) in the fake-quant model.

:func:`mpsearch.quant.quantize` first builds every plan layer as round-to-nearest does; for a
layer whose method is not ``rtn`` it then runs the method (:mod:`mpsearch.quant.methods`) on the
FLOAT weight under the layer's weight spec, with the layer's float inputs on the calibration
batches when the method needs data, and installs the result:

* the layer's weight becomes ``weight_dq`` and its bias the method's new bias (bias
  correction); ``qlayer.weight_method`` names the method;
* **uniform** methods (stochastic, AdaRound, bias correction, GPTQ): the weight quantizer's
  ``scale`` / ``zero_point`` become the method's, so ``quantized_weight()`` equals
  ``weight_dq`` exactly and the integer executor reads the method's own integer codes, as it
  does for round-to-nearest;
* **integer codebook** (k-means with ``integer_codebook``, log2 at <= 4 bits), per channel: the
  layer runs through a lookup to integer codes: each ``bits``-bit code indexes its row's int8
  table, so the weight quantizer becomes 8-bit symmetric with the row scales
  (``qlayer.weight_codebook = "integer"``) and the integer path runs it as int8 weights (the
  8-bit kernel's latency; storage stays codes + codebook, as the cost table counts it);
* **float codebook** (other non-uniform results): the weight quantizer passes ``weight_dq``
  through (``qlayer.weight_codebook = "float"``): simulation only. :func:`check_integer_methods`
  refuses such a layer in the integer executor with an error naming the layer and the method
  (a codebook of arbitrary floats has no integer form; run it as weight-only dequantisation in
  float, or pick an integer codebook).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import torch
from torch import nn

from mpsearch.core.plan import LayerBits
from mpsearch.errors import ConfigError, UnsupportedModelError
from mpsearch.quant.methods import capture_inputs, get_method, make_method

#: calibration examples kept per layer for a data-needing method
MAX_EXAMPLES = 512


class _AsIs(nn.Module):
    """Weight 'quantizer' of a float-codebook layer: the weight already is the codebook's values."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight


def method_layers(layers: Mapping[str, LayerBits]) -> dict[str, str]:
    """Plan layer -> method, for the layers whose method is not round-to-nearest."""
    return {n: b.method for n, b in layers.items() if b.method != "rtn"}


def capture_method_inputs(root: nn.Module, layers: Mapping[str, LayerBits], batches: list[Any],
                          capture: bool = True) -> dict[str, Any]:
    """Float inputs of the layers whose method needs data (before any layer is quantized).

    ``capture=False``: only check that there are batches when a method needs them (sequential mode).
    """
    need = [n for n, m in method_layers(layers).items() if get_method(m).needs_data]
    if not need:
        return {}
    if not batches:
        raise ConfigError(f"quantize: layer {need[0]!r}: method {layers[need[0]].method!r} needs calibration "
                          f"data, so calib_batches must hold at least one batch, but it is empty")
    return capture_inputs(root, need, batches, max_examples=MAX_EXAMPLES) if capture else {}


def apply_methods(root: nn.Module, float_layers: Mapping[str, nn.Module], layers: Mapping[str, LayerBits],
                  inputs: Mapping[str, torch.Tensor] | None, batches: list[Any] | None = None) -> None:
    """Install each non-rtn layer's method result in ``root`` (see the module docstring).

    ``inputs``: each layer's float inputs (:func:`capture_method_inputs`); None: sequential, each
    data-needing layer's inputs are captured from ``root`` on ``batches`` just before it is
    quantized, so they carry the quantization of every layer before it (GPTQ's sequential mode).
    """
    for name, method in method_layers(layers).items():
        if inputs is None:
            x = capture_inputs(root, [name], batches or [], max_examples=MAX_EXAMPLES)[name] \
                if get_method(method).needs_data else None
        else:
            x = inputs.get(name)
        _install(root.get_submodule(name), float_layers[name], name, method, x)


def _install(q: nn.Module, f: nn.Module, name: str, method: str, x: torch.Tensor | None) -> None:
    """Run ``method`` on float layer ``f`` (inputs ``x``) and put its result in quantized layer ``q``."""
    wq = q.weight_quant
    res = make_method(method, where=f"quantize: layer {name!r}").quantize_weight(
        f.weight, wq.spec, calib_inputs=x, layer=f, name=name)
    with torch.no_grad():
        q.weight.data = res.weight_dq.to(q.weight.dtype).reshape(q.weight.shape).clone()
        if res.bias is not None and q.bias is not None:
            q.bias.data = res.bias.to(q.bias.dtype).clone()
        if res.is_uniform:
            wq.scale = res.scale.to(wq.scale.dtype).reshape(wq.scale.shape).clone()
            wq.zero_point = res.zero_point.to(wq.zero_point.dtype).reshape(wq.zero_point.shape).clone()
        elif res.integer_codebook and wq.spec.granularity in ("per_channel", "per_tensor"):
            wq.spec = replace(wq.spec, bits=8, symmetric=True)
            wq.scale = res.scale.float().reshape(wq.scale.shape).clone()
            wq.zero_point = torch.zeros_like(wq.zero_point)
            q.weight_codebook = "integer"
        else:
            wq.learned = _AsIs()
            q.weight_codebook = "float"
    q.weight_method = method


def check_integer_methods(qmodel: nn.Module) -> None:
    """Refuse a float-codebook layer in the integer executor, naming the layer and the method."""
    for name, m in qmodel.named_modules():
        if getattr(m, "weight_codebook", None) == "float":
            raise UnsupportedModelError(
                f"to_integer: layer {name!r}: method {m.weight_method!r} stores a float codebook, and the integer "
                f"path must have integer codes on a uniform grid or an integer codebook (lookup to int8), so it "
                f"cannot run it; keep this layer in the fake-quant model, or pick a uniform method or an integer "
                f"codebook (kmeans with integer_codebook, log2 at <= 4 bits)")
