"""Op signatures: the key that ties a :class:`Layer` to a measured LUT entry.

A signature is ``(op, shape)`` where ``shape`` holds exactly

* convolutions (conv1d, conv2d, depthwise_*): ``batch, in_hw, cin, cout, kernel, stride, groups``
  with ``in_hw``, ``kernel`` and ``stride`` tuples of one int per spatial dimension;
* linear: ``batch, in_features, out_features`` where ``batch`` is the number of rows of the
  GEMM (examples x tokens for a (B, T, F) input).

Matching is exact. Padding is not part of the key: two convolutions that differ only in
padding share a LUT entry (their output sizes differ by a border of a few rows).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from mpsearch.core.checks import check_int
from mpsearch.core.types import LAYER_KINDS, Layer
from mpsearch.errors import UnsupportedModelError

CONV_KEYS = ("batch", "in_hw", "cin", "cout", "kernel", "stride", "groups")
LINEAR_KEYS = ("batch", "in_features", "out_features")

#: op kind -> number of spatial dimensions (0 for linear).
SPATIAL_DIMS = {"conv1d": 1, "depthwise_conv1d": 1, "conv2d": 2, "depthwise_conv2d": 2, "linear": 0}

SignatureKey = tuple[str, tuple[tuple[str, Any], ...]]


def shape_keys(op: str) -> tuple[str, ...]:
    """The shape keys a LUT entry of ``op`` carries."""
    return LINEAR_KEYS if op == "linear" else CONV_KEYS


def signature_key(op: str, shape: Mapping[str, Any]) -> SignatureKey:
    """Hashable key of a canonical shape (tuples for the spatial fields)."""
    return op, tuple((k, shape[k]) for k in shape_keys(op))


def n_examples(layer: Layer, batch: int | None = None) -> int:
    """Examples the latency is for: ``batch`` if given, else the layer's recorded batch."""
    if batch is not None:
        return check_int(batch, f"layer {layer.name!r}", "batch", min=1, rule="a positive integer")
    return int(layer.input_shape[0]) if layer.input_shape else 1


def layer_signature(layer: Layer, batch: int | None = None) -> tuple[str, dict[str, Any]]:
    """The ``(op, shape)`` signature of ``layer`` for ``batch`` examples (default: its own batch)."""
    if layer.kind not in SPATIAL_DIMS:
        raise UnsupportedModelError(
            f"layer {layer.name!r}: kind must be one of {', '.join(LAYER_KINDS)}, but got {layer.kind!r}")
    n = n_examples(layer, batch)
    if layer.kind == "linear":
        tokens = math.prod(layer.input_shape[1:-1]) if len(layer.input_shape) > 2 else 1
        return "linear", {"batch": n * tokens, "in_features": int(layer.weight_shape[1]),
                          "out_features": int(layer.weight_shape[0])}
    nd = SPATIAL_DIMS[layer.kind]
    groups = int(layer.groups or 1)
    cin = int(layer.in_channels or layer.input_shape[1])
    cout = int(layer.out_channels or layer.weight_shape[0])
    kernel = tuple(int(k) for k in (layer.kernel_size or layer.weight_shape[2:]))
    stride = tuple(int(s) for s in (layer.stride or (1,) * nd))
    return layer.kind, {
        "batch": n,
        "in_hw": tuple(int(d) for d in layer.input_shape[2:]),
        "cin": cin,
        "cout": cout,
        "kernel": kernel,
        "stride": stride,
        "groups": groups,
    }


def layer_from_signature(op: str, shape: Mapping[str, Any], name: str | None = None) -> Layer:
    """A :class:`Layer` with the given signature (no bias, 'same'-style output size).

    Used to probe LUT entries and, by the profiler, to build the layers it measures. The
    output size is ``ceil(in / stride)`` per spatial dimension (padding ``kernel // 2``).
    """
    name = name or f"{op}_probe"
    if op == "linear":
        rows, fin, fout = int(shape["batch"]), int(shape["in_features"]), int(shape["out_features"])
        return Layer(name=name, kind="linear", weight_shape=(fout, fin), n_params=fout * fin,
                     macs=fin * fout, input_shape=(rows, fin), output_shape=(rows, fout),
                     in_channels=fin, out_channels=fout)
    in_hw, kernel, stride = tuple(shape["in_hw"]), tuple(shape["kernel"]), tuple(shape["stride"])
    cin, cout, groups, batch = int(shape["cin"]), int(shape["cout"]), int(shape["groups"]), int(shape["batch"])
    out_hw = tuple(-(-h // s) for h, s in zip(in_hw, stride))
    weight_shape = (cout, cin // groups, *kernel)
    n_weights = math.prod(weight_shape)
    return Layer(name=name, kind=op, weight_shape=weight_shape, n_params=n_weights,
                 macs=math.prod(out_hw) * cout * (cin // groups) * math.prod(kernel),
                 input_shape=(batch, cin, *in_hw), output_shape=(batch, cout, *out_hw),
                 in_channels=cin, out_channels=cout, kernel_size=kernel, stride=stride,
                 padding=tuple(k // 2 for k in kernel), groups=groups)
