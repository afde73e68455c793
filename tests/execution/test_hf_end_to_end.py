"""Models the `transformers` library builds from tiny configs (random weights, nothing downloaded) go
through discover -> analyze(hessian) -> cost_table -> allocate -> quantize -> to_integer -> validate:
GPT2LMHeadModel (Conv1D), LlamaForCausalLM (RMSNorm, rotary embeddings, grouped-query attention,
SwiGLU, tied head) and BertForMaskedLM (token type and position embeddings, bidirectional mask).

`with_call(model, ("input_ids",), use_cache=False, return_dict=False)` makes each a model of
`input_ids` returning its logits [B, T, V]; torch.fx cannot trace them (shape-dependent Python),
so `quantize` traces them on the calibration batch with ConcreteTracer (graph mode). They run with
declared float islands (IntegerConfig(integer_only=False)); eager attention ("eager"), so
attention's matmuls and softmax are islands of their own.

All models: width 64, 4 heads, 2 blocks, vocab 128; input ids [B=4, T=8].
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch as mps
from mpsearch.core import BitPlan
from mpsearch.execution import IntegerConfig, IntegerModel
from mpsearch.model import with_call
from mpsearch.quant import quant_mode
from mpsearch.sensitivity import HessianConfig

transformers = pytest.importorskip("transformers")

B, T, D, VOCAB = 4, 8, 64, 128


def _gpt2() -> nn.Module:
    cfg = transformers.GPT2Config(n_layer=2, n_embd=D, n_head=4, vocab_size=VOCAB, n_positions=64, bos_token_id=0,
                                  eos_token_id=0, attn_implementation="eager")
    return transformers.GPT2LMHeadModel(cfg)


def _llama() -> nn.Module:
    cfg = transformers.LlamaConfig(hidden_size=D, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64,
                                   tie_word_embeddings=True, attn_implementation="eager")
    return transformers.LlamaForCausalLM(cfg)


def _bert() -> nn.Module:
    cfg = transformers.BertConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                                  vocab_size=VOCAB, max_position_embeddings=64, attn_implementation="eager")
    return transformers.BertForMaskedLM(cfg)


# per model: builder, first discovered layers, number of layers, float islands that must be listed
MODELS: dict[str, tuple[Callable[[], nn.Module], list[str], int, list[str]]] = {
    "gpt2": (_gpt2, ["transformer.wte", "transformer.wpe", "transformer.h.0.attn.c_attn"], 11,
             ["transformer_h_0_ln_1 (module transformer.h.0.ln_1 (LayerNorm)): layer_norm",
              "softmax (function softmax): softmax", "tanh (function tanh): tanh",
              "transformer_ln_f (module transformer.ln_f (LayerNorm)): layer_norm"]),
    "llama": (_llama, ["model.embed_tokens", "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"],
              16, ["rsqrt (function rsqrt): rsqrt", "silu (function silu): silu", "neg (function neg): neg",
                   "softmax (function softmax): softmax"]),
    "bert": (_bert, ["bert.embeddings.word_embeddings", "bert.embeddings.token_type_embeddings",
                     "bert.embeddings.position_embeddings"], 17,
             ["bert_embeddings_layer_norm (module bert.embeddings.LayerNorm (LayerNorm)): layer_norm",
              "softmax (function softmax): softmax", "gelu (function gelu): gelu"]),
}


def _loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _batches(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, VOCAB, (B, T + 1), generator=g) for _ in range(n)]
    return [(s[:, :-1].contiguous(), s[:, 1:].contiguous()) for s in seqs]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    transformers.logging.set_verbosity_error()  # config notices about token ids of a tiny vocab


@pytest.mark.parametrize("name", list(MODELS))
def test_transformers_model_end_to_end(name: str, tmp_path: Any) -> None:
    build, first, n_layers, islands = MODELS[name]
    torch.manual_seed(0)
    model = with_call(build().eval(), ("input_ids",), use_cache=False, return_dict=False)
    batches = _batches(2, 1)
    layers = mps.discover(model, batches[0][0])
    assert [lay.name for lay in layers][:3] == first and len(layers) == n_layers
    cfg = HessianConfig(min_probes=2, max_probes=2)  # the pipeline, not the traces' precision
    sens = mps.analyze(model, _loss, batches[:1], method="hessian", config=cfg)
    assert set(sens.layers) == {lay.name for lay in layers}
    profile = mps.load_profile("nvidia-a100")  # integer_only: false -> float islands allowed
    table = mps.cost_table(model, layers, sens, profile, w_bits=[4, 8], a_bits=[4, 8])  # pairs: w8a8, w4a4
    w8a8 = BitPlan.uniform([lay.name for lay in layers], 8, 8)
    # half way from the smallest plan (W4A4 where the profile's rules allow) to the largest (W8A8)
    mixed = mps.allocate(table, budgets={"size_bytes": "50%"})
    lo, hi = table.extremes("size_bytes")
    assert mixed.totals["size_bytes"] <= (lo + hi) / 2 + 1e-6
    assert {(b.w_bits, b.a_bits) for b in mixed.layers.values()} == {(4, 4), (8, 8)}
    for plan in (w8a8, mixed):
        q = mps.quantize(model, plan, batches, profile=profile)
        assert quant_mode(q) == "graph"
        imodel = mps.to_integer(q, batches[0][0], IntegerConfig(integer_only=False))
        report = mps.validate(imodel, q, _batches(3, 2), timing_repeats=0)
        assert report.n_positions == 3 * B * T  # next-token (GPT-2, LLaMA) / masked-token (BERT) per position
        assert report.top1_agreement >= 0.99
        assert report.float_ops and all(op in report.float_ops for op in islands)
    with torch.no_grad():  # the fake-quant graph runs at another batch size too (sizes stayed symbolic)
        assert q(batches[0][0][:1]).shape == (1, T, VOCAB)
        # the program, islands included, saves and loads bit for bit
        x = batches[1][0]
        assert torch.equal(IntegerModel.load(imodel.save(tmp_path / name))(x), imodel(x))


def test_unwrapped_model_falls_back_and_to_integer_names_the_fix() -> None:
    """Without with_call, fx cannot even read GPT-2's forward signature: per-layer mode, and
    to_integer says how to get graph mode."""
    from mpsearch.errors import UnsupportedModelError
    from mpsearch.quant import quantizable_layer_names

    torch.manual_seed(0)
    model = _gpt2().eval()
    ids = _batches(1, 1)[0][0]
    q = mps.quantize(model, BitPlan.uniform(quantizable_layer_names(model), 8, 8), [ids])
    assert quant_mode(q) == "per_layer"
    with pytest.raises(UnsupportedModelError, match=r"per-layer mode because torch.fx could not trace it .*"
                       r"mpsearch\.model\.with_call\(model, \('input_ids',\), use_cache=False, return_dict=False\)"):
        mps.to_integer(q, ids)
