"""The profiler: pair parsing, stats, attribution, the one-layer program, and a measured profile.

Timings are never asserted against a speed; the tests check exact bookkeeping (pooled means,
layers adding up to the end-to-end time, the LUT giving back exactly what was measured), that
what is timed computes the real convolution, and that the written profile passes the contract.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.cli import main
from mpsearch.core.profile import LatencyStat
from mpsearch.core.types import Candidate
from mpsearch.errors import ConfigError
from mpsearch.hardware import layer_costs, layer_signature, load_profile, write_profile
from mpsearch.hardware.signature import layer_from_signature, signature_key
from mpsearch.profiler import (
    build_profile,
    measure_layer,
    measure_model,
    measure_model_grid,
    parse_pairs,
    profile_device,
)
from mpsearch.profiler import _timing
from mpsearch.profiler._isolated import _one_layer_ops
from mpsearch.profiler._timing import (
    TRIM,
    attribute_ops,
    keep_fastest,
    pool_stats,
    round_sizes,
    stat_of,
    time_end_to_end_many,
    time_programs,
)
from mpsearch.testing.profiles import check_profile

from .conftest import conv3x3_64


class Tiny(nn.Module):
    """conv-BN-ReLU, a residual block (two convs of one signature), pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        y = self.c2(self.relu1(self.c1(x)))
        return self.fc(self.flatten(self.pool(self.relu2(y + x))))


def tiny_model() -> tuple[nn.Module, torch.Tensor]:
    """Import target for the CLI test: ``(model, example_inputs)``."""
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(1))


def test_parse_pairs_and_errors() -> None:
    assert parse_pairs("w8a8, w4a8,w4a8") == ((8, 8), (4, 8))
    assert parse_pairs([(2, 4), "w8a8"]) == ((2, 4), (8, 8))
    with pytest.raises(ConfigError, match=r"--pairs must be .* but got 'w9a8'"):
        parse_pairs("w8a8,w9a8")
    with pytest.raises(ConfigError, match=r"--pairs must be .* but got 'eight'"):
        parse_pairs("eight")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="torch.cuda.is_available"):
        measure_layer(conv3x3_64(), (8, 8), device="cuda")
    assert main(["profile", "--device", "cuda", "--model", "small_cnn", "-o", "x.yaml"]) == 2
    assert "use --device cpu" in capsys.readouterr().err


def test_stats_by_hand() -> None:
    s = stat_of([1.0, 2.0, 3.0, 100.0], trim=0.25)  # the slowest quarter (100) is dropped
    assert (s.mean, s.std, s.count) == (2.0, 1.0, 3)
    assert keep_fastest([5.0, 1.0, 9.0, 2.0], 0.5) == [1, 3]
    p = pool_stats([LatencyStat(1.0, 0.0, 2), LatencyStat(3.0, 0.0, 2)])
    # samples 1, 1, 3, 3: mean 2, sample variance 4 / 3
    assert p.mean == 2.0 and p.count == 4 and math.isclose(p.std, math.sqrt(4 / 3))


def test_timed_one_layer_program_is_the_real_convolution() -> None:
    """What measure_layer times is the executor's conv (+ requant) on codes of the pair's range."""
    from mpsearch.execution.kernels import KERNELS

    layer = layer_from_signature("conv2d", {"batch": 2, "in_hw": (7, 7), "cin": 6, "cout": 4, "kernel": (3, 3),
                                            "stride": (2, 2), "groups": 2})
    conv, requant = _one_layer_ops(layer, 4, 3, torch.Generator().manual_seed(0))
    assert int(conv.weight.abs().max()) <= 7  # 4-bit symmetric weights
    x = torch.randint(-4, 4, (2, 6, 7, 7), generator=torch.Generator().manual_seed(1), dtype=torch.int8)
    acc = KERNELS["conv"](conv, torch.device("cpu"), "auto")(x)
    ref = F.conv2d((x.double() - conv.input_zp), conv.weight.double(), conv.bias.double(), stride=2, padding=1,
                   groups=2)
    assert acc.dtype == torch.int32 and torch.equal(acc.double(), ref)
    y = KERNELS["requant"](requant, torch.device("cpu"), "auto")(acc)
    assert y.dtype == torch.int8 and int(y.min()) >= -4 and int(y.max()) <= 3  # 3-bit codes
    stat = measure_layer(layer, (4, 3), warmup=1, repeats=4)
    assert stat.count == 4 - int(4 * TRIM) == 1 and stat.mean > 0  # the fastest quarter of 4 runs


