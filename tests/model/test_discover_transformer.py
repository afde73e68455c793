"""discover() on GPT-style models: layer names, kinds, shapes, MACs by hand, ties, attention matmuls.

Both models: vocab V = 32, width D = 16, 4 heads (head dim 4), sequence T = 8, batch 2,
two blocks (block 0: GELU MLP 16 -> 32 -> 16; block 1: SwiGLU 16 -> 24 -> 16), token and
position embeddings, LayerNorms, and an LM head tied to the token embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.model import discover_graph, input_ties, weight_ties

V, D, H, T, B = 32, 16, 4, 8, 2


class SwiGLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(D, 24), nn.Linear(D, 24), nn.Linear(24, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class GeluMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(D, 32), nn.GELU(), nn.Linear(32, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MhaBlock(nn.Module):
    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.mlp = mlp
        self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.causal, is_causal=True, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class SdpaAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (p(x).unflatten(-1, (H, D // H)).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [B, H, T, d]
        return self.o(y.transpose(1, 2).flatten(2))


class SdpaBlock(nn.Module):
    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn, self.mlp = SdpaAttention(), mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, block: type[nn.Module]) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(T, D)
        self.blocks = nn.ModuleList([block(GeluMLP()), block(SwiGLU())])
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, V, bias=False)
        self.head.weight = self.tok.weight  # tied

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


# Linear MACs per example on [B, T, D_in]: T * D_in * D_out.
MLP_MACS = {
    "blocks.0.mlp.fc1": T * D * 32,  # 8 * 16 * 32 = 4096
    "blocks.0.mlp.fc2": T * 32 * D,  # 4096
    "blocks.1.mlp.gate": T * D * 24,  # 8 * 16 * 24 = 3072
    "blocks.1.mlp.up": T * D * 24,  # 3072
    "blocks.1.mlp.down": T * 24 * D,  # 3072
}
HEAD_MACS = T * D * V  # 8 * 16 * 32 = 4096
# SDPA per block, q/k/v [B, 4, 8, 4]: QK^T = H*T*T*d = 4*8*8*4 = 1024, AV = 1024 -> 2048
SDPA_MACS = H * T * T * (D // H) * 2


def _check_common(graph, attn_names: list[str]) -> None:
    by = {lay.name: lay for lay in graph.layers}
    tok, pos = by["tok"], by["pos"]
    # embeddings: weight [num_embeddings, dim], rows are out_channels, lookups cost no MACs
    assert (tok.kind, tok.weight_shape, tok.n_params, tok.macs) == ("embedding", (V, D), V * D, 0)
    assert (tok.out_channels, tok.in_channels, tok.has_bias) == (V, D, False)
    assert (tok.input_shape, tok.output_shape) == ((B, T), (B, T, D))
    assert (pos.kind, pos.weight_shape, pos.macs, pos.input_shape, pos.output_shape) == \
        ("embedding", (T, D), 0, (T,), (T, D))
    head = by["head"]
    assert (head.kind, head.weight_shape, head.n_params, head.macs) == ("linear", (V, D), V * D, HEAD_MACS)
    for name, macs in MLP_MACS.items():
        assert by[name].kind == "linear" and by[name].macs == macs, name
    # the tied pair: one Parameter, one tie group, one bit-width
    assert tok.shares_weight_with == ("head",) and head.shares_weight_with == ("tok",)
    assert weight_ties(graph) == [("tok", "head")]
    ties = input_ties(graph)
    assert ("tok", "head") in ties and ("blocks.1.mlp.gate", "blocks.1.mlp.up") in ties
    # attention's own matmuls: one SDPA per block, named by the module that runs it
    assert [m.name for m in graph.activation_matmuls] == attn_names
    assert [m.op for m in graph.activation_matmuls] == ["sdpa", "sdpa"]
    assert all(m.macs == SDPA_MACS for m in graph.activation_matmuls)
    assert graph.activation_matmuls[0].input_shapes == ((B, H, T, D // H),) * 3
    assert graph.activation_macs == 2 * SDPA_MACS == 4096
    assert graph.total_macs == sum(lay.macs for lay in graph.layers) + 4096
    assert graph.unsupported == () and graph.not_called == ()


def test_gpt_with_multihead_attention() -> None:
    model = TinyGPT(MhaBlock)
    graph = discover_graph(model, torch.randint(0, V, (B, T)))
    assert graph.mode == "fx"
    assert graph.names == (
        "tok", "pos",
        "blocks.0.attn.in_proj", "blocks.0.attn.out_proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2",
        "blocks.1.attn.in_proj", "blocks.1.attn.out_proj", "blocks.1.mlp.gate", "blocks.1.mlp.up",
        "blocks.1.mlp.down", "head")
    by = {lay.name: lay for lay in graph.layers}
    for i in (0, 1):
        inp, out = by[f"blocks.{i}.attn.in_proj"], by[f"blocks.{i}.attn.out_proj"]
        # packed q/k/v: weight [3D, D] = [48, 16]; macs T * D * 3D = 8 * 16 * 48 = 6144;
        # params 768 + 48 bias = 816
        assert (inp.kind, inp.weight_shape, inp.macs, inp.n_params) == ("linear", (3 * D, D), 6144, 816)
        assert (inp.input_shape, inp.output_shape) == ((B, T, D), (B, T, 3 * D))
        # out_proj: T * D * D = 2048 MACs; params 256 + 16 = 272
        assert (out.kind, out.weight_shape, out.macs, out.n_params) == ("linear", (D, D), 2048, 272)
    _check_common(graph, ["blocks.0.attn.sdpa", "blocks.1.attn.sdpa"])
    # layers: 2 * (6144 + 2048) + 4096 * 2 + 3072 * 3 + 4096 = 37888, plus 4096 attention
    assert graph.total_macs == 37888 + 4096
    # residual adds are seen (fx): the embedding sum, then one add per attention and per MLP
    assert [j.inputs for j in graph.joins] == [
        ("tok", "pos"), ("blocks.0.attn.out_proj",), ("blocks.0.mlp.fc2",),
        ("blocks.1.attn.out_proj",), ("blocks.1.mlp.down",)]
    # the user's model still holds nn.MultiheadAttention
    assert isinstance(model.blocks[0].attn, nn.MultiheadAttention)


def test_gpt_with_sdpa_and_explicit_qkv() -> None:
    graph = discover_graph(TinyGPT(SdpaBlock), torch.randint(0, V, (B, T)))
    assert graph.mode == "fx"
    names = ["tok", "pos"]
    for i, mlp in enumerate((["fc1", "fc2"], ["gate", "up", "down"])):
        names += [f"blocks.{i}.attn.{p}" for p in "qkvo"] + [f"blocks.{i}.mlp.{m}" for m in mlp]
    assert graph.names == tuple(names + ["head"])
    by = {lay.name: lay for lay in graph.layers}
    for i in (0, 1):
        for p in "qkvo":  # D -> D on [B, T, D]: 8 * 16 * 16 = 2048 MACs
            assert by[f"blocks.{i}.attn.{p}"].macs == 2048
    _check_common(graph, ["blocks.0.attn.sdpa", "blocks.1.attn.sdpa"])
    # q, k and v read one tensor: one activation quantizer, one tie group
    assert ("blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v") in input_ties(graph)
    # layers: 2 * 4 * 2048 + 4096 * 2 + 3072 * 3 + 4096 = 37888 as with the packed MHA
    assert graph.total_macs == 37888 + 4096


def test_hooks_mode_names_matmuls_as_fx_does() -> None:
    class Untraceable(TinyGPT):
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            if ids.sum() < 0:  # data-dependent: torch.fx cannot trace it
                ids = -ids
            return super().forward(ids)

    for block in (MhaBlock, SdpaBlock):
        graph = discover_graph(Untraceable(block), torch.randint(0, V, (B, T)))
        assert graph.mode == "hooks" and graph.joins == ()
        _check_common(graph, ["blocks.0.attn.sdpa", "blocks.1.attn.sdpa"])


class _ExplicitAttention(nn.Module):
    """Eager attention written with matmuls, and a weight used through F.linear only."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.w = nn.Parameter(torch.randn(D, D))  # a weight matmul, not between activations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # [B, T, D] each, one head
        att = torch.softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1)  # [B, T, T]
        y = torch.bmm(att, v)  # [B, T, D]
        y = y @ self.w  # weight: not counted
        return F.linear(y, self.proj.weight, self.proj.bias)  # proj never runs as a module


def test_matmul_and_bmm_between_activations() -> None:
    graph = discover_graph(_ExplicitAttention(), torch.randn(B, T, D))
    assert graph.names == ("qkv",)
    # q @ k^T: [8, 16] x [16, 8] = 8 * 8 * 16 = 1024 per example; att @ v: 8 * 16 * 8 = 1024
    assert [(m.name, m.op, m.macs) for m in graph.activation_matmuls] == [("matmul", "matmul", 1024),
                                                                          ("bmm", "bmm", 1024)]
    assert graph.activation_matmuls[0].input_shapes == ((B, T, D), (B, D, T))
    assert graph.activation_matmuls[0].output_shape == (B, T, T)
    # proj's weight is read by F.linear, not by a module call; w is a weight held by the root
    assert graph.not_called == ("proj",) and graph.unsupported == (("", "_ExplicitAttention"),)
