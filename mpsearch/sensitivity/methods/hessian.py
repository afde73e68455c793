"""Per-layer Hessian traces by Hutchinson's method (HAWQ-V2), optionally activation traces."""

from __future__ import annotations

import math
from typing import Any

from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.sensitivity.config import HessianConfig
from mpsearch.errors import UnsupportedModelError
from mpsearch.sensitivity.double_backward import find_custom_ops, unsupported_error
from mpsearch.sensitivity.ggn_trace import site_traces
from mpsearch.sensitivity.fallback import layers_without_double_backward, sub_context, with_fisher
from mpsearch.sensitivity.hutchinson import estimate_traces
from mpsearch.sensitivity.methods._base import Context, Method
from mpsearch.sensitivity.rounds import DoubleBackwardFailure, ProbeSetup
from mpsearch.sensitivity.targets import ActivationTarget, WeightTarget


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class HessianMethod(Method):
    """Weight-Hessian trace of every layer with its standard error (and activation traces)."""

    name = "hessian"
    config_cls = HessianConfig

    def run(self, ctx: Context, config: HessianConfig) -> Sensitivity:
        try:
            return self._traces(ctx, config)
        except UnsupportedModelError as exc:
            if config.no_double_backward == "error":
                raise
            error = exc
        # Some layers have no second derivative: Hessian traces for the others, Fisher for them.
        failed = layers_without_double_backward(ctx)
        if not failed or config.activations:
            # nothing to blame on single layers, or activation traces (no Fisher stands in for them)
            raise error
        rest = [n for n in ctx.names if n not in failed]
        hessian = self._traces(sub_context(ctx, rest), config) if rest else None
        return with_fisher(ctx, hessian, failed)

    def _traces(self, ctx: Context, config: HessianConfig) -> Sensitivity:
        custom = find_custom_ops(ctx.model, ctx.loss_fn, ctx.data)
        strict = not custom  # a custom Function may have a non-differentiable backward
        names = list(ctx.names)
        site, blocker = None, None
        if config.trace_estimator == "auto" and not config.distributed:
            try:
                site = site_traces(ctx, config)
            except (RuntimeError, NotImplementedError) as exc:  # e.g. a site op without a double backward
                blocker = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        blocker = site.blocker if site is not None else blocker
        if site is not None and (site.blocker or not site.mean):
            blocker = site.blocker or "no layer the site method handles"
            site = None
        probe = [i for i in range(len(names)) if site is None or i not in site.mean]
        try:
            wt = WeightTarget(ctx.model, ctx.loss_fn, ctx.data, ctx.modules, config.seed)
            w_rec: dict[int, tuple[float, float, int, bool]] = {}
            w_count: dict[str, Any] = {"seconds": 0.0, "hvp_calls": 0, "rounds": 0}
            if probe:
                sub = sub_context(ctx, [names[i] for i in probe])
                swt = WeightTarget(ctx.model, ctx.loss_fn, ctx.data, sub.modules, config.seed)
                w_stats, w_ok, w_count = estimate_traces(self._setup(sub, swt, config, strict), config, "trace")
                w_rec = {i: (st.mean, st.stderr, st.n, ok) for i, st, ok in zip(probe, w_stats, w_ok)}
            if site is not None:
                w_rec.update({i: (site.mean[i], site.stderr[i], site.n_probes[i], site.converged[i]) for i in site.mean})
            a_stats = a_ok = a_count = at = None
            if config.activations:
                at = ActivationTarget(ctx.model, ctx.loss_fn, ctx.data, ctx.modules, names, config.seed)
                a_stats, a_ok, a_count = estimate_traces(self._setup(ctx, at, config, strict), config,
                                                         "activation_trace")
        except DoubleBackwardFailure as exc:
            raise unsupported_error(ctx.model, ctx.loss_fn, ctx.data, self.name, str(exc), exc.layer) from exc
        layers = {}
        for i, name in enumerate(names):
            mean, se, n_probes, _ = w_rec[i]
            rec: dict[str, Any] = {"trace": mean, "trace_stderr": _finite(se), "n_probes": n_probes,
                                   "n_params": wt.n_elements[i]}
            if a_stats is not None and at is not None:
                rec.update(activation_trace=a_stats[i].mean, activation_trace_stderr=_finite(a_stats[i].stderr),
                           activation_numel=at.n_elements[i])
            layers[name] = LayerSensitivity(**rec)
        meta: dict[str, Any] = {
            "strategy": config.strategy, "rel_stderr_target": config.rel_stderr_target,
            "min_probes": config.min_probes, "max_probes": config.max_probes, "seed": config.seed,
            "probes_per_batch": config.probes_per_batch, "vmap_probes": config.vmap_probes,
            "n_examples": ctx.data.n_examples, "n_batches": len(ctx.data),
            "batch_weighting": "examples (n_b / N)", "world_size": ctx.comm.world,
            "converged": {n: w_rec[i][3] for i, n in enumerate(names)},
            "seconds": w_count["seconds"], "hvp_calls": w_count["hvp_calls"], "rounds": w_count["rounds"],
            "trace_estimator": config.trace_estimator,
        }
        if config.trace_estimator == "auto":
            meta["site_layers"] = [] if site is None else [names[i] for i in sorted(site.mean)]
            meta["probed_layers"] = {names[i]: (site.fallback.get(i, "") if site is not None else "") for i in probe}
            if site is not None:
                meta["seconds"] += site.counters.get("seconds", 0.0)
            if config.distributed:
                meta["site_blocker"] = "distributed runs use Hutchinson probes"
            elif site is None:
                meta["site_blocker"] = blocker
        if a_ok is not None and a_count is not None:
            meta["activation_converged"] = {n: ok for n, ok in zip(names, a_ok)}
            meta["activation_seconds"] = a_count["seconds"]
            meta["activation_trace_scale"] = "per example"
        return Sensitivity(layers=layers, method=self.name, meta=meta)

    @staticmethod
    def _setup(ctx: Context, target: Any, config: HessianConfig, strict: bool) -> ProbeSetup:
        return ProbeSetup(target, ctx.data, ctx.comm, list(ctx.names), vmap=config.vmap_probes,
                          no_graph_is_zero=strict)
