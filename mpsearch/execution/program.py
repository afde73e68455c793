"""IntegerModel: an integer program, its float boundaries, and its export.

``imodel(x)`` quantizes the float input (boundary), runs the integer ops and dequantizes the
logits (boundary); :meth:`IntegerModel.run` is the integer path alone (integer codes in,
integer logits out). :meth:`IntegerModel.save` writes ``graph.json`` (ops, shapes, multipliers,
shifts, zero points, bit-widths; small tensors inline) and ``weights.npz`` (every tensor,
integer arrays), enough for a C runtime; :meth:`IntegerModel.load` reads them back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from mpsearch.core.io import check_keys
from mpsearch.errors import ConfigError, rule_error
from mpsearch.execution import ir
from mpsearch.execution.dyadic import is_pure_shift
from mpsearch.execution._steps import Step, last_reads, plan_steps
from mpsearch.execution.kernels import GEMMS
from mpsearch.execution.kernels.packed import restored_tensor, stored_arrays, storage_bits
from mpsearch.execution.kernels.boundary import quantize_input

FORMAT = "mpsearch-integer-program"
_INLINE_MAX = 4096  # tensors up to this many elements are also written inline in graph.json


class IntegerModel:
    """An integer-only program built by :func:`mpsearch.execution.to_integer`.

    Attributes:
        inputs: the input boundaries (float -> int8 codes), one per model input.
        ops: the integer ops in execution order.
        output: the output value and how to read it (scale, zero point).
        taps: activation quantizer module path (in the fake-quant model) -> value name of its codes.
        meta: plain data (rounding, layer name -> accumulator value).
    """

    def __init__(self, inputs: tuple[ir.InputQuant, ...], ops: tuple[ir.Op, ...], output: ir.OutputSpec,
                 taps: Mapping[str, str], meta: Mapping[str, Any] | None = None) -> None:
        self.inputs = tuple(inputs)
        self.ops = tuple(ops)
        self.output = output
        self.taps = dict(taps)
        self.meta = dict(meta or {})
        self.device = torch.device("cpu")
        self.gemm = "auto"
        self._op_names = frozenset(op.name for op in self.ops)
        self._plans: dict[frozenset[str], tuple[list[Step], dict[str, int]]] | None = None

    # -- running ------------------------------------------------------------------------
    def steps(self, keep: Iterable[str] = ()) -> list[Step]:
        """The kernel calls that run the program (ops fused where :mod:`._steps` allows), with
        every value named in ``keep`` produced."""
        return self._plan(frozenset(keep))[0]

    def _plan(self, keep: frozenset[str]) -> tuple[list[Step], dict[str, int]]:
        if self._plans is None:
            self.to(self.device)
        plans = self._plans
        assert plans is not None
        if keep not in plans:
            steps = plan_steps(self.ops, self.device, self.gemm, keep, self.output.name)
            plans[keep] = (steps, last_reads(steps))
        return plans[keep]

    def to(self, device: str | torch.device | None = None, gemm: str | None = None) -> "IntegerModel":
        """Prepare the kernels on ``device`` (in place; returns self).

        Args:
            device: where to run (default: unchanged).
            gemm: matrix-product backend, one of ``kernels.GEMMS``: "auto" (``torch._int_mm`` on
                CUDA; on CPU the numba kernels when numba is installed, else the int32 matmul),
                "int_mm", "int32" or "numba". With numba on CPU a conv / linear and the requant of
                its accumulator run as one kernel (same integers).
        """
        if gemm is not None:
            if gemm not in GEMMS:
                raise rule_error("IntegerModel.to", "gemm", f"one of {', '.join(GEMMS)}", gemm)
            self.gemm = gemm
        if device is not None:
            self.device = torch.device(device)
        self._plans = {}
        self._plan(frozenset())  # prepare the kernels now (weights packed, numba compiled or loaded)
        return self

    def quantize_input(self, *xs: Tensor) -> tuple[Tensor, ...]:
        """Float inputs -> int8 codes (the float boundary)."""
        if len(xs) != len(self.inputs):
            raise rule_error("IntegerModel", "inputs", f"{len(self.inputs)} tensor(s)", len(xs))
        return tuple(_quantize_one(q, x.to(self.device)) for q, x in zip(self.inputs, xs))

    def run(self, *codes: Tensor, keep: Iterable[str] | None = None) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """The integer path: int8 input codes -> integer logits (int32 or int8).

        Args:
            codes: one int8 tensor per input (see :meth:`quantize_input`).
            keep: value names to return as well (e.g. ``self.taps.values()``).

        Returns:
            The output integers, or ``(output, {name: tensor})`` when ``keep`` is given.
        """
        env: dict[str, Tensor] = {inp.name: c for inp, c in zip(self.inputs, codes)}
        wanted = frozenset(keep) if keep is not None else frozenset()
        steps, last_read = self._plan(wanted & self._op_names)
        kept: dict[str, Tensor] = {k: env[k] for k in wanted if k in env}
        for i, step in enumerate(steps):
            env[step.output] = step.kernel(*(env[n] for n in step.inputs))
            if step.output in wanted:
                kept[step.output] = env[step.output]
            for n in step.inputs:  # free what no later step reads
                if last_read.get(n) == i and n != self.output.name:
                    env.pop(n, None)
        out = env[self.output.name]
        return (out, kept) if keep is not None else out

    def logits_int(self, *xs: Tensor) -> Tensor:
        """Integer logits of float inputs (boundary quantization + integer path)."""
        return self.run(*self.quantize_input(*xs))  # type: ignore[return-value]

    def dequantize(self, q: Tensor) -> Tensor:
        """Integer logits -> float32 ``scale * (q - zero_point)`` (the output boundary)."""
        return (q.to(torch.float64) - self.output.zero_point).mul(self.output.scale).to(torch.float32)

    def __call__(self, *xs: Tensor) -> Tensor:
        """Float logits, for drop-in comparison with the float or fake-quant model."""
        return self.dequantize(self.logits_int(*xs))

    def predict(self, *xs: Tensor) -> Tensor:
        """Top-1 class per sample (argmax of the integer logits)."""
        return self.logits_int(*xs).argmax(dim=-1)

    # -- inspection ---------------------------------------------------------------------
    @property
    def float_ops(self) -> tuple[str, ...]:
        """Every op that runs in float (the declared float islands), as ``"<fx node> (<what>): <fn>"``,
        in program order; empty for an integer-only program."""
        out = []
        for op in self.ops:
            if isinstance(op, ir.FloatOp):
                out.append(f"{op.source}: {op.fn}")
            elif isinstance(op, ir.WeightOnlyLinear):  # float activations times integer weights
                group = f"g{op.group_size}" if op.group_size else ""
                out.append(f"{op.source}: weight_only_linear w{op.w_bits}a16{group}")
        return tuple(out)

    @property
    def integer_only(self) -> bool:
        """True when no op of the program runs in float (no float island)."""
        return not any(isinstance(op, (ir.FloatOp, ir.Dequant, ir.Quantize, ir.WeightOnlyLinear)) for op in self.ops)

    def is_pure_shift(self) -> bool:
        """True when every rescale is a shift (what power-of-two scale profiles demand)."""
        return all(is_pure_shift(op.multiplier.numpy(), op.shift.numpy())
                   for op in self.ops if isinstance(op, ir.Requant))

    def describe(self) -> dict[str, Any]:
        """The program as plain data (the content of ``graph.json``)."""
        ops = []
        for op in self.ops:
            rec = op_to_dict(op)
            rec["tensors"] = {}
            for field, t in op.tensors().items():
                info: dict[str, Any] = {"key": f"{op.name}.{field}", "dtype": str(t.dtype).replace("torch.", ""),
                                        "shape": list(t.shape)}
                if field in ("weight", "codes") and storage_bits(op) is not None:
                    info["stored_bits"] = storage_bits(op)  # packed: kernels.packed.stored_arrays
                if t.numel() <= _INLINE_MAX and field != "weight":
                    info["values"] = t.cpu().reshape(-1).tolist()
                rec["tensors"][field] = info
            ops.append(rec)
        return {
            "version": 1,
            "format": FORMAT,
            "inputs": [dict(vars(i)) | {"sample_shape": list(i.sample_shape)} for i in self.inputs],
            "output": dict(vars(self.output)) | {"sample_shape": list(self.output.sample_shape)},
            "taps": self.taps,
            "meta": self.meta,
            "ops": ops,
        }

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for op in self.ops:
            kinds[op.KIND] = kinds.get(op.KIND, 0) + 1
        islands = "" if self.integer_only else f", NOT integer-only: {len(self.float_ops)} float islands"
        return f"IntegerModel({len(self.ops)} ops: {kinds}, output scale {self.output.scale:.3g}{islands})"

    # -- export -------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``graph.json`` and ``weights.npz`` into ``directory`` (created if missing)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # weight codes under 8 bits are stored packed at their width (kernels.packed.stored_arrays)
        arrays = {f"{op.name}.{field}": a for op in self.ops for field, a in stored_arrays(op).items()}
        np.savez(path / "weights.npz", **arrays)
        tmp = path / "graph.json.tmp"
        tmp.write_text(json.dumps(self.describe(), indent=1))
        tmp.replace(path / "graph.json")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> "IntegerModel":
        """Read a program written by :meth:`save`."""
        path = Path(directory)
        graph_file = path / "graph.json"
        try:
            data = json.loads(graph_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{graph_file}: must be a readable graph.json written by IntegerModel.save, "
                              f"but got {type(exc).__name__}: {exc}") from None
        check_keys(data, ("version", "format", "inputs", "output", "taps", "meta", "ops"), str(graph_file),
                   required=("version", "format", "inputs", "output", "ops"))
        if data["format"] != FORMAT or data["version"] != 1:
            raise rule_error(str(graph_file), "format/version", f"{FORMAT!r} version 1",
                             (data["format"], data["version"]))
        with np.load(path / "weights.npz") as npz:
            arrays = {k: torch.from_numpy(npz[k].copy()) for k in npz.files}
        ops = []
        for rec in data["ops"]:
            if rec.get("op") not in ir.OPS:
                raise rule_error(str(graph_file), "ops[].op", f"one of {', '.join(ir.OPS)}", rec.get("op"))
            tensors = {f: restored_tensor(arrays[info["key"]], info, rec.get("w_bits"))
                       for f, info in rec.pop("tensors", {}).items()}
            ops.append(op_from_dict(rec, tensors))
        inputs = tuple(ir.InputQuant(**(d | {"sample_shape": tuple(d["sample_shape"])})) for d in data["inputs"])
        out = data["output"]
        output = ir.OutputSpec(**(out | {"sample_shape": tuple(out["sample_shape"])}))
        return cls(inputs, tuple(ops), output, data.get("taps", {}), data.get("meta", {})).to(device)


def _quantize_one(inp: ir.InputQuant, x: Tensor) -> Tensor:
    """``inp(x)``; on CPU float32 with numba, the same integers in one pass (:mod:`.kernels.boundary`)."""
    if inp.kind == "quant" and inp.bits <= 8:
        codes = quantize_input(x, inp.scale, inp.zero_point, inp.qmin, inp.qmax)
        if codes is not None:
            return codes
    return inp(x)


def op_to_dict(op: ir.Op) -> dict[str, Any]:
    """Non-tensor fields of ``op`` as plain data (tensors are listed separately)."""
    out: dict[str, Any] = {"op": op.KIND}
    for f in dataclasses.fields(op):
        v = getattr(op, f.name)
        if f.name == "consts":  # FloatOp's constants travel as tensors const0, const1, ...
            continue
        if not isinstance(v, Tensor):
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def op_from_dict(data: dict[str, Any], tensors: dict[str, Tensor]) -> ir.Op:
    """Inverse of :func:`op_to_dict` plus the op's tensors."""
    cls = ir.OPS[data["op"]]
    kwargs: dict[str, Any] = {}
    if cls is ir.FloatOp:
        kwargs["consts"] = tuple(tensors[f"const{i}"] for i in range(len(tensors)))
    for f in dataclasses.fields(cls):
        if f.name in tensors:
            kwargs[f.name] = tensors[f.name]
        elif f.name in data:
            v = data[f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) and f.name != "call" else v
    return cls(**kwargs)
