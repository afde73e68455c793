"""The demo GPT: tied head, causal masking, structure, fx, loss and bits per byte."""

from __future__ import annotations

import math
import operator

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from mpsearch.demo import DEMO_LM_MODELS, GPT, GPTConfig, bits_per_byte, get_lm_model, lm_loss, text_batches
from mpsearch.errors import ConfigError, UnknownNameError

TINY = {"gelu": GPTConfig(context=16, d_model=32, n_layers=2, n_heads=4, mlp="gelu", mlp_hidden=64),
        "swiglu": GPTConfig(context=16, d_model=32, n_layers=2, n_heads=4, mlp="swiglu", mlp_hidden=48, bias=False)}


def _hand_count(c: GPTConfig) -> int:
    d, h = c.d_model, c.mlp_hidden
    b = 1 if c.bias else 0
    attn = 4 * (d * d + b * d)
    mlp = 2 * (d * h + b * h) + h * d + b * d if c.mlp == "swiglu" else d * h + b * h + h * d + b * d
    # token embedding (shared with the head, counted once), positions, blocks (+2 LayerNorms each), final LN
    return c.vocab_size * d + c.context * d + c.n_layers * (attn + mlp + 4 * d) + 2 * d


def _model(kind: str) -> GPT:
    torch.manual_seed(0)
    return GPT(TINY[kind]).eval()


@pytest.mark.parametrize("kind", sorted(TINY))
def test_head_is_tied_to_the_very_same_embedding_parameter(kind):
    model = _model(kind)
    assert model.head.weight is model.tok_emb.weight
    assert isinstance(model.head, nn.Linear) and model.head.bias is None
    names = [name for name, _ in model.named_parameters()]
    assert "tok_emb.weight" in names and "head.weight" not in names  # listed once
    assert sum(p.numel() for p in model.parameters()) == _hand_count(TINY[kind])
    with torch.no_grad():
        model.tok_emb.weight[7, 0] = 3.5
    assert float(model.head.weight.detach()[7, 0]) == 3.5


def test_gpt_tiny_shape_and_count():
    config = DEMO_LM_MODELS["gpt_tiny"]
    model = get_lm_model("gpt_tiny")
    # 256*128 + 128*128 + 2 * (4*(128*128+128) + (128*512+512) + (512*128+128) + 4*128) + 2*128
    assert sum(p.numel() for p in model.parameters()) == _hand_count(config) == 445_952
    assert config.vocab_size == 256 and config.mlp == "gelu"


@pytest.mark.parametrize("kind", sorted(TINY))
def test_blocks_have_explicit_projections(kind):
    model = _model(kind)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    mlp = ["fc_in", "fc_out"] if kind == "gelu" else ["gate_proj", "up_proj", "down_proj"]
    per_block = [f"attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "out_proj")] + [f"mlp.{p}" for p in mlp]
    assert linears == [f"blocks.{i}.{p}" for i in range(2) for p in per_block] + ["head"]
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 2 * 2 + 1


@pytest.mark.parametrize("kind", sorted(TINY))
def test_changing_a_future_token_leaves_earlier_logits_exactly_equal(kind):
    model = _model(kind)
    x = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(1))
    changed = x.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 256
    with torch.no_grad():
        before, after = model(x), model(changed)
    assert before.shape == (3, 16, 256)
    assert torch.equal(before[:, :9], after[:, :9])  # bit for bit
    assert not torch.equal(before[:, 9], after[:, 9])
    assert not torch.equal(before[:, 15], after[:, 15])  # later positions see it


@pytest.mark.parametrize("kind", sorted(TINY))
def test_fx_traceable_and_equal_to_eager(kind):
    model = _model(kind)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))  # shorter than the context works too
    called = [node.target for node in traced.graph.nodes if node.op == "call_module"]
    assert len(called) == len(set(called))  # no module called twice
    n_sdpa = sum(node.target is F.scaled_dot_product_attention for node in traced.graph.nodes)
    n_adds = sum(node.op == "call_function" and node.target in (operator.add, torch.add) for node in traced.graph.nodes)
    assert n_sdpa == 2 and n_adds == 1 + 2 * 2  # token + position, two residual adds per block


def test_lm_loss_is_the_mean_next_token_cross_entropy():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[0, 4, 2], [1, 1, 3]])
    log_p = torch.log_softmax(logits, dim=-1)
    expected = -sum(float(log_p[b, t, targets[b, t]]) for b in range(2) for t in range(3)) / 6
    assert float(lm_loss(logits, targets)) == pytest.approx(expected, rel=1e-6)


class _Uniform(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, 256)


class _HalfOnNext(nn.Module):
    """Puts probability 1/2 on byte ``x + 1`` (the target of an arange stream) and 1/510 on each other."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*x.shape, 256), math.log(1 / 510), dtype=torch.float64)
        logits.scatter_(-1, ((x + 1) % 256).unsqueeze(-1), math.log(1 / 2))
        return logits


@pytest.mark.parametrize(("n_bytes", "context", "batch_size"), [(17, 4, 1), (1001, 16, 7), (4097, 64, 64)])
def test_uniform_predictor_scores_exactly_8_bits_per_byte(n_bytes, context, batch_size):
    stream = torch.randint(0, 256, (n_bytes,), generator=torch.Generator().manual_seed(0))
    assert bits_per_byte(_Uniform(), text_batches(stream, context, batch_size)) == 8.0


def test_bits_per_byte_counts_every_target_once():
    stream = torch.arange(1000) % 256
    assert bits_per_byte(_HalfOnNext(), text_batches(stream, 10, 3)) == pytest.approx(1.0, abs=1e-12)
    mixed = [(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)),  # 4 targets at 1 bit
             (torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), 9))]  # 4 at log2(510) bits
    assert bits_per_byte(_HalfOnNext(), mixed) == pytest.approx((1 + math.log2(510)) / 2, abs=1e-12)


def test_bits_per_byte_restores_the_mode_and_refuses_no_batches():
    model = _model("gelu").train()
    bits_per_byte(model, text_batches(torch.arange(40) % 256, 16, 2))
    assert model.training
    with pytest.raises(ConfigError, match="bits_per_byte: batches must be non-empty"):
        bits_per_byte(model, [])


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("d_model", 30, "a multiple of n_heads = 4"), ("mlp", "relu", r"one of \['gelu', 'swiglu'\]"),
     ("n_layers", 0, "an integer >= 1"), ("context", True, "an integer >= 1"), ("bias", 1, "a bool")],
)
def test_gpt_config_is_checked(field, value, rule):
    with pytest.raises(ConfigError, match=rf"GPTConfig: {field} must be {rule}, but got"):
        GPTConfig(**{field: value})


def test_unknown_lm_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="unknown demo language model 'gpt_small'.*Valid: gpt_micro, gpt_tiny"):
        get_lm_model("gpt_small")
