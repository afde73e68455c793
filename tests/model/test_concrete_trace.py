"""ConcreteTracer (fx tracing on example values) and with_call (fixed keyword arguments, one output)."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from mpsearch.model import concrete_trace, discover, with_call


class SizeBranchy(nn.Module):
    """Python control flow and indexing on sizes, a buffer broadcast to the batch: plain fx fails."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("pos", torch.arange(16, dtype=torch.float32).reshape(1, 16, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        if t > 4:  # a size: the example's branch is kept
            x = x * 2
        return self.fc(x) + self.pos[:, :t].expand(b, -1, d)


class ValueBranchy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if x.sum() > 0 else x - 1


def test_size_control_flow_traces_and_the_batch_stays_free() -> None:
    torch.manual_seed(0)
    model = SizeBranchy().eval()
    with pytest.raises(Exception):
        fx.symbolic_trace(model)
    gm = concrete_trace(model, (torch.randn(2, 8, 4),))
    x = torch.randn(5, 8, 4)  # another batch size
    assert torch.equal(gm(x), model(x))
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["fc"]
    assert set(vars(model)) == set(vars(SizeBranchy()))  # no tensor constant left on the model


def test_control_flow_on_values_is_refused() -> None:
    with pytest.raises(fx.proxy.TraceError, match="depends on the input's values"):
        concrete_trace(ValueBranchy(), (torch.ones(2, 3),))


class KwargModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor, scale: float = 1.0, as_dict: bool = True):
        logits = self.head(self.emb(ids)) * scale
        return {"logits": logits} if as_dict else (logits, ids)


def test_with_call_fixes_keywords_and_keeps_names_and_ties() -> None:
    torch.manual_seed(0)
    model = KwargModel()
    lm = with_call(model, ("ids",), output=0, scale=2.0, as_dict=False)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(lm(ids), model(ids)["logits"] * 2.0)
    assert isinstance(lm, KwargModel) and type(model) is KwargModel  # the original is unchanged
    assert [n for n, _ in lm.named_modules()] == ["", "emb", "head"] and lm.head.weight is lm.emb.weight
    assert [lay.name for lay in discover(lm, ids)] == ["emb", "head"]
    by_key = with_call(lm, output="logits")  # re-wrapping replaces the call
    assert torch.equal(by_key(ids), model(ids)["logits"])
    with pytest.raises(Exception, match="inputs must be a non-empty tuple of argument names"):
        with_call(model, ("not a name",))
