"""Real model segments: run a plan's units on one tier, with its exit head or threshold rule.

A plan (:class:`PlanSpec`) splits the units a request needs, ``[0, n_units)``, into
``[0, cut_edge)`` on the device, ``[cut_edge, cut_cloud)`` on the edge and
``[cut_cloud, n_units)`` in the cloud. :func:`run_segment` runs one tier's share on a batch:
after every unit that carries an evaluated exit head (the plan's exit; with BranchyNet's rule,
every exit of ``rule_exits``) it computes the head's softmax confidence; a sample leaves when
the head is the plan's exit or its confidence reaches the threshold. Samples that leave get an
:class:`Answer`; the others go on, as a tensor, to the next tier. A request that leaves early
therefore sends nothing further (issue 20).

Tensors crossing a cut: the raw input (``uint8`` image, as the simulator's
``input_raw_bytes``) when ``cut == 0``; otherwise the previous unit's output, ``float32`` for
the float variants and ``quint8`` with its per-tensor scale and zero point for ``int8``
(see :mod:`edgerl.runtime.frames`). Model input is RGB float32 = uint8 pixel / 255, NCHW, as
the shipped accuracy tables were measured (:func:`edgerl.profiles.cifar.predict`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from edgerl.profiles import zoo
from edgerl.profiles.cifar import PIXEL_MAX
from edgerl.runtime.frames import DType, Frame, FrameError, Kind, tensor_frame
from torch import Tensor


class PlanError(ValueError):
    """A plan in a frame does not fit the model (names the field)."""


@dataclass(frozen=True)
class PlanSpec:
    """What every tier needs of a request's plan (the keys of ``envs.plans.Plan.describe``)."""

    index: int
    variant: str
    exit: int
    n_units: int
    cut_edge: int
    cut_cloud: int
    batch_size: int
    cache_policy: str
    threshold: float | None = None
    rule_exits: tuple[int, ...] = ()

    @classmethod
    def from_plan(cls, plan: Any) -> PlanSpec:
        """From an :class:`edgerl.envs.plans.Plan`."""
        return cls(plan.index, plan.variant, plan.exit_index, plan.n_units, plan.cut_edge,
                   plan.cut_cloud, plan.batch_size, plan.cache_policy, plan.threshold,
                   tuple(plan.rule_exits))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "variant": self.variant, "exit": self.exit,
            "n_units": self.n_units, "cut_edge": self.cut_edge, "cut_cloud": self.cut_cloud,
            "batch_size": self.batch_size, "cache_policy": self.cache_policy,
            "exit_threshold": self.threshold, "rule_exits": list(self.rule_exits),
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: Any, spec: zoo.ModelSpec) -> PlanSpec:
        """Parse and validate a plan from a frame's meta against the model.

        Raises:
            PlanError: a missing or mistyped field, or cuts/exits that do not fit the model.
        """
        if not isinstance(d, Mapping):
            raise PlanError(f"meta.plan: expected an object, got {type(d).__name__}")
        ints = ("index", "exit", "n_units", "cut_edge", "cut_cloud", "batch_size")
        for k in ints:
            if isinstance(d.get(k), bool) or not isinstance(d.get(k), int):
                raise PlanError(f"meta.plan.{k}: expected an integer, got {d.get(k)!r}")
        for k in ("variant", "cache_policy"):
            if not isinstance(d.get(k), str):
                raise PlanError(f"meta.plan.{k}: expected a string, got {d.get(k)!r}")
        tau = d.get("exit_threshold")
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int | float)):
            raise PlanError(f"meta.plan.exit_threshold: expected a number or null, got {tau!r}")
        rule = d.get("rule_exits", [])
        if not isinstance(rule, list) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in rule
        ):
            raise PlanError(f"meta.plan.rule_exits: expected a list of integers, got {rule!r}")
        p = cls(
            index=d["index"], variant=d["variant"], exit=d["exit"], n_units=d["n_units"],
            cut_edge=d["cut_edge"], cut_cloud=d["cut_cloud"], batch_size=d["batch_size"],
            cache_policy=d["cache_policy"], threshold=None if tau is None else float(tau),
            rule_exits=tuple(rule),
        )  # fmt: skip
        if p.variant not in spec.variants:
            raise PlanError(f"meta.plan.variant: {spec.name} has no variant {p.variant!r}")
        n_exits = len(spec.exit_after)
        if not 0 <= p.exit < n_exits or any(not 0 <= e < n_exits for e in p.rule_exits):
            raise PlanError(f"meta.plan.exit/rule_exits: out of range for {n_exits} exits")
        if p.n_units != spec.exit_after[p.exit] + 1:
            raise PlanError(
                f"meta.plan.n_units: {p.n_units}, but exit {p.exit} needs "
                f"{spec.exit_after[p.exit] + 1} units"
            )
        if not 0 <= p.cut_edge <= p.cut_cloud <= p.n_units:
            raise PlanError(
                f"meta.plan: cuts must satisfy 0 <= cut_edge <= cut_cloud <= n_units, got "
                f"{p.cut_edge}, {p.cut_cloud}, {p.n_units}"
            )
        if p.batch_size < 1:
            raise PlanError(f"meta.plan.batch_size: must be >= 1, got {p.batch_size}")
        return p

    def heads(self, spec: zoo.ModelSpec) -> dict[int, int]:
        """Evaluated exit heads: unit index -> exit index."""
        exits = self.rule_exits if self.threshold is not None else (self.exit,)
        return {spec.exit_after[e]: e for e in exits}

    def tier_range(self, tier: str) -> tuple[int, int]:
        """Units ``[lo, hi)`` the tier runs."""
        return {
            "device": (0, self.cut_edge),
            "edge": (self.cut_edge, self.cut_cloud),
            "cloud": (self.cut_cloud, self.n_units),
        }[tier]


