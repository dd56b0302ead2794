"""The multi-exit model zoo: partitionable, BranchyNet-style versions of real architectures.

Every model is a chain of coarse *partitionable units* (the candidate cut points) with *exit
heads* attached after some of them; the last exit follows the last unit and is the network's
own classifier. This is the structure a :class:`~edgerl.profiles.schema.LayerProfile` describes,
so a profile of a zoo model has one entry per unit and per exit, in the same order.

Families (the ImageNet backbones are the torchvision reference architectures, rebuilt here layer for
layer; ``tests/test_zoo.py`` checks their parameter counts against torchvision's documented
``num_params`` and their FLOPs against its documented GFLOPS):

==================  ============================================================  =====  =====
model               backbone                                                      units  exits
==================  ============================================================  =====  =====
``alexnet_me``      AlexNet (torchvision variant), as BranchyNet and Edgent use     7      4
``resnet18_me``     ResNet-18                                                       9      4
``mobilenetv2_me``  MobileNetV2 (width 1.0)                                         8      4
``digits_me``       a small CNN for scikit-learn's 8x8 digits (trained for real)    4      3
``balexnet_c10``    BranchyNet's B-AlexNet for CIFAR-10 (trained for real)          7      5
``resnet_c10``      ResNet-20 for CIFAR-10 (trained for real)                      10      3
``mobilenetv2_c10`` MobileNetV2 0.5 for CIFAR-10 (trained for real)                 8      4
==================  ============================================================  =====  =====

Variants are data entries (:class:`VariantSpec`), not code paths: ``fp32``; ``int8`` (real
static int8 quantization of every unit and exit head with ``torch.ao.quantization`` FX graph
mode, x86/fbgemm backend; the tensors passed between units are ``quint8``); ``r160`` (ImageNet
families fed 160x160 input); for digits, ``pruned50`` (L1-norm structured filter pruning to half
the channels, then fine-tuned; see :mod:`edgerl.profiles.digits`); for the CIFAR-10 families,
``pruned`` (L1-norm structured pruning to half of the prunable channels, then fine-tuned; see
:mod:`edgerl.profiles.cifar`, which also ships their trained weights and per-input accuracy).

The ImageNet-scale models carry random (seeded) weights: ImageNet weights cannot be downloaded
here, so they serve cost profiling (latency, bytes, FLOPs), and their accuracy is cited from
published tables (:attr:`VariantSpec.final_accuracy`) or left unknown. Exit heads are cheap,
BranchyNet-style: a 1x1 convolution to :data:`BRANCH_WIDTH` channels, global average pooling
and one linear layer (Teerapittayanon et al., "BranchyNet", ICPR 2016, attach small
conv + fully connected branches to the backbone).

References:
    torchvision model documentation, https://pytorch.org/vision/stable/models.html (weights
    tables of the multi-weight API, torchvision 0.13, 2022).
    Teerapittayanon, McDanel, Kung. BranchyNet: Fast inference via early exiting from deep
    neural networks. ICPR 2016.
    Li, Zhou, Chen. Edge intelligence: on-demand deep learning model co-inference with
    device-edge synergy (Edgent). MECOMM 2018 (uses a BranchyNet-style AlexNet).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# ----------------------------------------------------------------------------- constants

IMAGENET_CLASSES = 1000  # ImageNet-1k label count
IMAGENET_RESOLUTION_PX = 224  # standard ImageNet evaluation crop (torchvision docs)
REDUCED_RESOLUTION_PX = 160  # the r160 variant; MobileNetV2's published 160 px checkpoint
IMAGE_CHANNELS = 3  # RGB
DIGITS_CLASSES = 10  # sklearn.datasets.load_digits: digits 0..9
DIGITS_RESOLUTION_PX = 8  # load_digits images are 8x8
DIGITS_CHANNELS = 1  # grey levels
BRANCH_WIDTH = 128  # channels of the 1x1 conv in an ImageNet exit branch (our choice: cheap)
BRANCH_POOL_PX = 2  # digits exit branches average-pool to 2x2 before their linear layer
QUANT_BACKEND = "x86"  # torch.ao.quantization backend (fbgemm kernels on x86)
CALIBRATION_BATCHES = 2  # batches of random images used to calibrate a random-weight int8 model
CALIBRATION_BATCH_SIZE = 2
BN_CALIBRATION_BATCHES = 2  # batches of random images that set BatchNorm statistics at build
BN_CALIBRATION_BATCH_SIZE = 8
BN_DEFAULT_MOMENTUM = 0.1  # torch.nn.BatchNorm2d default
DEFAULT_SEED = 0

UNKNOWN_ACCURACY = "unknown: no published table for this branch; the scenario must supply it"

# Published ImageNet-1k top-1 accuracies, each quoted from the table named next to it.
_TV = "torchvision model documentation (pytorch.org/vision/stable/models.html)"
ALEXNET_TOP1 = 0.56522  # _TV, AlexNet_Weights.IMAGENET1K_V1, acc@1 56.522
RESNET18_TOP1 = 0.69758  # _TV, ResNet18_Weights.IMAGENET1K_V1, acc@1 69.758
RESNET18_INT8_TOP1 = 0.69494  # _TV, ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1, 69.494
MOBILENETV2_TOP1 = 0.71878  # _TV, MobileNet_V2_Weights.IMAGENET1K_V1, acc@1 71.878
MOBILENETV2_INT8_TOP1 = 0.71658  # _TV, MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1
MOBILENETV2_160_TOP1 = 0.688  # TF-slim MobileNetV2 checkpoint table, mobilenet_v2_1.0_160


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a zoo model: a data entry the simulator can choose.

    Attributes:
        name: Stable variant name (``fp32``, ``int8``, ``r160``, ``pruned50``).
        precision: ``"fp32"`` or ``"int8"``.
        input_resolution: Input height = width [px].
        description: One line for tables and profile metadata.
        width_multiplier: Channel-width factor of the float architecture (1.0 = full).
        final_accuracy: Top-1 accuracy of the final exit when a published table gives it,
            else ``None``. Digits accuracies are measured, not stored here.
        final_accuracy_source: Where ``final_accuracy`` comes from (paper/doc, table, year) or
            why it is unknown.
    """

    name: str
    precision: str
    input_resolution: int
    description: str
    width_multiplier: float = 1.0
    final_accuracy: float | None = None
    final_accuracy_source: str = UNKNOWN_ACCURACY


