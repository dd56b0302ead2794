"""Train ``digits_me`` for real and measure held-out accuracy per exit and per variant.

The data set is scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``:
1,797 grey 8x8 images, 10 classes), so nothing is downloaded. One seed fixes everything:

* split: stratified, :data:`TEST_FRACTION` held out (``train_test_split(random_state=seed)``,
  1,347 train / 450 test images);
* initial weights (``torch.manual_seed(seed)`` inside a forked RNG) and mini-batch order (a
  ``torch.Generator`` seeded with ``seed``);
* training runs single-threaded, so the numbers are bit-for-bit reproducible on one machine.

Training minimises the BranchyNet joint loss, a weighted sum of the cross-entropy of every exit
(Teerapittayanon et al., ICPR 2016, eq. 2); the weights are :data:`EXIT_LOSS_WEIGHTS`.

Variants, all evaluated on the same held-out images, every exit on every image:

* ``fp32``: the trained network.
* ``int8``: ``zoo.quantize`` of the trained network (static, FX graph mode, x86/fbgemm),
  calibrated on the training split.
* ``pruned50``: structured L1-norm filter pruning (Li et al., "Pruning Filters for Efficient
  ConvNets", ICLR 2017): in every conv and in the hidden fc layer keep the half of the filters
  (output channels / neurons) with the largest L1 weight norm, slice the layers that read them,
  then fine-tune for :data:`FINETUNE_EPOCHS` epochs with the same joint loss.

Nothing is saved: the accuracies are recomputed (``tests/test_digits.py``) from the seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from edgerl.profiles import zoo
from torch import Tensor, nn

MODEL = "digits_me"
TEST_FRACTION = 0.25  # held-out share of the 1,797 images (stratified)
PIXEL_MAX = 16.0  # load_digits pixel values are integers 0..16
EPOCHS = 40  # full-precision training epochs (our choice: accuracy saturates before)
FINETUNE_EPOCHS = 15  # fine-tuning epochs after pruning
BATCH_SIZE = 64
LEARNING_RATE = 3e-3  # Adam
FINETUNE_LEARNING_RATE = 1e-3
EXIT_LOSS_WEIGHTS = (1.0, 1.0, 1.0)  # BranchyNet joint-loss weights, one per exit (our choice)
PRUNE_KEEP_FRACTION = 0.5  # pruned50 keeps half the channels
CALIBRATION_BATCH_SIZE = 256  # int8 calibration batches over the training split
TRAIN_THREADS = 1  # single-threaded training: bitwise reproducible
VARIANTS = ("fp32", "int8", "pruned50")

_M = TypeVar("_M", bound=nn.Module)


@dataclass(frozen=True)
class DigitsConfig:
    """Everything that determines the measured accuracies.

    Attributes:
        seed: Fixes the split, the initial weights and the batch order.
        epochs: Training epochs of the fp32 network.
        finetune_epochs: Fine-tuning epochs after pruning.
        learning_rate: Adam learning rate for training.
        finetune_learning_rate: Adam learning rate for fine-tuning.
        batch_size: Mini-batch size.
    """

    seed: int = 0
    epochs: int = EPOCHS
    finetune_epochs: int = FINETUNE_EPOCHS
    learning_rate: float = LEARNING_RATE
    finetune_learning_rate: float = FINETUNE_LEARNING_RATE
    batch_size: int = BATCH_SIZE

    def __post_init__(self) -> None:
        for name in ("epochs", "finetune_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"DigitsConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class DigitsSplit:
    """The stratified train/test split as float tensors ``(N, 1, 8, 8)`` in [0, 1]."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor


