"""Per-layer-type latency regression models (Neurosurgeon / Edgent style). numpy only.

Neurosurgeon (Kang et al., ASPLOS 2017, Sec. 4.2) and Edgent (Li, Zhou and Chen, IEEE TWC
2019, Sec. III-B) predict the latency of a DNN layer on a given piece of hardware with one
regression model *per layer type*, whose inputs are the layer's configuration (FLOPs, input and
output sizes, weights). This module does the same for the partitionable units and exit heads
of :mod:`edgerl.profiles` profiles, adding the batch size as an input.

**Form ``hybrid`` (the default).** For a unit run on a batch of ``b`` samples::

    latency_ms = c_flop * b * flops[GFLOP] + c_act * b * act[MB] + c_spill * spill[MB]
               + c_par * params[MB] + c_0
    act   = max(in + out, peak_activation)          bytes of one sample's activations
    spill = max(0, b * act - C)                     activation bytes beyond the cache

with non-negative coefficients (non-negative least squares on *relative* residuals, i.e. rows
weighted by 1 / measured latency, because latencies span four orders of magnitude). Each term
has a physical reading: arithmetic work; activation traffic; the extra cost of activations that
no longer fit in the last-level cache (``C``); one read of the weights per batch; a fixed
per-call overhead. ``C`` is fitted per hardware (:func:`choose_spill_threshold`): the
candidate of :data:`SPILL_CANDIDATES_BYTES` (1 MiB to 1 GiB, or no spill term) with the lowest
relative error of the layer-type regressions on the training data. On this project's 2-core
AMD EPYC the fit picks 32 MiB (``cpu-epyc-1t`` and ``-2t``), its L3 size (``lscpu``: L3 32 MiB):
per sample, MobileNetV2's fp32 stages with 6x-expanded tensors run 2-7x slower at batch 16
than at batch 1 once ``b * act`` passes it.

Two kinds of regressions are fitted per precision (int8 kernels are different code):

* one per layer type, ``<precision>:<layer_type>`` (e.g. ``fp32:conv``), on the five features;
* one *pooled* regression over every layer type, with two more features for depthwise layers
  (``depthwise * b * act``, ``depthwise * spill``: depthwise convolutions are memory-bound and
  run far below the FLOP rate of dense ones), so that a layer type can borrow the physics the
  other types share.

A layer-type regression is used only *inside the range it was fitted on*: an entry whose FLOPs,
input + output bytes or weight bytes lie outside the per-sample range of that layer type's
training entries is predicted with the pooled regression instead (a per-type fit on a handful
of entries extrapolates badly, e.g. AlexNet's 151 MB fully connected layer from digits' 66 kB
one, while the pooled fit has seen large weights in other layer types). A layer type the model
has never seen uses the pooled regression only when the caller passes ``allow_fallback=True``;
otherwise it raises :class:`UnknownLayerTypeError`.

Held out one model family at a time (``edgerl fit-report``; 2026-11 measured ``cpu-epyc-1t``
profiles of AlexNet, ResNet-18, MobileNetV2 and digits, three variants each), the first
version's form ``linear`` (per-type regressions on ``b * flops``, ``b * act``, params and 1;
pooled only for unseen types) has a per-layer MAPE of 56 % and a whole-model MAPE of 36 %;
``hybrid`` 48 % and 29 %. The target of 20 % whole-model is missed for two families, and not
for lack of features: MobileNetV2 is the only family with depthwise convolutions, so its
units (2-3x slower than their FLOPs and bytes suggest) are predicted from dense layers when it
is held out (48 %); digits' units are 100x smaller than anything else, so their per-call
overhead is extrapolated (42 %); AlexNet and ResNet are predicted within 16 % and 7 %. Both
figures change as profiles are added (the CIFAR-10 families); ``edgerl fit-report`` prints the
current ones, ``--form linear`` those of the first version. The form ``loglinear`` (least
squares on ``log latency ~ 1 + log(1 + b*flops) + log(1 + b*act) + log(1 + params)``) is kept
for comparison.

Input bytes of unit ``i`` are the fp32 output bytes of unit ``i - 1`` (the raw input tensor
bytes for unit 0); an exit head after unit ``k`` reads the output of unit ``k`` and its own
output (the class logits) is counted as 0 bytes, since the schema does not record it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from edgerl.profiles.schema import LayerProfile
from numpy.typing import NDArray

MODEL_KIND = "edgerl.latency_model"
MODEL_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: forms linear/loglinear, no ranges, no spill term
FORMS = ("hybrid", "linear", "loglinear")
DEFAULT_FORM = "hybrid"

FLOPS_PER_GFLOP = 1e9
BYTES_PER_MB = 1e6
BYTES_PER_MIB = 2**20
# loglinear features use log(1 + x / scale); the scales only condition the fit
LOG_FLOPS_SCALE = 1e6  # [FLOP]
LOG_BYTES_SCALE = 1e3  # [bytes]

FEATURES_LINEAR = ("b*GFLOP", "b*act_MB", "params_MB", "1")
FEATURES_LOGLINEAR = ("1", "log1p(b*MFLOP)", "log1p(b*act_kB)", "log1p(params_kB)")
FEATURES_HYBRID = ("b*GFLOP", "b*act_MB", "spill_MB", "params_MB", "1")
FEATURES_HYBRID_POOLED = (*FEATURES_HYBRID, "depthwise*b*act_MB", "depthwise*spill_MB")
DEPTHWISE = "depthwise"  # the layer type whose kernels get their own pooled terms
#: Candidate cache sizes for the spill threshold C: 1 MiB .. 1 GiB in powers of two [bytes]
#: (plus "no spill term"); covers the last-level caches of phones, boards and servers.
SPILL_CANDIDATES_BYTES = tuple(float(2**k * BYTES_PER_MIB) for k in range(11))
RANGE_KEYS = ("flops", "io_bytes", "params_bytes")  # per-sample range a group is used in
#: Smallest relative reduction of the squared relative error for which a (smaller) spill
#: threshold is preferred; our choice, to ignore improvements at the level of rounding noise.
SPILL_MIN_GAIN = 1e-3

NNLS_MAX_ITER_FACTOR = 30  # Lawson-Hanson outer iterations allowed per coefficient
NNLS_TOL = 1e-12  # gradient tolerance of the active-set NNLS
MIN_R2_SAMPLES = 2  # R^2 needs at least two points with nonzero spread
MIN_FAMILIES = 2  # leave-one-family-out needs something left to train on


class RegressionError(ValueError):
    """Input to the regression is unusable (the message says which profile/field)."""


class UnknownLayerTypeError(KeyError):
    """The model has no regression for this ``precision:layer_type`` and no fallback was allowed."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the sentence instead
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class CostSample:
    """One measured (entry, batch size) point of one profile."""

    model: str
    family: str
    variant: str
    precision: str
    kind: str  # "unit" or "exit"
    name: str
    layer_type: str
    flops: float
    in_bytes: int
    out_bytes: int
    params_bytes: int
    batch_size: int
    latency_ms: float
    peak_activation_bytes: int = 0
    main_path: bool = False  # a unit, or the final exit: part of the whole-model latency

    @property
    def key(self) -> str:
        return group_key(self.precision, self.layer_type)


