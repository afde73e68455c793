"""The method registry and the round-to-nearest baseline."""

import pytest
import torch

from mpsearch.errors import ConfigError, UnknownNameError
from mpsearch.quant.methods import get_method, make_method, uniform_extra_bits
from mpsearch.quant.quantizer import fake_quantize_weight
from mpsearch.quant.spec import QuantSpec

SPEC4 = QuantSpec(bits=4, symmetric=True, signed=True, granularity="per_channel")


def test_rtn_is_the_quantizer_formula_bit_for_bit():
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    res = get_method("rtn")().quantize_weight(w, SPEC4)
    assert torch.equal(res.weight_dq, fake_quantize_weight(w, 4, SPEC4))
    assert res.is_uniform and res.codebook is None
    assert int(res.codes.min()) >= -8 and int(res.codes.max()) <= 7
    assert res.extra_bits == 8 * 16  # one fp16 scale per output channel, symmetric
    assert res.run_time_s > 0


def test_uniform_extra_bits_counts_zero_points_when_asymmetric():
    spec = QuantSpec(bits=4, symmetric=False, signed=True, granularity="per_group", group_size=8)
    assert uniform_extra_bits((4, 16), spec) == 8 * (16 + 4)


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="unknown quantization method 'rnt'.*Valid: .*rtn"):
        get_method("rnt")


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(ConfigError, match=r"method 'rtn' option must be one of \[\], but got 'damp'"):
        make_method("rtn", damp=0.01)
