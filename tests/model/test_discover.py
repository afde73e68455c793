"""discover(): shapes, n_params and MACs checked against hand arithmetic; joins and ties."""

from __future__ import annotations

import torch
from torch import nn

from mpsearch.model import ModelGraph, discover, discover_graph, input_ties


class _Mixed(nn.Module):
    """Strided conv, depthwise, grouped, 1x1, pooling, flatten, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.dw_mult = nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False)  # channel multiplier 2
        self.grouped = nn.Conv2d(16, 16, 1, groups=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.grouped(self.dw_mult(self.dw(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_conv_kinds_params_and_macs_by_hand() -> None:
    # batch 2 on purpose: MACs are per example, shapes keep the batch
    graph = discover_graph(_Mixed(), torch.randn(2, 3, 16, 16))
    assert graph.mode == "fx"
    by = {l.name: l for l in graph.layers}
    assert [l.name for l in graph.layers] == ["stem", "dw", "dw_mult", "grouped", "fc"]
    assert [l.index for l in graph.layers] == [0, 1, 2, 3, 4]

    stem = by["stem"]
    # 16x16, k3 s2 p1 -> floor((16 + 2 - 3) / 2) + 1 = 8 -> 8x8
    assert stem.output_shape == (2, 8, 8, 8) and stem.input_shape == (2, 3, 16, 16)
    # macs = out elems per example (8*8*8) * cin/groups (3) * k*k (3*3) = 512 * 27 = 13824
    assert stem.macs == 13824
    # params = 8*3*3*3 weights + 8 bias = 216 + 8 = 224
    assert stem.n_params == 224 and stem.has_bias
    assert (stem.kind, stem.kernel_size, stem.stride, stem.padding, stem.groups) == \
        ("conv2d", (3, 3), (2, 2), (1, 1), 1)

    dw = by["dw"]
    # depthwise 8 ch 3x3 on 8x8: macs = 8*8*8 * (8/8) * 9 = 4608; params = 8*1*3*3 + 8 = 80
    assert (dw.kind, dw.macs, dw.n_params, dw.groups) == ("depthwise_conv2d", 4608, 80, 8)
    assert dw.weight_shape == (8, 1, 3, 3)

    mult = by["dw_mult"]
    # groups == cin = 8, cout = 16 (multiplier 2): still depthwise
    # macs = 16*8*8 * (8/8) * 9 = 9216; params = 16*1*3*3 = 144 (no bias)
    assert (mult.kind, mult.macs, mult.n_params, mult.has_bias) == ("depthwise_conv2d", 9216, 144, False)

    grouped = by["grouped"]
    # groups 4 < cin 16: a grouped conv, kind conv2d with groups recorded
    # macs = 16*8*8 * (16/4) * 1 = 4096; params = 16*4*1*1 + 16 = 80
    assert (grouped.kind, grouped.groups, grouped.macs, grouped.n_params) == ("conv2d", 4, 4096, 80)

    fc = by["fc"]
    # linear 16 -> 10 on (2, 16): macs = 10*16 = 160; params = 160 + 10 = 170
    assert (fc.kind, fc.macs, fc.n_params, fc.in_channels, fc.out_channels) == ("linear", 160, 170, 16, 10)
    assert fc.input_shape == (2, 16) and fc.output_shape == (2, 10)
    assert graph.joins == () and graph.unsupported == () and graph.n_calls == {}


class _Seq1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 5)  # no padding
        self.dw = nn.Conv1d(6, 6, 3, stride=2, padding=1, groups=6, bias=False)
        self.proj = nn.Linear(10, 7)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.conv(x))
        return y.sum() + self.proj(tokens)


def test_conv1d_and_linear_on_3d_input() -> None:
    x = torch.randn(3, 4, 20)
    tokens = torch.randn(3, 5, 10)  # (batch, seq 5, features 10)
    layers = discover(_Seq1d(), (x, tokens))
    by = {l.name: l for l in layers}
    conv = by["conv"]
    # L = 20 - 5 + 1 = 16 -> macs = 6*16 * 4 * 5 = 1920; params = 6*4*5 + 6 = 126
    assert (conv.kind, conv.output_shape, conv.macs, conv.n_params) == ("conv1d", (3, 6, 16), 1920, 126)
    dw = by["dw"]
    # L = floor((16 + 2 - 3) / 2) + 1 = 8 -> macs = 6*8 * 1 * 3 = 144; params = 6*1*3 = 18
    assert (dw.kind, dw.output_shape, dw.macs, dw.n_params) == ("depthwise_conv1d", (3, 6, 8), 144, 18)
    proj = by["proj"]
    # out (3, 5, 7): per example 5 tokens * 7 outputs * 10 inputs = 350; params = 70 + 7 = 77
    assert (proj.macs, proj.n_params, proj.output_shape) == (350, 77, (3, 5, 7))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 strided downsample conv when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.layer1 = BasicBlock(8, 16, 2)
        self.layer2 = BasicBlock(16, 16, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_resnet_block_joins_and_shared_input() -> None:
    graph = discover_graph(TinyResNet(), torch.randn(1, 3, 8, 8))
    by = {l.name: l for l in graph.layers}
    assert graph.mode == "fx"
    # two residual adds; the first meets the block's conv2 (through bn2) and the downsample conv
    # (through its BN); the second meets layer2.conv2 and an identity that leads back to
    # the first add (a join, not a layer), so only conv2 is listed.
    assert [j.op for j in graph.joins] == ["add", "add"]
    first, second = graph.joins
    assert set(first.inputs) == {"layer1.conv2", "layer1.downsample.0"}
    assert second.inputs == ("layer2.conv2",)
    assert by["layer1.conv2"].joins == (first.name,)
    assert by["layer1.downsample.0"].joins == (first.name,)
    assert by["layer1.conv1"].joins == ()
    # conv1 and the downsample conv read the same block input
    assert by["layer1.conv1"].shares_input_with == ("layer1.downsample.0",)
    assert by["layer1.downsample.0"].shares_input_with == ("layer1.conv1",)
    assert by["layer2.conv1"].shares_input_with == ()
    assert input_ties(graph) == [("layer1.conv1", "layer1.downsample.0")]
    assert input_ties(graph.layers) == input_ties(graph)
    # downsample 8->16, 1x1 stride 2 on 8x8 -> 4x4: macs = 16*4*4 * 8 * 1 = 2048; params 128
    assert (by["layer1.downsample.0"].macs, by["layer1.downsample.0"].n_params) == (2048, 128)
    # conv1 8->16 3x3 s2: macs = 16*4*4 * 8 * 9 = 18432
    assert by["layer1.conv1"].macs == 18432


class _Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 6, 1)
        self.b = nn.Conv2d(4, 2, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.c = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.a(x)), self.pool(self.b(self.drop(x))).repeat(1, 1, 2, 2)], dim=1)
        return self.c(y)


def test_concat_join_and_alias_through_dropout() -> None:
    graph = discover_graph(_Concat(), torch.randn(2, 4, 6, 6))
    (cat,) = graph.joins
    # branch a reaches the concat through relu; branch b goes through pool then repeat,
    # and repeat is not scale-keeping in our registry, so it is not listed.
    assert cat.op == "cat" and cat.inputs == ("a",)
    assert graph.layer("a").joins == (cat.name,)
    # dropout is the identity in eval: a and b read the same tensor
    assert graph.layer("b").shares_input_with == ("a",)
    # c: 8->8 1x1 on 6x6 -> macs = 8*6*6 * 8 = 2304
    assert graph.layer("c").macs == 2304


class _Cat2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.a(x), nn.functional.relu(self.b(x)).flatten(2).view(x.shape[0], 4, 5, 5)), 1)


def test_concat_lists_both_branches() -> None:
    graph = discover_graph(_Cat2(), torch.randn(1, 3, 5, 5))
    (cat,) = graph.joins
    assert cat.inputs == ("a", "b")
    assert graph.layer("a").shares_input_with == ("b",)
    assert isinstance(graph, ModelGraph)


class _Shared(nn.Module):
    """One conv applied twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(x)))


def test_weight_sharing_sums_macs() -> None:
    graph = discover_graph(_Shared(), torch.randn(1, 4, 5, 5))
    (layer,) = graph.layers
    # per call 4*5*5 * 4 * 9 = 3600, two calls -> 7200; params counted once: 144 + 4
    assert (layer.macs, layer.n_params) == (7200, 148)
    assert graph.n_calls == {"conv": 2}


class MyConv(nn.Conv2d):
    """A user subclass: the default fx tracer would trace into it and lose the layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_conv_subclass_is_a_layer() -> None:
    model = nn.Sequential(MyConv(2, 3, 1), nn.ReLU())
    (layer,) = discover(model, torch.randn(1, 2, 4, 4))
    # macs = 3*4*4 * 2 * 1 = 96; params = 6 + 3 = 9
    assert (layer.name, layer.kind, layer.macs, layer.n_params) == ("0", "conv2d", 96, 9)


def test_bare_layer_as_model() -> None:
    (layer,) = discover(nn.Linear(3, 2), torch.randn(4, 3))
    # the root module's FQN is ""; macs = 2 * 3 = 6; params = 6 + 2 = 8
    assert (layer.name, layer.kind, layer.macs, layer.n_params) == ("", "linear", 6, 8)
