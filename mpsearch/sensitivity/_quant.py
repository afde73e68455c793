"""Quantization errors for omega and the empirical method.

Uses ``mpsearch.quant`` (the project's quantizers, with the profile's mode, granularity and
scale kind) when it is installed; otherwise a plain min-max uniform quantizer with the same
conventions, so sensitivity works on its own.
"""

from __future__ import annotations

from typing import Any

import torch


def _local_fake_quant(x: torch.Tensor, bits: int, symmetric: bool, per_channel: bool, axis: int = 0) -> torch.Tensor:
    # min-max scales; symmetric: signed codes [-2^(b-1), 2^(b-1)-1] with S = max|x| / (2^(b-1) - 1)
    # asymmetric: S = (max - min) / (2^b - 1), zero point so that min maps to code 0.
    dims = [d for d in range(x.dim()) if d != axis] if per_channel else list(range(x.dim()))
    if symmetric:
        amax = x.abs().amax(dim=dims, keepdim=True) if dims else x.abs()
        scale = (amax / (2 ** (bits - 1) - 1)).clamp_min(1e-12)
        q = torch.clamp(torch.round(x / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return q * scale
    lo = x.amin(dim=dims, keepdim=True).clamp_max(0.0) if dims else x.clamp_max(0.0)
    hi = x.amax(dim=dims, keepdim=True).clamp_min(0.0) if dims else x.clamp_min(0.0)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp_min(1e-12)
    zp = torch.round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zp, 0, 2 ** bits - 1)
    return (q - zp) * scale


def weight_spec_for(bits: int, caps: Any = None, granularity: str | None = None, symmetric: bool | None = None) -> Any:
    """A ``QuantSpec`` for a weight when ``mpsearch.quant`` exists, else a plain tuple."""
    try:
        from mpsearch.quant.spec import weight_spec
    except ImportError:
        sym = True if symmetric is None else symmetric
        return ("local", bits, sym, (granularity or "per_channel") != "per_tensor")
    return weight_spec(caps, bits, granularity=granularity, symmetric=symmetric)


def quantize_weight(w: torch.Tensor, spec: Any) -> torch.Tensor:
    """``Q_b(W)`` (dequantized) for a spec from :func:`weight_spec_for`."""
    with torch.no_grad():
        if isinstance(spec, tuple) and spec and spec[0] == "local":
            _, bits, sym, per_channel = spec
            return _local_fake_quant(w, bits, sym, per_channel, axis=0)
        from mpsearch.quant.quantizer import fake_quantize_weight

        return fake_quantize_weight(w, spec.bits, spec)


def weight_error(w: torch.Tensor, spec: Any) -> float:
    """``||Q_b(W) - W||^2``, sum of squares over the weight."""
    with torch.no_grad():
        d = quantize_weight(w, spec).double() - w.double()
        return float((d * d).sum())


def quantize_activation(x: torch.Tensor, bits: int, caps: Any = None) -> torch.Tensor:
    """Per-tensor dynamic min-max fake quantization of an activation (asymmetric by default)."""
    with torch.no_grad():
        try:
            from mpsearch.quant.quantizer import fake_quantize, minmax, qparams
            from mpsearch.quant.spec import activation_spec
        except ImportError:
            return _local_fake_quant(x, bits, symmetric=False, per_channel=False)
        spec = activation_spec(caps, bits)
        lo, hi = minmax(x, spec)
        scale, zp = qparams(lo, hi, spec)
        return fake_quantize(x, scale.to(x.device), zp.to(x.device), spec)
