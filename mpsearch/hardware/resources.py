"""The resource side of a cost table: what every layer x candidate costs on a profile.

Sizes, BOPs, latencies (and energy) depend only on the layers' shapes and the profile, not on
the sensitivity, so the pipeline builds this table right after ``discover`` to check budgets
before any heavy work, and ``mpsearch.sensitivity.cost_table`` is this table plus omega.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from mpsearch.core.cost_table import CostTable
from mpsearch.core.formats import format_fields
from mpsearch.core.profile import HardwareProfile
from mpsearch.core.types import Layer
from mpsearch.hardware.candidates import candidates_for_layers
from mpsearch.hardware.costs import bias_bytes, layer_costs
from mpsearch.hardware.methods import check_methods, common_to_ties, method_size_bytes, with_methods


def resource_table(layers: Sequence[Layer], profile: HardwareProfile, w_bits: Sequence[int] | None = None,
                   a_bits: Sequence[int] | None = None, *, granularity: str | None = None, batch: int | None = None,
                   ties: Sequence[Sequence[str]] | None = None, where: str = "resource_table",
                   formats: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> CostTable:
    """Resources of every layer x candidate the profile allows, with omega 0 (no sensitivity yet).

    Args:
        layers: from ``mpsearch.discover``; table rows follow their order.
        profile: the device.
        w_bits, a_bits: the user's bit-widths (None: all the device runs).
        granularity: weight granularity of the candidates (default: the profile's first).
        batch: examples per run, for latency and the activation-memory check (default: the
            layers' recorded batch).
        ties: groups of layers that must take one candidate; None: the groups of layers that
            read the same input (:func:`mpsearch.model.input_ties`); ``[]`` for none.
        where: what a malformed record's message names.
        formats: candidate keys for linear and embedding layers (LLM formats such as
            ``"w4a16g128"``; see :func:`mpsearch.hardware.candidates_for`).
        methods: weight quantization methods to consider (None: ``["rtn"]``); each bit
            candidate comes once per method the layer takes (:mod:`mpsearch.hardware.methods`:
            the profile must list them; a non-uniform method costs its codes plus its codebook,
            taken at its largest here; latency and BOPs are those of the same bits).

    A weight tied to an earlier layer (``Layer.shares_weight_with``: an embedding and its tied
    head) is stored once: the first layer holding it counts the weight, scales and zero points,
    the later ones only their bias (tied layers take one candidate, so this is exact).

    Returns:
        A :class:`CostTable` with resources ``size_bytes``, ``bops``, ``latency_ms`` (+
        ``energy_uj`` where the profile models energy) and ``sources["latency_ms"]``.
    """
    from mpsearch.model import input_ties  # lazily: importing hardware/ stays light (no torch)

    layers = list(layers)
    cands = candidates_for_layers(layers, profile, w_bits, a_bits, granularity=granularity, batch=batch,
                                  formats=formats)
    methods = check_methods(methods, where)
    cands = {lay.name: with_methods(cands[lay.name], methods, lay, profile, where) for lay in layers}
    if ties is None:
        ties = [tuple(g) for g in input_ties(layers)]
    cands = common_to_ties(cands, ties)  # a tied embedding takes no GPTQ: its head then takes none either
    records, lat_sources = [], {}
    seen: set[str] = set()
    for lay in layers:
        stored_before = any(other in seen for other in lay.shares_weight_with)
        seen.add(lay.name)
        for cand in cands[lay.name]:
            base = replace(cand, method="rtn")  # stored and run as its bits (a codebook: see below)
            cost = layer_costs(lay, base, profile, batch)
            if cand.method != "rtn":
                cost = replace(cost, size_bytes=method_size_bytes(lay, cand, None, cost.size_bytes, profile))
            if stored_before:  # the tied weight is counted by the first layer that holds it
                cost = replace(cost, size_bytes=bias_bytes(lay, cand, profile))
            records.append({"layer": lay.name, "w_bits": cand.w_bits, "a_bits": cand.a_bits,
                            "w_granularity": cand.w_granularity, **format_fields(cand), "omega": 0.0,
                            **cost.resources()})
            lat_sources[(lay.name, cand.key)] = cost.latency_source
    table = CostTable.from_records(records, ties=ties, where=where)
    src = np.array([lat_sources[(name, c.key)] for i, name in enumerate(table.layers)
                    for c in table.candidates[i]], dtype=object)
    return replace(table, sources={"latency_ms": src})
