"""Train, evaluate and cache the demo models on the digits dataset.

``load_demo(name)`` trains a model in-process the first time (a few seconds on 2 CPU cores)
and stores its ``state_dict`` under the cache folder; later calls load it. The cache file
name carries a hash of everything that decides the weights (model name, training config,
the model's parameter names and shapes, the torch version), so changing any of them trains
afresh. Files are written atomically, so parallel processes never read half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from mpsearch.core.io import write_bytes_atomic
from mpsearch.demo.data import DigitsSplits, batches, load_digits_splits
from mpsearch.demo.models import DEMO_MODELS, get_model
from mpsearch.errors import UnknownNameError, rule_error, unknown_name

#: Bump when the checkpoint layout or the training loop changes in a way the config misses.
CHECKPOINT_FORMAT = 1
#: Environment variable naming the cache folder (default ``~/.cache/mpsearch``).
CACHE_ENV = "MPSEARCH_CACHE"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a demo model's trained weights.

    Attributes:
        epochs: passes over the train split.
        lr: peak learning rate of AdamW; it follows a cosine decay to 0 over all steps.
        batch_size: images per step.
        weight_decay: AdamW's decoupled weight decay.
        seed: seeds the weight initialization and the shuffles.
        split_seed: seed of the train/val/test split.
        image_size: 8 (native digits) or 16 (2x upsampled).
    """

    epochs: int = 15
    lr: float = 1e-2
    batch_size: int = 32
    weight_decay: float = 1e-4
    seed: int = 0
    split_seed: int = 0
    image_size: int = 8

    def __post_init__(self) -> None:
        where = "TrainConfig"
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise rule_error(where, key, "an integer >= 1", value)
        for key in ("seed", "split_seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise rule_error(where, key, "an integer >= 0", value)
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise rule_error(where, "lr", "a finite number > 0", self.lr)
        if not isinstance(self.weight_decay, (int, float)) or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise rule_error(where, "weight_decay", "a finite number >= 0", self.weight_decay)
        if self.image_size not in (8, 16):
            raise rule_error(where, "image_size", "one of [8, 16]", self.image_size)


#: Training recipe of each demo model, chosen on the validation split (see docs/BENCHMARKS.md).
DEMO_TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "small_cnn": TrainConfig(epochs=15, lr=1e-2, batch_size=32),
    "resnet_tiny": TrainConfig(epochs=15, lr=3e-3, batch_size=64),
    "mobilenet_tiny": TrainConfig(epochs=12, lr=2e-2, batch_size=64),
}


