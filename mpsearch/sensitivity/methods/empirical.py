"""Measured sensitivity: the loss (or output KL) increase with one layer alone quantized."""

from __future__ import annotations

import time
from typing import Any

import torch

from mpsearch.core.types import LayerSensitivity, Sensitivity
from mpsearch.quant.quantizer import fake_quantize_minmax, fake_quantize_weight
from mpsearch.quant.spec import activation_spec, weight_spec
from mpsearch.sensitivity.config import EmpiricalConfig
from mpsearch.sensitivity.data import batch_loss, run_model
from mpsearch.sensitivity.methods._base import Context, Method


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


class EmpiricalMethod(Method):
    """ZeroQ-style: for each layer and bit-width, quantize that layer only and measure.

    ``empirical[key]`` is the increase of the data set's mean loss (``metric="loss"``), or
    the mean over examples of ``KL(softmax(float) || softmax(quantized))`` (``"kl"``), with
    keys ``"w4"`` (weight only) or ``"w4a8"`` (weight and the layer's input, the latter
    quantized per tensor with dynamic min-max ranges). The weight quantizer is
    ``mpsearch.quant``'s (symmetric per-channel min-max by default).
    """

    name = "empirical"
    config_cls = EmpiricalConfig

    def run(self, ctx: Context, config: EmpiricalConfig) -> Sensitivity:
        t0 = time.perf_counter()
        with torch.no_grad():
            base, ref_probs = self._measure(ctx, config, None)
            layers = {}
            for l, (name, mod) in enumerate(zip(ctx.names, ctx.modules)):
                res = self._layer(ctx, config, mod, base, ref_probs)
                layers[name] = LayerSensitivity(empirical=res, n_params=mod.weight.numel())
                if config.progress is not None:
                    config.progress({"stage": "empirical", "layer": l + 1, "n_layers": len(ctx.names)})
        meta = {"metric": config.metric, "base_loss": base if config.metric == "loss" else None,
                "w_bits": list(config.w_bits), "a_bits": list(config.a_bits) if config.a_bits else None,
                "symmetric": config.symmetric, "granularity": config.granularity,
                "n_examples": ctx.data.n_examples, "seconds": time.perf_counter() - t0}
        return Sensitivity(layers=layers, method=self.name, meta=meta)

    @classmethod
    def _layer(cls, ctx: Context, config: EmpiricalConfig, mod: torch.nn.Module, base: float,
               ref_probs: list[torch.Tensor]) -> dict[str, float]:
        """Key (``w4`` / ``w4a8``) -> the figure with ``mod`` alone quantized; its weight is restored after."""
        res: dict[str, float] = {}
        saved = mod.weight.detach().clone()
        try:
            for wb in config.w_bits:
                spec = weight_spec(None, wb, granularity=config.granularity, symmetric=config.symmetric)
                mod.weight.copy_(fake_quantize_weight(saved, wb, spec))
                for ab in (config.a_bits or (None,)):
                    val = cls._measure_with_input_bits(ctx, config, mod, ab, ref_probs)
                    key = f"w{wb}" if ab is None else f"w{wb}a{ab}"
                    res[key] = val - base if config.metric == "loss" else val
        finally:
            mod.weight.copy_(saved)
        return res

    @classmethod
    def _measure_with_input_bits(cls, ctx: Context, config: EmpiricalConfig, mod: torch.nn.Module,
                                 a_bits: int | None, ref_probs: list[torch.Tensor]) -> float:
        """:meth:`_measure` with ``mod``'s input quantized to ``a_bits`` (dynamic per-tensor min-max)."""
        if a_bits is None:
            return cls._measure(ctx, config, ref_probs)[0]
        spec = activation_spec(None, a_bits)
        hook = mod.register_forward_pre_hook(lambda _m, a: (fake_quantize_minmax(a[0], spec), *a[1:]))
        try:
            return cls._measure(ctx, config, ref_probs)[0]
        finally:
            hook.remove()

    @staticmethod
    def _measure(ctx: Context, config: EmpiricalConfig, ref_probs: list[torch.Tensor] | None
                 ) -> tuple[float, list[torch.Tensor]]:
        """(loss or KL over the data set, per-batch log-probabilities)."""
        total, logps = 0.0, []
        for i, (w, batch) in enumerate(zip(ctx.data.weights, ctx.data.batches)):
            if config.metric == "loss":
                total += w * float(batch_loss(ctx.model, ctx.loss_fn, batch))
                continue
            logp = torch.log_softmax(_logits(run_model(ctx.model, batch.inputs)).double(), dim=-1)
            logps.append(logp)
            if ref_probs is not None:
                ref = ref_probs[i]
                kl = (ref.exp() * (ref - logp)).sum(-1).mean()  # mean over the batch's examples
                total += w * float(kl)
        return total, logps