@dataclass(frozen=True)
class ModelSpec:
    """Static description of a zoo model (listing it needs no weights)."""

    name: str
    family: str
    description: str
    in_channels: int
    num_classes: int
    unit_names: tuple[str, ...]
    unit_layer_types: tuple[str, ...]
    exit_after: tuple[int, ...]
    variants: dict[str, VariantSpec]
    builder: Callable[[float], tuple[list[nn.Module], list[nn.Module]]] = field(repr=False)
    measured_accuracy: bool = False  # True: per-exit accuracy is measured (digits, CIFAR-10)
    #: True: trained weights and a per-input accuracy table ship in ``profiles/data/<model>/``
    #: (the CIFAR-10 families, :mod:`edgerl.profiles.cifar`); False: weights are random
    #: (ImageNet families) or retrained from a seed (digits).
    shipped_weights: bool = False

    @property
    def exit_names(self) -> tuple[str, ...]:
        """Stable exit names: ``exit_after_<unit>`` for branches, ``exit_final`` last."""
        early = tuple(f"exit_after_{self.unit_names[u]}" for u in self.exit_after[:-1])
        return (*early, "exit_final")

    def input_shape(self, variant: str) -> tuple[int, int, int]:
        r = self.variant(variant).input_resolution
        return (self.in_channels, r, r)

    def variant(self, name: str) -> VariantSpec:
        if name not in self.variants:
            raise KeyError(
                f"model {self.name!r} has no variant {name!r}; "
                f"available: {', '.join(self.variants)}"
            )
        return self.variants[name]


# ----------------------------------------------------------------------------- the base class


class MultiExitNet(nn.Module):
    """A chain of partitionable units with exit heads (BranchyNet-style).

    A request that takes exit ``e`` runs ``units[0 .. exit_after[e]]`` and then ``exits[e]``.
    Cutting before unit ``c`` means the output of unit ``c - 1`` crosses the network.

    Attributes:
        units: The partitionable units, in execution order.
        exits: The exit heads; ``exits[-1]`` is the final classifier.
        unit_names: Stable unit names (profile entry names).
        unit_layer_types: Coarse layer type of each unit (conv, linear, residual, depthwise).
        exit_names: Stable exit names.
        exit_after: Index of the unit each exit follows; the last is ``len(units) - 1``.
        input_shape: Per-sample input shape ``(C, H, W)``.
    """

    def __init__(
        self,
        *,
        model: str,
        family: str,
        variant: str,
        precision: str,
        units: Sequence[nn.Module],
        exits: Sequence[nn.Module],
        unit_names: Sequence[str],
        unit_layer_types: Sequence[str],
        exit_names: Sequence[str],
        exit_after: Sequence[int],
        input_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if not (len(units) == len(unit_names) == len(unit_layer_types)):
            raise ValueError(
                f"{model}: {len(units)} units but {len(unit_names)} names and "
                f"{len(unit_layer_types)} layer types"
            )
        if not (len(exits) == len(exit_after) == len(exit_names)):
            raise ValueError(f"{model}: {len(exits)} exits but {len(exit_after)} exit_after")
        if list(exit_after) != sorted(set(exit_after)) or exit_after[-1] != len(units) - 1:
            raise ValueError(
                f"{model}: exit_after must increase strictly and end at the last unit "
                f"({len(units) - 1}), got {list(exit_after)}"
            )
        self.model_name = model
        self.family = family
        self.variant = variant
        self.precision = precision
        self.units = nn.ModuleList(units)
        self.exits = nn.ModuleList(exits)
        self.unit_names = list(unit_names)
        self.unit_layer_types = list(unit_layer_types)
        self.exit_names = list(exit_names)
        self.exit_after = list(exit_after)
        self.input_shape = input_shape
        self.num_classes = num_classes

    def run_units(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run units ``start .. stop - 1`` (a partition of the chain) on ``x``."""
        stop = len(self.units) if stop is None else stop
        for unit in self.units[start:stop]:
            x = unit(x)
        return x

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits of every exit, in exit order (each exit reads its unit's output)."""
        outputs: list[Tensor] = []
        heads = dict(zip(self.exit_after, self.exits, strict=True))
        for i, unit in enumerate(self.units):
            x = unit(x)
            if i in heads:
                outputs.append(heads[i](x))
        return outputs


# ----------------------------------------------------------------------------- building blocks


def _init_weights(module: nn.Module) -> None:
    """torchvision-style initialisation (He normal for convs, N(0, 0.01) for linears).

    Keeps activations of the random-weight ImageNet models in a normal floating-point range so
    that timing is not distorted by denormals or saturated int8 scales.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _branch(in_channels: int, num_classes: int) -> nn.Module:
    """A cheap BranchyNet-style exit head: 1x1 conv + BN + ReLU, global pool, linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, BRANCH_WIDTH, kernel_size=1, bias=False),
        nn.BatchNorm2d(BRANCH_WIDTH),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(BRANCH_WIDTH, num_classes),
    )