@contextlib.contextmanager
def _intra_op_threads(n_threads: int | None) -> Iterator[None]:
    """Run the block with ``n_threads`` intra-op threads, then restore the previous count.

    Why: these networks are so small that a second thread buys nothing, while two threads
    on a busy 2-core machine (pytest-xdist, two CLI runs) slowed training ~20x when measured.
    """
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy of ``model`` over ``(x, y)`` batches, in eval mode without gradients.

    The model's train/eval mode is restored afterwards. Returns a fraction in [0, 1].
    """
    was_training = model.training
    model.eval()
    n_correct, n_seen = 0, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                n_correct += int((model(x).argmax(dim=1) == y).sum())
                n_seen += int(y.numel())
    finally:
        model.train(was_training)
    if n_seen == 0:
        raise rule_error("evaluate", "batches", "non-empty", batches)
    return n_correct / n_seen


def train(
    model: nn.Module,
    splits: DigitsSplits,
    epochs: int,
    lr: float,
    seed: int,
    *,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    n_threads: int | None = 1,
) -> dict[str, Any]:
    """Train ``model`` in place with AdamW, cross-entropy and a per-step cosine schedule.

    The result depends only on the arguments and the model's initial weights: shuffles use
    their own seeded generator and the global torch RNG is seeded inside a fork, so the
    caller's RNG state is untouched.

    Args:
        model: a network mapping ``(N, 1, H, W)`` to logits ``(N, 10)``.
        splits: the data; trains on ``splits.train``, reports ``val`` and ``test``.
        epochs: passes over the train split.
        lr: peak learning rate (cosine decay to 0 over ``epochs * steps_per_epoch`` steps).
        seed: seeds the shuffles (and any randomness inside the model).
        batch_size: images per step.
        weight_decay: AdamW's decoupled weight decay.
        n_threads: intra-op threads while training (restored afterwards); None leaves
            torch's setting alone.

    Returns:
        ``{"train_loss": [per epoch], "val_accuracy": float, "test_accuracy": float,
        "train_time_s": wall seconds, "train_cpu_s": CPU seconds, "n_steps": int}``. The model is left in eval mode.
    """
    config = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay, seed=seed)
    train_loss: list[float] = []
    start_s, start_cpu_s = time.perf_counter(), time.process_time()
    with _intra_op_threads(n_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = len(batches(splits.train, config.batch_size))
        n_steps = config.epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)
        model.train()
        for epoch in range(config.epochs):
            loss_sum, n_seen = 0.0, 0
            # A fresh, seeded order every epoch.
            for x, y in batches(splits.train, config.batch_size, shuffle=True, seed=config.seed * 10_000 + epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item() * len(y)  # mean loss of the batch -> sum
                n_seen += len(y)
            train_loss.append(loss_sum / n_seen)
        model.eval()
        train_time_s = time.perf_counter() - start_s
        train_cpu_s = time.process_time() - start_cpu_s  # CPU seconds of all threads of the process
        val_accuracy = evaluate(model, batches(splits.val, 256))
        test_accuracy = evaluate(model, batches(splits.test, 256))
    return {
        "train_loss": train_loss,
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "train_time_s": train_time_s,
        "train_cpu_s": train_cpu_s,
        "n_steps": n_steps,
    }


@dataclass(frozen=True)
class DemoRun:
    """A trained demo model with its data and the facts recorded when it was trained.

    Attributes:
        model: the network, in eval mode.
        splits: the digits splits it was trained on.
        info: ``name``, ``config`` (TrainConfig fields), ``torch_version``, ``n_params``,
            ``val_accuracy``, ``test_accuracy``, ``train_time_s``, ``train_cpu_s``, ``train_loss``,
            ``n_steps``.
        path: the checkpoint file.
        from_cache: True when the weights were loaded rather than trained by this call.
    """

    model: nn.Module
    splits: DigitsSplits
    info: dict[str, Any]
    path: Path
    from_cache: bool


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MPSEARCH_CACHE``, else ``~/.cache/mpsearch``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "mpsearch"


def checkpoint_path(name: str, config: TrainConfig, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``load_demo`` keeps the weights of ``name`` trained with ``config``.

    The file name ends in a hash of the name, the config, the parameter and buffer names
    and shapes of a fresh model, the torch version and :data:`CHECKPOINT_FORMAT`.
    """
    if name not in DEMO_MODELS:
        raise unknown_name("demo model", name, DEMO_MODELS)
    with torch.random.fork_rng(devices=[]):
        shapes = {k: list(v.shape) for k, v in get_model(name).state_dict().items()}
    key = {
        "name": name,
        "config": dataclasses.asdict(config),
        "shapes": shapes,
        "torch": str(torch.__version__),
        "format": CHECKPOINT_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root(cache_dir) / "demo" / f"{name}-{digest}.pt"


def _read_checkpoint(path: Path, model: nn.Module) -> dict[str, Any] | None:
    """Load weights from ``path`` into ``model``; None (and a warning) if it is unusable."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["state_dict"])
        return dict(payload["info"])
    except Exception as exc:  # a corrupt or foreign file: train afresh and overwrite it
        warnings.warn(f"{path}: demo checkpoint must be loadable, but got {exc!r}; retraining", stacklevel=3)
        return None


def load_demo_run(name: str, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
                  seed: int | None = None) -> DemoRun:
    """Like :func:`load_demo`, but also return the training record and the cache path.

    ``seed`` trains (and caches) the same recipe from another seed, with both the weight seed
    and the train/val/test split drawn from it (``TrainConfig.seed = split_seed = seed``), for
    figures over several trained models and splits; None is the recipe (the default demo).
    """
    if name not in DEMO_MODELS:
        from mpsearch.demo.lm_train import DEMO_LM_MODELS  # lazy: lm_train imports this module

        if name in DEMO_LM_MODELS:
            raise UnknownNameError(f"unknown demo model {name!r}: it is a language model, load it with "
                                   f"load_demo_lm({name!r}). Valid: {', '.join(sorted(DEMO_MODELS))}")
        raise unknown_name("demo model", name, DEMO_MODELS)
    config = DEMO_TRAIN_CONFIGS[name]
    if seed is not None:
        config = dataclasses.replace(config, seed=seed, split_seed=seed)
    splits = load_digits_splits(seed=config.split_seed, image_size=config.image_size)
    path = checkpoint_path(name, config, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the initial weights follow the config's seed
        model = get_model(name)
    info = None if retrain else _read_checkpoint(path, model)
    from_cache = info is not None
    if info is None:
        record = train(
            model, splits, config.epochs, config.lr, config.seed,
            batch_size=config.batch_size, weight_decay=config.weight_decay,
        )
        info = {
            "name": name,
            "config": dataclasses.asdict(config),
            "torch_version": str(torch.__version__),
            "n_params": sum(p.numel() for p in model.parameters()),
            **record,
        }
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "info": info}, buffer)
        write_bytes_atomic(path, buffer.getvalue())
    model.eval()
    return DemoRun(model=model, splits=splits, info=info, path=path, from_cache=from_cache)


def load_demo(name: str, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False) -> tuple[nn.Module, DigitsSplits]:
    """A trained demo model (eval mode) and its digits splits; trains and caches on first use.

    Args:
        name: a key of ``DEMO_MODELS`` ("small_cnn", "resnet_tiny", "mobilenet_tiny").
        cache_dir: cache folder; default ``$MPSEARCH_CACHE`` or ``~/.cache/mpsearch``.
        retrain: train even if a checkpoint exists (and overwrite it).

    Returns:
        ``(model, splits)``.

    Raises:
        UnknownNameError: ``name`` is not a demo model (the message lists the valid names).
        ConfigError: scikit-learn is missing.
    """
    run = load_demo_run(name, cache_dir=cache_dir, retrain=retrain)
    return run.model, run.splits
