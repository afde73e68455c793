"""Demo models: registry, parameter counts by hand, fx-traceability and structure."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.fx
from torch import nn

from mpsearch.demo import DEMO_MODELS, get_model
from mpsearch.errors import UnknownNameError

# Parameter counts worked out by hand (weights + biases + BN gamma/beta).
N_PARAMS = {
    # conv1 1*16*9+16=160, conv2 16*32*9+32=4640, conv3 32*32*9+32=9248, fc 32*4*4*10+10=5130
    "small_cnn": 160 + 4640 + 9248 + 5130,
    # stem 144+32; layer1 2*(16*16*9)+2*32; layer2 16*32*9+32*32*9+16*32 (1x1) + 3*64;
    # layer3 2*(32*32*9)+2*64; fc 32*10+10
    "resnet_tiny": 176 + 4672 + (4608 + 9216 + 512 + 192) + 18560 + 330,
    # stem 144+32; dw 144+32; pw 256+32; block1 (16->48->16) 768+96+432+96+768+32;
    # block2 (16->48->24) 768+96+432+96+1152+48; block3 (24->72->24) 1728+144+648+144+1728+48;
    # head 24*64+128; fc 640+10
    "mobilenet_tiny": 176 + 176 + 288 + 2192 + 2592 + 4440 + 1664 + 650,
}
# Residual adds: resnet_tiny has one per basic block; mobilenet_tiny one per stride-1,
# same-width inverted residual (block1, block3).
N_ADDS = {"small_cnn": 0, "resnet_tiny": 3, "mobilenet_tiny": 2}


def test_registry_holds_the_three_models():
    assert set(DEMO_MODELS) == {"small_cnn", "resnet_tiny", "mobilenet_tiny"}


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_param_count_matches_hand_count(name):
    assert sum(p.numel() for p in get_model(name).parameters()) == N_PARAMS[name]


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_fx_traceable_and_equal_to_eager(name):
    torch.manual_seed(0)
    model = get_model(name).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        eager, fx_out = model(x), traced(x)
    assert eager.shape == (5, 10)
    assert torch.equal(eager, fx_out)
    n_adds = sum(
        1 for node in traced.graph.nodes
        if node.op == "call_function" and node.target in (operator.add, torch.add)
    )
    assert n_adds == N_ADDS[name]
    # No module is called twice: each activation point has its own name.
    called = [node.target for node in traced.graph.nodes if node.op == "call_module"]
    assert len(called) == len(set(called))


def test_resnet_tiny_has_strided_block_with_1x1_downsample():
    model = get_model("resnet_tiny")
    mods = dict(model.named_modules())
    down = mods["layer2.downsample.0"]
    assert isinstance(down, nn.Conv2d) and down.kernel_size == (1, 1) and down.stride == (2, 2)
    assert mods["layer2.conv1"].stride == (2, 2)
    assert mods["layer1"].downsample is None and mods["layer3"].downsample is None
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn == 1 + 2 + 3 + 2  # stem, layer1, layer2 (+downsample BN), layer3


def test_mobilenet_tiny_has_depthwise_convs_and_relu6():
    model = get_model("mobilenet_tiny")
    depthwise = [n for n, m in model.named_modules()
                 if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels]
    assert depthwise == ["dw", "block1.depthwise", "block2.depthwise", "block3.depthwise"]
    assert sum(isinstance(m, nn.ReLU6) for m in model.modules()) == 2 + 3 * 2 + 1
    assert model.block2.depthwise.stride == (2, 2)


def test_global_pool_models_accept_16x16_inputs():
    x = torch.randn(2, 1, 16, 16)
    for name in ("resnet_tiny", "mobilenet_tiny"):
        assert get_model(name).eval()(x).shape == (2, 10)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        get_model("resnet_tiniest")
    message = str(info.value)
    assert "unknown demo model 'resnet_tiniest'" in message
    assert "did you mean 'resnet_tiny'?" in message
    assert "Valid: mobilenet_tiny, resnet_tiny, small_cnn" in message
