"""``validate``: does the integer program compute what the fake-quant simulation computes?

Measures, over labelled batches: accuracy of both, top-1 agreement, the distribution of the
output difference in output LSBs (units of the integer logits' scale), throughput of both, and
per activation quantizer the difference of the integer codes from the simulation's codes
(``round(x / S) + zp`` of its fake-quantized output), worst layer first.

Language models (outputs ``[B, T, V]``): agreement and accuracy are next-token top-1 (argmax
over V) at every position; with targets ``[B, T]`` the report also gives the cross-entropy of
both in bits per token and their perplexities. Every op that ran in float (the program's
declared float islands) is listed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from mpsearch.core.checks import check_iterable, check_type
from mpsearch.errors import rule_error
from mpsearch.execution.program import IntegerModel


@dataclass(frozen=True)
class LayerDiff:
    """Integer codes vs simulated codes at one activation quantizer.

    Attributes:
        name: module path of the activation quantizer in the fake-quant model.
        bits: its bit-width.
        n_elements: elements compared.
        mismatch_fraction: fraction of elements whose codes differ.
        mean_abs_lsb / max_abs_lsb: mean / max ``|int - sim|`` in codes (LSBs).
    """

    name: str
    bits: int
    n_elements: int
    mismatch_fraction: float
    mean_abs_lsb: float
    max_abs_lsb: int


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` measured (``to_dict`` for JSON; ``str`` for a table)."""

    n_images: int
    accuracy_int: float | None  # fraction correct; None without labels
    accuracy_fake: float | None
    top1_agreement: float  # fraction of images with the same argmax
    output_scale: float  # one output LSB, in logit units
    lsb_histogram: Mapping[str, int]  # |int - sim| of logits in LSBs, log2 buckets: "0", "1", "2-3", ...
    mean_abs_lsb: float
    max_abs_lsb: float
    within_1_lsb: float  # fraction of logit elements with |diff| <= 1 LSB
    images_per_s_int: float
    images_per_s_fake: float
    device: str
    layers: tuple[LayerDiff, ...] = field(default_factory=tuple)  # worst (mean |diff|) first
    float_ops: tuple[str, ...] = ()  # ops that ran in float (declared float islands); () when integer-only
    n_positions: int | None = None  # language models: sequence positions compared (B * T summed)
    bits_per_token_int: float | None = None  # language models with targets: mean cross-entropy, bits
    bits_per_token_fake: float | None = None
    perplexity_int: float | None = None
    perplexity_fake: float | None = None

    @property
    def perplexity_diff(self) -> float | None:
        """Perplexity of the executed program minus the simulation's (None without LM targets)."""
        if self.perplexity_int is None or self.perplexity_fake is None:
            return None
        return self.perplexity_int - self.perplexity_fake

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lsb_histogram"] = dict(self.lsb_histogram)
        d["layers"] = [asdict(x) for x in self.layers]
        d["float_ops"] = list(self.float_ops)
        d["perplexity_diff"] = self.perplexity_diff
        return d

    def __str__(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        what = f"{self.n_images} images" if self.n_positions is None else \
            f"{self.n_images} sequences, {self.n_positions} positions (next-token top-1)"
        lines = [
            f"integer vs fake-quant on {what} ({self.device})",
            f"  accuracy        int {pct(self.accuracy_int)}   fake-quant {pct(self.accuracy_fake)}",
            f"  top-1 agreement {pct(self.top1_agreement)}",
            f"  logits |diff|   mean {self.mean_abs_lsb:.3f} LSB, max {self.max_abs_lsb:.1f} LSB, "
            f"<= 1 LSB {pct(self.within_1_lsb)} (1 LSB = {self.output_scale:.3g})",
            "  histogram       " + ", ".join(f"{k}: {v}" for k, v in self.lsb_histogram.items()),
            f"  throughput      int {self.images_per_s_int:,.0f} img/s   fake-quant {self.images_per_s_fake:,.0f} img/s",
        ]
        if self.bits_per_token_int is not None and self.bits_per_token_fake is not None:
            lines.append(f"  bits per token  int {self.bits_per_token_int:.4f}   fake-quant {self.bits_per_token_fake:.4f}"
                         f"   (perplexity {self.perplexity_int:.3f} vs {self.perplexity_fake:.3f}, "
                         f"diff {self.perplexity_diff:+.4f})")
        if self.float_ops:
            lines.append(f"  NOT integer-only: {len(self.float_ops)} ops ran in float (declared float islands):")
            lines.extend(f"    {f}" for f in self.float_ops)
        else:
            lines.append("  integer-only: no op ran in float")
        if self.layers:
            lines.append("  per activation quantizer (worst first): name, bits, mismatch, mean |diff|, max |diff| (LSB)")
            for x in self.layers:
                lines.append(f"    {x.name:<40} {x.bits:>2}  {100 * x.mismatch_fraction:6.2f}%  "
                             f"{x.mean_abs_lsb:.4f}  {x.max_abs_lsb}")
        return "\n".join(lines)


def _bucket(v: int) -> str:
    if v <= 1:
        return str(v)
    lo = 1 << (int(v).bit_length() - 1)
    return f"{lo}-{2 * lo - 1}"


def _split(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0], (batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None)
    raise rule_error("validate", "batches[i]", "a tensor or an (inputs, labels) pair", type(batch).__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_s(fn: Any, xs: list[Tensor], device: torch.device, repeats: int) -> float:
    fn(xs[0])  # warm-up (kernel preparation, allocator)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        for x in xs:
            fn(x)
    _sync(device)
    elapsed = time.perf_counter() - start
    return repeats * sum(len(x) for x in xs) / max(elapsed, 1e-9)


def _sim_codes(aq: nn.Module, out: Tensor) -> Tensor:
    """Codes of a fake-quantized tensor: ``round(out / S) + zp`` (exact: out is S * (q - zp))."""
    scale, zp = aq.scale.to(out.device), aq.zero_point.to(out.device)
    if aq.spec.granularity == "per_channel":
        shape = [1] * out.dim()
        shape[aq.spec.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return torch.round(out / scale) + zp


def validate(imodel: IntegerModel, qmodel: nn.Module, batches: Iterable[Any], *, per_layer: bool = True,
             timing_repeats: int = 1) -> ValidationReport:
    """Compare the integer program with the fake-quant model it was built from.

    Args:
        imodel: from :func:`~mpsearch.execution.to_integer`.
        qmodel: the fake-quant model.
        batches: iterable of input tensors or ``(inputs, labels)`` pairs.
        per_layer: also compare the codes at every activation quantizer.
        timing_repeats: passes over the batches for the throughput figures (0: not timed,
            throughput reported as NaN).

    Returns:
        A :class:`ValidationReport`.
    """
    check_type(imodel, IntegerModel, "validate", "imodel", "an IntegerModel (from mpsearch.to_integer)")
    check_type(qmodel, nn.Module, "validate", "qmodel", "the fake-quant torch.nn.Module (from mpsearch.quantize)")
    check_iterable(batches, "validate", "batches", "an iterable of input tensors or (inputs, labels) pairs")
    device = imodel.device
    qmodel = qmodel.to(device).eval()
    xs: list[Tensor] = []
    n_correct_int = n_correct_fake = n_agree = n = 0
    has_labels = True
    hist: dict[int, int] = {}
    abs_sum = 0.0
    abs_max = 0.0
    within = n_elem = 0
    stats: dict[str, list[float]] = {}  # tap -> [n, n_mismatch, sum |d|, max |d|]
    n_pos = 0  # language models: positions compared
    nll = [0.0, 0.0]  # sum of cross-entropy (nats) of int / fake over the target positions
    n_targets = 0
    is_lm = False
    captured: dict[str, Tensor] = {}
    hooks = []
    if per_layer:
        for tap in imodel.taps:
            def hook(_m: nn.Module, _i: Any, out: Tensor, tap: str = tap) -> None:
                captured[tap] = out.detach()
            hooks.append(qmodel.get_submodule(tap).register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                x, y = _split(batch)
                x = x.to(device)
                xs.append(x)
                fake = qmodel(x)
                q, kept = imodel.run(*imodel.quantize_input(x), keep=imodel.taps.values() if per_layer else ())
                pred_int, pred_fake = q.argmax(-1), fake.argmax(-1)
                n_agree += int((pred_int == pred_fake).sum())
                n += len(x)
                is_lm = q.dim() == 3  # [B, T, V]: next-token logits at every position
                n_pos += pred_int.numel()
                if y is None:
                    has_labels = False
                else:
                    y = y.to(device)
                    n_correct_int += int((pred_int == y).sum())
                    n_correct_fake += int((pred_fake == y).sum())
                    if is_lm:
                        v = q.shape[-1]
                        for k, logits in enumerate((imodel.dequantize(q), fake)):
                            nll[k] += float(torch.nn.functional.cross_entropy(
                                logits.double().reshape(-1, v), y.reshape(-1).long(), reduction="sum"))
                        n_targets += y.numel()
                sim = fake.double() / imodel.output.scale + imodel.output.zero_point
                d = (q.double() - sim).abs()
                abs_sum += float(d.sum())
                abs_max = max(abs_max, float(d.max()))
                within += int((d <= 1.0).sum())
                n_elem += d.numel()
                for v, c in zip(*torch.unique(torch.round(d).long(), return_counts=True)):
                    hist[int(v)] = hist.get(int(v), 0) + int(c)
                for tap, value in imodel.taps.items():
                    if tap not in captured or value not in kept:
                        continue
                    aq = qmodel.get_submodule(tap)
                    offset = 128 if aq.spec.qmax > 127 else 0
                    diff = (kept[value].long() + offset - _sim_codes(aq, captured[tap]).long()).abs()
                    s = stats.setdefault(tap, [0, 0, 0.0, 0])
                    s[0] += diff.numel()
                    s[1] += int((diff != 0).sum())
                    s[2] += float(diff.sum())
                    s[3] = max(s[3], int(diff.max()))
    finally:
        for h in hooks:
            h.remove()
    if n == 0:
        raise rule_error("validate", "batches", "a non-empty iterable of batches", batches)
    ips_int = ips_fake = float("nan")
    if timing_repeats > 0:
        with torch.no_grad():
            ips_int = _images_per_s(lambda x: imodel.logits_int(x), xs, device, timing_repeats)
            ips_fake = _images_per_s(qmodel, xs, device, timing_repeats)
    buckets: dict[str, int] = {}
    for v in sorted(hist):
        buckets[_bucket(v)] = buckets.get(_bucket(v), 0) + hist[v]
    layers = sorted((LayerDiff(name=t, bits=int(qmodel.get_submodule(t).spec.bits), n_elements=int(s[0]),
                               mismatch_fraction=s[1] / max(s[0], 1), mean_abs_lsb=s[2] / max(s[0], 1),
                               max_abs_lsb=int(s[3])) for t, s in stats.items()),
                    key=lambda x: (-x.mean_abs_lsb, x.name))
    per = n_pos if is_lm else n  # what agreement and accuracy are fractions of
    lm_loss = is_lm and has_labels and n_targets > 0
    bits = [v / n_targets / math.log(2) for v in nll] if lm_loss else [None, None]
    return ValidationReport(
        n_images=n,
        accuracy_int=n_correct_int / per if has_labels else None,
        accuracy_fake=n_correct_fake / per if has_labels else None,
        top1_agreement=n_agree / per,
        output_scale=imodel.output.scale,
        lsb_histogram=buckets,
        mean_abs_lsb=abs_sum / max(n_elem, 1),
        max_abs_lsb=abs_max if math.isfinite(abs_max) else float("inf"),
        within_1_lsb=within / max(n_elem, 1),
        images_per_s_int=ips_int,
        images_per_s_fake=ips_fake,
        device=str(device),
        layers=tuple(layers),
        float_ops=tuple(imodel.float_ops),
        n_positions=n_pos if is_lm else None,
        bits_per_token_int=bits[0],
        bits_per_token_fake=bits[1],
        perplexity_int=2.0 ** bits[0] if bits[0] is not None else None,
        perplexity_fake=2.0 ** bits[1] if bits[1] is not None else None,
    )