@dataclass
class DigitsResult:
    """Trained networks and their held-out accuracy per variant and exit.

    Attributes:
        config: The configuration that produced these numbers.
        accuracy: ``accuracy[variant][e]`` = fraction of held-out images exit ``e`` gets right.
        nets: The networks evaluated (eval mode), keyed by variant.
        n_train: Training images.
        n_test: Held-out images.
        train_time_s: Wall time of training, quantization and fine-tuning [s].
    """

    config: DigitsConfig
    accuracy: dict[str, tuple[float, ...]]
    nets: dict[str, zoo.MultiExitNet] = field(repr=False)
    n_train: int
    n_test: int
    train_time_s: float

    def accuracy_source(self, variant: str, command: str) -> str:
        """Where ``accuracy[variant]`` was measured, for a profile's ``accuracy_source``."""
        c = self.config
        how = {
            "fp32": "trained network",
            "int8": "trained network quantized to int8 (calibrated on the training split)",
            "pruned50": (
                f"trained network L1-pruned to {PRUNE_KEEP_FRACTION:.0%} of its channels, "
                f"fine-tuned {c.finetune_epochs} epochs"
            ),
        }[variant]
        return (
            f"measured: held-out top-1 on {self.n_test} of 1797 sklearn digits "
            f"(stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split, "
            f"random_state={c.seed}; {self.n_train} training images), {how}; "
            "edgerl.profiles.digits.train_and_evaluate"
            f"(seed={c.seed}, epochs={c.epochs}, joint BranchyNet loss), run by `{command}`"
        )


def load_split(seed: int, test_fraction: float = TEST_FRACTION) -> DigitsSplit:
    """Load sklearn's digits and split them (stratified, ``random_state=seed``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / PIXEL_MAX
    y = torch.tensor(data.target, dtype=torch.long)
    idx = list(range(len(y)))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, stratify=data.target, random_state=seed
    )
    tr, te = torch.tensor(train_idx), torch.tensor(test_idx)
    return DigitsSplit(x[tr], y[tr], x[te], y[te])


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def joint_loss(outputs: Sequence[Tensor], target: Tensor, weights: Sequence[float]) -> Tensor:
    """BranchyNet joint loss: weighted sum of every exit's cross-entropy."""
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} exits but {len(weights)} loss weights")
    losses = [
        w * nn.functional.cross_entropy(o, target) for o, w in zip(outputs, weights, strict=True)
    ]
    return torch.stack(losses).sum()


