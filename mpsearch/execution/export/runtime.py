"""Run an exported model in ONNX Runtime (CPUExecutionProvider).

The only module of mpsearch that imports ``onnxruntime`` (lazily: ``pip install 'mpsearch[onnx]'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpsearch.core.checks import check_bool, check_int
from mpsearch.errors import ConfigError


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a ConfigError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # optional dependency
        raise ConfigError("ONNX Runtime: the 'onnxruntime' package must be installed (pip install 'mpsearch[onnx]'), "
                          f"but importing it failed: {exc}") from None
    return onnxruntime


class OnnxRunner:
    """One ONNX Runtime session on the CPU.

    Args:
        model: path of an ``.onnx`` file, or its serialized bytes.
        threads: intra-op threads (default 1: stable timings on a shared machine).
        optimize: run ONNX Runtime's graph optimizations.
        qdq_fusion: let them rewrite QDQ node groups too (``session.disable_quant_qdq`` off): fused
            integer kernels, the deployment speed, but other numerics (on resnet_tiny, W8A8 still
            agrees 100% with the simulation, a W2..W8/A4..A8 mix 98%); off, ONNX Runtime computes
            the QDQ graph as written (the mix: 100%, max logit difference 0.08).
        profile_prefix: write ONNX Runtime's per-node profile (JSON) under this prefix; read it
            with :meth:`end_profiling`.
    """

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int = 1, optimize: bool = True,
                 qdq_fusion: bool = True, profile_prefix: str | None = None) -> None:
        ort = require_onnxruntime()
        check_int(threads, "OnnxRunner", "threads", min=1)
        check_bool(optimize, "OnnxRunner", "optimize")
        check_bool(qdq_fusion, "OnnxRunner", "qdq_fusion")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                         else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        opts.add_session_config_entry("session.disable_quant_qdq", "0" if qdq_fusion else "1")
        if profile_prefix is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        self.qdq_fusion = qdq_fusion
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind types
            if not qdq_fusion or "int4" not in str(exc):
                raise
            # ONNX Runtime 1.32's QDQ propagation moves int4 Q/DQ pairs across MaxPool, which has no
            # int4 kernel (INVALID_GRAPH at load): keep the other QDQ fusions, drop that pass
            self.session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=["QDQPropagationTransformer"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def feeds(self, *inputs: Any) -> dict[str, np.ndarray]:
        """The input dict of one run (tensors moved to numpy on the CPU)."""
        if len(inputs) != len(self.input_names):
            raise ConfigError(f"OnnxRunner: the model takes {len(self.input_names)} inputs "
                              f"({', '.join(self.input_names)}), but got {len(inputs)}")
        return {n: (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
                for n, x in zip(self.input_names, inputs)}

    def run_numpy(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output_name], feeds)[0]

    def __call__(self, *inputs: Any) -> torch.Tensor:
        """The model's output for ``inputs`` as a float tensor on the CPU."""
        return torch.from_numpy(self.run_numpy(self.feeds(*inputs)))

    def end_profiling(self) -> list[dict[str, Any]]:
        """Stop profiling and return ONNX Runtime's trace events (the file is deleted)."""
        path = Path(self.session.end_profiling())
        try:
            return json.loads(path.read_text())
        finally:
            path.unlink(missing_ok=True)
