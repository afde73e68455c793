"""discover() on models that the `transformers` library builds from tiny configs (random weights,
nothing downloaded): GPT-2 (Conv1D), a LLaMA-style model (grouped-query attention, SwiGLU, tied
head) and BERT. Names, kinds, weight shapes, MACs by hand, ties, attention matmuls.

All models: width 64, 4 heads (head dim 16), 2 blocks, vocab 128; input ids [B=2, T=8].
Linear MACs per example on [B, T, D_in]: T * D_in * D_out.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpsearch.model import canonicalize, discover_graph, input_ties, is_canonical, weight_ties

transformers = pytest.importorskip("transformers")

B, T, D, VOCAB = 2, 8, 64, 128
# one SDPA per block, q [2, 4, 8, 16]: QK^T = 4 * 8 * 8 * 16 = 4096, AV = 4096 -> 8192 per example
SDPA_MACS = 4 * T * T * 16 * 2


@pytest.fixture(autouse=True)
def _quiet() -> None:
    transformers.logging.set_verbosity_error()  # config notices about token ids of a tiny vocab


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(0))


def _gpt2(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=D, n_head=4, vocab_size=VOCAB, n_positions=64,
                                  bos_token_id=0, eos_token_id=0, **kwargs)
    return transformers.GPT2LMHeadModel(cfg).eval()


def test_gpt2_conv1d_becomes_linear_with_same_logits() -> None:
    model = _gpt2()
    canon = canonicalize(model)
    c_attn = model.transformer.h[0].attn.c_attn
    lin = canon.transformer.h[0].attn.c_attn
    assert type(c_attn).__name__ == "Conv1D" and c_attn.weight.shape == (D, 3 * D)  # [in, out]
    assert type(lin) is nn.Linear and lin.weight.shape == (3 * D, D)  # [out, in]
    assert torch.equal(lin.weight, c_attn.weight.t()) and lin.bias is canon.transformer.h[0].attn.c_attn.bias
    assert canon.lm_head.weight is canon.transformer.wte.weight  # the tie survives the copy
    assert not is_canonical(model) and is_canonical(canon)
    with torch.no_grad():
        assert torch.allclose(canon(_ids()).logits, model(_ids()).logits, atol=1e-5)


def test_gpt2_layers_macs_ties_and_attention() -> None:
    graph = discover_graph(_gpt2(), _ids())
    assert graph.mode == "hooks"  # transformers models do not trace with torch.fx
    blocks = []
    for i in (0, 1):
        blocks += [(f"transformer.h.{i}.attn.c_attn", (192, 64), T * 64 * 192),  # 98304
                   (f"transformer.h.{i}.attn.c_proj", (64, 64), T * 64 * 64),  # 32768
                   (f"transformer.h.{i}.mlp.c_fc", (256, 64), T * 64 * 256),  # 131072
                   (f"transformer.h.{i}.mlp.c_proj", (64, 256), T * 256 * 64)]  # 131072
    want = ([("transformer.wte", "embedding", (128, 64), 0), ("transformer.wpe", "embedding", (64, 64), 0)]
            + [(n, "linear", w, m) for n, w, m in blocks]
            + [("lm_head", "linear", (128, 64), T * 64 * 128)])  # 65536
    assert [(lay.name, lay.kind, lay.weight_shape, lay.macs) for lay in graph.layers] == want
    assert graph.layer("transformer.wte").input_shape == (B, T)
    assert graph.layer("transformer.wpe").input_shape == (1, T)  # position ids
    assert weight_ties(graph) == input_ties(graph) == [("transformer.wte", "lm_head")]
    assert [(m.name, m.op, m.macs) for m in graph.activation_matmuls] == [
        ("transformer.h.0.attn.sdpa", "sdpa", SDPA_MACS), ("transformer.h.1.attn.sdpa", "sdpa", SDPA_MACS)]
    # layers 2 * (98304 + 32768 + 131072 * 2) + 65536 = 851968; attention 2 * 8192 = 16384
    assert graph.total_macs == 851968 + 16384
    assert graph.unsupported == () and graph.not_called == ()


def test_gpt2_eager_attention_counts_its_matmuls() -> None:
    model = _gpt2()
    model.config._attn_implementation = "eager"  # QK^T and AV as torch.matmul
    graph = discover_graph(model, _ids())
    # per block: q @ k^T [2, 4, 8, 16] x [2, 4, 16, 8] = 4 * 8 * 8 * 16 = 4096; weights @ v: 4096
    assert [(m.op, m.macs) for m in graph.activation_matmuls] == [("matmul", 4096)] * 4
    assert graph.activation_macs == 2 * SDPA_MACS


def test_llama_style_gqa_swiglu_tied() -> None:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=D, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    graph = discover_graph(transformers.LlamaForCausalLM(cfg).eval(), _ids())
    want = [("model.embed_tokens", (128, 64), 0)]
    for i in (0, 1):
        p = f"model.layers.{i}"
        want += [(f"{p}.self_attn.q_proj", (64, 64), T * 64 * 64),  # 32768
                 (f"{p}.self_attn.k_proj", (32, 64), T * 64 * 32),  # 2 kv heads * 16 = 32 outputs: 16384
                 (f"{p}.self_attn.v_proj", (32, 64), T * 64 * 32),  # 16384
                 (f"{p}.self_attn.o_proj", (64, 64), T * 64 * 64),  # 32768
                 (f"{p}.mlp.gate_proj", (96, 64), T * 64 * 96),  # 49152
                 (f"{p}.mlp.up_proj", (96, 64), T * 64 * 96),  # 49152
                 (f"{p}.mlp.down_proj", (64, 96), T * 96 * 64)]  # 49152
    want.append(("lm_head", (128, 64), T * 64 * 128))  # 65536
    assert [(lay.name, lay.weight_shape, lay.macs) for lay in graph.layers] == want
    assert graph.layer("model.embed_tokens").kind == "embedding"
    assert graph.layer("lm_head").shares_weight_with == ("model.embed_tokens",)
    ties = input_ties(graph)
    assert ties[0] == ("model.embed_tokens", "lm_head")
    assert ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj") in ties
    assert ("model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj") in ties
    # grouped-query: k, v [2, 2, 8, 16] are repeated to q's 4 heads, so MACs count 4 heads
    sdpa = graph.activation_matmuls
    assert [m.name for m in sdpa] == ["model.layers.0.self_attn.sdpa", "model.layers.1.self_attn.sdpa"]
    assert sdpa[0].input_shapes == ((B, 4, T, 16), (B, 2, T, 16), (B, 2, T, 16))
    assert [m.macs for m in sdpa] == [SDPA_MACS] * 2


def test_bert_embeddings_and_tied_decoder() -> None:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                                  vocab_size=VOCAB, max_position_embeddings=64)
    graph = discover_graph(transformers.BertForMaskedLM(cfg).eval(), _ids())
    emb = [("bert.embeddings.word_embeddings", (128, 64)), ("bert.embeddings.token_type_embeddings", (2, 64)),
           ("bert.embeddings.position_embeddings", (64, 64))]
    assert [(lay.name, lay.weight_shape, lay.kind, lay.macs) for lay in graph.layers[:3]] == \
        [(n, w, "embedding", 0) for n, w in emb]
    macs = {lay.name: lay.macs for lay in graph.layers[3:]}
    for i in (0, 1):
        p = f"bert.encoder.layer.{i}"
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            assert macs.pop(f"{p}.{n}") == T * 64 * 64  # 32768
        assert macs.pop(f"{p}.intermediate.dense") == T * 64 * 96  # 49152
        assert macs.pop(f"{p}.output.dense") == T * 96 * 64  # 49152
    assert macs == {"cls.predictions.transform.dense": T * 64 * 64, "cls.predictions.decoder": T * 64 * 128}
    assert weight_ties(graph) == [("bert.embeddings.word_embeddings", "cls.predictions.decoder")]
    # bidirectional attention: still dense, 8192 per block
    assert [(m.name, m.macs) for m in graph.activation_matmuls] == [
        ("bert.encoder.layer.0.attention.self.sdpa", SDPA_MACS),
        ("bert.encoder.layer.1.attention.self.sdpa", SDPA_MACS)]
