"""canonicalize(): MultiheadAttention as PackedAttention computes the same function, on a copy."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from mpsearch.errors import UnsupportedModelError
from mpsearch.model import PackedAttention, canonicalize, discover_graph, is_canonical

E, H, L, S, N = 16, 4, 5, 7, 2
ATOL = 1e-6


def _mha(batch_first: bool, bias: bool = True) -> nn.MultiheadAttention:
    torch.manual_seed(0)
    return nn.MultiheadAttention(E, H, bias=bias, batch_first=batch_first).eval()


def _inputs(batch_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, L, E, generator=g)
    mem = torch.randn(N, S, E, generator=g)
    return (x, mem) if batch_first else (x.transpose(0, 1), mem.transpose(0, 1))


CAUSAL = torch.ones(L, L, dtype=torch.bool).triu(1)
PAD_MEM = torch.tensor([[False] * (S - 2) + [True] * 2, [False] * S])  # [N, S], True = ignore
PAD_SELF = torch.tensor([[False] * L, [False] * (L - 1) + [True]])


def _cases(x: torch.Tensor, mem: torch.Tensor) -> list[tuple[str, tuple, dict]]:
    return [
        ("self, weights", (x, x, x), {}),
        ("self, sdpa", (x, x, x), {"need_weights": False}),
        ("causal hint + mask, sdpa", (x, x, x), {"attn_mask": CAUSAL, "is_causal": True, "need_weights": False}),
        ("causal mask, weights", (x, x, x), {"attn_mask": CAUSAL}),
        ("causal + padding, sdpa", (x, x, x),
         {"attn_mask": CAUSAL, "is_causal": True, "key_padding_mask": PAD_SELF, "need_weights": False}),
        ("float mask [N*H, L, L]", (x, x, x), {"attn_mask": torch.randn(N * H, L, L), "need_weights": False}),
        ("per-head weights", (x, x, x), {"average_attn_weights": False}),
        ("cross, padding, weights", (x, mem, mem), {"key_padding_mask": PAD_MEM}),
        ("cross, padding, sdpa", (x, mem, mem), {"key_padding_mask": PAD_MEM, "need_weights": False}),
        ("key != value", (x, mem, 2 * mem), {"need_weights": False}),
    ]


@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_attention_matches_multihead_attention(batch_first: bool) -> None:
    mha = _mha(batch_first)
    packed = canonicalize(mha)
    assert isinstance(packed, PackedAttention) and isinstance(mha, nn.MultiheadAttention)
    # one packed Linear [3E, E] and a plain Linear out_proj, holding the same numbers
    assert type(packed.in_proj) is nn.Linear and type(packed.out_proj) is nn.Linear
    assert packed.in_proj.weight.shape == (3 * E, E)
    assert torch.equal(packed.in_proj.weight, mha.in_proj_weight)
    assert torch.equal(packed.out_proj.weight, mha.out_proj.weight)
    x, mem = _inputs(batch_first)
    for what, args, kwargs in _cases(x, mem):
        want, want_w = mha(*args, **kwargs)
        got, got_w = packed(*args, **kwargs)
        assert got.shape == want.shape and torch.allclose(got, want, atol=ATOL), what
        if want_w is None:
            assert got_w is None, what
        else:
            assert got_w.shape == want_w.shape and torch.allclose(got_w, want_w, atol=ATOL), what


def test_unbatched_no_bias_and_gradients_match() -> None:
    mha = _mha(batch_first=False, bias=False)
    packed = canonicalize(mha)
    assert packed.in_proj.bias is None and packed.out_proj.bias is None
    x = torch.randn(L, E)
    for kwargs in ({}, {"need_weights": False}, {"attn_mask": CAUSAL, "is_causal": True, "need_weights": False}):
        assert torch.allclose(packed(x, x, x, **kwargs)[0], mha(x, x, x, **kwargs)[0], atol=ATOL)
    # the backward (which sensitivity needs) gives the same packed-weight gradient
    xb = torch.randn(L, N, E)
    mha(xb, xb, xb, need_weights=False)[0].square().sum().backward()
    packed(xb, xb, xb, need_weights=False)[0].square().sum().backward()
    assert torch.allclose(packed.in_proj.weight.grad, mha.in_proj_weight.grad, atol=1e-5)


def test_encoder_layer_matches_and_runs_in_proj_as_a_module() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True).eval()
    canon = canonicalize(layer)
    x = torch.randn(N, L, E)
    seen: list[str] = []

    class Counting(nn.Linear):  # not a hook: hooks alone switch torch's fast path off
        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            seen.append("in_proj")
            return super().forward(inp)

    canon.self_attn.in_proj.__class__ = Counting
    with torch.no_grad():  # the condition of torch's fused fast path, which must not bypass in_proj
        got, want = canon(x, src_mask=CAUSAL, is_causal=True), layer(x, src_mask=CAUSAL, is_causal=True)
    assert torch.allclose(got, want, atol=1e-5) and seen == ["in_proj"]


class _TiedMha(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, E)
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.head = nn.Linear(E, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids)
        for _ in range(2):  # one attention module called twice
            x = self.attn(x, x, x, need_weights=False)[0]
        return self.head(x)


def test_copy_keeps_ties_sharing_and_flags_and_leaves_the_model_alone() -> None:
    model = _TiedMha().train()
    model.head.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    canon = canonicalize(model)
    assert isinstance(model.attn, nn.MultiheadAttention)  # the user's model is unchanged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert canon.head.weight is canon.emb.weight and canon.emb.weight is not model.emb.weight
    assert canon.training and canon.attn.training and not canon.head.training
    assert not is_canonical(model) and is_canonical(canon)
    ids = torch.randint(0, 10, (N, L))
    assert torch.allclose(canon.eval()(ids), model.eval()(ids), atol=ATOL)
    # discovery: one layer per module, two calls of the attention's Linears, the tie kept
    graph = discover_graph(model, ids)
    assert graph.names == ("emb", "attn.in_proj", "attn.out_proj", "head")
    assert graph.n_calls == {"attn.in_proj": 2, "attn.out_proj": 2}
    # in_proj per call: L * E * 3E = 5 * 16 * 48 = 3840, two calls 7680
    assert graph.layer("attn.in_proj").macs == 7680
    assert graph.layer("emb").shares_weight_with == ("head",)
    # two SDPA calls, each H * L * L * d * 2 = 4 * 5 * 5 * 4 * 2 = 800 MACs
    assert [(m.name, m.macs) for m in graph.activation_matmuls] == [("attn.sdpa", 800), ("attn.sdpa_1", 800)]


def test_shared_module_is_replaced_by_one_shared_module() -> None:
    mha = nn.MultiheadAttention(E, H)
    model = nn.ModuleDict({"a": mha, "b": mha})
    canon = canonicalize(model)
    assert canon["a"] is canon["b"] and isinstance(canon["a"], PackedAttention)


@pytest.mark.parametrize("kwargs, rule", [
    ({"kdim": 8}, r"enc\.attn \(MultiheadAttention\): kdim and vdim must equal embed_dim 16.*kdim=8, vdim=16"),
    ({"add_bias_kv": True}, r"enc\.attn \(MultiheadAttention\): add_bias_kv must be False"),
    ({"add_zero_attn": True}, r"enc\.attn \(MultiheadAttention\): add_zero_attn must be False"),
])
def test_unsupported_attention_is_refused_by_name(kwargs: dict, rule: str) -> None:
    model = nn.Sequential()
    model.add_module("enc", nn.Module())
    model.enc.add_module("attn", nn.MultiheadAttention(E, H, **kwargs))
    with pytest.raises(UnsupportedModelError, match="canonicalize: " + rule):
        canonicalize(model)


def test_bad_models() -> None:
    with pytest.raises(UnsupportedModelError, match="model must be a torch.nn.Module, but got builtins.dict"):
        canonicalize({})  # type: ignore[arg-type]

    class Locked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(E, H)
            self.lock = threading.Lock()

    with pytest.raises(UnsupportedModelError, match="model Locked must support copy.deepcopy, but it raised TypeError"):
        canonicalize(Locked())