def _conv_bn(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


# ---- AlexNet ------------------------------------------------------------------------------

_ALEXNET_DROPOUT = 0.5  # torchvision AlexNet classifier dropout
_ALEXNET_POOL_PX = 6  # torchvision AlexNet adaptive average pool output (6x6)
_ALEXNET_FC = 4096  # fc6/fc7 width


def _alexnet(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    del width  # AlexNet has no width variants in the zoo
    units: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        ),
        nn.Sequential(nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)),
        nn.Sequential(nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)),
        nn.Sequential(
            nn.AdaptiveAvgPool2d((_ALEXNET_POOL_PX, _ALEXNET_POOL_PX)),
            nn.Flatten(1),
            nn.Dropout(_ALEXNET_DROPOUT),
            nn.Linear(256 * _ALEXNET_POOL_PX * _ALEXNET_POOL_PX, _ALEXNET_FC),
            nn.ReLU(inplace=True),
        ),
        nn.Sequential(
            nn.Dropout(_ALEXNET_DROPOUT), nn.Linear(_ALEXNET_FC, _ALEXNET_FC), nn.ReLU(inplace=True)
        ),
    ]
    exits: list[nn.Module] = [
        _branch(64, IMAGENET_CLASSES),
        _branch(192, IMAGENET_CLASSES),
        _branch(256, IMAGENET_CLASSES),
        nn.Sequential(nn.Linear(_ALEXNET_FC, IMAGENET_CLASSES)),  # fc8
    ]
    return units, exits


# ---- ResNet-18 ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BN, identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
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
        return torch.relu(out + identity)


_RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (channels, first stride)


def _resnet18(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    del width
    units: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
    ]
    c_in = 64
    for c_out, stride in _RESNET18_STAGES:
        units.append(BasicBlock(c_in, c_out, stride))
        units.append(BasicBlock(c_out, c_out, 1))
        c_in = c_out
    exits: list[nn.Module] = [
        _branch(64, IMAGENET_CLASSES),
        _branch(128, IMAGENET_CLASSES),
        _branch(256, IMAGENET_CLASSES),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(512, IMAGENET_CLASSES)),
    ]
    return units, exits


# ---- MobileNetV2 --------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection (+ skip)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, expand: int, hidden: int | None = None
    ) -> None:
        super().__init__()
        hidden = c_in * expand if hidden is None else hidden
        if expand == 1 and hidden != c_in:
            raise ValueError(f"an expansion-1 block runs its depthwise conv on its {c_in} inputs")
        layers: list[nn.Module] = []
        if expand != 1:
            layers += _conv_bn(c_in, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, c_out, 1, act=False)
        self.conv = nn.Sequential(*layers)
        self.use_skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_skip else self.conv(x)


# (expansion t, channels c, repeats n, first stride s): Sandler et al., CVPR 2018, Table 2.
_MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                  (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
_MBV2_STEM = 32
_MBV2_LAST = 1280
_MBV2_DROPOUT = 0.2  # torchvision MobileNetV2 classifier dropout


def _mobilenetv2(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    del width
    stages: list[list[nn.Module]] = []
    c_in = _MBV2_STEM
    for t, c, n, s in _MBV2_SETTINGS:
        blocks: list[nn.Module] = []
        for i in range(n):
            blocks.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
            c_in = c
        stages.append(blocks)
    units: list[nn.Module] = [
        nn.Sequential(*_conv_bn(IMAGE_CHANNELS, _MBV2_STEM, 3, 2), *stages[0]),
        *(nn.Sequential(*blocks) for blocks in stages[1:]),
        nn.Sequential(*_conv_bn(c_in, _MBV2_LAST, 1)),
    ]
    exits: list[nn.Module] = [
        _branch(24, IMAGENET_CLASSES),
        _branch(64, IMAGENET_CLASSES),
        _branch(160, IMAGENET_CLASSES),
        nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(_MBV2_DROPOUT),
            nn.Linear(_MBV2_LAST, IMAGENET_CLASSES),
        ),
    ]
    return units, exits


# ---- digits -------------------------------------------------------------------------------

DIGITS_CHANNELS_FULL = (16, 32, 64)  # conv widths of digits_me at width 1.0 (our choice)
DIGITS_FC_FULL = 64  # hidden fully-connected width at width 1.0
DIGITS_SPATIAL_AFTER_CONV3_PX = 2  # 8x8 input, two 2x2 max-pools


def digits_widths(width: float) -> tuple[int, int, int, int]:
    """Channel widths ``(c1, c2, c3, fc)`` of ``digits_me`` at a width multiplier."""
    c1, c2, c3 = (max(1, round(c * width)) for c in DIGITS_CHANNELS_FULL)
    return c1, c2, c3, max(1, round(DIGITS_FC_FULL * width))


def _digits_branch(c: int) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(BRANCH_POOL_PX),
        nn.Flatten(1),
        nn.Linear(c * BRANCH_POOL_PX * BRANCH_POOL_PX, DIGITS_CLASSES),
    )


def _digits(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    c1, c2, c3, fc = digits_widths(width)
    flat = c3 * DIGITS_SPATIAL_AFTER_CONV3_PX * DIGITS_SPATIAL_AFTER_CONV3_PX
    units: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(DIGITS_CHANNELS, c1, 3, padding=1, bias=False),
                      nn.BatchNorm2d(c1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),
                      nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(1), nn.Linear(flat, fc), nn.ReLU()),
    ]  # fmt: skip
    exits: list[nn.Module] = [
        _digits_branch(c1),
        _digits_branch(c2),
        nn.Sequential(nn.Linear(fc, DIGITS_CLASSES)),
    ]
    return units, exits


# ---- CIFAR-10 families (trained for real: edgerl.profiles.cifar) ----------------------------
#
# 32x32 RGB input in [0, 1] (pixel / 255, no mean/std normalisation: the BatchNorm after the first
# convolution absorbs the input scale). The width argument of each builder scales only the
# channels that structured L1 pruning removes (Li et al., "Pruning Filters for Efficient
# ConvNets", ICLR 2017), so that ``builder(PRUNE_KEEP_FRACTION)`` is the architecture of the
# ``pruned`` variant and :func:`edgerl.profiles.cifar.prune_l1` can copy the kept filters into it.

