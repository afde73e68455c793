"""``validate_onnx``: does ONNX Runtime compute what the simulation (and the integer program) computes?

Top-1 agreement (per example; next-token at every position for language models ``[B, T, V]``)
and the largest logit difference, against the fake-quant model and, when given, against the
integer program's dequantized logits.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch
from torch import nn

from mpsearch.errors import rule_error
from mpsearch.execution.export.runtime import OnnxRunner


@dataclass(frozen=True)
class OnnxAgreement:
    """What :func:`validate_onnx` measured (``to_dict`` for JSON; ``str`` for a table)."""

    n_examples: int
    n_positions: int  # predictions compared (examples, or B x T for a language model)
    top1_agreement_fake: float  # fraction of predictions where ONNX Runtime's argmax is the simulation's
    max_abs_diff_fake: float  # max |logit difference|, ONNX Runtime vs simulation
    mean_abs_diff_fake: float
    accuracy_onnx: float | None
    accuracy_fake: float | None
    top1_agreement_int: float | None = None  # against the integer program (None without it)
    max_abs_diff_int: float | None = None
    qdq_fusion: bool = False  # ONNX Runtime rewrote QDQ groups into fused kernels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        lines = [f"ONNX Runtime (CPU{', QDQ fusion' if self.qdq_fusion else ''}) vs fake-quant on {self.n_examples} examples, {self.n_positions} predictions",
                 f"  top-1 agreement {pct(self.top1_agreement_fake)}   max |logit diff| {self.max_abs_diff_fake:.4g}"
                 f"   mean {self.mean_abs_diff_fake:.3g}",
                 f"  accuracy        onnx {pct(self.accuracy_onnx)}   fake-quant {pct(self.accuracy_fake)}"]
        if self.top1_agreement_int is not None:
            lines.append(f"  vs integer program: top-1 agreement {pct(self.top1_agreement_int)}   "
                         f"max |logit diff| {self.max_abs_diff_int:.4g}")
        return "\n".join(lines)


def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], (batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None)
    raise rule_error("validate_onnx", "batches[i]", "a tensor or an (inputs, labels) pair", type(batch).__name__)


def validate_onnx(model: str | os.PathLike[str] | bytes | OnnxRunner, qmodel: nn.Module, batches: Iterable[Any],
                  imodel: Any = None, threads: int = 1, qdq_fusion: bool = False) -> OnnxAgreement:
    """Run the exported model in ONNX Runtime on ``batches`` and compare it with the simulation.

    Args:
        model: the ``.onnx`` path (or bytes, or an :class:`OnnxRunner`).
        qmodel: the fake-quant model it was exported from.
        batches: input tensors or ``(inputs, labels)`` pairs.
        imodel: the integer program (:func:`~mpsearch.execution.to_integer`) to compare with too.
        threads: ONNX Runtime intra-op threads.
        qdq_fusion: let ONNX Runtime rewrite QDQ groups into its fused kernels (see
            :class:`OnnxRunner`); default off: the QDQ graph as written.
    """
    runner = model if isinstance(model, OnnxRunner) else OnnxRunner(model, threads=threads, qdq_fusion=qdq_fusion)
    qmodel = qmodel.eval()
    device = next((p.device for p in qmodel.parameters()), torch.device("cpu"))  # the model is not moved
    n = n_pos = agree = agree_int = correct_onnx = correct_fake = 0
    max_diff = max_int = sum_diff = 0.0
    n_elem = 0
    labelled = True
    with torch.no_grad():
        for batch in batches:
            x, y = _split(batch)
            x = x.cpu()
            out = runner(x).double()
            fake = qmodel(x.to(device)).cpu().double()
            pred = out.argmax(-1)
            agree += int((pred == fake.argmax(-1)).sum())
            d = (out - fake).abs()
            max_diff, sum_diff, n_elem = max(max_diff, float(d.max())), sum_diff + float(d.sum()), n_elem + d.numel()
            n += len(x)
            n_pos += pred.numel()
            if y is None:
                labelled = False
            else:
                correct_onnx += int((pred == y).sum())
                correct_fake += int((fake.argmax(-1) == y).sum())
            if imodel is not None:
                logits = imodel.dequantize(imodel.run(*imodel.quantize_input(x.to(imodel.device)))).cpu().double()
                agree_int += int((pred == logits.argmax(-1)).sum())
                max_int = max(max_int, float((out - logits).abs().max()))
    if n == 0:
        raise rule_error("validate_onnx", "batches", "a non-empty iterable of batches", batches)
    return OnnxAgreement(
        n_examples=n, n_positions=n_pos, top1_agreement_fake=agree / n_pos, max_abs_diff_fake=max_diff,
        mean_abs_diff_fake=sum_diff / max(n_elem, 1),
        accuracy_onnx=correct_onnx / n_pos if labelled else None,
        accuracy_fake=correct_fake / n_pos if labelled else None,
        top1_agreement_int=agree_int / n_pos if imodel is not None else None,
        max_abs_diff_int=max_int if imodel is not None else None, qdq_fusion=runner.qdq_fusion)
