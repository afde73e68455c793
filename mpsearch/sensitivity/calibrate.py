"""Measured omega where the second-order model breaks (issue #21).

Omega is a second-order Taylor term: it holds near the float weights and underprices large
perturbations such as 2-bit rounding. :func:`calibrate_omega` checks it against the real
thing: for a layer x candidate, the increase of the data set's mean loss with that layer
alone quantized as the candidate quantizes it (the machinery of ``method="empirical"``).

* Only a bounded number of evaluations (one pass over the batches each) is spent, on the
  candidates the ILP could plausibly pick at low sizes: weight widths up to ``max_w_bits``,
  the lowest widths of every layer first.
* Where the measured and the predicted figures disagree by more than ``factor`` (and by
  more than ``min_diff`` in loss units, below which both are noise), the measured value
  replaces the prediction. Agreeing figures keep the prediction.
* ``sources["omega"]`` of the returned table says, per row, "predicted" (not measured),
  "checked" (measured, agreed) or "measured" (the measured value is used).

A (bits, method) row (``Candidate.method`` not ``rtn``, issue #16) is measured with the METHOD's
weights: the layer's weight (and bias, for bias correction) become what the method produces on
the float weight (:func:`mpsearch.quant.methods.make_method`, as ``quantize`` installs it), with
the layer's float inputs on the calibration batches when the method needs data. A method that
looks better layer by layer but costs more in the real loss thus gets its measured figure.

Layers that share one weight tensor (a tied embedding and head) are measured once, with the
shared tensor quantized, and the figure is split between them in proportion to their predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np
import torch

from mpsearch.core.checks import check_int, check_number
from mpsearch.core.cost_table import CostTable
from mpsearch.core.profile import HardwareProfile
from mpsearch.model import canonical_view
from mpsearch.quant.methods import capture_inputs, get_method, make_method
from mpsearch.quant.quantizer import fake_quantize_minmax, fake_quantize_weight
from mpsearch.quant.spec import activation_spec, format_weight_spec, weight_spec
from mpsearch.sensitivity.config import EmpiricalConfig
from mpsearch.sensitivity.data import Data, LossFn
from mpsearch.sensitivity.methods._base import Context
from mpsearch.sensitivity.methods.empirical import EmpiricalMethod


@dataclass(frozen=True)
class CalibrationConfig:
    """How much measuring :func:`calibrate_omega` does.

    Attributes:
        factor: measured and predicted omega disagree when their ratio is above this or below
            its inverse; the measured value is then used.
        max_evaluations: at most this many layer x candidate measurements (each one pass over
            the batches).
        max_w_bits: candidates with wider weights are not measured (the quadratic model holds).
        min_diff: disagreements smaller than this, in loss units, are noise and keep the prediction.
    """

    factor: float = 2.0
    max_evaluations: int = 64
    max_w_bits: int = 4
    min_diff: float = 1e-3

    def __post_init__(self) -> None:
        check_number(self.factor, "CalibrationConfig", "factor", min=1)
        check_int(self.max_evaluations, "CalibrationConfig", "max_evaluations", min=0)
        check_int(self.max_w_bits, "CalibrationConfig", "max_w_bits", min=1)
        check_number(self.min_diff, "CalibrationConfig", "min_diff", min=0)


def _plan_order(table: CostTable, config: CalibrationConfig, groups: list[list[int]]) -> list[tuple[int, int]]:
    """``(group, candidate position)`` to measure: rank 0 (lowest width) of every group, then rank 1, ..."""
    ranked = []
    for g, members in enumerate(groups):
        cands = table.candidates[members[0]]
        keep = sorted((c.w_bits, j) for j, c in enumerate(cands) if c.w_bits <= config.max_w_bits)
        ranked.append([j for _, j in keep])
    order = [(g, r[k]) for k in range(max((len(r) for r in ranked), default=0)) for g, r in enumerate(ranked) if k < len(r)]
    return order[: config.max_evaluations]


def _weight_groups(table: CostTable, modules: dict[str, torch.nn.Module]) -> list[list[int]]:
    """Layer indices grouped by the weight tensor they hold (tied weights share a group)."""
    by_weight: dict[int, list[int]] = {}
    for i, name in enumerate(table.layers):
        by_weight.setdefault(id(modules[name].weight), []).append(i)
    return list(by_weight.values())


def _method_inputs(model: torch.nn.Module, table: CostTable, plan: list[tuple[int, int]], groups: list[list[int]],
                   calib_batches: list[Any]) -> dict[str, torch.Tensor]:
    """Float inputs of the layers whose planned rows use a data-needing method (none: {})."""
    need = sorted({table.layers[groups[g][0]] for g, j in plan
                   if get_method(table.candidates[groups[g][0]][j].method).needs_data})
    return capture_inputs(model, need, calib_batches, max_examples=MAX_EXAMPLES) if need else {}


def _quantized_weight(cand: Any, spec: Any, saved: torch.Tensor, mod: torch.nn.Module, name: str,
                      inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight (and new bias, or None) the candidate's method puts in the layer."""
    if cand.method == "rtn":
        return fake_quantize_weight(saved, spec.bits, spec), None
    res = make_method(cand.method, where=f"calibrate_omega: layer {name!r}").quantize_weight(
        saved, spec, calib_inputs=inputs.get(name), layer=mod, name=name)
    bias = res.bias if res.bias is not None and getattr(mod, "bias", None) is not None else None
    return res.weight_dq.to(saved.dtype).reshape(saved.shape), bias