CIFAR_CLASSES = 10  # CIFAR-10 label count (Krizhevsky, 2009)
CIFAR_RESOLUTION_PX = 32  # CIFAR-10 images are 32x32
CIFAR_BRANCH_WIDTH = 32  # channels of the 3x3 conv of a CIFAR exit branch (BranchyNet's
#                          B-AlexNet branches use 32-channel 3x3 convs)
CIFAR_BRANCH_POOL_PX = 4  # a CIFAR exit branch average-pools to 4x4 before its linear layer
PRUNE_KEEP_FRACTION = 0.5  # the `pruned` variants keep half of the prunable channels


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _cifar_branch(in_channels: int, spatial_px: int) -> nn.Module:
    """A BranchyNet-style CIFAR exit: 3x3 conv + BN + ReLU, average pool to at most 4x4, linear.

    Args:
        in_channels: Channels of the unit output the branch reads.
        spatial_px: Height = width of that output [px].
    """
    pool = min(CIFAR_BRANCH_POOL_PX, spatial_px)
    return nn.Sequential(
        nn.Conv2d(in_channels, CIFAR_BRANCH_WIDTH, 3, padding=1, bias=False),
        nn.BatchNorm2d(CIFAR_BRANCH_WIDTH),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(pool),
        nn.Flatten(1),
        nn.Linear(CIFAR_BRANCH_WIDTH * pool * pool, CIFAR_CLASSES),
    )


class ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``: a residual block whose two paths are plain chains."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


# B-AlexNet for CIFAR-10, after BranchyNet's (kunglab/branchynet networks/alex_cifar10.py,
# Teerapittayanon et al., ICPR 2016): conv 5x5/32, 5x5/64, 3x3/96, 3x3/96, 3x3/64, each
# stage pooled 3x3/2, fc 1024-256-128-10 with dropout 0.5. Local response normalisation is
# replaced by BatchNorm (our choice: it folds into the int8 convolutions).
BALEXNET_CONV = (32, 64, 96, 96, 64)  # conv1..conv5 output channels
BALEXNET_FC = (256, 128)  # fc6, fc7 widths
BALEXNET_DROPOUT = 0.5  # BranchyNet's B-AlexNet dropout
BALEXNET_SPATIAL_AFTER_CONV5_PX = 4  # 32 -> 16 -> 8 -> 4 after three 3x3/2 max-pools


