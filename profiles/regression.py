"""Per-layer-type latency regression models (Neurosurgeon / Edgent style). numpy only.

Neurosurgeon (Kang et al., ASPLOS 2017, Sec. 4.2) and Edgent (Li, Zhou and Chen, IEEE TWC
2019, Sec. III-B) predict the latency of a DNN layer on a given piece of hardware with one
regression model *per layer type*, whose inputs are the layer's configuration (FLOPs, input and
output sizes, weights). This module does the same for the partitionable units and exit heads
of :mod:`edgerl.profiles` profiles, adding the batch size as an input.

Model form (``form="linear"``, the default). For a unit run on a batch of ``b`` samples::

    latency_ms = c_flop * b * flops[GFLOP] + c_act * b * act_bytes[MB]
               + c_par * params_bytes[MB] + c_0,   act_bytes = max(in + out, peak_activation)

with all coefficients constrained to be >= 0 (non-negative least squares). Each term has a
physical reading: arithmetic work, activation traffic, one read of the weights per batch, and a
fixed per-call overhead (operator dispatch). The activation size is the larger of input + output
bytes and the unit's measured peak activation memory (``peak_activation_bytes`` of the profile,
at batch 1) when it is known: a unit's internal tensors (e.g. the 6x expanded tensor inside a
MobileNetV2 block) can be much larger than what enters and leaves it, and on the measured
profiles of the first cpu-epyc-1t profiling pass this cut the held-out error (leave-one-family-out
MAPE 57 % -> 54 %, R^2 0.39 -> 0.51). The fit minimises the squared *relative* error
(rows weighted by 1 / measured latency), because latencies of units span four orders of
magnitude and a plain least-squares fit would only care about the largest units. The
alternative ``form="loglinear"`` (ordinary least squares on
``log latency ~ 1 + log(1 + b*flops) + log(1 + b*act) + log(1 + params)``) is kept for
comparison; `edgerl fit-report --form loglinear` shows its held-out errors.

Models are keyed by ``<precision>:<layer_type>`` (e.g. ``fp32:conv``), since int8 kernels are
different code with different constants. A per-precision *global* model fitted on every entry
of that precision is the documented fallback for a layer type the model has not seen: it is
only used when the caller passes ``allow_fallback=True``; otherwise an unknown layer type raises
:class:`UnknownLayerTypeError`.

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
from typing import Any

import numpy as np
from edgerl.profiles.schema import LayerProfile
from numpy.typing import NDArray

MODEL_KIND = "edgerl.latency_model"
MODEL_VERSION = 1
FORMS = ("linear", "loglinear")
DEFAULT_FORM = "linear"

FLOPS_PER_GFLOP = 1e9
BYTES_PER_MB = 1e6
# loglinear features use log(1 + x / scale); the scales only condition the fit
LOG_FLOPS_SCALE = 1e6  # [FLOP]
LOG_BYTES_SCALE = 1e3  # [bytes]

FEATURES_LINEAR = ("b*GFLOP", "b*act_MB", "params_MB", "1")
FEATURES_LOGLINEAR = ("1", "log1p(b*MFLOP)", "log1p(b*act_kB)", "log1p(params_kB)")

NNLS_MAX_ITER_FACTOR = 30  # Lawson-Hanson outer iterations allowed per coefficient
NNLS_TOL = 1e-12  # gradient tolerance of the active-set NNLS
MIN_R2_SAMPLES = 2  # R^2 needs at least two points with nonzero spread


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

    def add(kind: str, e: Any, in_b: int, out_b: int) -> None:
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
                )
            )

    for u, (in_b, out_b) in zip(profile.units, io, strict=True):
        add("unit", u, in_b, out_b)
    for x in profile.exits:
        add("exit", x, profile.units[x.after_unit].output_bytes_fp32, 0)
    return rows


# --------------------------------------------------------------------------- features / solvers


def _features(
    form: str,
    flops: NDArray[np.float64],
    act_bytes: NDArray[np.float64],
    params_bytes: NDArray[np.float64],
    batch: NDArray[np.float64],
) -> NDArray[np.float64]:
    if form == "linear":
        cols = [
            batch * flops / FLOPS_PER_GFLOP,
            batch * act_bytes / BYTES_PER_MB,
            params_bytes / BYTES_PER_MB,
            np.ones_like(batch),
        ]
    elif form == "loglinear":
        cols = [
            np.ones_like(batch),
            np.log1p(batch * flops / LOG_FLOPS_SCALE),
            np.log1p(batch * act_bytes / LOG_BYTES_SCALE),
            np.log1p(params_bytes / LOG_BYTES_SCALE),
        ]
    else:
        raise RegressionError(f"unknown regression form {form!r}; choose one of {FORMS}")
    return np.stack(cols, axis=1)


def feature_names(form: str) -> tuple[str, ...]:
    if form == "linear":
        return FEATURES_LINEAR
    if form == "loglinear":
        return FEATURES_LOGLINEAR
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
    """Fitted coefficients of one regression group."""

    coef: tuple[float, ...]
    n_samples: int
    n_entries: int  # distinct (model, variant, entry) measured in this group
    train_mape: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": list(self.coef),
            "n_samples": self.n_samples,
            "n_entries": self.n_entries,
            "train_mape": self.train_mape,
        }


def _arrays(samples: Sequence[CostSample]) -> tuple[NDArray[np.float64], ...]:
    flops = np.array([s.flops for s in samples], dtype=float)
    act = np.array([activation_bytes(s.in_bytes, s.out_bytes, s.peak_activation_bytes)
                    for s in samples], dtype=float)  # fmt: skip
    par = np.array([s.params_bytes for s in samples], dtype=float)
    b = np.array([s.batch_size for s in samples], dtype=float)
    y = np.array([s.latency_ms for s in samples], dtype=float)
    return flops, act, par, b, y


def activation_bytes(
    in_bytes: float, out_bytes: float, peak_activation_bytes: float | None
) -> float:
    """Activation bytes of one sample: ``max(in + out, peak activation)`` [bytes]."""
    return max(in_bytes + out_bytes, peak_activation_bytes or 0.0)


def _predict(form: str, coef: NDArray[np.float64], x: NDArray[np.float64]) -> NDArray[np.float64]:
    lin: NDArray[np.float64] = x @ coef
    return np.asarray(np.exp(lin) if form == "loglinear" else lin, dtype=np.float64)


def _fit_group(form: str, samples: Sequence[CostSample]) -> GroupFit:
    flops, act, par, b, y = _arrays(samples)
    x = _features(form, flops, act, par, b)
    if form == "linear":
        coef = nnls(x / y[:, None], np.ones_like(y))  # relative residuals (pred - y) / y
    else:
        coef = np.asarray(np.linalg.lstsq(x, np.log(y), rcond=None)[0], dtype=np.float64)
    pred = _predict(form, coef, x)
    entries = {(s.model, s.variant, s.kind, s.name) for s in samples}
    return GroupFit(
        coef=tuple(float(c) for c in coef),
        n_samples=len(samples),
        n_entries=len(entries),
        train_mape=mape(y, pred),
    )


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class LatencyModel:
    """Per-layer-type latency regressions fitted on the profiles of one piece of hardware."""

    hardware: str
    form: str
    groups: Mapping[str, GroupFit]
    fallback: Mapping[str, GroupFit]  # keyed by precision
    trained_on: tuple[str, ...] = ()  # "model/variant" of every training profile
    source: str = ""

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
            allow_fallback: use the per-precision global model for an unseen layer type.

        Raises:
            UnknownLayerTypeError: no regression for ``precision:layer_type`` and
                ``allow_fallback`` is false (or no global model for the precision either).
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
        fit = self._group(layer_type, precision, allow_fallback)
        x = _features(
            self.form,
            np.array([flops], dtype=float),
            np.array([activation_bytes(in_bytes, out_bytes, peak_activation_bytes)], dtype=float),
            np.array([params_bytes], dtype=float),
            np.array([batch_size], dtype=float),
        )
        return float(_predict(self.form, np.array(fit.coef), x)[0])

    def _group(self, layer_type: str, precision: str, allow_fallback: bool) -> GroupFit:
        key = group_key(precision, layer_type)
        if key in self.groups:
            return self.groups[key]
        if allow_fallback and precision in self.fallback:
            return self.fallback[precision]
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
            "activation_bytes": "max(in_bytes + out_bytes, peak_activation_bytes)",
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
        if data.get("version") != MODEL_VERSION:
            raise fail("version", f"unsupported version {data.get('version')!r}")
        form = data.get("form")
        if form not in FORMS:
            raise fail("form", f"expected one of {FORMS}, got {form!r}")
        n_coef = len(feature_names(form))

        def groups(name: str) -> dict[str, GroupFit]:
            raw = data.get(name)
            if not isinstance(raw, Mapping):
                raise fail(name, "expected an object")
            out: dict[str, GroupFit] = {}
            for k, g in raw.items():
                where = f"{name}.{k}"
                if not isinstance(g, Mapping):
                    raise fail(where, "expected an object")
                coef = g.get("coef")
                if (
                    not isinstance(coef, list)
                    or len(coef) != n_coef
                    or not all(isinstance(c, int | float) and math.isfinite(c) for c in coef)
                ):
                    raise fail(f"{where}.coef", f"expected {n_coef} finite numbers, got {coef!r}")
                try:
                    out[k] = GroupFit(
                        coef=tuple(float(c) for c in coef),
                        n_samples=int(g["n_samples"]),
                        n_entries=int(g["n_entries"]),
                        train_mape=float(g["train_mape"]),
                    )
                except (KeyError, TypeError, ValueError) as exc:
                    raise fail(where, f"bad or missing field: {exc}") from exc
            return out

        hardware = data.get("hardware")
        if not isinstance(hardware, str) or not hardware:
            raise fail("hardware", f"expected a non-empty string, got {hardware!r}")
        return cls(
            hardware=hardware,
            form=form,
            groups=groups("groups"),
            fallback=groups("fallback"),
            trained_on=tuple(str(t) for t in data.get("trained_on", [])),
            source=str(data.get("source", "")),
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
    """Fit one regression per ``precision:layer_type`` group plus per-precision fallbacks."""
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
    return LatencyModel(
        hardware=hardware,
        form=form,
        groups={k: _fit_group(form, v) for k, v in by_group.items()},
        fallback={k: _fit_group(form, v) for k, v in by_prec.items()},
        trained_on=tuple(sorted({f"{s.model}/{s.variant}" for s in samples})),
        source=source,
    )


def fit_latency_models(
    profiles: Iterable[LayerProfile], form: str = DEFAULT_FORM, source: str = ""
) -> LatencyModel:
    """Fit per-layer-type latency regressions on the measured profiles of one hardware.

    Args:
        profiles: measured profiles, all of the same ``hardware.name``.
        form: ``"linear"`` (non-negative, relative-error weighted) or ``"loglinear"``.
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
    """Leave-one-family-out evaluation of the per-layer-type regression."""

    hardware: str
    form: str
    families: tuple[str, ...]
    by_group: tuple[ErrorRow, ...]
    by_family: tuple[ErrorRow, ...]
    overall: ErrorRow
    in_sample: ErrorRow
    predictions: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "edgerl.fit_report",
            "hardware": self.hardware,
            "form": self.form,
            "protocol": (
                "leave-one-family-out: for each family, fit on every profile of the other "
                "families (all variants, all batch sizes) and predict every unit/exit head of "
                "the held-out family at every measured batch size; layer types never seen in "
                "training use the per-precision global model (fallback=true)"
            ),
            "families": list(self.families),
            "overall": self.overall.to_dict(),
            "in_sample": self.in_sample.to_dict(),
            "by_group": [r.to_dict() for r in self.by_group],
            "by_family": [r.to_dict() for r in self.by_family],
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
    if len(families) < MIN_R2_SAMPLES:
        raise RegressionError(
            f"leave-one-family-out needs at least two model families, got {list(families)}"
        )
    y_all: list[float] = []
    p_all: list[float] = []
    per_group: dict[str, _GroupAcc] = defaultdict(_GroupAcc)
    per_family: list[ErrorRow] = []
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
        y_all += ys
        p_all += ps
    by_group = tuple(
        _row(k, a.measured, a.predicted, a.fallback, a.families)
        for k, a in sorted(per_group.items())
    )
    full = fit_samples(samples, hw, form)
    ins_pred = [predict_sample(full, s) for s in samples]
    return HeldOutReport(
        hardware=hw,
        form=form,
        families=families,
        by_group=by_group,
        by_family=tuple(per_family),
        overall=_row("overall", y_all, p_all, False, families),
        in_sample=_row("in-sample", [s.latency_ms for s in samples], ins_pred, False, families),
        predictions=tuple(preds),
    )
