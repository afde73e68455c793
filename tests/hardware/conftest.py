"""Shared builders for the hardware tests: a valid profile dict and hand-sized layers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mpsearch.core.types import Layer

BASE: dict[str, Any] = {
    "version": 1,
    "name": "test-npu",
    "description": "an NPU for tests",
    "source": {"kind": "analytic", "notes": "made up for tests"},
    "capabilities": {
        "weight_bits": [2, 4, 8],
        "activation_bits": [4, 8],
        "pairs": [[8, 8], [4, 8], [4, 4], [2, 8]],
        "weight_mode": "symmetric",
        "weight_granularity": ["per_channel", "per_tensor"],
        "activation_mode": "asymmetric",
        "scale": "dyadic",
        "integer_only": True,
        "per_op": {"depthwise_conv2d": {"weight_bits": [8]}},
    },
    "rules": {"first_layer": {"w_bits": 8, "a_bits": 8}, "last_layer": {"w_bits": 8, "a_bits": 8}},
    "cost": {
        "roofline": {"ops_per_s": {"w8a8": 2.0e12, "w4a4": 4.0e12}, "bytes_per_s": 2.5e10, "overhead_ms": 0.01},
        "lut": [{
            "op": "conv2d",
            "shape": {"batch": 1, "in_hw": [56, 56], "cin": 64, "cout": 64, "kernel": 3, "stride": 1, "groups": 1},
            "latency_ms": {"w8a8": {"mean": 0.53, "std": 0.01, "count": 100}},
        }],
    },
}


@pytest.fixture
def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


@pytest.fixture
def write_yaml(tmp_path: Path):
    """Write a dict as YAML under tmp_path and return the path."""
    def _write(data: Any, name: str = "test-npu.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path
    return _write


def conv3x3_64(batch: int = 1, bias: bool = True) -> Layer:
    """3x3 conv, 64 -> 64 channels, 56x56, stride 1, padding 1: 36,864 weights, 115,605,504 MACs."""
    return Layer(name="features.conv", kind="conv2d", weight_shape=(64, 64, 3, 3),
                 n_params=36864 + (64 if bias else 0), macs=56 * 56 * 64 * 64 * 9,
                 input_shape=(batch, 64, 56, 56), output_shape=(batch, 64, 56, 56), index=1, has_bias=bias,
                 in_channels=64, out_channels=64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))


def depthwise3x3_64() -> Layer:
    return Layer(name="features.dw", kind="depthwise_conv2d", weight_shape=(64, 1, 3, 3), n_params=576,
                 macs=56 * 56 * 64 * 9, input_shape=(1, 64, 56, 56), output_shape=(1, 64, 56, 56), index=2,
                 in_channels=64, out_channels=64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), groups=64)


def linear(fin: int, fout: int, input_shape: tuple[int, ...] | None = None, bias: bool = False, index: int = 3) -> Layer:
    input_shape = input_shape or (1, fin)
    tokens = 1
    for d in input_shape[1:-1]:
        tokens *= d
    return Layer(name=f"fc{fin}x{fout}", kind="linear", weight_shape=(fout, fin),
                 n_params=fin * fout + (fout if bias else 0), macs=fin * fout * tokens, input_shape=input_shape,
                 output_shape=(*input_shape[:-1], fout), index=index, has_bias=bias, in_channels=fin,
                 out_channels=fout)