#: calibration examples kept per layer for a data-needing method (as ``quantize`` keeps)
MAX_EXAMPLES = 512


def calibrate_omega(model: torch.nn.Module, table: CostTable, loss_fn: LossFn, batches: Iterable[Any],
                    profile: HardwareProfile, config: CalibrationConfig | None = None, *,
                    calib_batches: Iterable[Any] | None = None) -> CostTable:
    """``table`` with omega measured where the second-order prediction is off by more than ``config.factor``.

    Args:
        model: the float model the table was built from (left unchanged).
        table: from :func:`~mpsearch.sensitivity.cost_table`.
        loss_fn: ``loss_fn(outputs, targets)``, the mean loss of a batch.
        batches: ``(inputs, targets)`` pairs the loss is measured on.
        profile: the profile whose quantizers the table's candidates use.
        config: limits and thresholds (:class:`CalibrationConfig`).
        calib_batches: ``(inputs, targets)`` pairs whose float layer inputs the data-needing
            methods (GPTQ, ...) of method rows run on; None: ``batches``. Give the batches the
            cost table and ``quantize`` calibrate on, so the measured weights are the ones used.

    Returns:
        A new table: omega replaced where measured values disagree, and ``sources["omega"]``.
    """
    config = config or CalibrationConfig()
    batches = list(batches)
    model = canonical_view(model)
    device = next(model.parameters()).device
    modules = dict(model.named_modules())
    ctx = Context(model=model, loss_fn=loss_fn, data=Data(batches, device, where="calibrate_omega"),
                  names=list(table.layers), modules=[modules[n] for n in table.layers], comm=None)  # type: ignore[arg-type]
    emp = EmpiricalConfig(metric="loss")
    omega = np.array(table.omega, dtype=np.float64)
    sources = np.array(table.sources.get("omega", ["predicted"] * table.n_rows), dtype=object)
    groups = _weight_groups(table, modules)
    caps = profile.capabilities
    plan = _plan_order(table, config, groups)
    inputs = _method_inputs(model, table, plan, groups, batches if calib_batches is None else list(calib_batches))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            base = EmpiricalMethod._measure(ctx, emp, None)[0]
            for g, j in plan:
                members = groups[g]
                cand = table.candidates[members[0]][j]
                mod = modules[table.layers[members[0]]]
                spec = (format_weight_spec(caps, cand) if cand.is_format
                        else weight_spec(caps, cand.w_bits, granularity=cand.w_granularity))
                saved = mod.weight.detach().clone()
                saved_bias = mod.bias.detach().clone() if getattr(mod, "bias", None) is not None else None
                new_w, new_bias = _quantized_weight(cand, spec, saved, mod, table.layers[members[0]], inputs)
                hooks = []
                if not cand.weight_only and cand.a_mode == "static":  # the layer's input too, as empirical does
                    a_spec = activation_spec(caps, cand.a_bits)
                    hooks = [modules[table.layers[i]].register_forward_pre_hook(
                        lambda _m, a, s=a_spec: (fake_quantize_minmax(a[0], s), *a[1:])) for i in members]
                try:
                    mod.weight.copy_(new_w)
                    if new_bias is not None:  # bias correction's new bias counts too
                        mod.bias.copy_(new_bias.to(mod.bias.dtype))
                    measured = max(EmpiricalMethod._measure(ctx, emp, None)[0] - base, 0.0)
                finally:
                    mod.weight.copy_(saved)
                    if saved_bias is not None:
                        mod.bias.copy_(saved_bias)
                    for h in hooks:
                        h.remove()
                rows = [int(table.offsets[i]) + _position(table, i, cand.key) for i in members]
                predicted = float(sum(omega[r] for r in rows))
                ratio_off = (measured > config.factor * predicted or predicted > config.factor * measured)
                if ratio_off and abs(measured - predicted) > config.min_diff:
                    for r in rows:  # a shared tensor's figure, split as predicted (equally when 0)
                        share = omega[r] / predicted if predicted > 0 else 1.0 / len(rows)
                        omega[r] = measured * share
                        sources[r] = "measured"
                else:
                    for r in rows:
                        sources[r] = "checked"
    finally:
        model.train(was_training)
    return replace(table, omega=omega, sources={**table.sources, "omega": sources})


def _position(table: CostTable, i: int, key: str) -> int:
    return next(j for j, c in enumerate(table.candidates[i]) if c.key == key)


def weight_error_table(model: torch.nn.Module, table: CostTable, profile: HardwareProfile) -> CostTable:
    """``table`` with omega = ``||Q(W) - W||^2`` (per-layer weight MSE x parameters): the greedy baseline's proxy."""
    from mpsearch.quant.quantizer import weight_quantization_error

    model = canonical_view(model)
    modules = dict(model.named_modules())
    omega = np.zeros(table.n_rows)
    for i, name in enumerate(table.layers):
        w = modules[name].weight
        for j, cand in enumerate(table.candidates[i]):
            spec = (format_weight_spec(profile.capabilities, cand) if cand.is_format
                    else weight_spec(profile.capabilities, cand.w_bits, granularity=cand.w_granularity))
            omega[int(table.offsets[i]) + j] = weight_quantization_error(w, spec.bits, spec)
    return replace(table, omega=omega, sources={k: v for k, v in table.sources.items() if k != "omega"})
