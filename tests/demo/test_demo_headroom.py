"""The headroom demo tasks: PSNR by hand, the image split, the regression task, the narrow CNN's shape."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mpsearch.demo import batches
from mpsearch.demo.images import SPLIT_SIZES, DenoiseNet, load_image_splits, psnr, psnr_from_mse
from mpsearch.demo.narrow import NarrowCNN
from mpsearch.errors import MpsearchError
from mpsearch.pipeline.task import get_task


def test_psnr_of_a_known_pair() -> None:
    # target all 0.5, output off by 0.1 on half the pixels: MSE = 0.01 / 2 = 0.005 -> 10 log10(200) dB
    y = torch.full((2, 1, 2, 2), 0.5)
    x = y.clone()
    x[0] += 0.1
    assert psnr(nn.Identity(), [(x, y)]) == pytest.approx(10 * math.log10(200), abs=1e-5)
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(0.0) == math.inf


def test_psnr_pools_pixels_over_batches() -> None:
    y = torch.zeros(4, 1, 2, 2)
    x = torch.zeros(4, 1, 2, 2)
    x[3, 0, 0, 0] = 1.0  # one wrong pixel of 16: MSE 1/16 -> 10 log10(16)
    got = psnr(nn.Identity(), batches(TensorDataset(x, y), 3))
    assert got == pytest.approx(10 * math.log10(16), abs=1e-5)


def test_psnr_rejects_negative_mse() -> None:
    with pytest.raises(MpsearchError, match="mse"):
        psnr_from_mse(-1.0)


def test_image_splits_sizes_range_and_noise() -> None:
    s = load_image_splits(0)
    assert {k: len(getattr(s, k)) for k in SPLIT_SIZES} == SPLIT_SIZES
    noisy, clean = s.test.tensors
    assert clean.shape == (416, 1, 16, 16) and 0.0 <= float(clean.min()) and float(clean.max()) <= 1.0
    # noise of std 0.1: the noisy input's PSNR is 20 dB to within sampling error
    assert psnr(nn.Identity(), [(noisy, clean)]) == pytest.approx(20.0, abs=0.1)
    assert torch.equal(load_image_splits(0).test.tensors[0], noisy)  # fixed noise per seed


def test_regression_task_scores_psnr() -> None:
    task = get_task("regression")
    assert (task.metric, task.higher_is_better, task.unit) == ("psnr_db", True, "dB")
    y = torch.zeros(1, 1, 2, 2)
    assert task.evaluate(nn.Identity(), [(y + 0.1, y)]) == pytest.approx(20.0)


def test_headroom_models_shapes() -> None:
    assert NarrowCNN()(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    x = torch.rand(2, 1, 16, 16)
    assert DenoiseNet()(x).shape == x.shape
