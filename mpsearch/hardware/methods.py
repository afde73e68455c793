"""Weight quantization methods as candidates: which a device runs, and what a (bits, method) pair stores.

A profile lists the methods it runs in ``capabilities.methods`` (default ``[rtn]``:
round-to-nearest only). The user (``cost_table(..., methods=[...])``, a recipe's
``candidates.methods``) chooses which of them to consider; each of a layer's bit candidates
then comes once per method (:func:`with_methods`), so the allocator picks bits and method
together.

* A method the profile does not list is an error naming the layer, the method and the rule.
* A method that cannot handle the layer's kind (GPTQ, AdaRound, bias correction and Hessian
  k-means replay a linear / conv layer on its inputs; they skip embeddings, and GPTQ / Hessian
  k-means skip grouped convolutions: one Hessian over the whole fan-in) is left out for that
  layer: the layer keeps its other methods (always round-to-nearest when listed).
* A codebook method whose ``2^bits`` clusters exceed the weights of one row (a 3x3 conv with one
  input channel, per channel, at 4 bits) is left out for that layer and width.
* 16-bit (float) weights have no method: they stay round-to-nearest's "keep in 16-bit".

Storage (:func:`method_size_bytes`): a uniform method (rtn, stochastic, adaround,
bias_correction, gptq) stores integer codes and scales exactly as round-to-nearest does, so it
costs the same. A non-uniform one (kmeans, hessian_kmeans, binary_code, log2) stores its
``bits``-bit codes plus its codebook, counted from the method's own ``extra_bits``
(``mpsearch.quant.methods``: fp16 tables, int8 tables + a scale, or binary code's ``bits``
scales per row), plus the bias. Before the method has run (the resource table, from shapes
only) the codebook is taken at its largest: ``2^bits`` fp16 entries per row (binary code:
``bits`` fp16 scales per row); :func:`mpsearch.sensitivity.cost_table` replaces that with the
bytes the method actually produced.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

from mpsearch.core.formats import DEFAULT_METHOD, WEIGHT_METHODS, check_method
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Candidate, Layer
from mpsearch.errors import ConfigError, rule_error
from mpsearch.hardware.costs import BIAS_BYTES

#: methods whose codes are not on a uniform grid (they store a codebook)
NON_UNIFORM_METHODS = ("kmeans", "hessian_kmeans", "binary_code", "log2")
#: methods that replay the layer on calibration inputs: linear and conv layers only
_DATA_KINDS = ("linear", "conv1d", "conv2d", "depthwise_conv1d", "depthwise_conv2d")
_NEEDS_LAYER = ("adaround", "bias_correction", "gptq", "hessian_kmeans")
#: methods with one Hessian over the whole fan-in: grouped (depthwise) convolutions are left out
_NEEDS_GROUPS_1 = ("gptq", "hessian_kmeans")
#: one float side value (scale, codebook entry): fp16, as the methods count it
FLOAT_BITS = 16


def parse_methods(r: Any, value: Any) -> tuple[str, ...]:
    """``capabilities.methods`` of a profile: a non-empty list of method names without repeats."""
    if not isinstance(value, list) or not value:
        raise r.fail("capabilities.methods", "a non-empty list of " + ", ".join(WEIGHT_METHODS), value)
    out = tuple(r.choice(m, f"capabilities.methods[{i}]", WEIGHT_METHODS) for i, m in enumerate(value))
    if len(set(out)) != len(out):
        raise r.fail("capabilities.methods", "a list without repeats", value)
    return out


def check_methods(methods: Sequence[str] | None, where: str = "cost_table") -> tuple[str, ...]:
    """The user's method list as distinct known names in order (None: just ``rtn``)."""
    if methods is None:
        return (DEFAULT_METHOD,)
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods:
        raise rule_error(where, "methods", "a non-empty list of " + ", ".join(WEIGHT_METHODS), methods)
    out: list[str] = []
    for m in methods:
        check_method(m, where)
        if m not in out:
            out.append(m)
    return tuple(out)