def group_key(precision: str, layer_type: str) -> str:
    """The regression group of a layer type at a precision, e.g. ``"fp32:conv"``."""
    return f"{precision}:{layer_type}"


def profile_precision(profile: LayerProfile) -> str:
    """The arithmetic precision of a profile's variant (``variant_info.precision``)."""
    prec = profile.variant_info.get("precision")
    if not isinstance(prec, str) or not prec:
        raise RegressionError(
            f"{profile.path}: field 'variant_info.precision' is missing or empty; the regression "
            "keys its models by precision"
        )
    return prec


def unit_io_bytes(profile: LayerProfile) -> list[tuple[int, int]]:
    """``(in_bytes, out_bytes)`` of every unit: unit ``i`` reads unit ``i - 1``'s fp32 output."""
    out: list[tuple[int, int]] = []
    prev = profile.input_tensor_bytes
    for u in profile.units:
        out.append((prev, u.output_bytes_fp32))
        prev = u.output_bytes_fp32
    return out


def samples_from_profile(profile: LayerProfile) -> list[CostSample]:
    """Every (unit or exit head, batch size) of a profile as a regression sample."""
    prec = profile_precision(profile)
    io = unit_io_bytes(profile)
    rows: list[CostSample] = []

    def add(kind: str, e: Any, in_b: int, out_b: int, main: bool) -> None:
        for b, lat in zip(profile.batch_sizes, e.latency_ms_median, strict=True):
            rows.append(
                CostSample(
                    model=profile.model,
                    family=profile.family,
                    variant=profile.variant,
                    precision=prec,
                    kind=kind,
                    name=e.name,
                    layer_type=e.layer_type,
                    flops=e.flops,
                    in_bytes=in_b,
                    out_bytes=out_b,
                    params_bytes=e.params_bytes,
                    batch_size=b,
                    latency_ms=lat,
                    peak_activation_bytes=e.peak_activation_bytes,
                    main_path=main,
                )
            )

    for u, (in_b, out_b) in zip(profile.units, io, strict=True):
        add("unit", u, in_b, out_b, True)
    for k, x in enumerate(profile.exits):
        last = k == len(profile.exits) - 1
        add("exit", x, profile.units[x.after_unit].output_bytes_fp32, 0, last)
    return rows