@dataclass(frozen=True)
class Answer:
    """A request's result: predicted class, confidence and the exit it took."""

    prediction: int
    confidence: float
    exit: int


class ModelStore:
    """The networks of one model, per variant, loaded once per process (eval mode).

    Trained families load their shipped weights (:func:`edgerl.profiles.cifar.load_trained`,
    no pickle); the others are the zoo's seeded random-weight models (timing only).
    """

    def __init__(self, model: str, warm_batch_sizes: tuple[int, ...] = (1,)) -> None:
        self.spec = zoo.get_spec(model)
        self._nets: dict[str, zoo.MultiExitNet] = {}
        self.warm_batch_sizes = warm_batch_sizes  # batch sizes :func:`warm_threads` runs

    def loaded(self) -> list[str]:
        """The variants loaded so far."""
        return list(self._nets)

    @property
    def trained(self) -> bool:
        return self.spec.shipped_weights

    def warm_up(self, variant: str, batch_sizes: tuple[int, ...] = (1,), rounds: int = 3) -> None:
        """Run every unit and exit head of ``variant`` on zero inputs, ``rounds`` times per
        batch size, in the calling thread (see :func:`warm_threads`)."""
        net = self.net(variant)
        with torch.no_grad(), zoo.quiet_quantization_warnings():
            for b in batch_sizes:
                for _ in range(rounds):
                    x = torch.zeros((b, *self.spec.input_shape(variant)))
                    for i, unit in enumerate(net.units):
                        x = unit(x)
                        for e, after in enumerate(net.exit_after):
                            if after == i:
                                net.exits[e](x)

    def net(self, variant: str) -> zoo.MultiExitNet:
        if variant not in self._nets:
            with zoo.quiet_quantization_warnings():
                if self.spec.shipped_weights:
                    from edgerl.profiles.cifar import load_trained

                    self._nets[variant] = load_trained(self.spec.name, variant)
                else:
                    self._nets[variant] = zoo.build(self.spec.name, variant)
        return self._nets[variant]


def input_tensor(images_uint8: np.ndarray) -> Tensor:
    """``uint8`` ``(N, C, H, W)`` images -> the model input (float32 pixel / 255)."""
    return torch.from_numpy(np.ascontiguousarray(images_uint8)).float().div_(PIXEL_MAX)


def run_segment(
    store: ModelStore, plan: PlanSpec, tier: str, x: Tensor
) -> tuple[list[Answer | None], Tensor | None]:
    """Run ``tier``'s units of ``plan`` on the batch ``x`` (``uint8`` raw images at unit 0).

    Returns:
        Per sample its :class:`Answer` if it left at a head on this tier, else ``None``; and
        the tensor of the samples that did not leave (in batch order), or ``None`` if all left.
    """
    lo, hi = plan.tier_range(tier)
    net = store.net(plan.variant)
    heads = plan.heads(store.spec)
    last = plan.n_units - 1
    answers: list[Answer | None] = [None] * x.shape[0]
    if lo >= hi:  # nothing runs on this tier: the input passes through unchanged
        return answers, x
    alive = list(range(x.shape[0]))  # batch positions still running
    with torch.no_grad(), zoo.quiet_quantization_warnings():
        if lo == 0 and x.dtype == torch.uint8:
            x = x.float().div_(PIXEL_MAX)
        for i in range(lo, hi):
            x = net.units[i](x)
            if i not in heads:
                continue
            e = heads[i]
            probs = torch.softmax(net.exits[e](x).float(), dim=1)
            conf, pred = probs.max(dim=1)
            leave = [
                i == last or (plan.threshold is not None and float(conf[k]) >= plan.threshold)
                for k in range(len(alive))
            ]
            for k, pos in enumerate(alive):
                if leave[k]:
                    answers[pos] = Answer(int(pred[k]), float(conf[k]), e)
            keep = [k for k in range(len(alive)) if not leave[k]]
            alive = [alive[k] for k in keep]
            if not alive:
                return answers, None
            if len(keep) < len(leave):
                x = torch.index_select(x, 0, torch.tensor(keep))
    return answers, x


