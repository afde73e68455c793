"""Integer-only execution of a fake-quant model: BN already folded, int8 weights and activations,
int32 accumulation, dyadic rescales, integer kernels, validation against the simulation, export.

    imodel = to_integer(qmodel, example_inputs)        # integer program (IntegerModel)
    report = validate(imodel, qmodel, test_batches)    # ValidationReport
    imodel.save("out/"); IntegerModel.load("out/")     # graph.json + weights.npz
"""

from mpsearch.execution.audit import DtypeAudit
from mpsearch.execution.convert import IntegerConfig, check_supported, to_integer
from mpsearch.execution.dyadic import dyadic, is_pure_shift, rescale_int
from mpsearch.execution.program import IntegerModel
from mpsearch.execution.validate import LayerDiff, ValidationReport, validate

# The profiler measures our integer kernels, so it sits here, above hardware/ whose profile it writes.
from mpsearch.execution.profiler import DEFAULT_PAIRS, measure_layer, measure_model, parse_pairs, profile_device

__all__ = [
    "DEFAULT_PAIRS",
    "measure_layer",
    "measure_model",
    "parse_pairs",
    "profile_device",
    "DtypeAudit",
    "IntegerConfig",
    "IntegerModel",
    "LayerDiff",
    "ValidationReport",
    "check_supported",
    "dyadic",
    "is_pure_shift",
    "rescale_int",
    "to_integer",
    "validate",
]