def _balexnet_c10(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    c1, c2, c3, c4, c5 = (_scaled(c, width) for c in BALEXNET_CONV)
    f6, f7 = (_scaled(f, width) for f in BALEXNET_FC)
    flat = c5 * BALEXNET_SPATIAL_AFTER_CONV5_PX * BALEXNET_SPATIAL_AFTER_CONV5_PX

    def conv(c_in: int, c_out: int, kernel: int, pool: bool) -> nn.Module:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, padding=(kernel - 1) // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
        return nn.Sequential(*layers)

    units: list[nn.Module] = [
        conv(IMAGE_CHANNELS, c1, 5, pool=True),
        conv(c1, c2, 5, pool=True),
        conv(c2, c3, 3, pool=False),
        conv(c3, c4, 3, pool=False),
        conv(c4, c5, 3, pool=True),
        nn.Sequential(nn.Flatten(1), nn.Linear(flat, f6), nn.ReLU(inplace=True),
                      nn.Dropout(BALEXNET_DROPOUT)),
        nn.Sequential(nn.Linear(f6, f7), nn.ReLU(inplace=True), nn.Dropout(BALEXNET_DROPOUT)),
    ]  # fmt: skip
    exits: list[nn.Module] = [
        _cifar_branch(c1, CIFAR_RESOLUTION_PX // 2),
        _cifar_branch(c2, CIFAR_RESOLUTION_PX // 4),
        _cifar_branch(c3, CIFAR_RESOLUTION_PX // 4),
        _cifar_branch(c5, CIFAR_RESOLUTION_PX // 8),
        nn.Sequential(nn.Linear(f7, CIFAR_CLASSES)),
    ]
    return units, exits


# ResNet-20 for CIFAR-10 (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
# section 4.2: 3x3 stem, three stages of n = 3 basic blocks with 16/32/64 channels, global
# average pool, fc). Projection (1x1 conv) shortcuts where the shape changes (the paper's
# option B). Pruning thins the first conv of every block only, as Li et al. (ICLR 2017) do
# for ResNets, so the residual sums keep their shapes.
RESNET_C10_STAGES = ((16, 1), (32, 2), (64, 2))  # (channels, first stride) per stage
RESNET_C10_BLOCKS = 3  # basic blocks per stage (ResNet-20: 6n + 2 = 20 layers)


def _resnet_block(c_in: int, c_out: int, stride: int, inner: int) -> nn.Module:
    body = nn.Sequential(
        nn.Conv2d(c_in, inner, 3, stride, 1, bias=False),
        nn.BatchNorm2d(inner),
        nn.ReLU(inplace=True),
        nn.Conv2d(inner, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )
    shortcut: nn.Module = nn.Identity()
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
        )
    return ResidualBlock(body, shortcut)


def _resnet_c10(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    stem = RESNET_C10_STAGES[0][0]
    units: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(IMAGE_CHANNELS, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
    ]
    c_in = stem
    for c_out, stride in RESNET_C10_STAGES:
        for i in range(RESNET_C10_BLOCKS):
            units.append(_resnet_block(c_in, c_out, stride if i == 0 else 1, _scaled(c_out, width)))
            c_in = c_out
    exits: list[nn.Module] = [
        _cifar_branch(RESNET_C10_STAGES[0][0], CIFAR_RESOLUTION_PX),
        _cifar_branch(RESNET_C10_STAGES[1][0], CIFAR_RESOLUTION_PX // 2),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c_in, CIFAR_CLASSES)),
    ]
    return units, exits


# MobileNetV2 for CIFAR-10: Sandler et al. (CVPR 2018) Table 2 at width 0.5 (channels halved,
# the last conv kept at 1280 as the paper does for widths below 1), with the stem's stride set
# to 1 for 32x32 input, so the seven stages see 32, 16, 8, 4, 4, 2, 2 px (our choice: the
# CIFAR ports that also keep the second stage at stride 1 train 2.5x slower on this CPU).
# Pruning thins the expansion (hidden) channels of every inverted-residual block and the last
# 1x1 conv; block outputs keep their shapes.
MBV2_C10_WIDTH = 0.5  # channel-width multiplier of the architecture (our choice: CPU budget)
MBV2_C10_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                     (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
MBV2_C10_STEM = 32  # stem channels at width 1 (stride 1 here)


def mbv2_c10_channels() -> tuple[int, ...]:
    """Output channels of the stem and of the seven stages of ``mobilenetv2_c10``."""
    stem = _scaled(MBV2_C10_STEM, MBV2_C10_WIDTH)
    return (stem, *(_scaled(c, MBV2_C10_WIDTH) for _, c, _, _ in MBV2_C10_SETTINGS))


def _mobilenetv2_c10(width: float) -> tuple[list[nn.Module], list[nn.Module]]:
    channels = mbv2_c10_channels()
    stages: list[list[nn.Module]] = []
    c_in = channels[0]
    for (t, _, n, s), c in zip(MBV2_C10_SETTINGS, channels[1:], strict=True):
        blocks: list[nn.Module] = []
        for i in range(n):
            hidden = c_in if t == 1 else _scaled(c_in * t, width)
            blocks.append(InvertedResidual(c_in, c, s if i == 0 else 1, t, hidden=hidden))
            c_in = c
        stages.append(blocks)
    last = _scaled(_MBV2_LAST, width)
    units: list[nn.Module] = [
        nn.Sequential(*_conv_bn(IMAGE_CHANNELS, channels[0], 3, 1), *stages[0]),
        *(nn.Sequential(*blocks) for blocks in stages[1:]),
        nn.Sequential(*_conv_bn(c_in, last, 1)),
    ]
    exits: list[nn.Module] = [
        _cifar_branch(channels[2], CIFAR_RESOLUTION_PX // 2),
        _cifar_branch(channels[4], CIFAR_RESOLUTION_PX // 8),
        _cifar_branch(channels[6], CIFAR_RESOLUTION_PX // 16),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(last, CIFAR_CLASSES)),
    ]
    return units, exits


# ----------------------------------------------------------------------------- the registry

_INT8_DESC = (
    "int8 static post-training quantization of every unit and exit head "
    "(torch.ao.quantization FX graph mode, x86/fbgemm, per-channel weights; quint8 tensors "
    "between units)"
)


def _imagenet_variants(
    top1: float | None, top1_source: str, int8: float | None, int8_source: str,
    r160: float | None, r160_source: str,
) -> dict[str, VariantSpec]:  # fmt: skip
    return {
        "fp32": VariantSpec("fp32", "fp32", IMAGENET_RESOLUTION_PX, "float32, 224x224 input",
                            final_accuracy=top1, final_accuracy_source=top1_source),
        "int8": VariantSpec("int8", "int8", IMAGENET_RESOLUTION_PX, _INT8_DESC + ", 224x224",
                            final_accuracy=int8, final_accuracy_source=int8_source),
        "r160": VariantSpec("r160", "fp32", REDUCED_RESOLUTION_PX,
                            "float32, reduced 160x160 input",
                            final_accuracy=r160, final_accuracy_source=r160_source),
    }  # fmt: skip


_NO_TABLE_INT8 = (
    "unknown: no published ImageNet table for an int8 {arch}; the scenario must supply it"
)
_NO_TABLE_R160 = (
    "unknown: no published ImageNet table for {arch} evaluated or trained at 160x160 input; "
    "the scenario must supply it"
)
_SINGLE_EXIT_NOTE = (
    " (single-exit backbone trained alone; the same architecture as this final exit, whose "
    "accuracy after joint multi-exit training is not published)"
)

_REGISTRY: dict[str, ModelSpec] = {
    "alexnet_me": ModelSpec(
        name="alexnet_me",
        family="alexnet",
        description="AlexNet (torchvision layout) with 3 BranchyNet branches, as in Edgent",
        in_channels=IMAGE_CHANNELS,
        num_classes=IMAGENET_CLASSES,
        unit_names=("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"),
        unit_layer_types=("conv", "conv", "conv", "conv", "conv", "linear", "linear"),
        exit_after=(0, 1, 4, 6),
        variants=_imagenet_variants(
            ALEXNET_TOP1,
            f"cited: ImageNet-1k top-1 56.522 % of AlexNet, {_TV}, AlexNet_Weights.IMAGENET1K_V1"
            f" table (2022){_SINGLE_EXIT_NOTE}",
            None,
            _NO_TABLE_INT8.format(arch="AlexNet"),
            None,
            _NO_TABLE_R160.format(arch="AlexNet"),
        ),
        builder=_alexnet,
    ),
    "resnet18_me": ModelSpec(
        name="resnet18_me",
        family="resnet",
        description="ResNet-18 with 3 BranchyNet branches (after stages 1-3)",
        in_channels=IMAGE_CHANNELS,
        num_classes=IMAGENET_CLASSES,
        unit_names=(
            "stem",
            "layer1_0",
            "layer1_1",
            "layer2_0",
            "layer2_1",
            "layer3_0",
            "layer3_1",
            "layer4_0",
            "layer4_1",
        ),
        unit_layer_types=("conv",) + ("residual",) * 8,
        exit_after=(2, 4, 6, 8),
        variants=_imagenet_variants(
            RESNET18_TOP1,
            f"cited: ImageNet-1k top-1 69.758 % of ResNet-18, {_TV}, ResNet18_Weights."
            f"IMAGENET1K_V1 table (2022){_SINGLE_EXIT_NOTE}",
            RESNET18_INT8_TOP1,
            f"cited: ImageNet-1k top-1 69.494 % of int8 ResNet-18, {_TV}, "
            "ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1 table (2022): post-training "
            "static quantization with fbgemm, the recipe this variant follows (eager mode there, "
            "FX graph mode here)" + _SINGLE_EXIT_NOTE,
            None,
            _NO_TABLE_R160.format(arch="ResNet-18"),
        ),
        builder=_resnet18,
    ),
    "mobilenetv2_me": ModelSpec(
        name="mobilenetv2_me",
        family="mobilenet",
        description="MobileNetV2 1.0 with 3 BranchyNet branches (after the 24/64/160-ch stages)",
        in_channels=IMAGE_CHANNELS,
        num_classes=IMAGENET_CLASSES,
        unit_names=("stem", "ir24", "ir32", "ir64", "ir96", "ir160", "ir320", "conv1280"),
        unit_layer_types=("depthwise",) * 7 + ("conv",),
        exit_after=(1, 3, 5, 7),
        variants=_imagenet_variants(
            MOBILENETV2_TOP1,
            f"cited: ImageNet-1k top-1 71.878 % of MobileNetV2, {_TV}, MobileNet_V2_Weights."
            f"IMAGENET1K_V1 table (2022){_SINGLE_EXIT_NOTE}",
            MOBILENETV2_INT8_TOP1,
            f"cited: ImageNet-1k top-1 71.658 % of int8 MobileNetV2, {_TV}, "
            "MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1 table (2022). CAUTION: those "
            "weights come from quantization-aware training (qnnpack); this variant uses "
            "post-training quantization, which is usually less accurate" + _SINGLE_EXIT_NOTE,
            MOBILENETV2_160_TOP1,
            "cited: ImageNet top-1 68.8 % of mobilenet_v2_1.0_160, 'Mobilenet V2 Imagenet "
            "Checkpoints' table, tensorflow/models research/slim/nets/mobilenet/README.md "
            "(Sandler et al., 2018; model trained at 160 px)" + _SINGLE_EXIT_NOTE,
        ),
        builder=_mobilenetv2,
    ),
    "digits_me": ModelSpec(
        name="digits_me",
        family="digits",
        description="small CNN for scikit-learn's 8x8 digits, 2 branches, trained for real",
        in_channels=DIGITS_CHANNELS,
        num_classes=DIGITS_CLASSES,
        unit_names=("conv1", "conv2", "conv3", "fc"),
        unit_layer_types=("conv", "conv", "conv", "linear"),
        exit_after=(0, 1, 3),
        variants={
            "fp32": VariantSpec("fp32", "fp32", DIGITS_RESOLUTION_PX, "float32"),
            "int8": VariantSpec(
                "int8",
                "int8",
                DIGITS_RESOLUTION_PX,
                _INT8_DESC + "; calibrated on the training split",
            ),
            "pruned50": VariantSpec(
                "pruned50",
                "fp32",
                DIGITS_RESOLUTION_PX,
                "float32, L1-norm structured filter pruning to half the channels of every "
                "conv and of the hidden fc layer (Li et al., ICLR 2017), then fine-tuned",
                width_multiplier=0.5,
            ),
        },
        builder=_digits,
        measured_accuracy=True,
    ),
}


_CIFAR_MEASURED = (
    "measured: per exit and per test image, profiles/data/{model}/accuracy.npz "
    "(edgerl.profiles.accuracy; trained by `edgerl cifar train`)"
)


def _cifar_variants(model: str, pruned: str) -> dict[str, VariantSpec]:
    src = _CIFAR_MEASURED.format(model=model)
    return {
        "fp32": VariantSpec("fp32", "fp32", CIFAR_RESOLUTION_PX,
                            "float32, trained on CIFAR-10 (joint BranchyNet loss)",
                            final_accuracy_source=src),
        "int8": VariantSpec("int8", "int8", CIFAR_RESOLUTION_PX,
                            _INT8_DESC + "; calibrated on CIFAR-10 training images",
                            final_accuracy_source=src),
        "pruned": VariantSpec("pruned", "fp32", CIFAR_RESOLUTION_PX,
                              f"float32, L1-norm structured filter pruning (Li et al., ICLR 2017) "
                              f"to {PRUNE_KEEP_FRACTION:.0%} of {pruned}, then fine-tuned",
                              width_multiplier=PRUNE_KEEP_FRACTION, final_accuracy_source=src),
    }  # fmt: skip


def _mbv2_c10_unit_names() -> tuple[str, ...]:
    ch = mbv2_c10_channels()
    return ("stem", *(f"ir{c}" for c in ch[2:]), f"conv{_MBV2_LAST}")


_REGISTRY.update(
    {
        "balexnet_c10": ModelSpec(
            name="balexnet_c10",
            family="alexnet",
            description="B-AlexNet for CIFAR-10 (BranchyNet layout, BatchNorm) with 4 branches "
            "(5 exits, as Edgent's prototype), trained for real",
            in_channels=IMAGE_CHANNELS,
            num_classes=CIFAR_CLASSES,
            unit_names=("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"),
            unit_layer_types=("conv", "conv", "conv", "conv", "conv", "linear", "linear"),
            exit_after=(0, 1, 2, 4, 6),
            variants=_cifar_variants(
                "balexnet_c10", "the channels of every conv and the neurons of fc6 and fc7"
            ),
            builder=_balexnet_c10,
            measured_accuracy=True,
            shipped_weights=True,
        ),
        "resnet_c10": ModelSpec(
            name="resnet_c10",
            family="resnet",
            description="ResNet-20 for CIFAR-10 with 2 branches (after stages 1 and 2), trained "
            "for real",
            in_channels=IMAGE_CHANNELS,
            num_classes=CIFAR_CLASSES,
            unit_names=(
                "stem",
                *(f"layer{s}_{b}" for s in (1, 2, 3) for b in range(RESNET_C10_BLOCKS)),
            ),
            unit_layer_types=("conv",) + ("residual",) * (3 * RESNET_C10_BLOCKS),
            exit_after=(RESNET_C10_BLOCKS, 2 * RESNET_C10_BLOCKS, 3 * RESNET_C10_BLOCKS),
            variants=_cifar_variants(
                "resnet_c10", "the channels of the first conv of every residual block"
            ),
            builder=_resnet_c10,
            measured_accuracy=True,
            shipped_weights=True,
        ),
        "mobilenetv2_c10": ModelSpec(
            name="mobilenetv2_c10",
            family="mobilenet",
            description="MobileNetV2 0.5 for CIFAR-10 (stride-1 stem and second stage) with 3 "
            "branches, trained for real",
            in_channels=IMAGE_CHANNELS,
            num_classes=CIFAR_CLASSES,
            unit_names=_mbv2_c10_unit_names(),
            unit_layer_types=("depthwise",) * 7 + ("conv",),
            exit_after=(1, 3, 5, 7),
            variants=_cifar_variants(
                "mobilenetv2_c10",
                "the expansion channels of every inverted-residual block and the channels of "
                "the last 1x1 conv",
            ),
            builder=_mobilenetv2_c10,
            measured_accuracy=True,
            shipped_weights=True,
        ),
    }
)


def list_models() -> list[ModelSpec]:
    """Every zoo model, with its variants, units and exits (no weights are built)."""
    return list(_REGISTRY.values())


def get_spec(model: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``model``; raises ``KeyError`` naming the known models."""
    if model not in _REGISTRY:
        raise KeyError(f"unknown model {model!r}; the zoo has: {', '.join(_REGISTRY)}")
    return _REGISTRY[model]


# ----------------------------------------------------------------------------- building


def build_float(model: str, variant: str, *, seed: int = DEFAULT_SEED) -> MultiExitNet:
    """The float (fp32) network of ``(model, variant)`` with seeded random weights, in eval mode.

    For an ``int8`` variant this is the float network before quantization (used for FLOPs).
    """
    spec = get_spec(model)
    vspec = spec.variant(variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        units, exits = spec.builder(vspec.width_multiplier)
        for m in (*units, *exits):
            _init_weights(m)
    net = MultiExitNet(
        model=spec.name,
        family=spec.family,
        variant=variant,
        precision="fp32",
        units=units,
        exits=exits,
        unit_names=spec.unit_names,
        unit_layer_types=spec.unit_layer_types,
        exit_names=spec.exit_names,
        exit_after=spec.exit_after,
        input_shape=spec.input_shape(variant),
        num_classes=spec.num_classes,
    )
    _calibrate_batchnorm(net, torch.Generator().manual_seed(seed))
    return net.eval()


def _calibrate_batchnorm(net: MultiExitNet, generator: torch.Generator) -> None:
    """Set every BatchNorm's running statistics from seeded random images.

    With random weights and freshly initialised BatchNorm (mean 0, variance 1 = identity in
    eval mode), activations of MobileNetV2 shrink about tenfold per stage, which collapses the
    int8 scales of the deep units to zero. Estimating the statistics on inputs (as a trained
    network's BatchNorm would have) keeps every unit's activations at unit scale.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
        bn.train()
    with torch.no_grad():
        for _ in range(BN_CALIBRATION_BATCHES):
            net(random_images(net.input_shape, BN_CALIBRATION_BATCH_SIZE, generator))
    for bn in bns:
        bn.momentum = BN_DEFAULT_MOMENTUM
        bn.eval()


def random_images(shape: tuple[int, ...], batch_size: int, generator: torch.Generator) -> Tensor:
    """Uniform [0, 1) images of per-sample ``shape`` (a stand-in input for cost profiling)."""
    return torch.rand((batch_size, *shape), generator=generator)


def build(model: str, variant: str, *, seed: int = DEFAULT_SEED) -> MultiExitNet:
    """Build ``(model, variant)`` from the zoo, in eval mode, with seeded random weights.

    ``int8`` variants are quantized after calibration on :data:`CALIBRATION_BATCHES` batches of
    seeded random images (weights are random too, so real images would add nothing).
    """
    spec = get_spec(model)
    vspec = spec.variant(variant)
    net = build_float(model, variant, seed=seed)
    if vspec.precision == "int8":
        gen = torch.Generator().manual_seed(seed)
        calib = [
            random_images(net.input_shape, CALIBRATION_BATCH_SIZE, gen)
            for _ in range(CALIBRATION_BATCHES)
        ]
        net = quantize(net, calib)
    return net


@contextmanager
def quiet_quantization_warnings() -> Iterator[None]:
    """Silence the deprecation warnings of ``torch.ao`` quantization (torch 2.13) locally.

    The API is deprecated in torch 2.13 but still works; its warnings (at prepare/convert time
    and at the first run of a quantized kernel) would otherwise flood every command's output.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*quantiz.*")
        yield


def quantize(
    net: MultiExitNet, calibration: Sequence[Tensor], *, variant: str | None = None
) -> MultiExitNet:
    """Static int8 quantization of every unit and exit head (FX graph mode, x86 backend).

    Each unit is prepared and converted on its own, so the network stays partitionable: unit 0
    takes the float image, later units take and return ``quint8`` tensors (their output
    quantization parameters travel with the tensor), exit heads return float logits.

    Args:
        net: A float network in eval mode (it is not modified).
        calibration: Input batches; the observers see them as they flow through the units.
        variant: Variant name of the result (default: ``net.variant``); it must be an int8
            variant of the model.

    Returns:
        A new :class:`MultiExitNet` with ``precision == "int8"``.
    """
    if not calibration:
        raise ValueError("quantize() needs at least one calibration batch")
    prepared = prepare_int8(net, calibration[0], variant=variant)
    prepared.calibrate(calibration)
    return prepared.convert()


@dataclass
class PreparedInt8:
    """A float network with FX observers inserted into every unit and exit head.

    Calibrate it (:meth:`calibrate`) or load calibrated observer statistics
    (:meth:`load_observer_state`), then :meth:`convert` it to the int8 network. The observer
    statistics are plain tensors, so a calibration can be stored without pickle and the int8
    network rebuilt bit for bit from the float weights (see :mod:`edgerl.profiles.cifar`).

    Attributes:
        float_net: A copy of the float network (eval mode); calibration activations flow
            through its units.
        units: The prepared units (``torch.fx.GraphModule`` with observers).
        exits: The prepared exit heads.
        variant: Variant name of the int8 result.
    """

    float_net: MultiExitNet
    units: list[nn.Module]
    exits: list[nn.Module]
    variant: str

    def calibrate(self, calibration: Sequence[Tensor]) -> None:
        """Let the observers see ``calibration`` batches flowing through the float units."""
        heads = dict(zip(self.float_net.exit_after, self.exits, strict=True))
        with quiet_quantization_warnings(), torch.no_grad():
            for x in calibration:
                h = x
                for i, unit in enumerate(self.float_net.units):
                    self.units[i](h)
                    h = unit(h)
                    if i in heads:
                        heads[i](h)

    def observer_state(self) -> dict[str, Tensor]:
        """The observers' statistics, keyed ``units.<i>.<name>`` / ``exits.<e>.<name>``."""
        out: dict[str, Tensor] = {}
        for kind, mods in (("units", self.units), ("exits", self.exits)):
            for i, m in enumerate(mods):
                for k, v in m.state_dict().items():
                    if _OBSERVER_KEY in k:
                        out[f"{kind}.{i}.{k}"] = v.detach().clone()
        return out

    def load_observer_state(self, state: dict[str, Tensor]) -> None:
        """Load statistics saved by :meth:`observer_state` (every observer must be covered)."""
        expected = set(self.observer_state())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ValueError(
                f"{self.float_net.model_name}/{self.variant}: observer state does not match the "
                f"prepared network (missing {missing[:3]}, unexpected {extra[:3]})"
            )
        for kind, mods in (("units", self.units), ("exits", self.exits)):
            for i, m in enumerate(mods):
                prefix = f"{kind}.{i}."
                sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                m.load_state_dict(sub, strict=False)

    def convert(self) -> MultiExitNet:
        """The int8 :class:`MultiExitNet` (the prepared modules are consumed)."""
        from torch.ao.quantization.quantize_fx import convert_fx

        net = self.float_net
        with quiet_quantization_warnings(), torch.no_grad():
            q_units = [convert_fx(m) for m in self.units]  # type: ignore[arg-type]
            q_exits = [convert_fx(m) for m in self.exits]  # type: ignore[arg-type]
        qnet = MultiExitNet(
            model=net.model_name,
            family=net.family,
            variant=self.variant,
            precision="int8",
            units=q_units,
            exits=q_exits,
            unit_names=net.unit_names,
            unit_layer_types=net.unit_layer_types,
            exit_names=net.exit_names,
            exit_after=net.exit_after,
            input_shape=net.input_shape,
            num_classes=net.num_classes,
        )
        return qnet.eval()


_OBSERVER_KEY = "activation_post_process"  # FX names every inserted observer with this prefix


def prepare_int8(net: MultiExitNet, example: Tensor, *, variant: str | None = None) -> PreparedInt8:
    """Insert int8 observers into every unit and exit head of a float network (FX, x86).

    Args:
        net: A float network in eval mode (it is not modified).
        example: An input batch, used only to trace the units (not as calibration).
        variant: Variant name of the int8 result (default: ``net.variant``); it must be an int8
            variant of the model.

    Returns:
        The prepared network, not yet calibrated.
    """
    if net.precision != "fp32":
        raise ValueError(f"{net.model_name}/{net.variant}: quantize() needs a float network")
    variant = net.variant if variant is None else variant
    if get_spec(net.model_name).variant(variant).precision != "int8":
        raise ValueError(
            f"{net.model_name}: quantize() result must be an int8 variant, not {variant!r}"
        )
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = QUANT_BACKEND
    qconfig = get_default_qconfig_mapping(QUANT_BACKEND)
    float_net = copy.deepcopy(net).eval()

    def prepare(module: nn.Module, x: Tensor, quant_in: bool, quant_out: bool) -> nn.Module:
        custom = PrepareCustomConfig()
        if quant_in:
            custom.set_input_quantized_indexes([0])
        if quant_out:
            custom.set_output_quantized_indexes([0])
        return prepare_fx(copy.deepcopy(module), qconfig, (x,), prepare_custom_config=custom)

    heads = dict(zip(float_net.exit_after, float_net.exits, strict=True))
    units: list[nn.Module] = []
    exits: list[nn.Module] = []
    with quiet_quantization_warnings(), torch.no_grad():
        h = example
        for i, unit in enumerate(float_net.units):
            units.append(prepare(unit, h, quant_in=i > 0, quant_out=True))
            h = unit(h)
            if i in heads:
                exits.append(prepare(heads[i], h, quant_in=True, quant_out=False))
    return PreparedInt8(float_net=float_net, units=units, exits=exits, variant=variant)
