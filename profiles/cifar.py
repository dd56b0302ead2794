"""Train the CIFAR-10 multi-exit families for real; measure, prune, quantize, ship the results.

``edgerl cifar train --model M --data DIR --out profiles/data`` runs, for one zoo model
(``balexnet_c10``, ``resnet_c10``, ``mobilenetv2_c10``), with one seed fixing everything:

1. **fp32**: train from seeded initial weights with the BranchyNet joint loss (a weighted sum of
   every exit's cross-entropy; Teerapittayanon et al., ICPR 2016, eq. 2), SGD with Nesterov
   momentum and weight decay, a one-cycle-style learning rate (:func:`learning_rate_at`:
   linear warm-up, then cosine decay to zero; after Smith & Topin, 2019), random crop (4 px
   zero padding) + horizontal flip; one torch thread, so a run is bit-for-bit reproducible on
   one machine.
2. **int8**: ``zoo.quantize`` (FX static post-training quantization, x86/fbgemm) calibrated on
   :data:`CALIBRATION_IMAGES` training images, evenly spaced over the ordered training split
   (every class represented).
3. **pruned**: structured L1-norm filter pruning (Li et al., "Pruning Filters for Efficient
   ConvNets", ICLR 2017) of the trained fp32 network to :data:`zoo.PRUNE_KEEP_FRACTION` of its
   prunable channels (which ones: the ``pruned`` variant's description), then fine-tuned with
   the same joint loss.
4. **measure**: every exit of every variant on every test image, in the order of
   :mod:`edgerl.profiles.cifar_data`: per input the predicted class, correctness and the exit's
   confidence (max softmax probability); written as ``<out>/<model>/accuracy.npz``
   (:mod:`edgerl.profiles.accuracy`).
5. **ship weights** without pickle: ``weights-fp32.npz`` and ``weights-pruned.npz`` hold the
   state_dict arrays; ``weights-int8.npz`` holds the calibrated observer statistics of the int8
   network, which :func:`load_trained` converts bit for bit from the fp32 weights (so no image
   is needed to rebuild it). Model input: RGB ``float32`` ``(N, 3, 32, 32)`` = pixel / 255.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgerl.profiles import accuracy, cifar_data, zoo
from edgerl.profiles.schema import DATA_DIR
from torch import Tensor, nn

MODELS = ("balexnet_c10", "resnet_c10", "mobilenetv2_c10")
VARIANTS = ("fp32", "int8", "pruned")
#: Training epochs per model, chosen so a whole run stays under about an hour on one thread of
#: this project's 2-core AMD EPYC (measured epoch times: README, "CIFAR-10 multi-exit families").
EPOCHS = {"balexnet_c10": 20, "resnet_c10": 12, "mobilenetv2_c10": 18}
FINETUNE_EPOCHS = {"balexnet_c10": 8, "resnet_c10": 4, "mobilenetv2_c10": 6}
BATCH_SIZE = 128
LEARNING_RATE = 0.1  # peak learning rate (SGD, Nesterov)
FINETUNE_LEARNING_RATE = 0.02  # peak learning rate for fine-tuning the pruned network
MOMENTUM = 0.9  # SGD momentum
WEIGHT_DECAY = 5e-4  # L2 penalty, the usual CIFAR ResNet value (He et al., CVPR 2016)
WARMUP_FRACTION = 0.25  # share of the steps spent raising the learning rate linearly
WARMUP_START_FRACTION = 1 / 25  # first learning rate / peak (one-cycle's default div_factor)
CROP_PAD_PX = 4  # random-crop zero padding (He et al., CVPR 2016, section 4.2)
CALIBRATION_IMAGES = 2000  # int8 calibration: evenly spaced training images (200 per class)
CALIBRATION_BATCH_SIZE = 200
EVAL_BATCH_SIZE = 500
TRAIN_THREADS = 1  # one torch thread: reproducible, and leaves the other core free
PIXEL_MAX = 255.0  # uint8 pixels -> [0, 1]
WEIGHTS_SCHEMA_VERSION = 1
WEIGHTS_KIND = "edgerl.weights"
WEIGHTS_FILE = "weights-{variant}.npz"
METADATA_KEY = "metadata"
CONFIDENCE_DESCRIPTION = "max softmax probability of the exit head's logits (float32)"
INPUT_DESCRIPTION = "RGB float32 (N, 3, 32, 32) = uint8 pixel / 255, no mean/std normalisation"


class WeightsError(ValueError):
    """A shipped weights file is missing or does not fit its model (names file and field)."""


def exit_loss_weights(model: str) -> tuple[float, ...]:
    """BranchyNet joint-loss weights, one per exit: all 1.0 (our choice, as for digits)."""
    return (1.0,) * len(zoo.get_spec(model).exit_after)


@dataclass(frozen=True)
class CifarConfig:
    """Everything that determines a CIFAR-10 run.

    Attributes:
        model: Zoo model (one of :data:`MODELS`).
        seed: Fixes the initial weights, batch order, augmentation and dropout.
        epochs: Training epochs of the fp32 network.
        finetune_epochs: Fine-tuning epochs after pruning.
        batch_size: Mini-batch size.
        learning_rate: Peak one-cycle learning rate of training.
        finetune_learning_rate: Peak one-cycle learning rate of fine-tuning.
        weight_decay: SGD weight decay.
        calibration_images: Training images that calibrate the int8 network.
        limit_per_class: Use only the first ``k`` images per class of each split (quick runs,
            tests); ``None`` uses the whole data set.
    """

    model: str
    seed: int = 0
    epochs: int = 0  # 0: EPOCHS[model]
    finetune_epochs: int = 0  # 0: FINETUNE_EPOCHS[model]
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    finetune_learning_rate: float = FINETUNE_LEARNING_RATE
    weight_decay: float = WEIGHT_DECAY
    calibration_images: int = CALIBRATION_IMAGES
    limit_per_class: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"CifarConfig.model must be one of {MODELS}, got {self.model!r}")
        if self.epochs == 0:
            object.__setattr__(self, "epochs", EPOCHS[self.model])
        if self.finetune_epochs == 0:
            object.__setattr__(self, "finetune_epochs", FINETUNE_EPOCHS[self.model])
        for name in ("epochs", "finetune_epochs", "batch_size", "calibration_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"CifarConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.limit_per_class is not None and self.limit_per_class < 1:
            raise ValueError(
                f"CifarConfig.limit_per_class must be >= 1, got {self.limit_per_class}"
            )


@dataclass
class ExitAnswers:
    """Every exit's answer on every test image: ``(n_exits, n_inputs)`` arrays."""

    prediction: np.ndarray  # uint8 class index
    confidence: np.ndarray  # float32 max softmax probability


