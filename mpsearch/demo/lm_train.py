"""Train, evaluate and cache the demo language model on standard-library text.

``load_demo_lm("gpt_tiny")`` trains the model in-process the first time (about 3 minutes
on one CPU core: 189 s for gpt_tiny, torch 2.13) and stores its ``state_dict`` in the same cache folder as the digits models
(:func:`mpsearch.demo.cache_root`); later calls load it. The file name carries a hash of
everything that decides the weights: the model name and :class:`GPTConfig`, the
:class:`LMTrainConfig`, a digest of the training text (which follows the Python version),
the torch version and the checkpoint format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mpsearch.core.io import write_bytes_atomic
from mpsearch.demo.lm import GPT, GPTConfig, bits_per_byte, lm_loss
from mpsearch.demo.text import TextSplits, load_text_splits, text_batches
from mpsearch.demo.train import CHECKPOINT_FORMAT, _intra_op_threads, _read_checkpoint, cache_root
from mpsearch.errors import rule_error, unknown_name

#: Windows per batch when evaluating bits per byte.
EVAL_BATCH_SIZE = 64


@dataclass(frozen=True)
class LMTrainConfig:
    """Everything besides the model's shape that decides the demo LM's trained weights.

    Attributes:
        steps: optimizer steps, each on ``batch_size`` random windows of the train text.
        lr: peak learning rate of AdamW (linear warm-up, then cosine decay to 0).
        batch_size: windows per step.
        warmup_steps: steps of linear warm-up from 0 to ``lr``.
        weight_decay: AdamW's decoupled weight decay on matrices (not on biases or LayerNorm).
        grad_clip: largest global gradient norm (clipped above it).
        seed: seeds the weight initialization and the training windows.
        n_threads: torch intra-op threads while training. It decides the weights too (other
            counts sum in another order, ~1e-6 apart after 20 steps). One thread, because the
            machine is shared: two threads were 1.8x faster on an idle 2-core machine but 3-7x
            slower than one while another process ran (measured on torch 2.13 CPU).
    """

    steps: int = 1200
    lr: float = 6e-3
    batch_size: int = 32
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    n_threads: int = 1

    def __post_init__(self) -> None:
        where = "LMTrainConfig"
        for key, low in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("seed", 0),
                         ("n_threads", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise rule_error(where, key, f"an integer >= {low}", value)
        for key, rule, ok in (("lr", "> 0", lambda v: v > 0), ("weight_decay", ">= 0", lambda v: v >= 0),
                              ("grad_clip", "> 0", lambda v: v > 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
                raise rule_error(where, key, f"a finite number {rule}", value)


#: name -> shape of each demo language model.
DEMO_LM_MODELS: dict[str, GPTConfig] = {
    "gpt_tiny": GPTConfig(vocab_size=256, context=128, d_model=128, n_layers=2, n_heads=4, mlp="gelu", mlp_hidden=512),
    # seconds to train: for tests and quick runs of the LM pipeline, not for figures
    "gpt_micro": GPTConfig(vocab_size=256, context=32, d_model=32, n_layers=1, n_heads=2, mlp="swiglu", mlp_hidden=64),
}
#: Training recipe of each demo language model. Chosen on validation bits per byte at a budget of
#: about 3 minutes on one core (1200 steps x 32 windows x 128 bytes = 4.9 M bytes, 2.3 passes):
#: lr 6e-3 gave 2.213, lr 3e-3 2.256, and 1600 steps of 24 windows 2.240; four blocks of the same
#: width at 1200 x 16 windows (the same time) reached only 2.415. Trained (torch 2.13, Python
#: 3.11): seed 0 val 2.213 / test 2.135 bits per byte; seeds 0-2 val 2.232 +- 0.016, test
#: 2.146 +- 0.011 (mean +- sample std); a unigram model of the train bytes scores 4.52 on test.
DEMO_LM_TRAIN_CONFIGS: dict[str, LMTrainConfig] = {
    "gpt_tiny": LMTrainConfig(steps=1200, lr=6e-3, batch_size=32, warmup_steps=50),
    "gpt_micro": LMTrainConfig(steps=60, lr=1e-2, batch_size=16, warmup_steps=5),
}


def get_lm_model(name: str) -> GPT:
    """Build a freshly initialized demo LM (initialization follows torch's global RNG).

    Raises:
        UnknownNameError: if ``name`` is not in :data:`DEMO_LM_MODELS`; the message lists the valid names.
    """
    if name not in DEMO_LM_MODELS:
        raise unknown_name("demo language model", name, DEMO_LM_MODELS)
    return GPT(DEMO_LM_MODELS[name])


def _lr_at(step: int, config: LMTrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine to 0."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_lm(model: GPT, splits: TextSplits, config: LMTrainConfig, *, log_every: int = 50,
             evaluate: bool = True) -> dict[str, Any]:
    """Train ``model`` in place on ``splits.train`` with AdamW and next-byte cross-entropy.

    Windows have the model's context length and are drawn by :func:`text_batches` with
    ``config.seed``; the global torch RNG is seeded inside a fork, so the caller's RNG state is
    untouched and the result depends only on the arguments and the initial weights.

    Args:
        model: the network, ``(B, T)`` byte ids to logits ``(B, T, 256)``.
        splits: the text; trains on ``train``, reports ``val`` and ``test`` bits per byte.
        config: the training recipe (``config.n_threads`` intra-op threads, restored afterwards).
        log_every: record the mean train loss of every this many steps.
        evaluate: measure validation and test bits per byte at the end.

    Returns:
        ``{"train_loss": [mean nats per log_every steps], "val_bits_per_byte", "test_bits_per_byte"
        (None when not evaluated), "train_time_s", "train_cpu_s", "n_steps"}``. The model is
        left in eval mode.
    """
    context = model.config.context
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # biases, LayerNorm
    train_loss: list[float] = []
    start_s, start_cpu_s = time.perf_counter(), time.process_time()
    with _intra_op_threads(config.n_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, 0.95))
        model.train()
        window_sum = 0.0
        data = text_batches(splits.train, context, config.batch_size, n_batches=config.steps, seed=config.seed)
        for step, (x, y) in enumerate(data):
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, config)
            optimizer.zero_grad(set_to_none=True)
            loss = lm_loss(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            window_sum += loss.item()
            if (step + 1) % log_every == 0 or step + 1 == config.steps:
                train_loss.append(window_sum / ((step % log_every) + 1))
                window_sum = 0.0
        model.eval()
        train_time_s = time.perf_counter() - start_s
        train_cpu_s = time.process_time() - start_cpu_s
        val_bpb = test_bpb = None
        if evaluate:
            val_bpb = bits_per_byte(model, text_batches(splits.val, context, EVAL_BATCH_SIZE))
            test_bpb = bits_per_byte(model, text_batches(splits.test, context, EVAL_BATCH_SIZE))
    return {"train_loss": train_loss, "val_bits_per_byte": val_bpb, "test_bits_per_byte": test_bpb,
            "train_time_s": train_time_s, "train_cpu_s": train_cpu_s, "n_steps": config.steps}


@dataclass(frozen=True)
class LMDemoRun:
    """A trained demo LM with its text and the facts recorded when it was trained.

    Attributes:
        model: the network, in eval mode.
        splits: the standard-library text it was trained on.
        info: ``name``, ``model_config`` (GPTConfig fields), ``config`` (LMTrainConfig fields),
            ``text_sha256``, ``torch_version``, ``n_params`` (the tied weight counted once), and
            the record of :func:`train_lm`.
        path: the checkpoint file.
        from_cache: True when the weights were loaded rather than trained by this call.
    """

    model: GPT
    splits: TextSplits
    info: dict[str, Any]
    path: Path
    from_cache: bool


def lm_checkpoint_path(name: str, config: LMTrainConfig, splits: TextSplits,
                       cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`load_demo_lm` keeps the weights of ``name`` trained with ``config`` on ``splits``."""
    if name not in DEMO_LM_MODELS:
        raise unknown_name("demo language model", name, DEMO_LM_MODELS)
    key = {
        "name": name,
        "model_config": dataclasses.asdict(DEMO_LM_MODELS[name]),
        "config": dataclasses.asdict(config),
        "text_sha256": splits.sha256,
        "torch": str(torch.__version__),
        "format": CHECKPOINT_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root(cache_dir) / "demo" / f"{name}-{digest}.pt"


def load_demo_lm_run(name: str, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
                     splits: TextSplits | None = None, seed: int | None = None) -> LMDemoRun:
    """Like :func:`load_demo_lm`, but also return the training record and the cache path.

    ``splits`` may be passed to skip reading the text again (it must be :func:`load_text_splits`'s).
    ``seed`` trains (and caches) the same recipe from another seed (initial weights and
    training windows), for figures over several trained models; None is the recipe's seed.
    """
    if name not in DEMO_LM_MODELS:
        raise unknown_name("demo language model", name, DEMO_LM_MODELS)
    config = DEMO_LM_TRAIN_CONFIGS[name]
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    splits = load_text_splits() if splits is None else splits
    path = lm_checkpoint_path(name, config, splits, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the initial weights follow the config's seed
        model = get_lm_model(name)
    info = None if retrain else _read_checkpoint(path, model)
    from_cache = info is not None
    if info is None:
        record = train_lm(model, splits, config)
        info = {
            "name": name,
            "model_config": dataclasses.asdict(DEMO_LM_MODELS[name]),
            "config": dataclasses.asdict(config),
            "text_sha256": splits.sha256,
            "torch_version": str(torch.__version__),
            "n_params": sum(p.numel() for p in model.parameters()),  # parameters() yields a tied weight once
            **record,
        }
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "info": info}, buffer)
        write_bytes_atomic(path, buffer.getvalue())
    model.eval()
    return LMDemoRun(model=model, splits=splits, info=info, path=path, from_cache=from_cache)


def load_demo_lm(name: str = "gpt_tiny", cache_dir: str | os.PathLike[str] | None = None,
                 retrain: bool = False) -> tuple[GPT, TextSplits]:
    """A trained demo LM (eval mode) and its text splits; trains and caches on first use (minutes).

    Args:
        name: a key of :data:`DEMO_LM_MODELS` ("gpt_tiny").
        cache_dir: cache folder; default ``$MPSEARCH_CACHE`` or ``~/.cache/mpsearch``.
        retrain: train even if a checkpoint exists (and overwrite it).

    Returns:
        ``(model, splits)``; evaluate with ``bits_per_byte(model, text_batches(splits.test, 128, 64))``.

    Raises:
        UnknownNameError: ``name`` is not a demo LM (the message lists the valid names).
        ConfigError: a standard-library file of the text is missing.
    """
    run = load_demo_lm_run(name, cache_dir=cache_dir, retrain=retrain)
    return run.model, run.splits
