"""The ``quantize`` verb: a simulated-quantization copy of a model for a :class:`BitPlan`.

Structure of the result (what the integer executor reads):

* BatchNorm is folded first (``config.fold_bn``, eval statistics) with
  :func:`mpsearch.model.fold_batchnorm`.
* Every layer of the plan becomes a :class:`~mpsearch.quant.modules.QuantConv1d` /
  ``QuantConv2d`` / ``QuantLinear`` under the same module name, with ``w_bits``, ``a_bits``,
  ``a_mode``, ``weight_quant`` and ``input_quant_name`` (path of the :class:`ActQuant` feeding it).
* LLM formats (:mod:`mpsearch.core.formats`) apply per layer: the weight takes the format's
  spec (groups of ``group_size`` input features, a zero point per group when ``w_zero_point``,
  float scales; :func:`~mpsearch.quant.spec.format_weight_spec`); a weight-only layer
  (``a_bits == 16``) gets no input quantizer (its activations stay float); a
  ``dynamic_per_token`` layer reads an ActQuant in ``dynamic`` mode with one scale per token
  (``per_token``: per row of the ``[.., T, D]`` input). A format on a layer that is not a
  Linear / Embedding, or one the given profile does not run, is refused naming the layer.
* Weight methods (``LayerBits.method`` other than ``rtn``: GPTQ, AdaRound, k-means, ...) are
  applied after the layers are built (:mod:`mpsearch.quant.apply_methods`); rtn layers take
  exactly the path above.
* **Graph mode** (torch.fx traces the model; the result is an ``fx.GraphModule``): every
  tensor read by a quantized layer is fake-quantized once, right after the node that
  produces it, by ``act_quant.<producer node name>``; ALL readers of that tensor (other
  layers, residual adds, concats, the output) read the quantized value. The shared quantizer
  takes the largest ``a_bits`` of its quantized readers; a reader that asked for fewer bits
  re-quantizes through ``act_quant.<producer>__<layer name with dots as _>``.
* **Per-layer mode** (fx cannot trace): each quantized layer quantizes its own input with
  its child ``<layer>.input_quant``; other readers of that tensor (skip paths) see floats.

:func:`quant_mode` says which mode a quantized model uses ("graph" / "per_layer"); the
``qmodel.quant_mode`` attribute says the same but does not survive ``copy.deepcopy`` of a
GraphModule.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import fx, nn

from mpsearch.core.formats import is_format
from mpsearch.core.plan import BitPlan, LayerBits
from mpsearch.core.profile import HardwareProfile
from mpsearch.errors import ConfigError, MpsearchError, UnsupportedModelError, rule_error, unknown_name
from mpsearch.model import canonical_view, fold_batchnorm
from mpsearch.model.kinds import layer_spec
from mpsearch.quant.apply_methods import apply_methods, capture_method_inputs, method_layers
from mpsearch.quant.config import QuantizeConfig
from mpsearch.quant.graph_mode import ACT_QUANT_DICT, check_called, insert_graph_quantizers, trace
from mpsearch.quant.modules import INDEX_INPUT_TYPES, QUANT_LAYER_TYPES, QUANT_MODULES, ActQuant, quant_class_for
from mpsearch.quant.spec import format_weight_spec

log = logging.getLogger("mpsearch")


def quantizable_layer_names(model: nn.Module) -> list[str]:
    """Names of the modules :func:`quantize` can quantize (Conv1d, Conv2d, Linear, Embedding), in order.

    Names are those of the canonical model (:func:`mpsearch.model.canonical_view`).
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"quantizable_layer_names: model must be a torch.nn.Module, but got "
                                    f"{type(model).__qualname__}")
    return [n for n, m in canonical_view(model).named_modules() if n and quant_class_for(m) is not None]


def quant_mode(model: nn.Module) -> str:
    """ "graph", "per_layer", or "none" (no quantized layer), read from the model's structure."""
    layers = [m for m in model.modules() if isinstance(m, QUANT_LAYER_TYPES)]
    if not layers:
        return "none"
    if isinstance(model, fx.GraphModule) and isinstance(getattr(model, ACT_QUANT_DICT, None), nn.ModuleDict):
        return "graph"
    return "per_layer" if any(getattr(m, "input_quant", None) is not None for m in layers) else "none"


