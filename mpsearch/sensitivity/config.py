"""Configs of the sensitivity methods: frozen dataclasses checked when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from mpsearch.core.checks import check_bits, check_choice, check_int, check_number, normalize_bits
from mpsearch.errors import rule_error

#: Hutchinson strategies (see ``hutchinson.py``): one HVP per probe shared by all layers,
#: one restricted HVP per layer per probe on a shared forward pass, or layer after layer
#: with its own forward/backward per probe (the HAWQ/PyHessian loop, kept as the baseline).
STRATEGIES = ("shared", "blockwise", "per_layer")

#: How weight traces are estimated: "auto" sums the curvature sites of the traced graph
#: (exact where the network is piecewise linear in a layer, sampled per example elsewhere;
#: ``ggn_trace.py``) and uses Hutchinson probes only for the layers or graphs it cannot handle;
#: "hutchinson" always probes.
TRACE_ESTIMATORS = ("auto", "hutchinson")

#: A progress callback receives plain dicts such as ``{"stage": "trace", "round": 3,
#: "n_probes": 24, "active_layers": 5, "n_layers": 12}``.
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class HessianConfig:
    """Hutchinson trace estimation, per layer, with adaptive stopping.

    Attributes:
        rel_stderr_target: a layer stops when ``stderr <= target * max(|mean|, floor)``,
            where stderr is the standard error of its per-probe trace samples.
        min_probes: probes every layer takes before it may stop (guards against a lucky
            small-sample variance).
        max_probes: cap per layer; a layer that hits it is reported as not converged.
        floor_rel: the absolute floor used instead of ``|mean|`` for layers whose mean
            trace per parameter is tiny (indefinite blocks whose samples cancel): ``floor =
            floor_rel * n_params_l * max_m(|mean_m| / n_params_m)``.
        seed: probes are drawn from generators seeded by (seed, probe index, layer index),
            so results are reproducible and independent of how probes are split.
        strategy: one of :data:`STRATEGIES`. "blockwise" is the default: measured on
            ResNet-style models, the cross-layer terms of "shared" raise the per-layer
            variance so much (30-50x more probes) that its cheaper probe never pays off;
            see docs/BENCHMARKS.md.
        probes_per_batch: probes evaluated on one forward/backward of a data batch (the
            total over all ranks when distributed).
        vmap_probes: evaluate a round's probes with one vmapped backward
            (``is_grads_batched``) instead of a loop of backward calls; falls back to the
            loop where an op has no batching rule.
        drop_converged: in the shared strategy, zero the probe of layers that have
            converged, so their cross terms stop adding noise to the others.
        control_rank: probes of the first round whose HVPs are kept (``control_rank`` x
            the layer's weights, in memory) to build a Nystrom control variate for later
            samples (see ``control.py``); 0 turns it off. Weight traces only.
        activations: also estimate each layer's input-activation Hessian trace (HAWQ-V2).
        distributed: split probes across the ranks of the initialised
            ``torch.distributed`` group and all-reduce the samples.
        no_double_backward: what to do for layers whose Hessian needs a double backward
            that some op lacks (a custom ``autograd.Function`` marked once-differentiable):
            "fisher" measures those layers' empirical Fisher trace instead, says so in one
            WARNING line naming them and the op, and records them in ``meta["fisher_layers"]``;
            "error" raises UnsupportedModelError.
        trace_estimator: one of :data:`TRACE_ESTIMATORS`. "auto" (the default) measures
            weight traces from the graph's curvature sites (``ggn_trace.py``): exact (standard
            error 0) for layers in which the network is piecewise linear, per-example samples
            elsewhere, Hutchinson probes for layers it cannot handle (tied weights, ...) and for
            graphs it cannot place (``meta["site_blocker"]`` says why), and always when
            ``distributed``. ``n_probes`` then counts output-gradient vectors backpropagated
            to the layer. Activation traces always use Hutchinson probes.
        progress: optional callback, see :data:`ProgressFn`.
    """

    rel_stderr_target: float = 0.05
    min_probes: int = 8
    max_probes: int = 500
    floor_rel: float = 1e-3
    seed: int = 0
    strategy: str = "blockwise"
    probes_per_batch: int = 8
    vmap_probes: bool = True
    drop_converged: bool = True
    control_rank: int = 16
    activations: bool = False
    distributed: bool = False
    no_double_backward: str = "fisher"
    trace_estimator: str = "hutchinson"
    progress: ProgressFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        w = "HessianConfig"
        check_choice(self.no_double_backward, w, "no_double_backward", ("fisher", "error"))
        check_choice(self.trace_estimator, w, "trace_estimator", TRACE_ESTIMATORS)
        check_number(self.rel_stderr_target, w, "rel_stderr_target", min=0, min_exclusive=True, finite=False)
        check_int(self.min_probes, w, "min_probes", min=2)
        check_int(self.max_probes, w, "max_probes", min=2)
        if self.max_probes < self.min_probes:
            raise rule_error(w, "max_probes", f">= min_probes ({self.min_probes})", self.max_probes)
        check_number(self.floor_rel, w, "floor_rel", min=0, finite=False)
        check_int(self.seed, w, "seed", min=0)
        check_choice(self.strategy, w, "strategy", STRATEGIES)
        check_int(self.probes_per_batch, w, "probes_per_batch", min=1)
        check_int(self.control_rank, w, "control_rank", min=0)


@dataclass(frozen=True)
class EigenConfig:
    """Power iteration for the top eigenvalue of each layer's Hessian block (HAWQ-V1).

    Attributes:
        max_iters: iteration cap per layer.
        rel_tol: stop when the Rayleigh quotient changes by less than ``rel_tol`` relative.
            (Power iteration is deterministic given its start, so a change test is sound
            here, unlike for the random Hutchinson mean.)
        seed: seed of the random start vectors.
        progress: optional callback.
    """

    max_iters: int = 100
    rel_tol: float = 1e-4
    seed: int = 0
    progress: ProgressFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_int(self.max_iters, "EigenConfig", "max_iters", min=1)
        check_number(self.rel_tol, "EigenConfig", "rel_tol", min=0, min_exclusive=True, finite=False)
        check_int(self.seed, "EigenConfig", "seed", min=0)


FISHER_GRANULARITIES = ("per_sample", "per_batch")


@dataclass(frozen=True)
class FisherConfig:
    """Empirical Fisher trace per layer: ``(1/N) sum_i ||grad_W loss_i||^2``.

    Attributes:
        granularity: "per_sample" (exact, via ``torch.func`` per-sample gradients, with a
            per-example loop as fallback) or "per_batch": ``(1/N) sum_b n_b^2 ||grad_W
            L_b||^2`` where ``L_b`` is the batch mean loss - the same quantity when the
            mean gradient is small, and exactly it for batches of one example.
        progress: optional callback.
    """

    granularity: str = "per_sample"
    progress: ProgressFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_choice(self.granularity, "FisherConfig", "granularity", FISHER_GRANULARITIES)


EMPIRICAL_METRICS = ("loss", "kl")


@dataclass(frozen=True)
class EmpiricalConfig:
    """Measured sensitivity: quantize one layer alone and measure the damage (ZeroQ-style).

    Attributes:
        w_bits: weight bit-widths to try; result keys are ``"w4"``.
        a_bits: if set, the layer's input is also fake-quantized (asymmetric, per-tensor,
            dynamic min-max) at these widths, giving keys ``"w4a8"``.
        metric: "loss" (increase of the mean loss) or "kl" (mean KL(p_float || p_quant) of
            the softmax outputs).
        symmetric: weight quantizer mode.
        granularity: "per_channel" (output channel) or "per_tensor".
        progress: optional callback.
    """

    w_bits: tuple[int, ...] = (2, 4, 8)
    a_bits: tuple[int, ...] | None = None
    metric: str = "loss"
    symmetric: bool = True
    granularity: str = "per_channel"
    progress: ProgressFn | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for key in ("w_bits", "a_bits"):
            value = getattr(self, key)
            if value is not None:  # the one bit-list rule; the caller's order is kept (results follow it)
                normalize_bits(value, "EmpiricalConfig", key)
                object.__setattr__(self, key, tuple(dict.fromkeys([value] if isinstance(value, int) else value)))
        check_choice(self.metric, "EmpiricalConfig", "metric", EMPIRICAL_METRICS)
        check_choice(self.granularity, "EmpiricalConfig", "granularity", ("per_channel", "per_tensor"))
