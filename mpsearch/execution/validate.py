"""``validate``: does the integer program compute what the fake-quant simulation computes?

Measures, over labelled batches: accuracy of both, top-1 agreement, the distribution of the
output difference in output LSBs (units of the integer logits' scale), throughput of both, and
per activation quantizer the difference of the integer codes from the simulation's codes
(``round(x / S) + zp`` of its fake-quantized output), worst layer first.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lsb_histogram"] = dict(self.lsb_histogram)
        d["layers"] = [asdict(x) for x in self.layers]
        return d

    def __str__(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        lines = [
            f"integer vs fake-quant on {self.n_images} images ({self.device})",
            f"  accuracy        int {pct(self.accuracy_int)}   fake-quant {pct(self.accuracy_fake)}",
            f"  top-1 agreement {pct(self.top1_agreement)}",
            f"  logits |diff|   mean {self.mean_abs_lsb:.3f} LSB, max {self.max_abs_lsb:.1f} LSB, "
            f"<= 1 LSB {pct(self.within_1_lsb)} (1 LSB = {self.output_scale:.3g})",
            "  histogram       " + ", ".join(f"{k}: {v}" for k, v in self.lsb_histogram.items()),
            f"  throughput      int {self.images_per_s_int:,.0f} img/s   fake-quant {self.images_per_s_fake:,.0f} img/s",
        ]
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
                if y is None:
                    has_labels = False
                else:
                    y = y.to(device)
                    n_correct_int += int((pred_int == y).sum())
                    n_correct_fake += int((pred_fake == y).sum())
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
    return ValidationReport(
        n_images=n,
        accuracy_int=n_correct_int / n if has_labels else None,
        accuracy_fake=n_correct_fake / n if has_labels else None,
        top1_agreement=n_agree / n,
        output_scale=imodel.output.scale,
        lsb_histogram=buckets,
        mean_abs_lsb=abs_sum / max(n_elem, 1),
        max_abs_lsb=abs_max if math.isfinite(abs_max) else float("inf"),
        within_1_lsb=within / max(n_elem, 1),
        images_per_s_int=ips_int,
        images_per_s_fake=ips_fake,
        device=str(device),
        layers=tuple(layers),
    )
