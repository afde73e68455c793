"""Tied layers take one candidate: a method one member cannot run is left out for the whole group (#16).

An embedding whose weight is the LM head's: GPTQ replays a linear layer on its inputs and has no
embedding form, so with methods [rtn, gptq] the head must lose its GPTQ rows too, else the table
is refused ("tied layers must have the same candidates").
"""

from __future__ import annotations

import torch
from torch import nn

from mpsearch.core.profile import Capabilities, CostModel, HardwareProfile, Roofline
from mpsearch.core.types import Candidate
from mpsearch.hardware import resource_table
from mpsearch.hardware.methods import common_to_ties
from mpsearch.model import discover, weight_ties

PROFILE = HardwareProfile(
    name="test-npu",
    capabilities=Capabilities(weight_bits=(4, 8), activation_bits=(8,), weight_granularity=("per_channel",),
                              scale="float", integer_only=False, methods=("rtn", "gptq")),
    cost=CostModel(roofline=Roofline(ops_per_s={"w8a8": 1e9}, bytes_per_s=1e9, overhead_ms=0.001)),
)


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.mid = nn.Linear(8, 8)
        self.head = nn.Linear(8, 16, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(torch.relu(self.mid(self.emb(x))))


def test_common_to_ties_keeps_the_keys_every_member_takes():
    a = [Candidate(4, 8), Candidate(4, 8, method="gptq"), Candidate(8, 8)]
    b = [Candidate(4, 8), Candidate(8, 8), Candidate(8, 8, method="gptq")]
    out = common_to_ties({"a": a, "b": b, "c": list(a)}, [("a", "b"), ("c", "missing")])
    assert [c.key for c in out["a"]] == ["w4a8", "w8a8"]
    assert [c.key for c in out["b"]] == ["w4a8", "w8a8"]
    assert [c.key for c in out["c"]] == ["w4a8", "w4a8+gptq", "w8a8"]  # its partner is not a layer here


def test_tied_embedding_and_head_share_methods_in_the_resource_table():
    model = TiedLM().eval()
    layers = discover(model, (torch.randint(0, 16, (2, 5)),))
    table = resource_table(layers, PROFILE, [4, 8], [8], ties=weight_ties(layers), methods=["rtn", "gptq"])
    keys = {n: sorted(c.key for c in table.candidates[table.index_of(n)]) for n in table.layers}
    assert keys["emb"] == keys["head"] == ["w4a8", "w8a8"]
    assert keys["mid"] == ["w4a8", "w4a8+gptq", "w8a8", "w8a8+gptq"]
