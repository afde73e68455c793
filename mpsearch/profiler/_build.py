"""Turning measured latencies into a :class:`HardwareProfile`: capabilities, LUT, fitted roofline."""

from __future__ import annotations

import os
import re
import platform
from collections import defaultdict
from dataclasses import replace
from typing import Mapping, Sequence

import torch

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, LatencyStat, LutEntry
from mpsearch.core.types import VALID_BITS, Candidate
from mpsearch.errors import ConfigError
from mpsearch.profiler._timing import pool_stats
from mpsearch.hardware._check import pair_key, parse_pair_key
from mpsearch.hardware.costs import roofline_work
from mpsearch.hardware.fit import RooflineSample, fit_roofline
from mpsearch.hardware.signature import SignatureKey, layer_from_signature, signature_key

#: what the integer executor runs (mpsearch.execution): any width 2..8 stored in int8.
EXECUTOR_BITS = tuple(b for b in VALID_BITS if 2 <= b <= 8)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device, threads: int | None) -> str:
    """One line naming the device, the torch version and the threads used."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{_cpu_name()} ({platform.machine()}, {os.cpu_count()} logical cores)"
    return f"{what}; torch {torch.__version__}; {threads or torch.get_num_threads()} intra-op thread(s)"


def executor_capabilities() -> Capabilities:
    """What the integer executor runs: w, a in 2..8, symmetric per-channel weights, dyadic."""
    return Capabilities(weight_bits=EXECUTOR_BITS, activation_bits=EXECUTOR_BITS, pairs=None,
                        weight_mode="symmetric", weight_granularity=("per_channel",),
                        activation_mode="asymmetric", scale="dyadic", integer_only=True)


def build_profile(measured: Mapping[SignatureKey, Mapping[str, Sequence[LatencyStat]]], name: str,
                  description: str, notes: str, machine: str,
                  base_profile: HardwareProfile | None = None) -> HardwareProfile:
    """A measured profile from stats per signature and pair key, pooled with ``base_profile``'s LUT.

    The roofline is fitted to every (signature, pair) of the resulting LUT, as one w8a8 rate
    (the executor's kernels do not depend on the bit-width; other pairs fall back to it).
    """
    pooled: dict[SignatureKey, dict[str, list[LatencyStat]]] = defaultdict(lambda: defaultdict(list))
    order: list[SignatureKey] = []
    for e in (base_profile.cost.lut if base_profile is not None else ()):
        key = signature_key(e.op, e.shape)
        order.append(key)
        for k, s in e.latency_ms.items():
            pooled[key][k].append(s)
    for key, by_pair in measured.items():
        if key not in pooled:
            order.append(key)
        for k, stats in by_pair.items():
            pooled[key][k].extend(stats)
    lut, samples = [], []
    for key in order:
        op, shape_items = key
        shape = dict(shape_items)
        pairs = sorted((k for k in pooled[key] if _is_pair(k)), key=parse_pair_key, reverse=True)
        stats = {k: pool_stats(pooled[key][k]) for k in [*pairs, *(k for k in pooled[key] if not _is_pair(k))]}
        lut.append(LutEntry(op=op, shape=shape, latency_ms=stats))
        probe = layer_from_signature(op, shape)
        for k, s in ((k, s) for k, s in stats.items() if _is_pair(k)):  # formats are not in the integer fit
            # The executor runs every width with the same int8 kernels, so one rate (w8a8, which
            # every pair falls back to) is fitted to all pairs' samples: a separate rate per pair
            # would only fit noise and could promise a speed-up that does not exist. Bytes are
            # counted at w8a8 too (codes are stored in int8).
            ops, nbytes = roofline_work(probe, Candidate(8, 8))
            samples.append(RooflineSample(pair_key(8, 8), ops, nbytes, s.mean))
    if not any(pair_key(8, 8) in pooled[key] for key in order):
        raise ConfigError("profile: the measurements must include w8a8 (the widest pair, which every other pair "
                          "falls back to in the roofline), but they do not")
    roofline = fit_roofline(samples)
    caps = executor_capabilities()
    if base_profile is not None and base_profile.capabilities.formats is not None:  # keep its measured formats
        caps = replace(caps, formats=base_profile.capabilities.formats)
        base_rl = base_profile.cost.roofline
        if base_rl is not None and base_rl.float_ops_per_s is not None:
            roofline = replace(roofline, float_ops_per_s=base_rl.float_ops_per_s)
    return HardwareProfile(name=name, description=description,
                           source={"kind": "measured", "notes": notes, "machine": machine},
                           capabilities=caps, cost=CostModel(roofline=roofline, lut=tuple(lut)))


def _is_pair(key: str) -> bool:
    """A plain (w, a) pair key (``w8a8``), not a format key (``w4a16g128``)."""
    return re.fullmatch(r"w[2-8]a[2-8]", key) is not None