# --------------------------------------------------------------------------- features / solvers


def activation_bytes(
    in_bytes: float, out_bytes: float, peak_activation_bytes: float | None
) -> float:
    """Activation bytes of one sample: ``max(in + out, peak activation)`` [bytes]."""
    return max(in_bytes + out_bytes, peak_activation_bytes or 0.0)


@dataclass(frozen=True)
class _Columns:
    """Raw per-row quantities the designs are built from."""

    flops: NDArray[np.float64]
    act: NDArray[np.float64]
    params: NDArray[np.float64]
    batch: NDArray[np.float64]
    depthwise: NDArray[np.float64]
    io: NDArray[np.float64] | None = None  # in + out bytes (the range of a group)

    @classmethod
    def of(cls, samples: Sequence[CostSample]) -> _Columns:
        return cls(
            flops=np.array([s.flops for s in samples], dtype=float),
            act=np.array(
                [
                    activation_bytes(s.in_bytes, s.out_bytes, s.peak_activation_bytes)
                    for s in samples
                ],
                dtype=float,
            ),
            params=np.array([s.params_bytes for s in samples], dtype=float),
            batch=np.array([s.batch_size for s in samples], dtype=float),
            depthwise=np.array([s.layer_type == DEPTHWISE for s in samples], dtype=float),
            io=np.array([s.in_bytes + s.out_bytes for s in samples], dtype=float),
        )


def _design(
    form: str, c: _Columns, *, pooled: bool = False, spill_bytes: float | None = None
) -> NDArray[np.float64]:
    """The design matrix of ``form`` (pooled: with the depthwise terms of ``hybrid``)."""
    if form == "linear":
        cols = [c.batch * c.flops / FLOPS_PER_GFLOP, c.batch * c.act / BYTES_PER_MB,
                c.params / BYTES_PER_MB, np.ones_like(c.batch)]  # fmt: skip
    elif form == "loglinear":
        cols = [
            np.ones_like(c.batch),
            np.log1p(c.batch * c.flops / LOG_FLOPS_SCALE),
            np.log1p(c.batch * c.act / LOG_BYTES_SCALE),
            np.log1p(c.params / LOG_BYTES_SCALE),
        ]
    elif form == "hybrid":
        act = c.batch * c.act / BYTES_PER_MB
        spill = (
            np.zeros_like(act)
            if spill_bytes is None
            else np.maximum(0.0, c.batch * c.act - spill_bytes) / BYTES_PER_MB
        )
        cols = [c.batch * c.flops / FLOPS_PER_GFLOP, act, spill, c.params / BYTES_PER_MB,
                np.ones_like(c.batch)]  # fmt: skip
        if pooled:
            cols += [c.depthwise * act, c.depthwise * spill]
    else:
        raise RegressionError(f"unknown regression form {form!r}; choose one of {FORMS}")
    return np.stack(cols, axis=1)


def feature_names(form: str, *, pooled: bool = False) -> tuple[str, ...]:
    """Names of the regression features of ``form`` (pooled: the fallback's, for hybrid)."""
    if form == "linear":
        return FEATURES_LINEAR
    if form == "loglinear":
        return FEATURES_LOGLINEAR
    if form == "hybrid":
        return FEATURES_HYBRID_POOLED if pooled else FEATURES_HYBRID
    raise RegressionError(f"unknown regression form {form!r}; choose one of {FORMS}")


