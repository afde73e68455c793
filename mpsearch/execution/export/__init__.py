"""Export of a fake-quant model to ONNX with QuantizeLinear / DequantizeLinear pairs, run in ONNX Runtime.

    path = export_onnx(qmodel, example_inputs, "model.onnx")            # the plan's bits, scales, zero points
    report = validate_onnx("model.onnx", qmodel, test_batches, imodel)  # agreement in ONNX Runtime

Layout: ``_graph`` (the graph as plain data), ``_context`` (recorded values, batch handling),
``qdq`` (storage types and Q/DQ pairs), ``ops_modules`` / ``ops_functions`` (one handler per op),
``export`` (``export_onnx``), ``onnx_proto`` (the only importer of ``onnx``), ``runtime`` (the only
importer of ``onnxruntime``), ``agreement`` (``validate_onnx``). Both packages are the optional
``onnx`` extra and are imported only when used.
"""

from mpsearch.execution.export.agreement import OnnxAgreement, validate_onnx
from mpsearch.execution.export.export import ExportConfig, build_onnx, check_exportable, export_onnx
from mpsearch.execution.export.runtime import OnnxRunner

__all__ = ["ExportConfig", "OnnxAgreement", "OnnxRunner", "build_onnx", "check_exportable", "export_onnx",
           "validate_onnx"]
