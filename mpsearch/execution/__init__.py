"""Integer-only execution of a fake-quant model: BN already folded, int8 weights and activations,
int32 accumulation, dyadic rescales, integer kernels, validation against the simulation, export.

    imodel = to_integer(qmodel, example_inputs)        # integer program (IntegerModel)
    report = validate(imodel, qmodel, test_batches)    # ValidationReport
    imodel.save("out/"); IntegerModel.load("out/")     # graph.json + weights.npz

Layout: ``ir`` (the integer ops, the format of graph.json), ``dyadic`` (rescale ratios as
integers), ``convert`` (``to_integer``: fx graph -> program, one handler per op from ``ops/``),
``program`` (``IntegerModel``: runs its ops as the kernel calls of ``_steps``, saves, loads),
``kernels/`` (integer kernels and the backends that run them), ``validate``, ``audit`` and
``reference`` (checks against the simulation, float ops and torch.ao). The contracts of an op
handler and of a kernel backend are in ``ops/_base.py`` and ``kernels/_base.py``. The profiler,
which times these kernels, is :mod:`mpsearch.profiler`.
"""

from mpsearch.execution.audit import DtypeAudit
from mpsearch.execution.convert import IntegerConfig, check_supported, to_integer
from mpsearch.execution.dyadic import dyadic, is_pure_shift, rescale_int
from mpsearch.execution.program import IntegerModel
from mpsearch.execution.validate import LayerDiff, ValidationReport, validate

__all__ = [
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
