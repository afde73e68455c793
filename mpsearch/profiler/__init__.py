"""The profiler: times the integer executor's kernels on this machine and writes a measured
hardware profile (latency LUT + fitted roofline). ``mpsearch profile`` is its CLI.

    profile = profile_device(model, example_inputs, device="cpu", batch=1, name="my-cpu")
    write_profile(profile, "hw_profiles/my-cpu.yaml")                # mpsearch.hardware
    stat = measure_layer(layer, (4, 8), device="cpu", batch=1)     # one layer, isolated

It is not part of the integer program: it sits above ``execution/`` (whose kernels it times)
and ``hardware/`` (whose profile it writes). Modules: ``device`` (:func:`profile_device`,
:func:`lut_table`), ``_measure`` (one layer isolated, or a model in context; argument checks),
``_timing`` (statistics, programs timed in context, layer attribution), ``_isolated`` (one-layer
programs), ``_build`` (measurements -> :class:`~mpsearch.core.profile.HardwareProfile`).
"""

from mpsearch.profiler._build import EXECUTOR_BITS, build_profile, executor_capabilities, machine_description
from mpsearch.profiler._measure import (DEVICES, measure_layer, measure_model, measure_model_grid, parse_pairs,
                                        resolve_device)
from mpsearch.profiler.device import DEFAULT_PAIRS, lut_table, profile_device

__all__ = ["DEFAULT_PAIRS", "DEVICES", "EXECUTOR_BITS", "build_profile", "executor_capabilities", "lut_table",
           "machine_description", "measure_layer", "measure_model", "measure_model_grid", "parse_pairs",
           "profile_device", "resolve_device"]
