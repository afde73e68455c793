"""The ``cost_table`` verb: omega per layer x candidate, plus the hardware resources.

``omega = mean_trace_W * ||Q_w(W) - W||^2 + mean_trace_A * E_x ||Q_a(x) - x||^2`` (HAWQ-V2/V3):
``mean_trace_W`` is the weight-Hessian trace over the weight's elements, ``Q_w`` the profile's
weight quantizer (mode, granularity of the candidate, scale kind); ``mean_trace_A`` the
per-example activation-Hessian trace over one example's input elements and the expectation
is over calibration examples, with one static per-tensor min-max range per layer taken over
the whole calibration set (the profile's activation mode and scale kind). The activation
term is left out (0) when the sensitivity has no activation traces or no calibration
batches are given.

LLM formats (:mod:`mpsearch.core.formats`) use the format's actual quantized weight: groups of
``group_size`` input features, a zero point per group when ``w_zero_point``, float scales
(:func:`mpsearch.quant.spec.format_weight_spec`, the spec ``quantize`` applies). A weight-only
candidate (``a_bits == 16``) has no activation term; a per-token one uses ``E_x ||Q_tok(x) -
x||^2`` with each token's own range (dynamic, as deployed).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mpsearch.core.checks import check_items, check_type
from mpsearch.core.cost_table import CostTable
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Layer, Sensitivity
from mpsearch.errors import ConfigError, rule_error
from mpsearch.model import canonical_view
from mpsearch.quant.quantizer import fake_quantize, fake_quantize_minmax, qparams, weight_quantization_error
from mpsearch.quant.spec import activation_spec, format_weight_spec, weight_spec
from mpsearch.hardware.methods import method_size_bytes
from mpsearch.sensitivity.data import Data, run_model
from mpsearch.sensitivity.method_omega import LayerMethods, check_method_data, layer_inputs

#: which per-parameter curvature scales ||dW||^2, in order of preference for "auto"
CURVATURES = ("trace", "fisher", "eigenvalue")


def _curvature(rec: Any, which: str) -> tuple[str, float] | None:
    names = CURVATURES if which == "auto" else (which,)
    for name in names:
        value = getattr(rec, name)
        if value is not None:
            # traces are spread over the elements (mean trace); an eigenvalue is already a
            # per-direction curvature (HAWQ-V1 uses it unscaled)
            return name, float(value) / (rec.n_params if name != "eigenvalue" and rec.n_params else 1)
    return None


def activation_errors(model: torch.nn.Module, layers: Sequence[Layer], calib_batches: Iterable[Any],
                      a_bits: Sequence[int], profile: HardwareProfile | None,
                      token_bits: Sequence[int] = ()) -> dict[str, dict[Any, float]]:
    """``E_x ||Q_a(x) - x||^2`` per example, for each layer input and activation bit-width.

    Two passes: per-tensor min/max of each layer's input over all batches (a static range,
    as deployed), then the mean per-example squared error with that range. For each of
    ``token_bits`` the error of dynamic per-token quantization is added under the key
    ``(bits, "dynamic_per_token")``.
    """
    device = next(model.parameters()).device
    data = Data(calib_batches, device, where="cost_table")
    modules = dict(model.named_modules())
    caps = profile.capabilities if profile is not None else None
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    err: dict[str, dict[Any, float]] = {lay.name: {b: 0.0 for b in a_bits} for lay in layers}
    for lay in layers:
        err[lay.name].update({(b, "dynamic_per_token"): 0.0 for b in token_bits})

    def ranges(name: str):
        def pre(_m: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach()
            lo[name] = min(lo.get(name, 0.0), float(x.min()))
            hi[name] = max(hi.get(name, 0.0), float(x.max()))
        return pre

    def errors(name: str):
        def pre(_m: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach()
            for b in a_bits:
                d = _fake_quant_activation(x, b, lo[name], hi[name], caps).double() - x.double()
                err[name][b] += float((d * d).sum())
            for b in token_bits:
                d = fake_quantize_minmax(x, _token_spec(caps, b)).double() - x.double()
                err[name][(b, "dynamic_per_token")] += float((d * d).sum())
        return pre

    was_training = model.training
    model.eval()
    try:
        for make in (ranges, errors):
            hooks = [modules[lay.name].register_forward_pre_hook(make(lay.name)) for lay in layers]
            try:
                with torch.no_grad():
                    for batch in data.batches:
                        run_model(model, batch.inputs)
            finally:
                for h in hooks:
                    h.remove()
    finally:
        model.train(was_training)
    return {n: {b: e / data.n_examples for b, e in per.items()} for n, per in err.items()}


def _token_spec(caps: Any, bits: int) -> Any:
    """The per-token activation spec ``quantize`` uses (float scales, one per row of the last dim)."""
    return replace(activation_spec(caps, bits), granularity="per_token", axis=0, scale_kind="float")


def _fake_quant_activation(x: torch.Tensor, bits: int, lo: float, hi: float, caps: Any) -> torch.Tensor:
    spec = activation_spec(caps, bits)
    scale, zp = qparams(torch.tensor(lo), torch.tensor(hi), spec)
    return fake_quantize(x, scale.to(x.device), zp.to(x.device), spec)


def _measured(empirical: Any, cand: Any, name: str) -> float:
    """Omega of ``cand`` from ``method="empirical"``'s keys (``w4a8``, else ``w4``; 16-bit weights: 0).

    The measured figure is the loss increase with the layer alone quantized by the method's own
    weight quantizer (its ``granularity``), used as it is for every candidate with those bits.
    """
    for key in (f"w{cand.w_bits}a{cand.a_bits}", f"w{cand.w_bits}"):
        if key in empirical:
            return max(float(empirical[key]), 0.0)  # a measured decrease is noise, not a gain
    if cand.w_bits >= 16:
        return 0.0  # kept in 16-bit: nothing measured, nothing lost
    raise ConfigError(f"cost_table: empirical sensitivity of layer {name!r} must measure w_bits {cand.w_bits} "
                      f"(candidate {cand.key}), but it has {sorted(empirical)} (fix: EmpiricalConfig(w_bits=...) "
                      f"or sensitivity.settings.w_bits listing every candidate weight width)")


def cost_table(model: torch.nn.Module, layers: Sequence[Layer], sens: Sensitivity, profile: HardwareProfile | str,
               w_bits: Sequence[int] | None = (2, 4, 8), a_bits: Sequence[int] | None = (8,), *,
               calib_batches: Iterable[Any] | None = None, granularity: str | None = None,
               curvature: str = "auto", ties: Sequence[Sequence[str]] | None = None,
               batch: int | None = None, formats: Sequence[str] | None = None,
               methods: Sequence[str] | None = None) -> CostTable:
    """Omega and resources for every layer x candidate the profile allows.

    Args:
        model: the float model (weights give ``||Q(W) - W||^2``; inputs for activations).
        layers: from ``mpsearch.discover`` (shapes are needed for the costs).
        sens: from :func:`analyze`; must cover every layer.
        profile: a :class:`HardwareProfile`, or a shipped name / path.
        w_bits, a_bits: the user's bit-widths (None: all the device runs).
        calib_batches: ``(inputs, targets)`` pairs for the activation term.
        granularity: weight granularity of the candidates (default: the profile's first).
        curvature: "auto" (trace, else Fisher, else eigenvalue, else the measured loss
            increases of ``method="empirical"``), "trace", "fisher" or "eigenvalue": which
            sensitivity figure scales ``||Q(W) - W||^2``.
        ties: groups of layers that must take one candidate; None means the groups of
            layers reading the same input tensor (``mpsearch.model.input_ties``: they share
            one activation quantizer); pass ``[]`` for none.
        batch: examples per run for latency (default: the layers' recorded batch).
        formats: candidate keys for linear and embedding layers, e.g. ``["w4a16g128",
            "w4a16g128z", "w8a16", "w8a8t", "w16a16"]`` (LLM formats the profile lists in
            ``capabilities.formats``, or plain pairs); None: ``w_bits`` x ``a_bits`` for every layer.
        methods: weight quantization methods to pair with every bit candidate, e.g. ``["rtn",
            "gptq", "kmeans"]`` (the profile must list them in ``capabilities.methods``); None:
            round-to-nearest only. Omega and size of a method's rows come from its actual output
            (:mod:`mpsearch.sensitivity.method_omega`); data-needing methods need ``calib_batches``.

    Returns:
        A :class:`CostTable` with resources ``size_bytes``, ``bops``, ``latency_ms`` (+
        ``energy_uj`` where the profile models energy) and ``sources["latency_ms"]``.
    """
    from mpsearch.hardware import load_profile, resource_table

    check_type(model, torch.nn.Module, "cost_table", "model", "a torch.nn.Module")
    check_items(layers, Layer, "cost_table", "layers", "a list of Layer (from mpsearch.discover)",
                "a Layer (from mpsearch.discover)")
    check_type(sens, Sensitivity, "cost_table", "sens", "a Sensitivity (from mpsearch.analyze)")
    check_type(profile, (HardwareProfile, str), "cost_table", "profile", "a HardwareProfile or a profile name / path")

    if curvature != "auto" and curvature not in CURVATURES:
        raise rule_error("cost_table", "curvature", f"one of auto, {', '.join(CURVATURES)}", curvature)
    if not isinstance(profile, HardwareProfile):
        profile = load_profile(profile)
    layers = list(layers)
    if not layers:
        raise rule_error("cost_table", "layers", "non-empty", layers)
    missing = [lay.name for lay in layers if lay.name not in sens.layers]
    if missing:
        raise ConfigError(f"cost_table: sens must cover every layer, but it lacks {missing[:5]}")
    table = resource_table(layers, profile, w_bits, a_bits, granularity=granularity, batch=batch, ties=ties,
                           where="cost_table", formats=formats, methods=methods)
    use_methods = any(c.method != "rtn" for cs in table.candidates for c in cs)
    if use_methods:  # the methods and the activation term both read the batches
        check_method_data(table, calib_batches is not None)
        calib_batches = None if calib_batches is None else list(calib_batches)
    model = canonical_view(model)  # layer names are the canonical model's (discover's)
    modules = dict(model.named_modules())
    all_a = sorted({c.a_bits for cs in table.candidates for c in cs if not c.weight_only and c.a_mode == "static"})
    token_a = sorted({c.a_bits for cs in table.candidates for c in cs if c.a_mode == "dynamic_per_token"})
    use_act = calib_batches is not None and any(sens[lay.name].activation_trace is not None for lay in layers)
    use_act = use_act and bool(all_a or token_a)  # weight-only candidates have no activation term
    act_err = activation_errors(model, layers, calib_batches, all_a, profile, token_a) if use_act else {}
    omega = np.zeros(table.n_rows)
    inputs = layer_inputs(model, layers, calib_batches) if use_methods else {}
    sizes = np.array(table.resources["size_bytes"], dtype=np.float64)
    by_name = {lay.name: lay for lay in layers}
    order = [lay.name for lay in sorted(layers, key=lambda lay: lay.index)]
    tied_later = {n for k, n in enumerate(order) if set(by_name[n].shares_weight_with) & set(order[:k])}
    for i, name in enumerate(table.layers):  # rows follow the given layer order
        rec = sens[name]
        curv = _curvature(rec, curvature)
        if curv is None and rec.empirical and curvature == "auto":  # method="empirical": measured figures
            for j, cand in enumerate(table.candidates[i]):
                omega[int(table.offsets[i]) + j] = _measured(rec.empirical, cand, name)
            continue
        if curv is None:
            raise ConfigError(f"cost_table: sensitivity of layer {name!r} must have a {curvature} figure, "
                              f"but it has none (method {sens.method!r})")
        weight = modules[name].weight
        act_curv = (rec.activation_trace / rec.activation_numel
                    if use_act and rec.activation_trace is not None and rec.activation_numel else 0.0)
        w_err_cache: dict[Any, float] = {}
        runner = LayerMethods(name, modules[name], inputs.get(name)) if use_methods else None
        for j, cand in enumerate(table.candidates[i]):
            if cand.is_format:  # the format's own quantized weight (groups, zero points, float scales)
                spec = format_weight_spec(profile.capabilities, cand)
            else:
                spec = weight_spec(profile.capabilities, cand.w_bits, granularity=cand.w_granularity)
            if spec not in w_err_cache:
                w_err_cache[spec] = weight_quantization_error(weight, spec.bits, spec)
            w_err = w_err_cache[spec]
            if cand.method != "rtn":  # the method's actual output (method_omega.py)
                w_err = runner.omega_weight_error(cand.method, spec, w_err)
                row = int(table.offsets[i]) + j
                if name not in tied_later:  # a tied weight is stored (and costed) by its first layer
                    extra = runner.run(cand.method, spec).extra_bits
                    sizes[row] = method_size_bytes(by_name[name], cand, extra, sizes[row], profile)
            a_key = cand.a_bits if cand.a_mode == "static" else (cand.a_bits, cand.a_mode)
            a_err = 0.0 if cand.weight_only else act_err.get(name, {}).get(a_key, 0.0)
            value = curv[1] * w_err + act_curv * a_err
            if not math.isfinite(value):
                raise rule_error("cost_table", f"omega of layer {name!r} at {cand.key}", "a finite number", value)
            omega[int(table.offsets[i]) + j] = value
    if use_methods:
        table = replace(table, resources={**table.resources, "size_bytes": sizes})
    return replace(table, omega=omega)  # the resource table plus omega