def train(
    net: zoo.MultiExitNet,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """Train ``net`` in place with Adam on the joint loss; batch order from ``generator``."""
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss = joint_loss(net(x[idx]), y[idx], EXIT_LOSS_WEIGHTS)
            loss.backward()
            opt.step()
    net.eval()


def evaluate(net: zoo.MultiExitNet, x: Tensor, y: Tensor) -> tuple[float, ...]:
    """Top-1 accuracy of every exit on ``(x, y)`` (every exit sees every image)."""
    net.eval()
    with torch.no_grad(), zoo.quiet_quantization_warnings():
        outputs = net(x)
    return tuple(int((o.argmax(dim=1) == y).sum()) / len(y) for o in outputs)


def _keep(weight: Tensor, n_keep: int) -> Tensor:
    """Indices (ascending) of the ``n_keep`` output rows of ``weight`` with the largest L1 norm."""
    norms = weight.detach().abs().flatten(1).sum(dim=1)
    return torch.sort(torch.topk(norms, n_keep).indices).values


def _first(module: nn.Module, kind: type[_M]) -> _M:
    """The first submodule of type ``kind`` (depth-first)."""
    for m in module.modules():
        if isinstance(m, kind):
            return m
    raise TypeError(f"no {kind.__name__} in {module}")


def prune_l1(net: zoo.MultiExitNet, keep_fraction: float = PRUNE_KEEP_FRACTION) -> zoo.MultiExitNet:
    """Structured L1-norm pruning of a trained ``digits_me`` to ``keep_fraction`` of its width.

    Returns a new network of the ``pruned50`` architecture holding the kept weights (not yet
    fine-tuned). Each conv keeps its filters of largest L1 norm (and their BatchNorm channels),
    the fc layer its neurons of largest L1 norm; every consumer is sliced to match.
    """
    if net.model_name != MODEL or net.precision != "fp32":
        raise ValueError(f"prune_l1 expects a float {MODEL}, got {net.model_name}/{net.precision}")
    small = zoo.build_float(MODEL, "pruned50")
    c1, c2, c3, fc = zoo.digits_widths(keep_fraction)
    big_convs = [_first(u, nn.Conv2d) for u in net.units[:3]]
    small_convs = [_first(u, nn.Conv2d) for u in small.units[:3]]
    big_bns = [_first(u, nn.BatchNorm2d) for u in net.units[:3]]
    small_bns = [_first(u, nn.BatchNorm2d) for u in small.units[:3]]
    keeps: list[Tensor] = []
    prev: Tensor | None = None
    with torch.no_grad():
        for n_keep, bc, sc, bb, sb in zip(
            (c1, c2, c3), big_convs, small_convs, big_bns, small_bns, strict=True
        ):
            keep = _keep(bc.weight, n_keep)
            w = bc.weight[keep]
            sc.weight.copy_(w if prev is None else w[:, prev])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(sb, name).copy_(getattr(bb, name)[keep])
            keeps.append(keep)
            prev = keep

        def spatial(keep: Tensor, per_channel: int) -> Tensor:
            """Flattened (channel-major) feature indices of the kept channels."""
            return (keep[:, None] * per_channel + torch.arange(per_channel)[None, :]).flatten()

        pool_cells = zoo.BRANCH_POOL_PX * zoo.BRANCH_POOL_PX
        conv3_cells = zoo.DIGITS_SPATIAL_AFTER_CONV3_PX * zoo.DIGITS_SPATIAL_AFTER_CONV3_PX
        for e, keep in ((0, keeps[0]), (1, keeps[1])):
            bl, sl = _first(net.exits[e], nn.Linear), _first(small.exits[e], nn.Linear)
            sl.weight.copy_(bl.weight[:, spatial(keep, pool_cells)])
            sl.bias.copy_(bl.bias)
        bfc, sfc = _first(net.units[3], nn.Linear), _first(small.units[3], nn.Linear)
        keep_fc = _keep(bfc.weight, fc)
        sfc.weight.copy_(bfc.weight[keep_fc][:, spatial(keeps[2], conv3_cells)])
        sfc.bias.copy_(bfc.bias[keep_fc])
        bfin, sfin = _first(net.exits[2], nn.Linear), _first(small.exits[2], nn.Linear)
        sfin.weight.copy_(bfin.weight[:, keep_fc])
        sfin.bias.copy_(bfin.bias)
    return small.eval()


def train_and_evaluate(config: DigitsConfig | None = None) -> DigitsResult:
    """Train ``digits_me`` and measure held-out accuracy per exit for every variant.

    Args:
        config: Seed and training schedule (defaults: :class:`DigitsConfig`).

    Returns:
        The accuracies, the evaluated networks and the split sizes.
    """
    cfg = config or DigitsConfig()
    split = load_split(cfg.seed)
    start = time.perf_counter()
    with _threads(TRAIN_THREADS):
        gen = torch.Generator().manual_seed(cfg.seed)
        fp32 = zoo.build_float(MODEL, "fp32", seed=cfg.seed)
        train(
            fp32, split.x_train, split.y_train, epochs=cfg.epochs,
            learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, generator=gen,
        )  # fmt: skip
        calib = list(torch.split(split.x_train, CALIBRATION_BATCH_SIZE))
        int8 = zoo.quantize(fp32, calib, variant="int8")
        pruned = prune_l1(fp32)
        train(
            pruned, split.x_train, split.y_train, epochs=cfg.finetune_epochs,
            learning_rate=cfg.finetune_learning_rate, batch_size=cfg.batch_size, generator=gen,
        )  # fmt: skip
        nets = {"fp32": fp32, "int8": int8, "pruned50": pruned}
        accuracy = {v: evaluate(n, split.x_test, split.y_test) for v, n in nets.items()}
    return DigitsResult(
        config=cfg,
        accuracy=accuracy,
        nets=nets,
        n_train=len(split.y_train),
        n_test=len(split.y_test),
        train_time_s=time.perf_counter() - start,
    )
