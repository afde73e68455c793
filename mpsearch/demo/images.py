"""An image regression demo: denoise 16x16 grayscale patches of scikit-learn's two sample photos.

scikit-learn ships two 427x640 RGB photos (``load_sample_images``: a temple in China and a
flower), so nothing is downloaded. Each photo is turned to grayscale in [0, 1] (mean of R, G, B)
and cut into non-overlapping 16x16 patches (26 x 40 = 1040 per photo, 2080 in all); a seeded
permutation gives 1248 train, 416 validation and 416 test patches. Inputs are the clean patch
plus Gaussian noise of standard deviation :data:`NOISE_STD`; validation and test noise is drawn
once per seed (fixed), training noise afresh every epoch. The metric is PSNR in dB over the
whole split, ``10 log10(1 / MSE)`` with the MSE over every pixel (peak value 1): every bit
of a weight shows in it.

    run = load_denoise_run(seed=0)                  # trains once (seconds), then cached
    db = psnr(run.model, batches(run.splits.test, 128))
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
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mpsearch.core.checks import check_int, check_number
from mpsearch.core.io import write_bytes_atomic
from mpsearch.demo.data import batches
from mpsearch.demo.train import CHECKPOINT_FORMAT, _read_checkpoint, cache_root
from mpsearch.errors import ConfigError, rule_error

PATCH = 16
NOISE_STD = 0.1
SPLIT_SIZES = {"train": 1248, "val": 416, "test": 416}


@dataclass(frozen=True)
class ImageSplits:
    """Train / validation / test ``TensorDataset(noisy, clean)``, each float32 ``(N, 1, 16, 16)``."""

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    seed: int

    def example_inputs(self, n: int = 1) -> tuple[torch.Tensor]:
        """The first ``n`` noisy train patches as a one-element tuple."""
        return (self.train.tensors[0][:n],)


def sample_patches() -> np.ndarray:
    """All 2080 clean grayscale 16x16 patches of the two sample photos, float32 in [0, 1]."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise ConfigError("the image demo needs scikit-learn, but it is not installed; "
                          "run: pip install 'mpsearch[demo]'") from None
    out = []
    for img in load_sample_images().images:
        gray = np.asarray(img, dtype=np.float64).mean(axis=2) / 255.0
        h, w = (gray.shape[0] // PATCH) * PATCH, (gray.shape[1] // PATCH) * PATCH
        tiles = gray[:h, :w].reshape(h // PATCH, PATCH, w // PATCH, PATCH).transpose(0, 2, 1, 3)
        out.append(tiles.reshape(-1, PATCH, PATCH))
    return np.concatenate(out).astype(np.float32)


def load_image_splits(seed: int = 0) -> ImageSplits:
    """The seeded 60/20/20 split of the patches with fixed noise on validation and test."""
    check_int(seed, "load_image_splits", "seed", min=0)
    clean = torch.from_numpy(sample_patches()).unsqueeze(1)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(clean)))
    n_tr, n_va = SPLIT_SIZES["train"], SPLIT_SIZES["val"]
    parts = {"train": order[:n_tr], "val": order[n_tr:n_tr + n_va], "test": order[n_tr + n_va:]}
    gen = torch.Generator().manual_seed(10_000 + seed)
    made = {}
    for name, idx in parts.items():
        c = clean[idx].contiguous()
        made[name] = TensorDataset(c + NOISE_STD * torch.randn(c.shape, generator=gen), c)
    return ImageSplits(train=made["train"], val=made["val"], test=made["test"], seed=seed)


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """``10 log10(peak^2 / mse)`` in dB; infinite for a perfect match."""
    check_number(mse, "psnr_from_mse", "mse", min=0)
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(model: nn.Module, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """PSNR in dB of ``model``'s outputs against the targets, with the MSE pooled over every pixel."""
    was_training = model.training
    model.eval()
    sq, n = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in pairs:
                sq += float(((model(x) - y).double() ** 2).sum())
                n += y.numel()
    finally:
        model.train(was_training)
    if n == 0:
        raise rule_error("psnr", "pairs", "non-empty", pairs)
    return psnr_from_mse(sq / n)


class DenoiseNet(nn.Module):
    """Residual denoiser: five 3x3 convs (1->8->8->8->8->1, ReLU between); output = input - predicted noise."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, width, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(width, width, 3, padding=1)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        h = self.relu4(self.conv4(self.relu3(self.conv3(h))))
        return x - self.conv5(h)


@dataclass(frozen=True)
class DenoiseTrainConfig:
    """Everything that decides the denoiser's weights (Adam, cosine decay to 0, MSE loss)."""

    epochs: int = 60
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            check_int(getattr(self, key), "DenoiseTrainConfig", key, min=1)
        check_int(self.seed, "DenoiseTrainConfig", "seed", min=0)
        check_number(self.lr, "DenoiseTrainConfig", "lr", min=0, min_exclusive=True)


@dataclass(frozen=True)
class DenoiseRun:
    """A trained denoiser (eval mode), its splits, the training record and the cache file."""

    model: DenoiseNet
    splits: ImageSplits
    info: dict[str, Any]
    path: Path
    from_cache: bool


def train_denoiser(model: nn.Module, splits: ImageSplits, config: DenoiseTrainConfig) -> dict[str, Any]:
    """Train in place on fresh noise every epoch; returns val/test PSNR and timings."""
    clean = splits.train.tensors[1]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        gen = torch.Generator().manual_seed(20_000 + config.seed)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        n_steps = config.epochs * -(-len(clean) // config.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
        model.train()
        for epoch in range(config.epochs):
            noisy = clean + NOISE_STD * torch.randn(clean.shape, generator=gen)
            for x, y in batches(TensorDataset(noisy, clean), config.batch_size, shuffle=True, seed=epoch):
                opt.zero_grad(set_to_none=True)
                nn.functional.mse_loss(model(x), y).backward()
                opt.step()
                sched.step()
        model.eval()
    return {"val_psnr_db": psnr(model, batches(splits.val, 128)), "test_psnr_db": psnr(model, batches(splits.test, 128)),
            "noisy_test_psnr_db": psnr(nn.Identity(), batches(splits.test, 128)),
            "train_time_s": time.perf_counter() - start, "n_steps": n_steps}


def load_denoise_run(seed: int = 0, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False,
                     config: DenoiseTrainConfig | None = None) -> DenoiseRun:
    """The denoiser trained with ``seed`` (weights, noise and split), trained and cached on first use."""
    config = dataclasses.replace(config or DenoiseTrainConfig(), seed=seed)
    splits = load_image_splits(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = DenoiseNet()
    key = {"name": "denoise_net", "config": dataclasses.asdict(config), "torch": str(torch.__version__),
           "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}, "format": CHECKPOINT_FORMAT,
           "patch": PATCH, "noise_std": NOISE_STD}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root(cache_dir) / "demo" / f"denoise_net-{digest}.pt"
    info = None if retrain else _read_checkpoint(path, model)
    from_cache = info is not None
    if info is None:
        info = {"name": "denoise_net", "config": dataclasses.asdict(config),
                "n_params": sum(p.numel() for p in model.parameters()), **train_denoiser(model, splits, config)}
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "info": info}, buffer)
        write_bytes_atomic(path, buffer.getvalue())
    model.eval()
    return DenoiseRun(model=model, splits=splits, info=info, path=path, from_cache=from_cache)