@dataclass
class CifarResult:
    """The trained networks, their per-input answers and how long each phase took.

    Attributes:
        config: The configuration of the run.
        nets: The evaluated networks (eval mode), keyed by variant.
        answers: Per-variant answers on the test split.
        labels: True class of every test image (``int64``).
        prepared_int8_state: The calibrated int8 observer statistics (shipped).
        train: The training split that was used (images are not shipped).
        test: The test split.
        phase_time_s: Wall time per phase [s].
        log: Per-epoch training records and pruning diagnostics.
    """

    config: CifarConfig
    nets: dict[str, zoo.MultiExitNet] = field(repr=False)
    answers: dict[str, ExitAnswers] = field(repr=False)
    labels: np.ndarray = field(repr=False)
    prepared_int8_state: dict[str, Tensor] = field(repr=False)
    train: cifar_data.CifarSplit = field(repr=False)
    test: cifar_data.CifarSplit = field(repr=False)
    phase_time_s: dict[str, float]
    log: dict[str, Any]

    def top1(self, variant: str) -> tuple[float, ...]:
        """Top-1 accuracy of every exit of ``variant`` on the test split."""
        a = self.answers[variant]
        return tuple(float(x) for x in (a.prediction == self.labels[None, :]).mean(axis=1))


# --------------------------------------------------------------------------- helpers


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def to_tensor(images: np.ndarray) -> Tensor:
    """``uint8`` ``(N, 32, 32, 3)`` images -> ``uint8`` ``(N, 3, 32, 32)`` (channels-last view)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def to_input(batch_uint8: Tensor) -> Tensor:
    """A ``uint8`` ``(N, 3, H, W)`` batch as the model input: float32 pixel / 255."""
    return batch_uint8.float().div_(PIXEL_MAX).contiguous(memory_format=torch.channels_last)


def augment(batch: Tensor, generator: torch.Generator) -> Tensor:
    """Random crop after :data:`CROP_PAD_PX` zero padding, then a random horizontal flip."""
    n, _, h, w = batch.shape
    padded = nn.functional.pad(batch, (CROP_PAD_PX,) * 4)
    dy = torch.randint(0, 2 * CROP_PAD_PX + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * CROP_PAD_PX + 1, (n,), generator=generator).tolist()
    flip = torch.rand(n, generator=generator) < 0.5  # noqa: PLR2004 (a fair coin)
    out = torch.empty_like(batch)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def joint_loss(outputs: list[Tensor], target: Tensor, weights: tuple[float, ...]) -> Tensor:
    """BranchyNet joint loss: the weighted sum of every exit's cross-entropy."""
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} exits but {len(weights)} loss weights")
    return torch.stack(
        [w * nn.functional.cross_entropy(o, target) for o, w in zip(outputs, weights, strict=True)]
    ).sum()


