"""Small demo networks for the digits dataset, each traceable by ``torch.fx``.

Every model takes float32 images ``(N, 1, H, W)`` (H = W = 8 for the native digits, any
H = W >= 4 works) and returns logits ``(N, 10)``. They have no data-dependent control flow,
and every activation is its own module instance (no module is called twice), so each
activation point has a distinct name for quantizers and observers.

The three families cover the layer patterns mpsearch has to handle:

- ``small_cnn``: plain conv + bias + ReLU, max-pool, linear (no BatchNorm).
- ``resnet_tiny``: stem conv-BN-ReLU, basic blocks with residual adds, one strided block
  with a 1x1 downsample conv, global average pool, linear.
- ``mobilenet_tiny``: depthwise-separable convs with BN and ReLU6, inverted residual blocks
  with and without the residual add, global average pool, linear.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mpsearch.errors import unknown_name

N_CLASSES = 10


class SmallCNN(nn.Module):
    """conv(1->16) ReLU, conv(16->32) ReLU, maxpool 2, conv(32->32) ReLU, flatten, linear."""

    def __init__(self, in_hw: int = 8, n_classes: int = N_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * (in_hw // 2) ** 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.fc(self.flatten(x))


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU, conv-BN, add the shortcut, ReLU.

    The shortcut is the identity, or a 1x1 conv + BN when the stride or width changes.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # `downsample` is fixed at construction, so fx sees a static branch.
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class ResNetTiny(nn.Module):
    """Stem conv(1->16)-BN-ReLU, blocks 16->16, 16->32 (stride 2, 1x1 downsample), 32->32, GAP, linear."""

    def __init__(self, n_classes: int = N_CLASSES, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.layer3 = BasicBlock(2 * width, 2 * width)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand-BN-ReLU6, 3x3 depthwise-BN-ReLU6, 1x1 project-BN, (+ input).

    The residual add is present only when ``stride == 1`` and ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 3):
        super().__init__()
        hidden = c_in * expand
        self.use_residual = stride == 1 and c_in == c_out
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = nn.ReLU6()
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = nn.ReLU6()
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.expand(x)))
        out = self.act2(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))
        # `use_residual` is a Python bool fixed at construction: a static branch for fx.
        return out + x if self.use_residual else out


class MobileNetTiny(nn.Module):
    """Stem conv(1->16)-BN-ReLU6, depthwise-separable 16->16, inverted residuals, 1x1 conv to 64, GAP, linear."""

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.stem_act = nn.ReLU6()
        # Depthwise-separable conv: 3x3 depthwise then 1x1 pointwise.
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.dw_act = nn.ReLU6()
        self.pw = nn.Conv2d(16, 16, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(16)
        self.block1 = InvertedResidual(16, 16)  # residual add
        self.block2 = InvertedResidual(16, 24, stride=2)  # no add (stride and width change)
        self.block3 = InvertedResidual(24, 24)  # residual add
        self.head = nn.Conv2d(24, 64, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(64)
        self.head_act = nn.ReLU6()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        x = self.dw_act(self.dw_bn(self.dw(x)))
        x = self.pw_bn(self.pw(x))
        x = self.block3(self.block2(self.block1(x)))
        x = self.head_act(self.head_bn(self.head(x)))
        return self.fc(self.flatten(self.avgpool(x)))


#: name -> constructor taking no arguments (models for 8x8 digits with 10 classes).
DEMO_MODELS: dict[str, Callable[[], nn.Module]] = {
    "small_cnn": SmallCNN,
    "resnet_tiny": ResNetTiny,
    "mobilenet_tiny": MobileNetTiny,
}


def get_model(name: str) -> nn.Module:
    """Build a freshly initialized demo model (initialization follows torch's global RNG).

    Args:
        name: a key of :data:`DEMO_MODELS`.

    Raises:
        UnknownNameError: if ``name`` is not registered; the message lists the valid names.
    """
    ctor = DEMO_MODELS.get(name)
    if ctor is None:
        raise unknown_name("demo model", name, DEMO_MODELS)
    return ctor()
