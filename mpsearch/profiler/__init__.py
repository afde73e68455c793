"""The profiler: times the integer executor's kernels on this machine and writes a measured
hardware profile (latency LUT + fitted roofline). ``mpsearch profile`` is its CLI.

    profile = profile_device(model, example_inputs, device="cpu", batch=1, name="my-cpu")
    write_profile(profile, "hw_profiles/my-cpu.yaml")                # mpsearch.hardware
    stat = measure_layer(layer, (4, 8), device="cpu", batch=1)     # one layer, isolated

It is not part of the integer program: it sits above ``execution/`` (whose kernels it times)
and ``hardware/`` (whose profile it writes). Modules: ``device`` (:func:`profile_device`,
:func:`lut_table`), ``_measure`` (one layer isolated, or a model in context; argument checks),
``_timing`` (statistics, programs timed in context, layer attribution), ``_isolated`` (one-layer
programs), ``_build`` (measurements -> :class:`~mpsearch.core.profile.HardwareProfile`), ``formats``
(weight-only LLM formats on the executor's wo_linear kernels: :func:`profile_formats` isolated,
:func:`profile_formats_in_context` in a model's program; merged into a profile's LUT under the
format key), ``_formats_context`` (the in-context timing).
"""

from mpsearch.profiler._build import EXECUTOR_BITS, build_profile, executor_capabilities, machine_description
from mpsearch.profiler._measure import (DEVICES, measure_layer, measure_model, measure_model_grid, parse_pairs,
                                        resolve_device)
from mpsearch.profiler.device import DEFAULT_PAIRS, lut_table, profile_device
from mpsearch.profiler.formats import measure_format, merge_format_entries, profile_formats, profile_formats_in_context

__all__ = ["DEFAULT_PAIRS", "DEVICES", "EXECUTOR_BITS", "build_profile", "executor_capabilities", "lut_table",
           "machine_description", "measure_format", "measure_layer", "measure_model", "measure_model_grid",
           "merge_format_entries", "parse_pairs", "profile_device", "profile_formats", "profile_formats_in_context",
           "resolve_device"]
