"""`data: {calibration: distilled}` feeds the pipeline ZeroQ data instead of the train split."""

import pytest
import torch

from mpsearch.errors import ConfigError, UnsupportedModelError
from mpsearch.pipeline.inputs import load_inputs
from mpsearch.quant.distill import bn_statistics_error
from mpsearch.recipe import recipe_from_dict

BASE = {"version": 1, "name": "t", "seed": 0, "model": "resnet_tiny", "sensitivity": {"n_batches": 1},
        "hardware": {"profile": "x86-2core-int", "w_bits": [8], "a_bits": [8]}}


def test_distilled_recipe_replaces_train_batches_and_keeps_test_real():
    real = load_inputs(recipe_from_dict(dict(BASE, data={"batch_size": 16, "calib_batches": 1})))
    r = recipe_from_dict(dict(BASE, data={"batch_size": 16, "calib_batches": 2, "calibration": "distilled",
                                          "distill_iters": 60}))
    inputs = load_inputs(r)
    assert inputs.info["calibration"] == "distilled" and inputs.info["distilled_examples"] == 32
    assert len(inputs.train) == 2 and inputs.train[0][0].shape == real.train[0][0].shape
    assert torch.equal(inputs.test[0][0], real.test[0][0])
    x, y = inputs.train[0]
    assert torch.equal(y, inputs.model(x).argmax(-1))  # labels: the float model's predictions
    worst_noise = max(v["mean_err"] for v in bn_statistics_error(inputs.model, torch.randn_like(x)).values())
    worst = max(v["mean_err"] for v in bn_statistics_error(inputs.model, x).values())
    assert worst < 0.5 * worst_noise


def test_distilled_calibration_is_checked_and_an_lm_is_refused_saying_why():
    with pytest.raises(ConfigError, match="data.calibration must be one of real, distilled, but got 'zeroq'"):
        recipe_from_dict(dict(BASE, data={"calibration": "zeroq"}))
    lm = dict(BASE, model="gpt_micro", data={"source": "stdlib_text", "calibration": "distilled", "batch_size": 4})
    lm["hardware"] = {"profile": "x86-2core-int", "w_bits": [8], "a_bits": [16]}
    with pytest.raises((UnsupportedModelError, ConfigError), match="BatchNorm|one input tensor"):
        load_inputs(recipe_from_dict(lm))
