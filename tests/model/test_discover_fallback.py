"""discover(): hook fallback, unsupported layers, errors, and leaving the model untouched."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from mpsearch.errors import ConfigError, UnsupportedModelError
from mpsearch.model import discover, discover_graph, input_ties


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace `if x.sum() > 0`."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x * 2
        ya = self.a(x).mean((2, 3))
        yb = self.b(x).mean((2, 3))
        return self.fc(torch.cat([ya, yb], 1))


def test_untraceable_model_uses_hooks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        graph = discover_graph(_Branchy(), torch.randn(2, 3, 16, 16))
    assert graph.mode == "hooks"
    lines = [r.getMessage() for r in caplog.records if "mode=" in r.getMessage()]
    assert len(lines) == 1 and "hooks" in lines[0] and "_Branchy" in lines[0]
    assert "control flow" in lines[0]  # why fx failed
    by = {l.name: l for l in graph.layers}
    # a: 3->8 k3 s2 p1 on 16x16 -> 8x8: macs = 8*8*8 * 3 * 9 = 13824; params = 216 + 8 = 224
    assert (by["a"].macs, by["a"].n_params, by["a"].output_shape) == (13824, 224, (2, 8, 8, 8))
    # b: 3->4 1x1 on 16x16: macs = 4*16*16 * 3 = 3072; params = 12
    assert (by["b"].macs, by["b"].n_params) == (3072, 12)
    # fc: 12 -> 5: macs = 60; params = 65
    assert (by["fc"].macs, by["fc"].n_params) == (60, 65)
    # shared input found from tensor identity; joins unknown in hook mode
    assert by["a"].shares_input_with == ("b",) and by["fc"].shares_input_with == ()
    assert input_ties(graph) == [("a", "b")]
    assert graph.joins == () and all(l.joins == () for l in graph.layers)


class _SharedHooks(_Branchy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = x + 1
        y = self.b(x)
        y = self.b(y[:, :3])  # b called twice, on different tensors
        return y


def test_hook_mode_weight_sharing_and_inplace_inputs_are_distinct() -> None:
    graph = discover_graph(_SharedHooks(), torch.randn(1, 3, 4, 4))
    assert graph.mode == "hooks"
    (b,) = graph.layers
    # two calls, each 4*4*4 * 3 = 192 -> 384
    assert b.macs == 384 and graph.n_calls == {"b": 2}
    assert b.shares_input_with == ()
    assert graph.not_called == ("a", "fc")


class _InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            pass
        y = self.a(x)
        x.relu_()  # same storage, different contents: b does not share a's input
        return y + self.b(x)


def test_hook_mode_inplace_write_breaks_sharing() -> None:
    graph = discover_graph(_InPlace(), torch.randn(1, 2, 3, 3) + 0.5)
    assert graph.mode == "hooks"
    assert graph.layer("a").shares_input_with == ()


class _WithUnsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.lstm = nn.LSTM(6, 6, batch_first=True)
        self.up = nn.ConvTranspose2d(1, 1, 2, stride=2)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        x, _ = self.lstm(x)
        x, _ = self.attn(x, x, x)
        return self.head(x)


def test_unsupported_layers_listed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mpsearch"):
        graph = discover_graph(_WithUnsupported(), torch.randint(0, 10, (2, 4)))
    # Since issue 14, Embedding is a layer and MultiheadAttention is rewritten into its
    # in_proj / out_proj Linears (canonicalize), so only LSTM and ConvTranspose2d stay float.
    assert graph.unsupported == (("lstm", "LSTM"), ("up", "ConvTranspose2d"))
    assert graph.names == ("emb", "attn.in_proj", "attn.out_proj", "head")
    # head: 6 -> 3 on (2, 4, 6): macs per example = 4 * 3 * 6 = 72
    assert graph.layer("head").macs == 72
    # the canonical attention runs out_proj as a module: nothing is left uncalled
    assert graph.not_called == ()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "lstm (LSTM)" in text and "ConvTranspose2d" in text


def test_not_a_module() -> None:
    with pytest.raises(UnsupportedModelError, match="nn.Module.*builtins.dict"):
        discover({"w": 1}, torch.randn(1))  # type: ignore[arg-type]


def test_forward_failure_carries_original_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1))
    with pytest.raises(UnsupportedModelError) as info:
        discover(model, torch.randn(1, 5, 4, 4))  # 5 channels into a 3-channel conv
    msg = str(info.value)
    assert "Sequential" in msg and "(1, 5, 4, 4)" in msg
    assert "expected input[1, 5, 4, 4] to have 3 channels" in msg


def test_no_quantizable_layers() -> None:
    with pytest.raises(UnsupportedModelError, match="ReLU.*at least one quantizable layer.*Conv1d, Conv2d, Linear"):
        discover(nn.ReLU(), torch.randn(2, 3))
    with pytest.raises(UnsupportedModelError, match=r"unsupported weight layers: \[\('0', 'ConvTranspose2d'\)\]"):
        discover(nn.Sequential(nn.ConvTranspose2d(1, 1, 2)), torch.randn(1, 1, 3, 3))


@pytest.mark.parametrize("bad", [[1, 2], (), "x", (torch.randn(1), 3)])
def test_bad_example_inputs_type(bad: object) -> None:
    with pytest.raises(ConfigError, match="example_inputs must be a torch.Tensor"):
        discover(nn.Linear(1, 1), bad)  # type: ignore[arg-type]


def test_model_restored_per_module_and_no_hooks_left() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Dropout(0.9), nn.Flatten(), nn.Linear(16, 1))
    model.train()
    model[1].eval()  # a frozen BN inside a training model must stay frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for m in (model, _Branchy()):
        m_training = {n: s.training for n, s in m.named_modules()}
        x = torch.randn(3, 1, 2, 4) if m is model else torch.randn(1, 3, 4, 4)
        discover(m, x)
        assert {n: s.training for n, s in m.named_modules()} == m_training
        for s in m.modules():
            assert not s._forward_hooks and not s._forward_pre_hooks
    # eval + no_grad: running stats untouched, nothing else changed
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _WithEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x))


def test_linears_inside_torch_nn_composites_are_found() -> None:
    graph = discover_graph(_WithEncoder(), torch.randn(2, 5, 8))
    # fx does not hide enc.linear1/2 inside one opaque TransformerEncoderLayer node; since
    # issue 14 its self_attn is canonical (in_proj + out_proj Linears) and found as well
    assert graph.names == ("enc.self_attn.in_proj", "enc.self_attn.out_proj", "enc.linear1", "enc.linear2", "head")
    # in_proj 8 -> 24 on (2, 5, 8): 5 * 24 * 8 = 960; out_proj 8 -> 8: 5 * 8 * 8 = 320
    # linear1 8 -> 16 on (2, 5, 8): per example 5 * 16 * 8 = 640; linear2 16 -> 8: 5 * 8 * 16 = 640
    assert [graph.layer(n).macs for n in graph.names] == [960, 320, 640, 640, 5 * 2 * 8]
    assert graph.unsupported == ()
    assert graph.not_called == ()


class _Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(x) * torch.tensor(2.0)  # fx stores this constant on the root


def test_fx_trace_leaves_no_attributes_on_the_model() -> None:
    model = _Constant()
    keys = set(vars(model))
    graph = discover_graph(model, torch.randn(1, 1, 2, 2))
    assert graph.mode == "fx" and graph.layer("c").macs == 4  # 1*2*2 outputs * 1 input
    assert set(vars(model)) == keys