def test_attribution_of_non_layer_ops() -> None:
    from mpsearch.core.plan import BitPlan
    from mpsearch.execution import to_integer
    from mpsearch.quant import quantizable_layer_names, quantize

    model, x = tiny_model()
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), [x])
    imodel = to_integer(q, x[:2])
    owner = dict(zip([op.name for op in imodel.ops], attribute_ops(imodel)))
    kinds = {op.name: op.KIND for op in imodel.ops}
    acc = imodel.meta["layers"]
    for layer, value in acc.items():
        assert owner[value] == layer
    # the add follows its first input back to c2; avg pool and flatten to c2 as well
    adds = [n for n, k in kinds.items() if k == "add"]
    assert len(adds) == 1 and owner[adds[0]] == "c2"
    assert all(owner[n] == "c2" for n, k in kinds.items() if k in ("avgpool_sum", "reshape"))
    assert owner[imodel.output.name] == "fc"


def test_profile_of_a_model_gives_back_what_was_measured(tmp_path) -> None:
    model, x = tiny_model()
    layers, timing = measure_model(model, x, (8, 8), batch=1, warmup=1, repeats=4)
    assert [layer.name for layer in layers] == ["stem", "c1", "c2", "fc"]
    # layers + loop overhead add up to the end-to-end time of the same runs
    total = math.fsum(s.mean for s in timing.layers.values()) + timing.unattributed_ms
    assert math.isclose(total, timing.end_to_end.mean, rel_tol=1e-9)
    measured: dict = {}
    for layer in layers:
        measured.setdefault(signature_key(*layer_signature(layer)), {}).setdefault("w8a8", []).append(
            timing.layers[layer.name])
    profile = build_profile(measured, "tiny-cpu", "test", "made in a test", "here")
    path = write_profile(profile, tmp_path / "tiny-cpu.yaml")
    loaded = load_profile(path)
    check_profile(path)  # the contract suite every profile passes
    costs = {layer.name: layer_costs(layer, Candidate(8, 8), loaded) for layer in layers}
    assert {c.latency_source for c in costs.values()} == {"lut"}
    assert costs["stem"].latency_ms == timing.layers["stem"].mean
    assert costs["fc"].latency_ms == timing.layers["fc"].mean
    # c1 and c2 share a signature: both get the pooled mean, so the model's sum is kept
    assert costs["c1"].latency_ms == costs["c2"].latency_ms
    assert math.isclose(costs["c1"].latency_ms, (timing.layers["c1"].mean + timing.layers["c2"].mean) / 2)
    assert math.isclose(sum(c.latency_ms for c in costs.values()),
                        math.fsum(s.mean for s in timing.layers.values()), rel_tol=1e-9)
    assert set(loaded.cost.roofline.ops_per_s) == {"w8a8"}  # one rate: no speed-up assumed


def test_profile_device_every_pair_measured_and_contract(tmp_path) -> None:
    model, x = tiny_model()
    profile = profile_device(model, x, pairs="w4a4", batch=[1, 3], warmup=1, repeats=3, name="tiny-cpu")
    assert profile.source["kind"] == "measured" and "intra-op thread" in profile.source["machine"]
    assert profile.capabilities.allowed_pairs("conv2d")[0] == (8, 8) and (2, 2) in profile.capabilities.allowed_pairs()
    assert len(profile.cost.lut) == 2 * 3  # (stem, c1=c2, fc) x batches 1 and 3
    for e in profile.cost.lut:
        assert set(e.latency_ms) == {"w8a8", "w4a4"}  # w8a8 is always measured
    path = write_profile(profile, tmp_path / "tiny-cpu.yaml")
    check_profile(path)
    layers = [layer_from_signature(e.op, e.shape) for e in profile.cost.lut]
    for layer, e in zip(layers, profile.cost.lut):
        c = layer_costs(layer, Candidate(4, 4), load_profile(path))
        assert c.latency_source == "lut" and c.latency_ms == e.latency_ms["w4a4"].mean
    # a pair that was not measured comes from the roofline at the w8a8 rate
    assert layer_costs(layers[0], Candidate(2, 8), profile).latency_source == "roofline"