def method_runs_on(method: str, layer: Layer) -> bool:
    """True when ``method`` can quantize ``layer``'s weight (data methods: linear / conv layers;
    GPTQ and Hessian k-means: not grouped convolutions)."""
    if method in _NEEDS_GROUPS_1 and int(getattr(layer, "groups", 1)) != 1:
        return False
    return method not in _NEEDS_LAYER or layer.kind in _DATA_KINDS


def with_methods(cands: Sequence[Candidate], methods: Sequence[str], layer: Layer, profile: HardwareProfile,
                 where: str = "cost_table") -> list[Candidate]:
    """Each candidate once per method (see the module docstring), bits first then methods in the given order.

    Raises:
        ConfigError: a method the profile does not list in ``capabilities.methods``, naming the
            layer, the method and the rule.
    """
    runs = profile.capabilities.methods
    for m in methods:
        if m not in runs:
            raise ConfigError(f"{where}: layer {layer.name!r} ({layer.kind}): method must be one the profile "
                              f"{profile.name!r} runs (capabilities.methods: {', '.join(runs)}), but got {m!r}")
    out: list[Candidate] = []
    for c in cands:
        if c.w_bits >= 16:  # kept in float: no weight quantizer
            out.append(c)
            continue
        for m in methods:
            mc = replace(c, method=m)
            if method_runs_on(m, layer) and _codebook_fits(layer, mc, profile.capabilities.group_size):
                out.append(mc)
    if not out:
        raise ConfigError(f"{where}: layer {layer.name!r} ({layer.kind}): methods must include one that handles "
                          f"a {layer.kind} layer, but got {list(methods)} (add 'rtn')")
    return out


def common_to_ties(cands: dict[str, list[Candidate]], ties: Sequence[Sequence[str]]) -> dict[str, list[Candidate]]:
    """Each tie group's candidates cut to those every member takes (tied layers take one candidate).

    A method one member cannot run (GPTQ on an embedding tied to the LM head) is left out for the
    whole group; names not in ``cands`` are ignored.
    """
    out = dict(cands)
    for group in ties:
        names = [n for n in group if n in out]
        if len(names) < 2:
            continue
        common = set.intersection(*({c.key for c in out[n]} for n in names))
        for n in names:
            out[n] = [c for c in out[n] if c.key in common]
    return out


def _codebook_fits(layer: Layer, cand: Candidate, group_size: int) -> bool:
    """A codebook method needs ``2^bits`` clusters <= weights per row (else that pair is left out)."""
    if cand.method not in NON_UNIFORM_METHODS or cand.method == "binary_code":
        return True
    return 2 ** cand.w_bits <= layer.n_weights // n_rows(layer, cand, group_size)


def n_rows(layer: Layer, cand: Candidate, group_size: int) -> int:
    """Rows of the method's codebooks / scales: 1 per tensor, one per output channel, or per group."""
    if cand.w_granularity == "per_tensor":
        return 1
    out = int(layer.weight_shape[0])
    if cand.w_granularity == "per_group":
        g = cand.group_size or group_size
        return out * math.ceil(int(math.prod(layer.weight_shape[1:])) / g)
    return out


def codebook_bits(layer: Layer, cand: Candidate, group_size: int) -> int:
    """Side storage of a non-uniform method before it runs: its largest codebook (module docstring)."""
    rows = n_rows(layer, cand, group_size)
    if cand.method == "binary_code":
        return rows * cand.w_bits * FLOAT_BITS
    return rows * (2 ** cand.w_bits) * FLOAT_BITS


def method_size_bytes(layer: Layer, cand: Candidate, extra_bits: int | None, base_size: float,
                      profile: HardwareProfile) -> float:
    """Stored bytes of ``layer`` at ``cand``: ``base_size`` (round-to-nearest's) for a uniform method;
    codes + codebook (``extra_bits``, else the largest codebook) + bias for a non-uniform one."""
    if cand.method not in NON_UNIFORM_METHODS:
        return base_size
    side = codebook_bits(layer, cand, profile.capabilities.group_size) if extra_bits is None else int(extra_bits)
    n_bias = max(layer.n_params - layer.n_weights, 0)
    return math.ceil((layer.n_weights * cand.w_bits + side) / 8) + BIAS_BYTES * n_bias