def _plan_layers(plan: Any) -> dict[str, LayerBits]:
    if isinstance(plan, BitPlan):
        return dict(plan.layers)
    if isinstance(plan, Mapping) and plan and all(isinstance(v, LayerBits) for v in plan.values()):
        return dict(plan)
    raise rule_error("quantize", "plan", "a BitPlan (or a non-empty mapping of layer name -> LayerBits)", plan)


def _batch_input(batch: Any, index: int) -> tuple[Any, ...]:
    """Positional model inputs of one calibration batch: a tensor, or the first element."""
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
        if isinstance(first, torch.Tensor):
            return (first,)
        if isinstance(first, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in first):
            return tuple(first)
    raise rule_error("quantize", f"calib_batches[{index}]",
                     "a tensor or an (inputs, labels) tuple/list whose first element is a tensor",
                     type(batch).__name__)


def _take_batches(calib_batches: Iterable[Any] | None, cap: int) -> list[tuple[Any, ...]]:
    if calib_batches is None:
        return []
    if isinstance(calib_batches, torch.Tensor):  # one batch given bare
        return [(calib_batches,)]
    try:
        iterator = iter(calib_batches)
    except TypeError:
        raise rule_error("quantize", "calib_batches", "an iterable of tensors or (inputs, labels) batches",
                         type(calib_batches).__name__) from None
    out = []
    for i, batch in enumerate(iterator):
        if i >= cap:
            break
        out.append(_batch_input(batch, i))
    return out


def quantize(model: nn.Module, plan: BitPlan | Mapping[str, LayerBits], calib_batches: Iterable[Any] | None,
             profile: HardwareProfile | None = None, config: QuantizeConfig | None = None) -> nn.Module:
    """A simulated-quantization (fake-quant) copy of ``model`` with the bits of ``plan``.

    Args:
        model: the float model; it is not modified.
        plan: layer name -> (w_bits, a_bits); layers not in the plan stay float.
        calib_batches: iterable of input tensors or ``(inputs, labels)`` tuples/lists whose
            first element is the input tensor (or a tuple of input tensors for a model with
            several inputs); at most ``config.n_calib_batches`` are used (the first also serves
            as example input for BN folding). May be None or empty only with
            ``activation_range="dynamic"``.
        profile: hardware profile whose capabilities give symmetric/asymmetric, granularity
            and scale kind where ``config`` leaves them None.
        config: options (:class:`QuantizeConfig`); default min-max calibration.

    Returns:
        The quantized copy in eval mode (an ``fx.GraphModule`` in graph mode), with attribute
        ``quant_mode`` ("graph" or "per_layer").

    Raises:
        UnsupportedModelError: ``model`` is not an ``nn.Module``.
        UnknownNameError: the plan names a module that does not exist or is not quantizable.
        ConfigError: bad config, a bad or empty ``calib_batches``, or a quantizer that saw no data.
    """
    config = _checked_config(model, profile, config)
    # Plan names are those of the canonical model (discover's), e.g. ``attn.in_proj`` for an
    # nn.MultiheadAttention ``attn``; a canonical model is not copied here (the copy comes below).
    model = canonical_view(model)
    layers = _plan_layers(plan)
    _check_plan_names(model, layers)
    batches = _take_batches(calib_batches, config.n_calib_batches)
    static = config.activation_range == "static"
    if static and not batches:
        raise ConfigError("quantize: calib_batches must hold at least one batch for static activation ranges, "
                          "but it is empty (pass data, or use QuantizeConfig(activation_range='dynamic'))")
    root, mode, why = _copy_and_trace(model, config, batches)
    if mode == "graph":
        check_called(root, layers)  # type: ignore[arg-type]
    # weight methods other than round-to-nearest (apply_methods.py): float layers and inputs first
    float_layers = {n: root.get_submodule(n) for n in method_layers(layers)}
    sequential = config.method_inputs == "quantized"
    method_inputs = capture_method_inputs(root, layers, batches, not sequential) if float_layers else {}
    _swap_layers(root, layers, config, profile)
    if float_layers:
        apply_methods(root, float_layers, layers, None if sequential else method_inputs, batches)

    def make_aq(bits: LayerBits, source: str) -> ActQuant:
        spec = config.activation_spec(profile, bits.a_bits)
        mode = "observe" if static else "dynamic"
        if bits.a_mode == "dynamic_per_token":  # one scale per token, from its own range at run time
            spec, mode = replace(spec, granularity="per_token", axis=0, scale_kind="float"), "dynamic"
        return ActQuant(spec, config.activation_calibrator, mode, dict(config.activation_calibrator_options),
                        source=source)

    if mode == "graph":
        names = insert_graph_quantizers(root, layers, make_aq)  # type: ignore[arg-type]
        log.info("quantize: graph mode (torch.fx): %d activation quantizers, each on a tensor where it is "
                 "produced; every reader (skip paths included) sees the quantized value", len(names))
    else:
        names = _insert_layer_quantizers(root, layers, make_aq)
        log.warning("quantize: per-layer mode (torch.fx could not trace the model: %s): each quantized layer "
                    "quantizes its own input, so skip paths and other readers see float values", why)
    if static:
        _calibrate(root, names, batches)
    root.quant_mode = mode
    root.eval()
    return root