def learning_rate_at(step: int, total_steps: int, peak: float) -> float:
    """Learning rate of SGD step ``step`` (0-based) of ``total_steps``.

    Linear warm-up from ``peak * WARMUP_START_FRACTION`` to ``peak`` over the first
    :data:`WARMUP_FRACTION` of the steps, then cosine decay to zero at the last step.
    """
    warm = max(1, round(total_steps * WARMUP_FRACTION))
    if step < warm:
        return peak * (WARMUP_START_FRACTION + (1 - WARMUP_START_FRACTION) * step / warm)
    t = (step - warm) / max(1, total_steps - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def train(
    net: zoo.MultiExitNet,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    weight_decay: float,
    generator: torch.Generator,
    progress: Callable[[str], None] | None = None,
    phase: str = "train",
) -> list[dict[str, Any]]:
    """Train ``net`` in place (SGD + one-cycle, joint loss, augmentation); per-epoch records.

    Args:
        net: A float network.
        images: ``uint8`` ``(N, 3, 32, 32)`` training images.
        labels: ``int64`` ``(N,)``.
        epochs: Passes over the data.
        learning_rate: Peak learning rate.
        batch_size: Mini-batch size (the last, smaller batch of an epoch is kept).
        weight_decay: SGD weight decay.
        generator: Source of batch order and augmentation.
        progress: Called with one line per epoch.
        phase: Name used in the records.

    Returns:
        One record per epoch: mean loss, per-exit training accuracy, learning rate, seconds.
    """
    n = len(labels)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    opt = torch.optim.SGD(
        net.parameters(), lr=learning_rate, momentum=MOMENTUM, nesterov=True,
        weight_decay=weight_decay,
    )  # fmt: skip
    step = 0
    weights = exit_loss_weights(net.model_name)
    net.to(memory_format=torch.channels_last)
    net.train()
    records: list[dict[str, Any]] = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        loss_sum, hits = 0.0, torch.zeros(len(net.exits), dtype=torch.long)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            x = to_input(augment(images[idx], generator))
            y = labels[idx]
            lr = learning_rate_at(step, steps, learning_rate)
            for group in opt.param_groups:
                group["lr"] = lr
            outputs = net(x)
            loss = joint_loss(outputs, y, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            hits += torch.stack([(o.argmax(1) == y).sum() for o in outputs])
        train_top1 = [round(float(h) / n, 5) for h in hits]
        rec: dict[str, Any] = {
            "phase": phase,
            "epoch": epoch + 1,
            "loss": round(loss_sum / n, 5),
            "train_top1": train_top1,
            "lr_last": lr,
            "seconds": round(time.perf_counter() - start, 2),
        }
        records.append(rec)
        if progress is not None:
            accs = " ".join(f"{a:.3f}" for a in train_top1)
            progress(
                f"{phase} epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f}, train top-1 per "
                f"exit {accs}, {rec['seconds']:.0f} s"
            )
    net.eval()
    return records


def predict(
    net: zoo.MultiExitNet, images: Tensor, batch_size: int = EVAL_BATCH_SIZE
) -> ExitAnswers:
    """Every exit's predicted class and confidence on ``images`` (``uint8`` ``(N, 3, 32, 32)``).

    Runs on :data:`TRAIN_THREADS` threads, NCHW-contiguous input, so the shipped tables are
    reproduced bit for bit on the machine that made them.
    """
    net.eval()
    preds: list[Tensor] = []
    confs: list[Tensor] = []
    with _threads(TRAIN_THREADS), torch.no_grad(), zoo.quiet_quantization_warnings():
        for s in range(0, len(images), batch_size):
            x = images[s : s + batch_size].float().div_(PIXEL_MAX).contiguous()
            probs = torch.stack([torch.softmax(o.float(), dim=1) for o in net(x)])
            conf, pred = probs.max(dim=2)
            preds.append(pred.to(torch.uint8))
            confs.append(conf)
    return ExitAnswers(
        prediction=torch.cat(preds, dim=1).numpy(),
        confidence=torch.cat(confs, dim=1).numpy().astype(np.float32),
    )


# --------------------------------------------------------------------------- pruning


def _keep_l1(weight: Tensor, n_keep: int) -> Tensor:
    """Indices (ascending) of the ``n_keep`` output rows of ``weight`` with the largest L1 norm."""
    norms = weight.detach().abs().flatten(1).sum(dim=1)
    return torch.sort(torch.topk(norms, n_keep).indices).values


@dataclass(frozen=True)
class _Keep:
    """Kept channel indices of the tensor flowing through a chain, and its full channel count."""

    index: Tensor
    full: int


def _copy_(dst: Tensor, src: Tensor, where: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"pruning {where}: kept shape {tuple(src.shape)} != {tuple(dst.shape)}")
    dst.copy_(src)


def _prune_chain(big: nn.Module, small: nn.Module, keep: _Keep, where: str) -> _Keep:
    """Copy the kept weights of ``big`` into the thinner ``small``, walking a module chain.

    ``keep`` describes the input channels; the result describes the output channels. Plain
    chains (``nn.Sequential``) are walked in order; a :class:`zoo.ResidualBlock` prunes both
    paths from its input and requires them to agree; an :class:`zoo.InvertedResidual` with a
    skip requires its output to keep every channel it was given. A conv or linear layer that is
    thinner in ``small`` keeps its output filters of largest L1 norm.
    """
    if type(big) is not type(small):
        raise TypeError(f"pruning {where}: {type(big).__name__} vs {type(small).__name__}")
    if isinstance(big, zoo.ResidualBlock) and isinstance(small, zoo.ResidualBlock):
        body = _prune_chain(big.body, small.body, keep, f"{where}.body")
        short = _prune_chain(big.shortcut, small.shortcut, keep, f"{where}.shortcut")
        if not torch.equal(body.index, short.index):
            raise ValueError(f"pruning {where}: the residual paths keep different channels")
        return body
    if isinstance(big, zoo.InvertedResidual) and isinstance(small, zoo.InvertedResidual):
        inner = _prune_chain(big.conv, small.conv, keep, f"{where}.conv")
        if big.use_skip and not torch.equal(inner.index, keep.index):
            raise ValueError(f"pruning {where}: a skip connection needs the same channels")
        return inner
    if isinstance(big, nn.Sequential):
        for i, (b, s) in enumerate(zip(big, small.children(), strict=True)):
            keep = _prune_chain(b, s, keep, f"{where}.{i}")
        return keep
    with torch.no_grad():
        if isinstance(big, nn.Conv2d) and isinstance(small, nn.Conv2d):
            if big.groups == 1:
                out = _keep_l1(big.weight, small.out_channels)
                _copy_(small.weight, big.weight[out][:, keep.index], where)
            elif big.groups == big.in_channels == big.out_channels:  # depthwise
                out = keep.index
                _copy_(small.weight, big.weight[out], where)
            else:
                raise ValueError(f"pruning {where}: grouped convs are not supported")
            if big.bias is not None and small.bias is not None:
                _copy_(small.bias, big.bias[out], where)
            return _Keep(out, big.out_channels)
        if isinstance(big, nn.BatchNorm2d) and isinstance(small, nn.BatchNorm2d):
            for name in ("weight", "bias", "running_mean", "running_var"):
                _copy_(getattr(small, name), getattr(big, name)[keep.index], f"{where}.{name}")
            if big.num_batches_tracked is not None and small.num_batches_tracked is not None:
                small.num_batches_tracked.copy_(big.num_batches_tracked)
            return keep
        if isinstance(big, nn.Linear) and isinstance(small, nn.Linear):
            per, rest = divmod(big.in_features, keep.full)
            if rest:
                raise ValueError(f"pruning {where}: {big.in_features} inputs from {keep.full} ch")
            cols = (keep.index[:, None] * per + torch.arange(per)[None, :]).flatten()
            out = _keep_l1(big.weight, small.out_features)
            _copy_(small.weight, big.weight[out][:, cols], where)
            _copy_(small.bias, big.bias[out], where)
            return _Keep(out, big.out_features)
    if any(True for _ in big.parameters(recurse=False)) or any(
        True for _ in big.buffers(recurse=False)
    ):
        raise TypeError(f"pruning {where}: no rule for {type(big).__name__} with parameters")
    if list(big.children()):
        raise TypeError(f"pruning {where}: no rule for container {type(big).__name__}")
    return keep  # ReLU, pooling, Flatten, Dropout, Identity: channels pass through


def prune_l1(net: zoo.MultiExitNet, *, variant: str = "pruned") -> zoo.MultiExitNet:
    """Structured L1-norm pruning of a trained float network into the ``variant`` architecture.

    Returns a new network (eval mode, not yet fine-tuned) whose every layer holds the kept
    weights of ``net``: each conv or linear layer that is thinner in ``variant`` keeps its
    filters (output channels / neurons) of largest L1 weight norm, and every layer reading
    them (BatchNorm, the next conv or linear layer, depthwise convs, exit heads) is sliced to
    match. Pruning into an architecture of the same width reproduces ``net`` exactly.
    """
    if net.precision != "fp32":
        raise ValueError(f"prune_l1 needs a float network, got {net.model_name}/{net.precision}")
    small = zoo.build_float(net.model_name, variant)
    keep = _Keep(torch.arange(net.input_shape[0]), net.input_shape[0])
    unit_keeps: list[_Keep] = []
    for i, (b, s) in enumerate(zip(net.units, small.units, strict=True)):
        keep = _prune_chain(b, s, keep, f"units.{i}")
        unit_keeps.append(keep)
    for e, (b, s) in enumerate(zip(net.exits, small.exits, strict=True)):
        _prune_chain(b, s, unit_keeps[net.exit_after[e]], f"exits.{e}")
    return small.eval()


# --------------------------------------------------------------------------- the run


def calibration_indices(n_train: int, n_images: int) -> np.ndarray:
    """Evenly spaced indices into the ordered training split (every class represented)."""
    step = max(1, n_train // n_images)
    return np.arange(0, n_train, step)[:n_images]


def train_and_evaluate(
    config: CifarConfig,
    data_dir: str | Path,
    progress: Callable[[str], None] | None = None,
) -> CifarResult:
    """Train, quantize, prune and fine-tune ``config.model``; answer every test image.

    Args:
        config: Model, seed and schedule.
        data_dir: Directory with the CIFAR-10 JPEG copy (see :mod:`edgerl.profiles.cifar_data`).
        progress: Called with status lines.

    Returns:
        The networks, their per-input answers, the splits and per-phase wall times.

    Raises:
        cifar_data.CifarDataError: The data set is missing or malformed.
    """
    say = progress or (lambda _msg: None)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    train_split = cifar_data.load_split(data_dir, "train", limit_per_class=config.limit_per_class)
    test_split = cifar_data.load_split(data_dir, "test", limit_per_class=config.limit_per_class)
    times["load_data"] = time.perf_counter() - t0
    say(f"read {len(train_split)} training and {len(test_split)} test images in "
        f"{times['load_data']:.1f} s")  # fmt: skip
    x_train, y_train = to_tensor(train_split.images), torch.from_numpy(train_split.labels)
    x_test = to_tensor(test_split.images)
    log: dict[str, Any] = {}
    with _threads(TRAIN_THREADS), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # dropout masks (forked: the global RNG is untouched)
        gen = torch.Generator().manual_seed(config.seed)
        t0 = time.perf_counter()
        fp32 = zoo.build_float(config.model, "fp32", seed=config.seed)
        log["train"] = train(
            fp32, x_train, y_train, epochs=config.epochs, learning_rate=config.learning_rate,
            batch_size=config.batch_size, weight_decay=config.weight_decay, generator=gen,
            progress=say, phase="train",
        )  # fmt: skip
        fp32 = fp32.to(memory_format=torch.contiguous_format).eval()
        times["train_fp32"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        idx = torch.from_numpy(calibration_indices(len(y_train), config.calibration_images))
        calib = [
            to_input(b).contiguous() for b in torch.split(x_train[idx], CALIBRATION_BATCH_SIZE)
        ]
        prepared = zoo.prepare_int8(fp32, calib[0], variant="int8")
        prepared.calibrate(calib)
        int8_state = prepared.observer_state()
        int8 = prepared.convert()
        times["quantize_int8"] = time.perf_counter() - t0
        log["int8_calibration_images"] = len(idx)

        t0 = time.perf_counter()
        pruned = prune_l1(fp32)
        before = predict(pruned, x_test)
        log["pruned_before_finetune_test_top1"] = acc_before = [
            round(float(a), 5) for a in (before.prediction == test_split.labels).mean(axis=1)
        ]
        say(f"pruned, before fine-tuning: test top-1 per exit {acc_before}")
        log["finetune"] = train(
            pruned, x_train, y_train, epochs=config.finetune_epochs,
            learning_rate=config.finetune_learning_rate, batch_size=config.batch_size,
            weight_decay=config.weight_decay, generator=gen, progress=say, phase="finetune",
        )  # fmt: skip
        pruned = pruned.to(memory_format=torch.contiguous_format).eval()
        times["prune_finetune"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        nets = {"fp32": fp32, "int8": int8, "pruned": pruned}
        answers = {v: predict(n, x_test) for v, n in nets.items()}
        times["evaluate"] = time.perf_counter() - t0
    result = CifarResult(
        config=config, nets=nets, answers=answers, labels=test_split.labels,
        prepared_int8_state=int8_state, train=train_split, test=test_split,
        phase_time_s={k: round(v, 2) for k, v in times.items()}, log=log,
    )  # fmt: skip
    for v in VARIANTS:
        say(
            f"{config.model}/{v}: test top-1 per exit "
            + " ".join(f"{a:.4f}" for a in result.top1(v))
        )
    return result


# --------------------------------------------------------------------------- provenance


def provenance(result: CifarResult, command: str, total_wall_time_s: float) -> dict[str, Any]:
    """What produced a run's files: command, seed, versions, data hashes, times, the log."""
    from edgerl.profiles.profiler import provenance as software_provenance

    return {
        **software_provenance(command, result.config.seed),
        "config": asdict(result.config),
        "numpy_version": np.__version__,
        "torch_threads": TRAIN_THREADS,
        "data": {
            "train_source_sha256": result.train.source_sha256,
            "test_source_sha256": result.test.source_sha256,
            "train_images": len(result.train),
            "train_order_sha256": result.train.order_sha256,
            "note": cifar_data.DATA_NOTE,
        },
        "recipe": (
            f"SGD (Nesterov, momentum {MOMENTUM}, weight decay {result.config.weight_decay}), "
            f"batch {result.config.batch_size}, learning rate warm-up to "
            f"{result.config.learning_rate} then cosine decay, BranchyNet joint loss "
            f"(exit weights {list(exit_loss_weights(result.config.model))}), random crop "
            f"({CROP_PAD_PX} px zero padding) + horizontal flip; int8: zoo.quantize (FX static, "
            f"x86/fbgemm) calibrated on {result.log['int8_calibration_images']} evenly spaced "
            "training images; pruned: L1-norm structured filter pruning, then fine-tuning "
            f"(peak learning rate {result.config.finetune_learning_rate})"
        ),
        "phase_wall_time_s": result.phase_time_s,
        "total_wall_time_s": round(total_wall_time_s, 1),
        "log": result.log,
    }


# --------------------------------------------------------------------------- files


def weights_path(model: str, variant: str, root: Path = DATA_DIR) -> Path:
    """Where ``(model, variant)`` weights ship: ``data/<model>/weights-<variant>.npz``."""
    return root / model / WEIGHTS_FILE.format(variant=variant)


def _save_npz(path: Path, meta: Mapping[str, Any], arrays: Mapping[str, Tensor]) -> Path:
    out = {METADATA_KEY: np.array(json.dumps(meta, sort_keys=True))}
    for k, v in arrays.items():
        if k == METADATA_KEY:
            raise ValueError(f"{path}: array name {k!r} is reserved")
        out[k] = v.detach().cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez_compressed(f, **out)  # type: ignore[arg-type]
    return path


def _weights_meta(
    model: str, variant: str, content: str, prov: Mapping[str, Any]
) -> dict[str, Any]:
    spec = zoo.get_spec(model)
    return {
        "schema_version": WEIGHTS_SCHEMA_VERSION,
        "kind": WEIGHTS_KIND,
        "model": model,
        "variant": variant,
        "precision": spec.variant(variant).precision,
        "width_multiplier": spec.variant(variant).width_multiplier,
        "content": content,
        "input": INPUT_DESCRIPTION,
        "provenance": {k: v for k, v in prov.items() if k != "log"},
    }


def save_weights(net: zoo.MultiExitNet, root: Path, provenance_info: Mapping[str, Any]) -> Path:
    """Write a float network's state_dict arrays as ``root/<model>/weights-<variant>.npz``."""
    if net.precision != "fp32":
        raise ValueError(f"{net.model_name}/{net.variant}: save_weights takes a float network")
    return _save_npz(
        weights_path(net.model_name, net.variant, root),
        _weights_meta(net.model_name, net.variant, "state_dict", provenance_info),
        net.state_dict(),
    )


def save_int8_observers(
    model: str, state: Mapping[str, Tensor], root: Path, provenance_info: Mapping[str, Any]
) -> Path:
    """Write calibrated int8 observer statistics as ``root/<model>/weights-int8.npz``."""
    return _save_npz(
        weights_path(model, "int8", root),
        _weights_meta(model, "int8", INT8_CONTENT, provenance_info),
        state,
    )


INT8_CONTENT = (
    "int8 observer statistics (zoo.PreparedInt8.observer_state) of the fp32 weights "
    "calibrated as provenance.recipe says; load_trained converts them"
)


def save_run(
    result: CifarResult, out_root: Path, command: str, total_wall_time_s: float
) -> list[Path]:
    """Write the accuracy table and the three weights files under ``out_root/<model>/``."""
    model = result.config.model
    spec = zoo.get_spec(model)
    prov = provenance(result, command, total_wall_time_s)
    meta = {
        "model": model,
        "variants": list(VARIANTS),
        "exit_names": list(spec.exit_names),
        "exit_after": list(spec.exit_after),
        "n_inputs": len(result.test),
        "class_names": list(cifar_data.CLASSES),
        "test_set": {
            "description": "CIFAR-10 test split, JPEG copy",
            "order": cifar_data.ORDER_DESCRIPTION,
            "order_sha256": result.test.order_sha256,
            "source_sha256": result.test.source_sha256,
            "first_names": list(result.test.names[:3]),
            "last_name": result.test.names[-1],
            "note": cifar_data.DATA_NOTE,
        },
        "confidence": CONFIDENCE_DESCRIPTION,
        "provenance": prov,
    }
    paths = [
        accuracy.save_accuracy_table(
            accuracy.accuracy_table_path(model, out_root),
            meta,
            correct=np.stack([result.answers[v].prediction == result.labels for v in VARIANTS]),
            confidence=np.stack([result.answers[v].confidence for v in VARIANTS]),
            prediction=np.stack([result.answers[v].prediction for v in VARIANTS]),
            labels=result.labels,
        )
    ]
    paths += [save_weights(result.nets[v], out_root, prov) for v in ("fp32", "pruned")]
    paths.append(save_int8_observers(model, result.prepared_int8_state, out_root, prov))
    return paths


def _load_npz(path: Path, model: str, variant: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: no shipped weights for {model}/{variant}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise WeightsError(f"{path}: cannot read as a pickle-free .npz: {exc}") from exc
    if METADATA_KEY not in arrays:
        raise WeightsError(f"{path}: field '{METADATA_KEY}': missing")
    try:
        meta = json.loads(str(arrays.pop(METADATA_KEY)))
    except json.JSONDecodeError as exc:
        raise WeightsError(f"{path}: field '{METADATA_KEY}': not valid JSON: {exc}") from exc
    if meta.get("schema_version") != WEIGHTS_SCHEMA_VERSION:
        raise WeightsError(
            f"{path}: field 'metadata.schema_version': unsupported version "
            f"{meta.get('schema_version')!r}; this edgerl reads {WEIGHTS_SCHEMA_VERSION}"
        )
    for key, want in (("kind", WEIGHTS_KIND), ("model", model), ("variant", variant)):
        if meta.get(key) != want:
            raise WeightsError(
                f"{path}: field 'metadata.{key}': expected {want!r}, got {meta.get(key)!r}"
            )
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def load_trained(model: str, variant: str, root: Path = DATA_DIR) -> zoo.MultiExitNet:
    """Rebuild a trained ``(model, variant)`` from its shipped weights (eval mode).

    ``fp32`` and ``pruned`` load their state_dict arrays into the zoo architecture; ``int8``
    loads the fp32 weights, inserts the int8 observers, loads their calibrated statistics
    from ``weights-int8.npz`` and converts (bit for bit the network that was measured).

    Raises:
        WeightsError: A file is missing, unreadable, or does not fit the architecture.
    """
    spec = zoo.get_spec(model)
    if not spec.shipped_weights:
        raise WeightsError(f"{model} has no shipped weights (random or retrained from a seed)")
    vspec = spec.variant(variant)
    if vspec.precision == "int8":
        fp32 = load_trained(model, "fp32", root)
        path = weights_path(model, variant, root)
        state = _load_npz(path, model, variant)
        prepared = zoo.prepare_int8(fp32, torch.zeros(1, *fp32.input_shape), variant=variant)
        try:
            prepared.load_observer_state(state)
        except (ValueError, RuntimeError) as exc:
            raise WeightsError(f"{path}: {exc}") from exc
        return prepared.convert()
    path = weights_path(model, variant, root)
    state = _load_npz(path, model, variant)
    net = zoo.build_float(model, variant)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{path}: does not fit {model}/{variant}: {' '.join(first)}") from exc
    return net.eval()