def test_cli_profile_imported_model(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "my-device.yaml"
    rc = main(["profile", "--device", "cpu", "--model", "tests.hardware.test_profiler:tiny_model",
               "--pairs", "w8a8,w2a8", "--repeats", "3", "--warmup", "1", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "fastest / w8a8" in text and "w2a8" in text
    p = load_profile(out)
    assert p.name == "my-device" and len(p.cost.lut) == 3
    assert main(["profile", "--model", "tests.hardware.test_profiler:tiny_model", "--pairs", "w8a1",
                 "-o", str(out)]) == 2
    assert "--pairs must be" in capsys.readouterr().err


def _tiny_program(pair: tuple[int, int] = (8, 8)) -> tuple[object, torch.Tensor]:
    from mpsearch.core.plan import BitPlan
    from mpsearch.execution import to_integer
    from mpsearch.quant import quantizable_layer_names, quantize

    model, x = tiny_model()
    q = quantize(model, BitPlan.uniform(quantizable_layer_names(model), *pair), [x])
    return to_integer(q, x[:2]), x


def test_round_sizes_split_the_repeats() -> None:
    assert round_sizes(50, 5) == [10] * 5
    assert round_sizes(7, 3) == [3, 2, 2]
    assert round_sizes(2, 5) == [1, 1]  # never an empty round
    assert sum(round_sizes(13, 4)) == 13


def test_programs_are_timed_interleaved(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm-up of each program, then rounds that run every program in turn, order reversed every other round."""
    calls: list[tuple[int, bool]] = []
    real = _timing._ProgramRunner.run_once

    def spy(self, keep: bool) -> None:
        calls.append((id(self.imodel), keep))
        real(self, keep)

    monkeypatch.setattr(_timing._ProgramRunner, "run_once", spy)
    (a, x), (b, _) = _tiny_program((8, 8)), _tiny_program((4, 4))
    timings = time_programs([(a, x), (b, x)], torch.device("cpu"), warmup=1, repeats=5, rounds=2)
    A, B = id(a), id(b)
    assert calls == [(A, False), (B, False), (A, True), (A, True), (A, True), (B, True), (B, True), (B, True),
                     (B, True), (B, True), (A, True), (A, True)]
    for t in timings:
        # 5 runs, the fastest quarter kept (ranked end to end), the same runs for every layer: the layers
        # and the loop overhead add up exactly to the end-to-end mean
        assert t.end_to_end.count == 5 - int(5 * TRIM) == 2
        assert {s.count for s in t.layers.values()} == {2}
        total = math.fsum(s.mean for s in t.layers.values()) + t.unattributed_ms
        assert math.isclose(total, t.end_to_end.mean, rel_tol=1e-12)


def test_end_to_end_many_uses_the_same_estimator() -> None:
    (a, x), (b, _) = _tiny_program((8, 8)), _tiny_program((2, 4))
    stats = time_end_to_end_many([(a, x), (b, x[:1])], torch.device("cpu"), warmup=1, repeats=8, rounds=3)
    assert [s.count for s in stats] == [8 - int(8 * TRIM)] * 2 == [2, 2]
    assert all(s.mean > 0 for s in stats)


def test_grid_covers_every_batch_and_pair_and_layers_add_up() -> None:
    model, x = tiny_model()
    grid = measure_model_grid(model, x, [(8, 8), (2, 4)], [1, 3], warmup=1, repeats=4, rounds=2)
    assert sorted(grid) == [(1, (2, 4)), (1, (8, 8)), (3, (2, 4)), (3, (8, 8))]
    for (b, _pair), (layers, timing) in grid.items():
        assert [layer.name for layer in layers] == ["stem", "c1", "c2", "fc"]
        assert layers[0].input_shape[0] == b  # discovered at that batch
        assert set(timing.layers) == {"stem", "c1", "c2", "fc"}
        total = math.fsum(s.mean for s in timing.layers.values()) + timing.unattributed_ms
        assert math.isclose(total, timing.end_to_end.mean, rel_tol=1e-12)
    notes = profile_device(model, x, pairs="w8a8", warmup=1, repeats=4).source["notes"]
    assert "at the start" in notes and "at the end" in notes and "fastest 25%" in notes
