"""A capacity-limited CNN on the digits: narrow layers that lose real accuracy to low-bit weights.

The three demo CNNs (:mod:`mpsearch.demo.models`) are wide enough that uniform 4-bit weights cost
almost nothing, so quantization methods cannot be told apart on them. ``narrow_cnn`` has 4-8
channels per layer and no BatchNorm (so weight-only quantization of one layer does not depend on
any other layer's choice), and is trained like the other demo CNNs, with one model per seed:

    run = load_narrow_run(seed=1)          # trains once (seconds), then cached
    acc = evaluate(run.model, batches(run.splits.test, 256))

Each seed trains from its own initial weights and shuffles on its own digits split
(``split_seed = seed``), so figures over seeds cover both sources of variation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path

import torch
from torch import nn

from mpsearch.core.checks import check_int
from mpsearch.core.io import write_bytes_atomic
from mpsearch.demo.data import load_digits_splits
from mpsearch.demo.train import CHECKPOINT_FORMAT, DemoRun, TrainConfig, _read_checkpoint, cache_root, train
from mpsearch.errors import unknown_name


class NarrowCNN(nn.Module):
    """conv(1->6) ReLU, conv(6->8) ReLU, maxpool 2, conv(8->8) ReLU, conv(8->8) ReLU, flatten, linear."""

    def __init__(self, in_hw: int = 8, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu4 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * (in_hw // 2) ** 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu4(self.conv4(self.relu3(self.conv3(x))))
        return self.fc(self.flatten(x))


#: name -> constructor of the capacity-limited digits models (kept apart from DEMO_MODELS).
NARROW_MODELS = {"narrow_cnn": NarrowCNN}
#: Training recipe (seed and split_seed are replaced by the seed asked for).
NARROW_TRAIN_CONFIGS = {"narrow_cnn": TrainConfig(epochs=30, lr=1e-2, batch_size=32)}


def narrow_checkpoint_path(name: str, config: TrainConfig, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Cache file of ``name`` trained with ``config``: the name ends in a hash of all that decides the weights."""
    if name not in NARROW_MODELS:
        raise unknown_name("narrow demo model", name, NARROW_MODELS)
    shapes = {k: list(v.shape) for k, v in NARROW_MODELS[name]().state_dict().items()}
    key = {"name": name, "config": dataclasses.asdict(config), "shapes": shapes, "torch": str(torch.__version__),
           "format": CHECKPOINT_FORMAT}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root(cache_dir) / "demo" / f"{name}-{digest}.pt"


def load_narrow_run(name: str = "narrow_cnn", seed: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                    retrain: bool = False) -> DemoRun:
    """A trained narrow model (eval mode) with its digits splits; trains and caches on first use.

    Args:
        name: a key of :data:`NARROW_MODELS`.
        seed: initial weights, shuffles and the digits split (``split_seed``).
        cache_dir: cache folder; default ``$MPSEARCH_CACHE`` or ``~/.cache/mpsearch``.
        retrain: train even if a checkpoint exists (and overwrite it).
    """
    if name not in NARROW_MODELS:
        raise unknown_name("narrow demo model", name, NARROW_MODELS)
    check_int(seed, "load_narrow_run", "seed", min=0)
    config = dataclasses.replace(NARROW_TRAIN_CONFIGS[name], seed=seed, split_seed=seed)
    splits = load_digits_splits(seed=config.split_seed, image_size=config.image_size)
    path = narrow_checkpoint_path(name, config, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = NARROW_MODELS[name]()
    info = None if retrain else _read_checkpoint(path, model)
    from_cache = info is not None
    if info is None:
        record = train(model, splits, config.epochs, config.lr, config.seed,
                       batch_size=config.batch_size, weight_decay=config.weight_decay)
        info = {"name": name, "config": dataclasses.asdict(config), "torch_version": str(torch.__version__),
                "n_params": sum(p.numel() for p in model.parameters()), **record}
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "info": info}, buffer)
        write_bytes_atomic(path, buffer.getvalue())
    model.eval()
    return DemoRun(model=model, splits=splits, info=info, path=path, from_cache=from_cache)
