"""Small models *outside the zoo*, as a user would write them, for the graph partitioner tests.

Tiny widths and inputs keep the tests fast; the structure is what matters: a ResNet (skip
connections with and without a projection), a MobileNetV2 (inverted residuals, some with a
skip, some without; depthwise convolutions), an Inception network (four parallel branches
concatenated, plus an auxiliary exit head) and a DenseNet block (concatenating skips). Every
factory seeds its weights and returns the model in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SEED = 0
CLASSES = 10
INPUT_SHAPE = (3, 16, 16)


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(SEED)
    return TinyResNet().eval()


# --------------------------------------------------------------------------- MobileNetV2


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU6()]  # fmt: skip


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = _conv_bn(c_in, hidden, 1) if expand != 1 else []
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(*_conv_bn(3, 8, 3, 2)),
            InvertedResidual(8, 8, 1, 1),  # skip
            InvertedResidual(8, 12, 2, 4),  # no skip: a chain, cuttable inside
            InvertedResidual(12, 12, 1, 4),  # skip
            InvertedResidual(12, 16, 2, 4),
            InvertedResidual(16, 16, 1, 4),  # skip
            nn.Sequential(*_conv_bn(16, 32, 1)),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        return self.classifier(torch.flatten(x, 1))


def tiny_mobilenetv2() -> nn.Module:
    torch.manual_seed(SEED)
    return TinyMobileNetV2().eval()


# --------------------------------------------------------------------------- Inception


class Inception(nn.Module):
    """Four parallel branches, concatenated (Szegedy et al., CVPR 2015, Fig. 2b)."""

    def __init__(self, c_in: int, c1: int, c3: int, c5: int, cp: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(*_conv_bn(c_in, c1, 1))
        self.branch2 = nn.Sequential(*_conv_bn(c_in, c3, 1), *_conv_bn(c3, c3, 3))
        self.branch3 = nn.Sequential(*_conv_bn(c_in, c5, 1), *_conv_bn(c5, c5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn(c_in, cp, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxHead(nn.Module):
    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(c_in * 4, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyInception(nn.Module):
    """Returns ``[aux1 logits, final logits]``; ``aux1`` and ``fc`` are the exit heads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 8, 3))
        self.inception1 = Inception(8, 4, 4, 2, 2)
        self.maxpool = nn.MaxPool2d(2)
        self.aux1 = AuxHead(12)
        self.inception2 = Inception(12, 6, 6, 2, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, CLASSES)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.inception1(self.stem(x)))
        aux = self.aux1(x)
        x = self.avgpool(self.inception2(x))
        return [aux, self.fc(torch.flatten(x, 1))]


def tiny_inception() -> nn.Module:
    torch.manual_seed(SEED)
    return TinyInception().eval()


# --------------------------------------------------------------------------- DenseNet


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, 1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], 1)


class TinyDenseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4))
        self.transition = nn.Sequential(nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1), nn.AvgPool2d(2))
        self.block2 = nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4))
        self.classifier = nn.Linear(16, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block2(self.transition(self.block1(self.conv0(x))))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


def tiny_densenet() -> nn.Module:
    torch.manual_seed(SEED)
    return TinyDenseNet().eval()


# --------------------------------------------------------------------------- bad models


class AuxInsideBlock(nn.Module):
    """An exit head reading a tensor inside a residual block (no valid cut there)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, 1, 1)
        self.conv2 = nn.Conv2d(4, 4, 3, 1, 1)
        self.conv3 = nn.Conv2d(4, 4, 3, 1, 1)
        self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv1(x)
        y = self.conv2(x)
        a = self.aux(y)  # y is computed while x is still needed for the skip below
        x = self.conv3(y) + x
        return [a, self.fc(x)]


class DataDependent(nn.Module):
    """Control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return self.conv(-x)


class TwoInputs(nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y


class WithFlag(nn.Module):
    """An extra forward parameter with a default is fixed to it when tracing."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, CLASSES)

    def forward(self, x: Tensor, features_only: bool = False) -> Tensor:
        x = F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1)
        return x if features_only else self.fc(x)


def data_dependent() -> nn.Module:
    return DataDependent().eval()


def not_a_module() -> int:
    return 42


def broken() -> nn.Module:
    raise RuntimeError("weights file missing")


class NoInput(nn.Module):
    def forward(self) -> Tensor:
        return torch.zeros(1)


def _head() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))


class HeadCalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = _head()

    def forward(self, x: Tensor) -> list[Tensor]:
        y = self.conv(x)
        return [self.head(y), self.head(y * 2)]


class HeadOnHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = _head()
        self.post = nn.Linear(CLASSES, CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.head(self.conv(x)))


class HeadFeedsTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.aux = _head()
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = _head()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv1(x)
        a = self.aux(x)
        x = self.conv2(x) * a.mean()
        return [a, self.fc(x)]


class TwoHeads(nn.Module):
    """Two heads on one tensor: at the end (no final head), or early (after the same unit)."""

    def __init__(self, early: bool) -> None:
        super().__init__()
        self.early = early
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.h1, self.h2, self.fc = _head(), _head(), _head()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv1(x)
        if self.early:
            return [self.h1(x), self.h2(x), self.fc(self.conv2(x))]
        x = self.conv2(x)
        return [self.h1(x), self.h2(x)]


class HeadReadsTwo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.aux = _head()
        self.fc = _head()

    def forward(self, x: Tensor) -> list[Tensor]:
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        a = self.aux(x1 + x2)  # the sum exists only for the head: it reads x1 and x2
        return [a, self.fc(self.conv3(x2))]


class ConstantOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        self.conv(x)
        return torch.ones(1, CLASSES)
