"""Candidates of a layer: the device's (w, a) pairs for its op, x the user's bit sets, + rules.

Order of the filters:

1. the pairs the device runs for the layer's op kind (``capabilities`` with ``per_op``
   overrides and the ``pairs`` whitelist);
2. the first / last layer take the profile's rule pair when it has one; a device rule wins
   over the user's bit set (the device cannot run the layer otherwise);
3. all other layers keep the pairs whose bits are in the user's ``w_bits`` / ``a_bits``;
4. with ``cost.memory.activation_bytes`` set, pairs whose working set (input + output at
   a_bits) does not fit are dropped.

With ``formats`` (LLM weight formats, :mod:`mpsearch.core.formats`), linear and embedding
layers take exactly the listed keys instead of step 3: format keys must be ones the profile
runs for the layer's kind (``capabilities.formats``) with a group size that divides the
layer's input features, and plain pair keys (``"w8a8"``) must be pairs the device runs. Other
layers (convolutions) keep the pairs of ``w_bits`` / ``a_bits``. A first/last-layer rule still
wins (the device cannot run the layer otherwise).

An empty result raises :class:`ConfigError` naming the layer, the user's bits and the device's.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from mpsearch.core.profile import FORMAT_OPS, HardwareProfile
from mpsearch.core.checks import normalize_bits
from mpsearch.core.types import Candidate, Layer
from mpsearch.errors import ConfigError
from mpsearch.hardware._check import pair_key
from mpsearch.hardware.costs import activation_bytes, check_group_divides


def _user_bits(bits: Iterable[int] | int | None, key: str) -> tuple[int, ...] | None:
    """The user's bit set as distinct widths, widest first (None: every width the device runs)."""
    return None if bits is None else normalize_bits(bits, "candidates_for", key)


def _keys(pairs: Iterable[tuple[int, int]]) -> str:
    return "[" + ", ".join(pair_key(*p) for p in pairs) + "]"


def candidates_for(layer: Layer, profile: HardwareProfile, w_bits: Iterable[int] | int | None = None,
                   a_bits: Iterable[int] | int | None = None, *, first: bool = False, last: bool = False,
                   granularity: str | None = None, batch: int | None = None,
                   formats: Sequence[str] | None = None) -> list[Candidate]:
    """The candidates of ``layer`` on ``profile``, widest first.

    Args:
        layer: the layer.
        profile: the device.
        w_bits: the user's weight bit-widths (None: all the device runs).
        a_bits: the user's activation bit-widths (None: all the device runs).
        first: the layer is the first quantized layer (``rules.first_layer`` applies).
        last: the layer is the last quantized layer (``rules.last_layer`` applies).
        granularity: weight scale granularity of every candidate; default the profile's
            first listed ``weight_granularity``.
        batch: examples per run for the activation-memory check (default: the layer's batch).
        formats: candidate keys for linear and embedding layers (``["w4a16g128", "w8a16",
            "w16a16", "w8a8t"]``); None: the pairs of ``w_bits`` / ``a_bits`` as for other layers.

    Raises:
        ConfigError: when no candidate is left, naming layer, user bits and device bits; when
            a format is one the profile cannot run, or its group size does not divide the
            layer's input features (naming the layer and the rule).
    """
    caps = profile.capabilities
    where = f"{profile.name}: layer {layer.name!r} ({layer.kind})"
    wb, ab = _user_bits(w_bits, "w_bits"), _user_bits(a_bits, "a_bits")
    gran = granularity or caps.weight_granularity[0]
    if gran not in caps.weight_granularity:
        raise ConfigError(f"{where}: granularity must be one of {', '.join(caps.weight_granularity)}, "
                          f"but got {gran!r}")
    device = caps.allowed_pairs(layer.kind)
    rule_pairs = {p for p, on in ((profile.rules.first_layer, first), (profile.rules.last_layer, last)) if on and p}
    if len(rule_pairs) > 1:
        raise ConfigError(f"{where}: the first and last layer rules must agree for a layer that is both, "
                          f"but got {_keys(sorted(rule_pairs))}")
    if rule_pairs:
        pairs = sorted(rule_pairs)
        if pairs[0] not in device:
            raise ConfigError(f"{where}: the {'first' if first else 'last'}-layer rule must be a pair the device "
                              f"runs for {layer.kind} {_keys(device)}, but got {pair_key(*pairs[0])}")
    elif formats is not None and layer.kind in FORMAT_OPS:
        return _format_candidates(layer, profile, formats, where, batch)
    else:
        pairs = [(w, a) for w, a in device if (wb is None or w in wb) and (ab is None or a in ab)]
        if not pairs:
            raise ConfigError(
                f"{where}: no candidate is left: the user's bits (w_bits={list(wb) if wb else 'any'}, "
                f"a_bits={list(ab) if ab else 'any'}) must meet the device's pairs for {layer.kind} {_keys(device)}")
    mem = profile.cost.memory
    if mem is not None and mem.activation_bytes is not None:
        need = {p: activation_bytes(layer, p[1], batch) for p in pairs}
        fits = [p for p in pairs if need[p] <= mem.activation_bytes]
        if not fits:
            raise ConfigError(
                f"{where}: activation working set must fit cost.memory.activation_bytes={mem.activation_bytes}, "
                f"but the smallest candidate ({pair_key(*min(need, key=need.get))}) needs {min(need.values())} bytes")
        pairs = fits
    return [Candidate(w, a, gran) for w, a in sorted(pairs, reverse=True)]