def _checked_config(model: Any, profile: Any, config: Any) -> QuantizeConfig:
    """The config (default when None), after checking the types of model, config and profile."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModelError(f"quantize: model must be a torch.nn.Module, but got "
                                    f"{type(model).__module__}.{type(model).__qualname__}")
    config = QuantizeConfig() if config is None else config
    if not isinstance(config, QuantizeConfig):
        raise rule_error("quantize", "config", "a QuantizeConfig or None", config)
    if profile is not None and not isinstance(profile, HardwareProfile):
        raise rule_error("quantize", "profile", "a HardwareProfile or None (see mpsearch.load_profile)", profile)
    return config


def _check_plan_names(model: nn.Module, layers: Mapping[str, LayerBits]) -> None:
    valid = quantizable_layer_names(model)
    for name in layers:
        if name not in valid:
            raise unknown_name("quantizable layer (Conv1d, Conv2d, Linear, Embedding)", name, valid, "quantize: plan")
    _check_weight_ties(model, valid, layers)


def _check_weight_ties(model: nn.Module, valid: list[str], layers: Mapping[str, LayerBits]) -> None:
    """Layers holding one weight Parameter (a tied embedding and LM head) are one tensor: the plan
    must give them one format, or leave them all float."""
    by_weight: dict[int, list[str]] = {}
    for name in valid:
        by_weight.setdefault(id(model.get_submodule(name).weight), []).append(name)
    for group in (g for g in by_weight.values() if len(g) > 1):
        keys = {n: layers[n].key if n in layers else "float (not in the plan)" for n in group}
        if len(set(keys.values())) > 1:
            got = ", ".join(f"{n}={k}" for n, k in keys.items())
            raise ConfigError(f"quantize: plan: layers {', '.join(map(repr, group))} share one weight tensor, so "
                              f"they must take the same format, but got {got}")


def _copy_and_trace(model: nn.Module, config: QuantizeConfig, batches: list[tuple[Any, ...]]
                    ) -> tuple[nn.Module, str, str]:
    """The (BN-folded) eval-mode copy, traced when fx can: ``(root, mode, why fx failed)``."""
    if config.fold_bn:
        qmodel = fold_batchnorm(model, example_inputs=batches[0] if batches else None)
    else:
        qmodel = copy.deepcopy(model)
    qmodel.eval()
    try:
        return trace(qmodel, batches[0] if batches else None), "graph", ""
    except Exception as exc:  # fx raises many types for untraceable code
        return qmodel, "per_layer", f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def _swap_layers(root: nn.Module, layers: Mapping[str, LayerBits], config: QuantizeConfig,
                 profile: HardwareProfile | None) -> None:
    """Replace every plan layer by its quantized counterpart (weights calibrated now)."""
    for name, bits in layers.items():
        float_layer = root.get_submodule(name)
        base = next(c for c in QUANT_MODULES if isinstance(float_layer, c))
        if type(float_layer).forward is not base.forward:
            log.warning("quantize: %s is a %s with its own forward; its quantized replacement runs the plain "
                        "%s op", name, type(float_layer).__qualname__, base.__name__)
        try:
            if bits.bits_key != f"w{bits.w_bits}a{bits.a_bits}":  # an LLM format: its own group-wise spec
                _check_format(name, float_layer, bits, profile)
                w_spec = format_weight_spec(profile.capabilities if profile is not None else None, bits,
                                            config.weight_restricted_range)
            else:
                _check_pair(name, float_layer, bits, profile)
                w_spec = config.weight_spec(profile, bits.w_bits)
            qlayer = quant_class_for(float_layer).from_float(  # type: ignore[union-attr]
                float_layer, bits.w_bits, bits.a_bits, w_spec, config.weight_calibrator,
                dict(config.weight_calibrator_options))
        except MpsearchError as exc:
            raise type(exc)(f"quantize: layer {name!r}: {exc}") from None
        qlayer.a_mode = bits.a_mode  # "static" or "dynamic_per_token"; a_bits 16 = weight-only
        root.set_submodule(name, qlayer)


def _check_format(name: str, layer: nn.Module, bits: LayerBits, profile: HardwareProfile | None) -> None:
    """An LLM format needs a linear / embedding layer and, with a profile, one that runs it."""
    kind = "embedding" if isinstance(layer, nn.Embedding) else "linear" if isinstance(layer, nn.Linear) else None
    if kind is None:
        raise ConfigError(f"quantize: layer {name!r} ({type(layer).__name__}) must be a Linear or Embedding to take "
                          f"an LLM format, but got {bits.key!r}")
    fmts = profile.capabilities.formats if profile is not None else None
    if profile is not None and (fmts is None or not fmts.runs(bits.bits_key, kind)):  # the method: check_plan_runs
        runs = f"{', '.join(fmts.keys)} for {', '.join(fmts.ops)}" if fmts is not None else "it lists none"
        raise ConfigError(f"quantize: layer {name!r} ({kind}) must take a format the profile {profile.name!r} runs "
                          f"({runs}), but got {bits.key!r}")


def _check_pair(name: str, layer: nn.Module, bits: LayerBits, profile: HardwareProfile | None) -> None:
    """With a profile, a plain pair must be one the device runs for the layer's op (the per-op
    pairs of ``capabilities``; the placement rules need the layer order: hardware.plans), and
    ``w16a16`` (keep in 16 bits) a format it lists."""
    if profile is None:
        return
    if is_format(bits.a_bits, bits.group_size, bits.w_zero_point, bits.a_mode):
        _check_format(name, layer, bits, profile)
        return
    kind = layer_spec(layer).kind
    pairs = profile.capabilities.allowed_pairs(kind)
    if (bits.w_bits, bits.a_bits) not in pairs:
        raise ConfigError(f"the bits must be a pair the profile {profile.name!r} runs for {kind} "
                          f"({', '.join(f'w{w}a{a}' for w, a in pairs)}), but got {bits.key!r}")


def _insert_layer_quantizers(root: nn.Module, layers: Mapping[str, LayerBits],
                             make_aq: Callable[[LayerBits, str], ActQuant]) -> list[str]:
    """Per-layer mode: each quantized layer gets its own ``input_quant``."""
    names = []
    for name in layers:
        layer = root.get_submodule(name)
        if isinstance(layer, INDEX_INPUT_TYPES) or layers[name].weight_only:
            continue  # an embedding reads integer indices; a weight-only layer reads floats
        layer.input_quant = make_aq(layers[name], "")
        layer.input_quant.consumers.append(name)
        layer.input_quant_name = f"{name}.input_quant"
        names.append(layer.input_quant_name)
    return names


def _calibrate(root: nn.Module, names: list[str], batches: list[tuple[Any, ...]]) -> None:
    """Run the calibration batches with every quantizer observing, then freeze them."""
    with torch.no_grad():
        for inputs in batches:
            root(*inputs)
    for name in names:
        aq = root.get_submodule(name)
        if aq.mode == "dynamic":
            continue  # per-token quantizers take their range from each input
        if aq.calibrator is None or aq.calibrator.n_batches == 0:
            raise ConfigError(f"quantize: activation quantizer {name!r} (input of {aq.consumers}) must see data "
                              "during calibration, but the calibration batches never reached it")
        aq.freeze()
