"""Does a device run a plan? The check every plan that enters from outside goes through.

A plan written by hand, or by a run against another profile, may give a layer bits the
device cannot run (``w_bits: 3`` on GAP-8, 4-bit weights on the 8-bit-only Cortex-M7). Such
a plan would quantize, convert and validate without complaint, and report a model that
cannot be deployed; :func:`check_plan_runs` refuses it naming the layer, the bits and what
the device runs for that layer.
"""

from __future__ import annotations

from typing import Sequence

from mpsearch.core.formats import is_format
from mpsearch.core.plan import BitPlan
from mpsearch.core.profile import FORMAT_OPS, HardwareProfile
from mpsearch.core.types import Layer
from mpsearch.errors import ConfigError
from mpsearch.hardware.candidates import candidates_for_layers


def check_plan_runs(plan: BitPlan, layers: Sequence[Layer], profile: HardwareProfile, where: str = "plan") -> None:
    """Raise unless every layer of ``plan`` takes bits that ``profile`` runs for that layer.

    A plain pair must be one of the layer's candidates on the device (its op's pairs, the
    first/last-layer rules, the activation memory); an LLM format must be one the profile
    lists in ``capabilities.formats`` for the layer's kind. Layers of the plan that are not in
    ``layers`` are :meth:`BitPlan.check_layers`'s to refuse.

    Raises:
        ConfigError: ``"{where}: layers.conv1 must be bits that profile 'gap8-pulp-nn' runs for
            this conv2d layer (w8a8, w4a8, w2a8), but got 'w3a8'"``.
    """
    by_name = {layer.name: layer for layer in layers}
    device = candidates_for_layers(list(layers), profile)
    fmts = profile.capabilities.formats
    for name, bits in plan.layers.items():
        layer = by_name.get(name)
        if layer is None:
            continue
        # the bits and the method are checked apart: a method (gptq, kmeans, ...) changes how the
        # weight is rounded, not which kernel runs it
        if is_format(bits.a_bits, bits.group_size, bits.w_zero_point, bits.a_mode):  # an LLM format, w16a16
            runs = fmts is not None and layer.kind in FORMAT_OPS and fmts.runs(bits.bits_key, layer.kind)
            allowed = ", ".join(fmts.keys) if fmts is not None and layer.kind in FORMAT_OPS else "no formats"
        else:
            keys = [c.bits_key for c in device[name]]
            runs, allowed = bits.bits_key in keys, ", ".join(dict.fromkeys(keys))
        if not runs:
            raise ConfigError(f"{where}: layers.{name} must be bits that profile {profile.name!r} runs for this "
                              f"{layer.kind} layer ({allowed}), but got {bits.bits_key!r}")
        if bits.method not in profile.capabilities.methods:
            raise ConfigError(f"{where}: layers.{name} method must be one that profile {profile.name!r} runs "
                              f"(capabilities.methods: {', '.join(profile.capabilities.methods)}), "
                              f"but got {bits.method!r}")