# ----------------------------------------------------------------------------- tensors <-> frames


def frame_of(kind: Kind, request_id: int, meta: dict[str, Any], x: Tensor) -> Frame:
    """One sample's tensor (no batch dimension) as a frame (uint8, float32 or quint8)."""
    if x.dtype == torch.uint8:
        return tensor_frame(kind, request_id, meta, x.numpy(), DType.UINT8)
    if x.dtype == torch.quint8:
        q = {**meta, "q_scale": float(x.q_scale()), "q_zero_point": int(x.q_zero_point())}
        return tensor_frame(kind, request_id, q, x.int_repr().numpy(), DType.QUINT8)
    if x.dtype == torch.float32:
        return tensor_frame(kind, request_id, meta, x.numpy(), DType.FLOAT32)
    raise FrameError(f"request {request_id}: cannot send a {x.dtype} tensor")


def tensor_of(frame: Frame) -> Tensor:
    """The tensor a WORK frame carries (one sample, no batch dimension)."""
    arr = torch.from_numpy(frame.array().copy())
    if frame.dtype == DType.QUINT8:
        return torch._make_per_tensor_quantized_tensor(
            arr, float(frame.meta["q_scale"]), int(frame.meta["q_zero_point"])
        )
    return arr


def expected_input(store: ModelStore, plan: PlanSpec, tier: str) -> tuple[str, tuple[int, ...]]:
    """The dtype name and per-sample shape a tier's segment must receive (checked on arrival)."""
    lo, _ = plan.tier_range(tier)
    if lo == 0:
        return "uint8", store.spec.input_shape(plan.variant)
    shape = cut_shape(store, plan.variant, lo)
    precision = store.spec.variant(plan.variant).precision
    return ("quint8" if precision == "int8" else "float32"), shape


_SHAPES: dict[tuple[str, str, int], tuple[int, ...]] = {}


def cut_shape(store: ModelStore, variant: str, cut: int) -> tuple[int, ...]:
    """Per-sample shape of unit ``cut - 1``'s output (measured once on a zero input)."""
    key = (store.spec.name, variant, cut)
    if key not in _SHAPES:
        net = store.net(variant)
        with torch.no_grad(), zoo.quiet_quantization_warnings():
            x = torch.zeros((1, *store.spec.input_shape(variant)))
            _SHAPES[key] = tuple(net.run_units(x, 0, cut).shape[1:])
    return _SHAPES[key]


def check_work(frame: Frame, store: ModelStore, plan: PlanSpec, tier: str) -> None:
    """A WORK frame's tensor must have the dtype and shape the tier's segment takes.

    Raises:
        FrameError: naming the request, the expected and the received dtype and shape.
    """
    dtype, shape = expected_input(store, plan, tier)
    got = (frame.dtype.name.lower(), frame.shape)
    if got != (dtype, shape):
        raise FrameError(
            f"request {frame.request_id}: the {tier} segment of plan {plan.index} takes "
            f"{dtype}{list(shape)}, got {got[0]}{list(got[1])}"
        )


#: Longest wait for the warm-up of a pool's threads [s].
WARM_UP_TIMEOUT_S = 300.0


def warm_threads(executor: Executor, n_threads: int, store: ModelStore) -> None:
    """Warm up every variant of ``store`` in each of the ``n_threads`` threads of ``executor``
    (where requests compute), before the role serves. The first forward pass in a fresh
    thread costs tens of ms more than the next ones (the first request of a device-only run
    measured 36-45 ms against 4 ms after it, even with the process's main thread warmed up),
    which a served request should not pay. A barrier keeps each job on its own thread."""
    variants = tuple(store.loaded())
    batches = store.warm_batch_sizes
    barrier = threading.Barrier(n_threads)

    def job() -> None:
        for v in variants:
            store.warm_up(v, batches)
        barrier.wait(WARM_UP_TIMEOUT_S)

    for f in [executor.submit(job) for _ in range(n_threads)]:
        f.result(WARM_UP_TIMEOUT_S)
