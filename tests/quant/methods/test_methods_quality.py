"""Each method against round-to-nearest on fixed layers, with real values."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from mpsearch.errors import ConfigError
from mpsearch.quant.methods import get_method, make_method
from mpsearch.quant.quantizer import dequantize, from_rows, to_rows
from mpsearch.quant.spec import QuantSpec


def _spec(bits, gran="per_channel", group_size=None):
    return QuantSpec(bits=bits, symmetric=True, signed=True, granularity=gran, group_size=group_size)


def _correlated_inputs(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)
    return (torch.randn(n, d, generator=g) * torch.linspace(0.2, 3.0, d)) @ mix


def _linear(seed=0, d_in=32, d_out=16):
    torch.manual_seed(seed)
    return nn.Linear(d_in, d_out)


def _out_mse(layer, x, w, b=None):
    b = layer.bias.detach() if b is None else b
    ref = nn.functional.linear(x, layer.weight.detach(), layer.bias.detach()) if isinstance(layer, nn.Linear) \
        else layer(x).detach()
    got = nn.functional.linear(x, w, b) if isinstance(layer, nn.Linear) else nn.functional.conv2d(
        x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    return float((got - ref).pow(2).mean())


@pytest.mark.parametrize("bits", [3, 4])
def test_adaround_lowers_a_linear_layers_output_mse_against_rtn(bits):
    layer, x = _linear(0), _correlated_inputs(512, 32, 1)
    rtn = get_method("rtn")().quantize_weight(layer.weight, _spec(bits))
    ada = make_method("adaround", n_iter=300).quantize_weight(layer.weight, _spec(bits), calib_inputs=x, layer=layer)
    assert torch.equal(ada.scale, rtn.scale)  # same grid, only the rounding differs
    assert _out_mse(layer, x, ada.weight_dq) < 0.9 * _out_mse(layer, x, rtn.weight_dq)


def test_adaround_lowers_a_conv_layers_output_mse_against_rtn():
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(8, 4, 6, 6) * torch.tensor([0.2, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1)
    rtn = get_method("rtn")().quantize_weight(layer.weight, _spec(3))
    ada = make_method("adaround", n_iter=300).quantize_weight(layer.weight, _spec(3), calib_inputs=x, layer=layer)
    assert _out_mse(layer, x, ada.weight_dq) < 0.97 * _out_mse(layer, x, rtn.weight_dq)


def test_adaround_gram_objective_is_the_full_data_output_error():
    """The Gram form (exact output error over all calibration rows) rounds at least as well as minibatches."""
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(8, 4, 6, 6) * torch.tensor([0.2, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1)
    rtn = get_method("rtn")().quantize_weight(layer.weight, _spec(3))
    gram = make_method("adaround", n_iter=300).quantize_weight(layer.weight, _spec(3), calib_inputs=x, layer=layer)
    mini = make_method("adaround", n_iter=300, objective="minibatch").quantize_weight(
        layer.weight, _spec(3), calib_inputs=x, layer=layer)
    assert gram.info["objective"] == "gram" and mini.info["objective"] == "minibatch"
    b = torch.zeros(8)
    assert _out_mse(layer, x, gram.weight_dq, b) <= 1.02 * _out_mse(layer, x, mini.weight_dq, b)
    assert _out_mse(layer, x, gram.weight_dq, b) < 0.97 * _out_mse(layer, x, rtn.weight_dq, b)


@pytest.mark.parametrize("spec", [_spec(3), _spec(4, "per_group", 8), _spec(4, "per_tensor")])
def test_gptq_lowers_the_output_error_on_calibration_data_against_rtn(spec):
    layer, x = _linear(2), _correlated_inputs(512, 32, 3)
    rtn = get_method("rtn")().quantize_weight(layer.weight, spec)
    gptq = get_method("gptq")().quantize_weight(layer.weight, spec, calib_inputs=x, layer=layer)
    assert torch.equal(gptq.scale, rtn.scale)
    assert torch.equal(gptq.weight_dq, dequantize(gptq.codes, gptq.scale, gptq.zero_point, spec))
    assert _out_mse(layer, x, gptq.weight_dq) < 0.8 * _out_mse(layer, x, rtn.weight_dq)


def test_bias_correction_makes_the_mean_output_error_zero_on_calibration_data():
    layer, x = _linear(4), _correlated_inputs(256, 32, 5) + 0.7  # a non-zero input mean biases the error
    res = get_method("bias_correction")().quantize_weight(layer.weight, _spec(3), calib_inputs=x, layer=layer)
    err = nn.functional.linear(x.double(), res.weight_dq.double(), res.bias.double()) - \
        nn.functional.linear(x.double(), layer.weight.detach().double(), layer.bias.detach().double())
    before = (nn.functional.linear(x, res.weight_dq) - nn.functional.linear(x, layer.weight.detach())).mean(0)
    assert float(before.abs().max()) > 1e-2  # there was an error to remove
    assert float(err.mean(0).abs().max()) < 1e-5
    conv = nn.Conv2d(3, 5, 3, bias=False)
    xc = torch.randn(4, 3, 7, 7) + 0.5
    res = get_method("bias_correction")().quantize_weight(conv.weight, _spec(2), calib_inputs=xc, layer=conv)
    err = nn.functional.conv2d(xc, res.weight_dq, res.bias) - conv(xc).detach()
    assert float(err.mean(dim=(0, 2, 3)).abs().max()) < 1e-5


def _brute_force_kmeans(values, k):
    best = (float("inf"), None)
    for labels in itertools.product(range(k), repeat=len(values)):
        labels = np.array(labels)
        cost, cents = 0.0, []
        for c in range(k):
            members = values[labels == c]
            if len(members):
                cents.append(members.mean())
                cost += float(((members - members.mean()) ** 2).sum())
        if cost < best[0] - 1e-12:
            best = (cost, sorted(cents))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_codebook_equals_the_brute_force_optimum_on_tiny_inputs(seed):
    values = np.random.default_rng(seed).normal(size=7)
    cost, cents = _brute_force_kmeans(values, 4)  # 4^7 assignments
    w = torch.tensor(values, dtype=torch.float32).reshape(1, 7)
    res = get_method("kmeans")().quantize_weight(w, _spec(2, "per_tensor"))
    assert res.info["solver"] == "exact_dp"
    np.testing.assert_allclose(sorted(res.codebook[0].tolist()), cents, rtol=1e-5, atol=1e-6)
    assert res.info["weighted_sse"] == pytest.approx(cost, rel=1e-5, abs=1e-9)
    assert torch.equal(res.weight_dq, from_rows(res.codebook.gather(1, to_rows(res.codes, _spec(2, "per_tensor")).long()),
                                                w.shape, _spec(2, "per_tensor")))


def test_kmeans_lloyd_is_no_worse_than_rtn_and_integer_codebook_fits_int8():
    w = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    rtn = get_method("rtn")().quantize_weight(w, _spec(3))
    km = get_method("kmeans")().quantize_weight(w, _spec(3))
    assert km.info["solver"] == "lloyd_kmeans++"
    assert float((km.weight_dq - w).pow(2).sum()) < float((rtn.weight_dq - w).pow(2).sum())
    ik = make_method("kmeans", integer_codebook=True).quantize_weight(w, _spec(3))
    assert ik.integer_codebook and int(ik.codebook_int.abs().max()) <= 127
    assert torch.allclose(ik.codebook, ik.scale[:, None] * ik.codebook_int.float())


def test_kmeans_with_more_clusters_than_weights_names_layer_method_and_rule():
    with pytest.raises(ConfigError, match=r"layer 'head': method 'kmeans' needs at most as many clusters as "
                                          r"weights per codebook row \(2\^bits = 16 clusters; per_channel rows hold "
                                          r"8 weights\), but got 16 > 8"):
        get_method("kmeans")().quantize_weight(torch.randn(3, 8), _spec(4), name="head")


@pytest.mark.parametrize("name", ["adaround", "gptq", "bias_correction", "hessian_kmeans"])
def test_a_data_needing_method_without_data_is_a_clear_error(name):
    with pytest.raises(ConfigError, match=f"layer 'fc1': method '{name}' needs calibration inputs"):
        get_method(name)().quantize_weight(torch.randn(4, 8), _spec(4), name="fc1")


def test_gptq_refuses_an_embedding_naming_layer_method_and_rule():
    emb = nn.Embedding(10, 8)
    with pytest.raises(ConfigError, match="layer 'tok': method 'gptq' cannot quantize it: it handles linear"):
        get_method("gptq")().quantize_weight(emb.weight, _spec(4), calib_inputs=torch.randn(2, 8), layer=emb,
                                             name="tok")


def test_hessian_kmeans_favours_weights_that_see_large_inputs():
    layer = _linear(6)
    x = _correlated_inputs(512, 32, 7)
    km = get_method("kmeans")().quantize_weight(layer.weight, _spec(2), calib_inputs=x, layer=layer)
    hk = get_method("hessian_kmeans")().quantize_weight(layer.weight, _spec(2), calib_inputs=x, layer=layer)
    assert _out_mse(layer, x, hk.weight_dq) < _out_mse(layer, x, km.weight_dq)


def test_binary_code_values_are_sums_of_scaled_signs_and_beat_greedy():
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    greedy = make_method("binary_code", n_iter=0).quantize_weight(w, _spec(2))
    als = get_method("binary_code")().quantize_weight(w, _spec(2))
    assert als.info["sse"] <= greedy.info["sse"] + 1e-9
    a = torch.tensor(als.info["alphas"])
    signs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # code c: bit i -> sign i
    assert torch.allclose(als.codebook, (a @ signs.T).float(), atol=1e-6)
    assert als.extra_bits == 4 * 2 * 16


def test_log2_values_are_zero_and_powers_of_two_times_the_row_max():
    w = torch.tensor([[0.9, -0.26, 0.1, 0.0, -0.05, 0.5, 0.7, 0.13]])
    res = get_method("log2")().quantize_weight(w, _spec(3, "per_tensor"))  # L = 3: 0, +-0.9 {1, 1/2, 1/4}
    assert res.integer_codebook
    assert torch.allclose(res.codebook[0], torch.tensor([-0.9, -0.45, -0.225, 0, 0.225, 0.45, 0.9]))
    assert torch.allclose(res.weight_dq, torch.tensor([[0.9, -0.225, 0.0, 0.0, 0.0, 0.45, 0.9, 0.225]]))


def test_stochastic_rounding_is_seeded_and_unbiased_on_average():
    w = torch.full((1, 20000), 0.3) * torch.tensor([1.0] * 19999 + [1.0 / 0.3]).unsqueeze(0)  # max 1: S = 2/7
    a = make_method("stochastic", seed=3).quantize_weight(w, _spec(3, "per_tensor"))
    b = make_method("stochastic", seed=3).quantize_weight(w, _spec(3, "per_tensor"))
    assert torch.equal(a.codes, b.codes)
    assert float(a.weight_dq[0, :-1].mean()) == pytest.approx(0.3, abs=0.005)