def _format_candidates(layer: Layer, profile: HardwareProfile, formats: Sequence[str], where: str,
                       batch: int | None) -> list[Candidate]:
    """The candidates of ``formats`` for a linear / embedding layer (see the module docstring)."""
    if isinstance(formats, str) or not formats:
        raise ConfigError(f"{where}: formats must be a non-empty list of candidate keys such as "
                          f"['w4a16g128', 'w8a16', 'w16a16'], but got {formats!r}")
    caps = profile.capabilities
    device = caps.allowed_pairs(layer.kind)
    out: list[Candidate] = []
    for key in formats:
        c = Candidate.parse(key, f"{where}: formats")
        if c.is_format:
            fmts = caps.formats
            if fmts is None or not fmts.runs(c.key, layer.kind):
                runs = (f"{', '.join(fmts.keys)} for {', '.join(fmts.ops)}" if fmts is not None
                        else "the profile lists no capabilities.formats")
                raise ConfigError(f"{where}: format must be one the profile runs ({runs}), but got {key!r}")
            check_group_divides(layer, c, profile.name)
        elif (c.w_bits, c.a_bits) not in device:
            raise ConfigError(f"{where}: format must be one the profile runs; a plain pair must be a pair the device "
                              f"runs for {layer.kind} {_keys(device)}, but got {key!r}")
        else:
            c = Candidate(c.w_bits, c.a_bits, caps.weight_granularity[0])
        if c not in out:
            out.append(c)
    mem = profile.cost.memory
    if mem is not None and mem.activation_bytes is not None:
        fits = [c for c in out if activation_bytes(layer, c.a_bits, batch) <= mem.activation_bytes]
        if not fits:
            raise ConfigError(f"{where}: activation working set must fit cost.memory.activation_bytes="
                              f"{mem.activation_bytes}, but no format in {list(formats)} does")
        out = fits
    # widest first, as for pairs: bits, then zero points, then finer groups
    return sorted(out, key=lambda c: (c.w_bits, c.a_bits, c.w_zero_point, -(c.group_size or 0), c.a_mode),
                  reverse=True)


def candidates_for_layers(layers: Sequence[Layer], profile: HardwareProfile,
                          w_bits: Iterable[int] | int | None = None, a_bits: Iterable[int] | int | None = None,
                          **kwargs) -> dict[str, list[Candidate]]:
    """:func:`candidates_for` for every layer; first / last by execution order.

    Order is ``Layer.index`` (stable, so layers with equal indices keep their list order).
    """
    order = sorted(range(len(layers)), key=lambda i: layers[i].index)
    first, last = (order[0], order[-1]) if order else (-1, -1)
    w_bits, a_bits = _user_bits(w_bits, "w_bits"), _user_bits(a_bits, "a_bits")  # once (an iterator is read once)
    return {layers[i].name: candidates_for(layers[i], profile, w_bits, a_bits, first=i == first, last=i == last,
                                           **kwargs) for i in order}
