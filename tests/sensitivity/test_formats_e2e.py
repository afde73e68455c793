"""A tiny GPT through discover -> analyze -> cost_table(formats) -> allocate -> quantize with a mixed
weight-only plan (w4a16g128 / w8a16 / w16a16) at a size budget: the optimum by brute force, and the
plan's size equal to the honest size computed by hand."""

from __future__ import annotations

import itertools

import pytest
import torch

import mpsearch as mps

from mpsearch.demo.lm import lm_loss
from mpsearch.testing.tiny_gpt import TinyGPT

FORMATS = ["w4a16g128", "w8a16", "w16a16"]


def _honest_bytes(key: str, out_f: int, in_f: int, n_bias: int) -> int:
    """Weights packed at w_bits + one fp16 scale per row (or per group of 128) + fp16 bias."""
    n = out_f * in_f
    if key == "w16a16":
        return 2 * n + 2 * n_bias
    if key == "w8a16":
        return n + 2 * out_f + 2 * n_bias
    assert key == "w4a16g128"
    return n // 2 + 2 * out_f * (in_f // 128) + 2 * n_bias


# (out_features, in_features, bias) of every layer; the head is tied to emb: stored once, by emb
SHAPES = {"emb": (64, 128, 0), "blocks.0.q": (128, 128, 128), "blocks.0.k": (128, 128, 128),
          "blocks.0.v": (128, 128, 128), "blocks.0.o": (128, 128, 128), "blocks.0.up": (512, 128, 512),
          "blocks.0.down": (128, 512, 128), "head": (0, 0, 0)}


@pytest.fixture(scope="module")
def run():
    torch.manual_seed(0)
    model = TinyGPT(vocab=64, d=128, h=4, n_layers=1).eval()
    x, y = torch.randint(0, 64, (8, 16)), torch.randint(0, 64, (8, 16))
    batches = [(x, y)] * 2
    layers = mps.discover(model, x[:2])
    sens = mps.analyze(model, lm_loss, batches, method="fisher")
    profile = mps.load_profile("x86-2core-int")
    table = mps.cost_table(model, layers, sens, profile, formats=FORMATS, calib_batches=batches)
    return model, batches, table, profile


def test_table_sizes_are_honest(run) -> None:
    _, _, table, _ = run
    assert table.ties == (("emb", "head"), ("blocks.0.q", "blocks.0.k", "blocks.0.v"))
    for name, (out_f, in_f, nb) in SHAPES.items():
        for c in table.candidates[table.index_of(name)]:
            assert table.resources["size_bytes"][table.row_of(name, c.key)] == _honest_bytes(c.key, out_f, in_f, nb)
    # 4-bit g128 of the 512 x 128 MLP weight: 4.125 bits per weight (bias aside)
    up = table.resources["size_bytes"][table.row_of("blocks.0.up", "w4a16g128")] - 2 * 512
    assert up * 8 / (512 * 128) == 4.125


def test_mixed_weight_only_plan_at_a_size_budget(run) -> None:
    model, batches, table, profile = run
    budget = 160_000
    plan = mps.allocate(table, budgets={"size_bytes": budget}, gap_rel=0)
    keys = {n: b.key for n, b in plan.layers.items()}
    assert set(keys.values()) == set(FORMATS)  # a real mix of the three formats
    assert keys["emb"] == keys["head"] and keys["blocks.0.q"] == keys["blocks.0.k"] == keys["blocks.0.v"]
    # the plan's size is the honest size by hand
    assert plan.totals["size_bytes"] == sum(_honest_bytes(k, *SHAPES[n]) for n, k in keys.items())
    assert plan.totals["size_bytes"] <= budget
    # and it is the optimum: brute force over the 5 groups x 3 formats
    groups = [("emb", "head"), ("blocks.0.q", "blocks.0.k", "blocks.0.v"), ("blocks.0.o",), ("blocks.0.up",),
              ("blocks.0.down",)]
    best = float("inf")
    for combo in itertools.product(FORMATS, repeat=len(groups)):
        rows = [table.row_of(n, k) for g, k in zip(groups, combo) for n in g]
        if table.resources["size_bytes"][rows].sum() <= budget:
            best = min(best, float(table.omega[rows].sum()))
    assert plan.objective == pytest.approx(best, rel=1e-9)
    # quantize applies each layer's format: no activation quantizer (weight-only), group-wise weights
    q = mps.quantize(model, plan, batches, profile=profile)
    assert q.quant_mode == "graph" and len(q.act_quant) == 0
    for name, key in keys.items():
        layer = q.get_submodule(name)
        spec = layer.weight_quant.spec
        assert (layer.w_bits, layer.a_bits) == ((4, 16) if key == "w4a16g128" else (8, 16) if key == "w8a16" else (16, 16))
        assert spec.group_size == (128 if key == "w4a16g128" else None) and spec.symmetric
    x = batches[0][0]
    with torch.no_grad():
        drift = (lm_loss(q(x), batches[0][1]) - lm_loss(model(x), batches[0][1])).abs().item()
    assert drift < 0.05