def nnls(a: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Non-negative least squares ``min ||a x - y||  s.t.  x >= 0`` (Lawson & Hanson, 1974).

    Args:
        a: design matrix, shape ``(m, n)``.
        y: targets, shape ``(m,)``.

    Returns:
        The solution ``x`` (shape ``(n,)``), all entries >= 0.
    """
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (y - a @ x)
    for _ in range(NNLS_MAX_ITER_FACTOR * max(n, 1)):
        tol = NNLS_TOL * max(1.0, float(np.abs(w).max()))
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], y, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > NNLS_TOL
            x[~passive] = 0.0
        w = a.T @ (y - a @ x)
    return x


@dataclass(frozen=True)
class GroupFit:
    """Fitted coefficients of one regression group.

    ``range_lo`` / ``range_hi`` (form ``hybrid``, layer-type groups): per-sample FLOPs,
    input + output bytes and weight bytes (:data:`RANGE_KEYS`) of the training entries; the
    group is used only inside that box. (Not the activation bytes with the peak: callers that
    do not know an entry's peak activation must land in the same group.)
    """

    coef: tuple[float, ...]
    n_samples: int
    n_entries: int  # distinct (model, variant, entry) measured in this group
    train_mape: float
    range_lo: tuple[float, ...] | None = None
    range_hi: tuple[float, ...] | None = None

    def covers(self, flops: float, io_bytes: float, params: float) -> bool:
        """Whether an entry lies inside the range this group was fitted on (always without)."""
        if self.range_lo is None or self.range_hi is None:
            return True
        x = (flops, io_bytes, params)
        return all(lo <= v <= hi for v, lo, hi in zip(x, self.range_lo, self.range_hi, strict=True))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "coef": list(self.coef),
            "n_samples": self.n_samples,
            "n_entries": self.n_entries,
            "train_mape": self.train_mape,
        }
        if self.range_lo is not None and self.range_hi is not None:
            out["range"] = {
                k: [lo, hi]
                for k, lo, hi in zip(RANGE_KEYS, self.range_lo, self.range_hi, strict=True)
            }
        return out


def _arrays(samples: Sequence[CostSample]) -> tuple[_Columns, NDArray[np.float64]]:
    return _Columns.of(samples), np.array([s.latency_ms for s in samples], dtype=float)


def _predict(form: str, coef: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    lin: NDArray[np.float64] = x @ coef
    return np.asarray(np.exp(lin) if form == "loglinear" else lin, dtype=np.float64)


def _solve(form: str, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    if form == "loglinear":
        return np.asarray(np.linalg.lstsq(x, np.log(y), rcond=None)[0], dtype=np.float64)
    return nnls(x / y[:, None], np.ones_like(y))  # relative residuals (pred - y) / y


def _fit_group(
    form: str,
    samples: Sequence[CostSample],
    *,
    pooled: bool = False,
    spill_bytes: float | None = None,
) -> GroupFit:
    c, y = _arrays(samples)
    x = _design(form, c, pooled=pooled, spill_bytes=spill_bytes)
    coef = _solve(form, x, y)
    pred = _predict(form, coef, x)
    entries = {(s.model, s.variant, s.kind, s.name) for s in samples}
    lo = hi = None
    if form == "hybrid" and not pooled:
        assert c.io is not None
        box = np.stack([c.flops, c.io, c.params], axis=1)
        lo = tuple(float(v) for v in box.min(axis=0))
        hi = tuple(float(v) for v in box.max(axis=0))
    return GroupFit(
        coef=tuple(float(v) for v in coef),
        n_samples=len(samples),
        n_entries=len(entries),
        train_mape=mape(y, pred),
        range_lo=lo,
        range_hi=hi,
    )


def choose_spill_threshold(samples: Sequence[CostSample]) -> float | None:
    """The cache size C of the ``hybrid`` spill term that fits ``samples`` best [bytes].

    Every candidate of :data:`SPILL_CANDIDATES_BYTES` and "no spill term" (``None``) is
    tried; the one with the lowest squared relative error of the layer-type regressions
    (summed over every ``precision:layer_type`` group) wins. A candidate must lower the error
    by more than :data:`SPILL_MIN_GAIN` of it to replace a larger one or "no spill term" (the
    weaker assumptions), so that a term which fits nothing but noise is not adopted.
    """
    by_group: dict[str, list[CostSample]] = defaultdict(list)
    for s in samples:
        by_group[s.key].append(s)
    data = [_arrays(v) for v in by_group.values()]

    def loss(spill: float | None) -> float:
        total = 0.0
        for c, y in data:
            x = _design("hybrid", c, spill_bytes=spill)
            coef = _solve("hybrid", x, y)
            total += float(np.sum(((x @ coef) - y) ** 2 / y**2))
        return total

    best: tuple[float, float | None] = (loss(None), None)
    for cand in reversed(SPILL_CANDIDATES_BYTES):
        value = loss(cand)
        if value < best[0] * (1 - SPILL_MIN_GAIN):
            best = (value, cand)
    return best[1]


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LatencyModel:
    """Per-layer-type latency regressions fitted on the profiles of one piece of hardware."""

    hardware: str
    form: str
    groups: Mapping[str, GroupFit]
    fallback: Mapping[str, GroupFit]  # keyed by precision (the pooled regression)
    trained_on: tuple[str, ...] = ()  # "model/variant" of every training profile
    source: str = ""
    spill_threshold_bytes: float | None = None  # hybrid: C of the spill term (None: no term)

    @property
    def layer_types(self) -> tuple[str, ...]:
        """Every ``precision:layer_type`` group this model has a regression for."""
        return tuple(sorted(self.groups))

    def has(self, layer_type: str, precision: str = "fp32") -> bool:
        return group_key(precision, layer_type) in self.groups

    def predict_ms(
        self,
        layer_type: str,
        flops: float,
        in_bytes: float,
        out_bytes: float,
        params_bytes: float,
        batch_size: int,
        *,
        peak_activation_bytes: float | None = None,
        precision: str = "fp32",
        allow_fallback: bool = False,
    ) -> float:
        """Predicted latency of a whole batch of ``batch_size`` samples [ms].

        Args:
            layer_type: the unit's or exit head's ``layer_type`` as in the profiles.
            flops: FLOPs per sample.
            in_bytes: input activation bytes per sample.
            out_bytes: output activation bytes per sample.
            params_bytes: weight bytes.
            batch_size: number of samples in the batch (>= 1).
            peak_activation_bytes: the entry's peak activation memory at batch 1 if known
                (the profiles' ``peak_activation_bytes``); improves the estimate of units
                with large internal tensors. ``None``: ``in_bytes + out_bytes`` is used.
            precision: the variant's arithmetic precision (``fp32``, ``int8``, ...).
            allow_fallback: use the per-precision pooled model for an unseen layer type.

        Raises:
            UnknownLayerTypeError: no regression for ``precision:layer_type`` and
                ``allow_fallback`` is false (or no pooled model for the precision either).
            ValueError: a negative size or a batch size below 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for nm, v in (
            ("flops", flops),
            ("in_bytes", in_bytes),
            ("out_bytes", out_bytes),
            ("params_bytes", params_bytes),
            ("peak_activation_bytes", peak_activation_bytes or 0.0),
        ):
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{nm} must be a finite non-negative number, got {v!r}")
        act = activation_bytes(in_bytes, out_bytes, peak_activation_bytes)
        entry = (flops, in_bytes + out_bytes, params_bytes)
        fit, pooled = self._group(layer_type, precision, allow_fallback, entry)
        cols = _Columns(
            flops=np.array([flops], dtype=float),
            act=np.array([act], dtype=float),
            params=np.array([params_bytes], dtype=float),
            batch=np.array([batch_size], dtype=float),
            depthwise=np.array([layer_type == DEPTHWISE], dtype=float),
        )
        x = _design(self.form, cols, pooled=pooled, spill_bytes=self.spill_threshold_bytes)
        return float(_predict(self.form, np.array(fit.coef), x)[0])

    def uses_group(
        self, layer_type: str, flops: float, io_bytes: float, params_bytes: float,
        precision: str = "fp32",
    ) -> bool:  # fmt: skip
        """Whether an entry (FLOPs, in + out bytes, weight bytes) is predicted by its layer
        type's regression rather than the pooled one."""
        fit = self.groups.get(group_key(precision, layer_type))
        return fit is not None and fit.covers(flops, io_bytes, params_bytes)

    def _group(
        self,
        layer_type: str,
        precision: str,
        allow_fallback: bool,
        entry: tuple[float, float, float],
    ) -> tuple[GroupFit, bool]:
        """``(fit, pooled)``: the layer type's regression inside its range, else the pooled."""
        key = group_key(precision, layer_type)
        if key in self.groups:
            fit = self.groups[key]
            if fit.covers(*entry) or precision not in self.fallback:
                return fit, False
            return self.fallback[precision], True
        if allow_fallback and precision in self.fallback:
            return self.fallback[precision], True
        known = ", ".join(self.layer_types) or "none"
        hint = (
            f"; no global {precision} fallback either"
            if allow_fallback
            else "; pass allow_fallback=True to use the global model of that precision"
        )
        raise UnknownLayerTypeError(
            f"latency model for {self.hardware!r} has no regression for layer type "
            f"{layer_type!r} at precision {precision!r} (known: {known}){hint}"
        )

    # ---- persistence (JSON, no pickle)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": MODEL_KIND,
            "version": MODEL_VERSION,
            "hardware": self.hardware,
            "form": self.form,
            "features": list(feature_names(self.form)),
            "fallback_features": list(feature_names(self.form, pooled=True)),
            "activation_bytes": "max(in_bytes + out_bytes, peak_activation_bytes)",
            "spill_threshold_bytes": self.spill_threshold_bytes,
            "target": "log(latency_ms)" if self.form == "loglinear" else "latency_ms",
            "groups": {k: g.to_dict() for k, g in sorted(self.groups.items())},
            "fallback": {k: g.to_dict() for k, g in sorted(self.fallback.items())},
            "trained_on": list(self.trained_on),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "<memory>") -> LatencyModel:
        """Validate and rebuild a model written by :meth:`to_dict`."""

        def fail(where: str, msg: str) -> RegressionError:
            return RegressionError(f"{path}: field '{where}': {msg}")

        if not isinstance(data, Mapping):
            raise RegressionError(f"{path}: expected a JSON object at top level")
        if data.get("kind") != MODEL_KIND:
            raise fail("kind", f"expected {MODEL_KIND!r}, got {data.get('kind')!r}")
        if data.get("version") not in READABLE_VERSIONS:
            raise fail("version", f"unsupported version {data.get('version')!r}")
        form = data.get("form")
        if form not in FORMS:
            raise fail("form", f"expected one of {FORMS}, got {form!r}")

        def numbers(v: Any, n: int) -> TypeGuard[list[float]]:
            return (
                isinstance(v, list)
                and len(v) == n
                and all(
                    isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
                    for c in v
                )
            )

        def groups(name: str, pooled: bool) -> dict[str, GroupFit]:
            n_coef = len(feature_names(form, pooled=pooled))
            raw = data.get(name)
            if not isinstance(raw, Mapping):
                raise fail(name, "expected an object")
            out: dict[str, GroupFit] = {}
            for k, g in raw.items():
                where = f"{name}.{k}"
                if not isinstance(g, Mapping):
                    raise fail(where, "expected an object")
                coef = g.get("coef")
                if not numbers(coef, n_coef):
                    raise fail(f"{where}.coef", f"expected {n_coef} finite numbers, got {coef!r}")
                lo = hi = None
                if "range" in g:
                    rng = g["range"]
                    if not isinstance(rng, Mapping) or not all(
                        numbers(rng.get(r), 2) for r in RANGE_KEYS
                    ):
                        raise fail(f"{where}.range", f"expected [lo, hi] for each of {RANGE_KEYS}")
                    lo = tuple(float(rng[r][0]) for r in RANGE_KEYS)
                    hi = tuple(float(rng[r][1]) for r in RANGE_KEYS)
                try:
                    out[k] = GroupFit(
                        coef=tuple(float(c) for c in coef),
                        n_samples=int(g["n_samples"]),
                        n_entries=int(g["n_entries"]),
                        train_mape=float(g["train_mape"]),
                        range_lo=lo,
                        range_hi=hi,
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise fail(where, f"bad or missing field: {exc}") from exc
            return out

        hardware = data.get("hardware")
        if not isinstance(hardware, str) or not hardware:
            raise fail("hardware", f"expected a non-empty string, got {hardware!r}")
        spill = data.get("spill_threshold_bytes")
        if spill is not None and not (
            isinstance(spill, int | float) and not isinstance(spill, bool) and spill > 0
        ):
            raise fail(
                "spill_threshold_bytes", f"expected null or a positive number, got {spill!r}"
            )
        return cls(
            hardware=hardware,
            form=form,
            groups=groups("groups", False),
            fallback=groups("fallback", True),
            trained_on=tuple(str(t) for t in data.get("trained_on", [])),
            source=str(data.get("source", "")),
            spill_threshold_bytes=None if spill is None else float(spill),
        )

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> LatencyModel:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegressionError(f"{p}: cannot read latency model: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise RegressionError(f"{p}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, str(p))


def _check_hardware(profiles: Sequence[LayerProfile]) -> str:
    if not profiles:
        raise RegressionError("no profiles to fit a latency model on")
    names = sorted({p.hardware.name for p in profiles})
    if len(names) != 1:
        raise RegressionError(
            f"a latency model is fitted on one piece of hardware; got profiles of {names}"
        )
    return names[0]


def fit_samples(
    samples: Sequence[CostSample], hardware: str, form: str = DEFAULT_FORM, source: str = ""
) -> LatencyModel:
    """Fit one regression per ``precision:layer_type`` group plus per-precision pooled ones."""
    feature_names(form)  # validates the form name
    if not samples:
        raise RegressionError("no samples to fit a latency model on")
    by_group: dict[str, list[CostSample]] = defaultdict(list)
    by_prec: dict[str, list[CostSample]] = defaultdict(list)
    for s in samples:
        if not (s.latency_ms > 0 and math.isfinite(s.latency_ms)):
            raise RegressionError(
                f"{s.model}/{s.variant} {s.name}: latency {s.latency_ms!r} is not a positive number"
            )
        by_group[s.key].append(s)
        by_prec[s.precision].append(s)
    spill = choose_spill_threshold(samples) if form == "hybrid" else None
    return LatencyModel(
        hardware=hardware,
        form=form,
        groups={k: _fit_group(form, v, spill_bytes=spill) for k, v in by_group.items()},
        fallback={
            k: _fit_group(form, v, pooled=True, spill_bytes=spill) for k, v in by_prec.items()
        },
        trained_on=tuple(sorted({f"{s.model}/{s.variant}" for s in samples})),
        source=source,
        spill_threshold_bytes=spill,
    )


def fit_latency_models(
    profiles: Iterable[LayerProfile], form: str = DEFAULT_FORM, source: str = ""
) -> LatencyModel:
    """Fit per-layer-type latency regressions on the measured profiles of one hardware.

    Args:
        profiles: measured profiles, all of the same ``hardware.name``.
        form: ``"hybrid"`` (default), ``"linear"`` or ``"loglinear"`` (module docstring).
        source: free text recorded in the model (e.g. the command that fitted it).

    Raises:
        RegressionError: no profiles, mixed hardware, a missing precision or a bad latency.
    """
    profs = list(profiles)
    hw = _check_hardware(profs)
    samples = [s for p in profs for s in samples_from_profile(p)]
    return fit_samples(samples, hw, form, source)


def predict_sample(model: LatencyModel, s: CostSample, *, allow_fallback: bool = False) -> float:
    return model.predict_ms(
        s.layer_type,
        s.flops,
        s.in_bytes,
        s.out_bytes,
        s.params_bytes,
        s.batch_size,
        peak_activation_bytes=s.peak_activation_bytes,
        precision=s.precision,
        allow_fallback=allow_fallback,
    )


# --------------------------------------------------------------------------- metrics / held-out


def mape(y: NDArray[np.float64], pred: NDArray[np.float64]) -> float:
    """Mean absolute percentage error [%]."""
    return float(np.mean(np.abs(pred - y) / y) * 100.0)


def r2(y: NDArray[np.float64], pred: NDArray[np.float64]) -> float | None:
    """Coefficient of determination; ``None`` when undefined (fewer than 2 points or no spread)."""
    if len(y) < MIN_R2_SAMPLES:
        return None
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return None
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


@dataclass(frozen=True)
class ErrorRow:
    """Held-out error of one group (or of everything, ``group == "overall"``)."""

    group: str
    n: int
    mape: float
    r2: float | None
    r2_log: float | None
    fallback: bool  # predicted with the global model because the group was unseen in training
    held_out: tuple[str, ...] = ()  # families whose samples are in this row

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "n": self.n,
            "mape_pct": self.mape,
            "r2": self.r2,
            "r2_log": self.r2_log,
            "fallback": self.fallback,
            "held_out_families": list(self.held_out),
        }


@dataclass(frozen=True)
class HeldOutReport:
    """Leave-one-family-out evaluation of the per-layer-type regression.

    Per-layer rows score every (unit or exit head, batch size); whole-model rows score the
    latency of a request that runs the whole model (every unit and the final exit) at each
    measured batch size: the sum of the predicted entries against the sum of the measured ones.
    """

    hardware: str
    form: str
    families: tuple[str, ...]
    by_group: tuple[ErrorRow, ...]
    by_family: tuple[ErrorRow, ...]
    overall: ErrorRow
    in_sample: ErrorRow
    whole_by_family: tuple[ErrorRow, ...] = ()
    whole_overall: ErrorRow | None = None
    whole_in_sample: ErrorRow | None = None
    spill_threshold_bytes: float | None = None  # of the model fitted on every profile
    predictions: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    whole_predictions: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "edgerl.fit_report",
            "hardware": self.hardware,
            "form": self.form,
            "protocol": (
                "leave-one-family-out: for each family, fit on every profile of the other "
                "families (all variants, all batch sizes) and predict every unit/exit head of "
                "the held-out family at every measured batch size; layer types never seen in "
                "training use the per-precision pooled model (fallback=true). Whole model: the "
                "sum over every unit and the final exit of a held-out profile at one batch size"
            ),
            "families": list(self.families),
            "spill_threshold_bytes": self.spill_threshold_bytes,
            "overall": self.overall.to_dict(),
            "in_sample": self.in_sample.to_dict(),
            "by_group": [r.to_dict() for r in self.by_group],
            "by_family": [r.to_dict() for r in self.by_family],
            "whole_model": {
                "overall": None if self.whole_overall is None else self.whole_overall.to_dict(),
                "in_sample": (
                    None if self.whole_in_sample is None else self.whole_in_sample.to_dict()
                ),
                "by_family": [r.to_dict() for r in self.whole_by_family],
                "predictions": list(self.whole_predictions),
            },
            "predictions": list(self.predictions),
        }


def _row(
    group: str,
    y: Sequence[float],
    pred: Sequence[float],
    fallback: bool,
    held_out: Iterable[str] = (),
) -> ErrorRow:
    ya, pa = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    pos = pa > 0
    r2_log = r2(np.log(ya[pos]), np.log(pa[pos])) if pos.all() else None
    return ErrorRow(
        group=group,
        n=len(ya),
        mape=mape(ya, pa),
        r2=r2(ya, pa),
        r2_log=r2_log,
        fallback=fallback,
        held_out=tuple(sorted(set(held_out))),
    )


@dataclass
class _GroupAcc:
    measured: list[float] = field(default_factory=list)
    predicted: list[float] = field(default_factory=list)
    families: set[str] = field(default_factory=set)
    fallback: bool = False


def _whole_model(
    samples: Sequence[CostSample], preds: Sequence[float]
) -> list[tuple[str, str, str, int, float, float]]:
    """``(family, model, variant, batch, measured, predicted)`` of every main path."""
    acc: dict[tuple[str, str, str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s, p in zip(samples, preds, strict=True):
        if s.main_path:
            a = acc[(s.family, s.model, s.variant, s.batch_size)]
            a[0] += s.latency_ms
            a[1] += p
    return [(*k, m, p) for k, (m, p) in sorted(acc.items())]


def leave_one_family_out(
    profiles: Iterable[LayerProfile], form: str = DEFAULT_FORM
) -> HeldOutReport:
    """Held-out error of the per-layer-type regression, one model family held out at a time.

    Raises:
        RegressionError: fewer than two families, mixed hardware, or bad profiles.
    """
    profs = list(profiles)
    hw = _check_hardware(profs)
    samples = [s for p in profs for s in samples_from_profile(p)]
    families = tuple(sorted({s.family for s in samples}))
    if len(families) < MIN_FAMILIES:
        raise RegressionError(
            f"leave-one-family-out needs at least two model families, got {list(families)}"
        )
    y_all: list[float] = []
    p_all: list[float] = []
    per_group: dict[str, _GroupAcc] = defaultdict(_GroupAcc)
    per_family: list[ErrorRow] = []
    whole_family: list[ErrorRow] = []
    whole_rows: list[tuple[str, str, str, int, float, float]] = []
    preds: list[dict[str, Any]] = []
    for fam in families:
        train = [s for s in samples if s.family != fam]
        test = [s for s in samples if s.family == fam]
        model = fit_samples(train, hw, form)
        ys, ps = [], []
        for s in test:
            seen = model.has(s.layer_type, s.precision)
            pred = predict_sample(model, s, allow_fallback=True)
            ys.append(s.latency_ms)
            ps.append(pred)
            acc = per_group[s.key]
            acc.measured.append(s.latency_ms)
            acc.predicted.append(pred)
            acc.families.add(fam)
            acc.fallback |= not seen
            preds.append(
                {
                    "family": s.family,
                    "model": s.model,
                    "variant": s.variant,
                    "entry": s.name,
                    "group": s.key,
                    "batch_size": s.batch_size,
                    "measured_ms": s.latency_ms,
                    "predicted_ms": pred,
                    "fallback": not seen,
                }
            )
        per_family.append(_row(fam, ys, ps, False, [fam]))
        whole = _whole_model(test, ps)
        whole_rows += whole
        whole_family.append(_row(fam, [w[4] for w in whole], [w[5] for w in whole], False, [fam]))
        y_all += ys
        p_all += ps
    by_group = tuple(
        _row(k, a.measured, a.predicted, a.fallback, a.families)
        for k, a in sorted(per_group.items())
    )
    full = fit_samples(samples, hw, form)
    ins_pred = [predict_sample(full, s) for s in samples]
    ins_whole = _whole_model(samples, ins_pred)
    return HeldOutReport(
        hardware=hw,
        form=form,
        families=families,
        by_group=by_group,
        by_family=tuple(per_family),
        overall=_row("overall", y_all, p_all, False, families),
        in_sample=_row("in-sample", [s.latency_ms for s in samples], ins_pred, False, families),
        whole_by_family=tuple(whole_family),
        whole_overall=_row(
            "overall", [w[4] for w in whole_rows], [w[5] for w in whole_rows], False, families
        ),
        whole_in_sample=_row(
            "in-sample", [w[4] for w in ins_whole], [w[5] for w in ins_whole], False, families
        ),
        spill_threshold_bytes=full.spill_threshold_bytes,
        predictions=tuple(preds),
        whole_predictions=tuple(
            {
                "family": f,
                "model": m,
                "variant": v,
                "batch_size": b,
                "measured_ms": me,
                "predicted_ms": pr,
            }
            for f, m, v, b, me, pr in whole_rows
        ),
    )
