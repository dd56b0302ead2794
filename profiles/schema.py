"""Typed, validated per-layer profiles (schema version 1). No torch import.

A profile describes one (model, variant, hardware) triple. A model is a chain of
*partitionable units* (the candidate cut points) with *exit branches* attached after
some units (BranchyNet-style); the last exit sits after the last unit. A request that
takes exit ``e`` runs units ``0 .. exits[e].after_unit`` and then the exit head ``e``.
Cutting *before* unit ``c`` sends the output of unit ``c - 1`` (or the raw input when
``c == 0``) over the network.

File layout (JSON)::

    {
      "schema_version": 1,
      "kind": "edgerl.layer_profile",
      "model": "alexnet_me", "family": "alexnet", "variant": "fp32",
      "variant_info": {"precision": "fp32", "input_resolution": 224, "description": "..."},
      "hardware": {"name": "epyc-1t", "device_class": "host-cpu", "derived": false,
                   "source": "measured with `edgerl profile ...`", "threads": 1, ...},
      "provenance": {"torch_version": "...", "date": "...", "git_commit": "...",
                     "command": "...", ...},
      "input": {"shape": [3, 224, 224], "raw_bytes": 150528, "tensor_bytes": 602112},
      "batch_sizes": [1, 2, 4, 8, 16],
      "timing": {"warmup_runs": 3, "min_run_time_s": 0.2},
      "units": [UNIT, ...],
      "exits": [EXIT, ...]
    }

    UNIT = {"name": "conv1", "layer_type": "conv", "flops": 1.4e8, "params_bytes": 93184,
            "output_shape": [64, 55, 55], "output_bytes_fp32": 774400,
            "output_bytes_int8": 193600, "peak_activation_bytes": 1548800,
            "latency_ms_median": [..one per batch size..],
            "latency_ms_p95": [...], "runs": [...]}
    EXIT = UNIT fields except the output byte fields, plus
           {"after_unit": 2, "accuracy": 0.61 | null, "accuracy_source": "..."}

Optional per UNIT and EXIT (written by the graph profiler of user models,
``edgerl profile --model module:factory``): ``"layers"``, the qualified names of the model's
modules the entry calls (``edgerl profile import`` maps other tools' per-layer timings onto
entries by these names), and ``"operator_calls"``, the operator calls it makes (torch.fx call
nodes; the GPU derivation of ``edgerl derive`` needs them for models outside the zoo).

All sizes are bytes, FLOPs are per sample (one multiply-add counts 2 FLOPs, as
``torch.utils.flop_counter`` counts), latencies are milliseconds for a whole batch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
PROFILE_KIND = "edgerl.layer_profile"
DATA_DIR = Path(__file__).resolve().parent / "data"


class ProfileError(ValueError):
    """A profile file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class CostEntry:
    """Measured cost of one unit or exit head on one piece of hardware."""

    name: str
    layer_type: str
    flops: float
    params_bytes: int
    peak_activation_bytes: int
    latency_ms_median: tuple[float, ...]
    latency_ms_p95: tuple[float, ...]
    runs: tuple[int, ...]
    layers: tuple[str, ...] = ()  # optional: the model's modules inside this entry
    operator_calls: int | None = None  # optional: operator calls (torch.fx call nodes)


@dataclass(frozen=True)
class Unit(CostEntry):
    """A partitionable unit: the model may be cut after it."""

    output_shape: tuple[int, ...] = ()
    output_bytes_fp32: int = 0
    output_bytes_int8: int = 0


@dataclass(frozen=True)
class Exit(CostEntry):
    """An exit branch (classifier head) attached after unit ``after_unit``."""

    after_unit: int = 0
    accuracy: float | None = None
    accuracy_source: str = ""


@dataclass(frozen=True)
class HardwareInfo:
    name: str
    device_class: str
    derived: bool
    source: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerProfile:
    """A validated profile. Build with :func:`load_profile` or :func:`profile_from_dict`."""

    model: str
    family: str
    variant: str
    variant_info: Mapping[str, Any]
    hardware: HardwareInfo
    provenance: Mapping[str, Any]
    input_shape: tuple[int, ...]
    input_raw_bytes: int
    input_tensor_bytes: int
    batch_sizes: tuple[int, ...]
    timing: Mapping[str, Any]
    units: tuple[Unit, ...]
    exits: tuple[Exit, ...]
    path: str = "<memory>"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.variant, self.hardware.name)

    def latency_ms(self, entry: CostEntry, batch_size: int) -> float:
        """Median latency of ``entry`` for a batch of ``batch_size`` [ms].

        Between measured batch sizes the latency is interpolated linearly; beyond the
        largest it is extrapolated with the per-sample cost of the largest batch.
        """
        return interpolate_latency(self.batch_sizes, entry.latency_ms_median, batch_size)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form of this profile (inverse of :func:`profile_from_dict`)."""

        def cost(e: CostEntry) -> dict[str, Any]:
            out: dict[str, Any] = {
                "name": e.name,
                "layer_type": e.layer_type,
                "flops": e.flops,
                "params_bytes": e.params_bytes,
                "peak_activation_bytes": e.peak_activation_bytes,
                "latency_ms_median": list(e.latency_ms_median),
                "latency_ms_p95": list(e.latency_ms_p95),
                "runs": list(e.runs),
            }
            if e.layers:
                out["layers"] = list(e.layers)
            if e.operator_calls is not None:
                out["operator_calls"] = e.operator_calls
            return out

        return {
            "schema_version": SCHEMA_VERSION,
            "kind": PROFILE_KIND,
            "model": self.model,
            "family": self.family,
            "variant": self.variant,
            "variant_info": dict(self.variant_info),
            "hardware": {
                "name": self.hardware.name,
                "device_class": self.hardware.device_class,
                "derived": self.hardware.derived,
                "source": self.hardware.source,
                **dict(self.hardware.extra),
            },
            "provenance": dict(self.provenance),
            "input": {
                "shape": list(self.input_shape),
                "raw_bytes": self.input_raw_bytes,
                "tensor_bytes": self.input_tensor_bytes,
            },
            "batch_sizes": list(self.batch_sizes),
            "timing": dict(self.timing),
            "units": [
                {
                    **cost(u),
                    "output_shape": list(u.output_shape),
                    "output_bytes_fp32": u.output_bytes_fp32,
                    "output_bytes_int8": u.output_bytes_int8,
                }
                for u in self.units
            ],
            "exits": [
                {
                    **cost(x),
                    "after_unit": x.after_unit,
                    "accuracy": x.accuracy,
                    "accuracy_source": x.accuracy_source,
                }
                for x in self.exits
            ],
        }


def interpolate_latency(
    batch_sizes: Sequence[int], latencies_ms: Sequence[float], batch_size: int
) -> float:
    """Latency of a batch of ``batch_size`` from measurements at ``batch_sizes`` [ms]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size <= batch_sizes[0]:
        return float(latencies_ms[0]) * batch_size / batch_sizes[0]
    for i in range(1, len(batch_sizes)):
        if batch_size <= batch_sizes[i]:
            b0, b1 = batch_sizes[i - 1], batch_sizes[i]
            l0, l1 = latencies_ms[i - 1], latencies_ms[i]
            return float(l0 + (l1 - l0) * (batch_size - b0) / (b1 - b0))
    return float(latencies_ms[-1]) * batch_size / batch_sizes[-1]


# --------------------------------------------------------------------------- validation


class _Reader:
    """Field access that turns every schema violation into a :class:`ProfileError`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.path}: field '{where}': {msg}")

    def get(self, obj: Mapping[str, Any], key: str, where: str) -> Any:
        if not isinstance(obj, Mapping):
            raise self.fail(where, f"expected an object, got {type(obj).__name__}")
        if key not in obj:
            raise self.fail(f"{where}.{key}".lstrip("."), "missing")
        return obj[key]

    def string(self, obj: Mapping[str, Any], key: str, where: str = "") -> str:
        v = self.get(obj, key, where)
        if not isinstance(v, str) or not v:
            raise self.fail(f"{where}.{key}".lstrip("."), f"expected a non-empty string, got {v!r}")
        return v

    def number(
        self, obj: Mapping[str, Any], key: str, where: str = "", *, positive: bool = False
    ) -> float:
        v = self.get(obj, key, where)
        name = f"{where}.{key}".lstrip(".")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(name, f"expected a finite number, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise self.fail(
                name, f"expected a {'positive' if positive else 'non-negative'} number, got {v!r}"
            )
        return float(v)

    def integer(
        self, obj: Mapping[str, Any], key: str, where: str = "", *, positive: bool = False
    ) -> int:
        v = self.get(obj, key, where)
        name = f"{where}.{key}".lstrip(".")
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(name, f"expected an integer, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise self.fail(
                name, f"expected a {'positive' if positive else 'non-negative'} integer, got {v!r}"
            )
        return v

    def int_list(
        self, obj: Mapping[str, Any], key: str, where: str, n: int | None = None
    ) -> tuple[int, ...]:
        v = self.get(obj, key, where)
        name = f"{where}.{key}".lstrip(".")
        if not isinstance(v, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v
        ):
            raise self.fail(name, f"expected a list of positive integers, got {v!r}")
        if n is not None and len(v) != n:
            raise self.fail(name, f"expected {n} entries (one per batch size), got {len(v)}")
        return tuple(v)

    def num_list(self, obj: Mapping[str, Any], key: str, where: str, n: int) -> tuple[float, ...]:
        v = self.get(obj, key, where)
        name = f"{where}.{key}".lstrip(".")
        if not isinstance(v, list) or len(v) != n:
            raise self.fail(name, f"expected a list of {n} numbers (one per batch size), got {v!r}")
        for x in v:
            if (
                isinstance(x, bool)
                or not isinstance(x, int | float)
                or not math.isfinite(x)
                or x <= 0
            ):
                raise self.fail(name, f"expected positive finite numbers, got {x!r}")
        return tuple(float(x) for x in v)

    def mapping(self, obj: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
        v = self.get(obj, key, where)
        if not isinstance(v, Mapping):
            raise self.fail(
                f"{where}.{key}".lstrip("."), f"expected an object, got {type(v).__name__}"
            )
        return v


def _cost_fields(r: _Reader, d: Mapping[str, Any], where: str, n_batch: int) -> dict[str, Any]:
    out = {
        "name": r.string(d, "name", where),
        "layer_type": r.string(d, "layer_type", where),
        "flops": r.number(d, "flops", where),
        "params_bytes": r.integer(d, "params_bytes", where),
        "peak_activation_bytes": r.integer(d, "peak_activation_bytes", where),
        "latency_ms_median": r.num_list(d, "latency_ms_median", where, n_batch),
        "latency_ms_p95": r.num_list(d, "latency_ms_p95", where, n_batch),
        "runs": r.int_list(d, "runs", where, n_batch),
    }
    if isinstance(d, Mapping) and "layers" in d:
        layers = d["layers"]
        if not isinstance(layers, list) or not all(isinstance(x, str) and x for x in layers):
            raise r.fail(f"{where}.layers", f"expected a list of module names, got {layers!r}")
        out["layers"] = tuple(layers)
    if isinstance(d, Mapping) and "operator_calls" in d:
        out["operator_calls"] = r.integer(d, "operator_calls", where, positive=True)
    return out


def profile_from_dict(data: Any, path: str = "<memory>") -> LayerProfile:
    """Validate a decoded JSON profile; raise :class:`ProfileError` naming the bad field."""
    r = _Reader(path)
    if not isinstance(data, Mapping):
        raise ProfileError(f"{path}: expected a JSON object at top level")
    version = r.get(data, "schema_version", "")
    if version != SCHEMA_VERSION:
        raise r.fail(
            "schema_version",
            f"unsupported version {version!r}; this edgerl reads version {SCHEMA_VERSION}",
        )
    if data.get("kind") != PROFILE_KIND:
        raise r.fail("kind", f"expected {PROFILE_KIND!r}, got {data.get('kind')!r}")
    batch_sizes = r.int_list(data, "batch_sizes", "")
    if list(batch_sizes) != sorted(set(batch_sizes)):
        raise r.fail("batch_sizes", f"must be strictly increasing, got {list(batch_sizes)}")
    nb = len(batch_sizes)
    hw = r.mapping(data, "hardware")
    derived = r.get(hw, "derived", "hardware")
    if not isinstance(derived, bool):
        raise r.fail("hardware.derived", f"expected true/false, got {derived!r}")
    hardware = HardwareInfo(
        name=r.string(hw, "name", "hardware"),
        device_class=r.string(hw, "device_class", "hardware"),
        derived=derived,
        source=r.string(hw, "source", "hardware"),
        extra={
            k: v for k, v in hw.items() if k not in {"name", "device_class", "derived", "source"}
        },
    )
    inp = r.mapping(data, "input")
    raw_units = r.get(data, "units", "")
    if not isinstance(raw_units, list) or not raw_units:
        raise r.fail("units", "expected a non-empty list")
    units = []
    for i, u in enumerate(raw_units):
        w = f"units[{i}]"
        units.append(
            Unit(
                **_cost_fields(r, u, w, nb),
                output_shape=r.int_list(u, "output_shape", w),
                output_bytes_fp32=r.integer(u, "output_bytes_fp32", w, positive=True),
                output_bytes_int8=r.integer(u, "output_bytes_int8", w, positive=True),
            )
        )
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise r.fail("units", f"unit names must be unique, got {names}")
    raw_exits = r.get(data, "exits", "")
    if not isinstance(raw_exits, list) or not raw_exits:
        raise r.fail("exits", "expected a non-empty list")
    exits = []
    for i, x in enumerate(raw_exits):
        w = f"exits[{i}]"
        after = r.integer(x, "after_unit", w)
        if after >= len(units):
            raise r.fail(
                f"{w}.after_unit", f"{after} is past the last unit (index {len(units) - 1})"
            )
        acc = r.get(x, "accuracy", w)
        if acc is not None and (
            isinstance(acc, bool) or not isinstance(acc, int | float) or not 0.0 <= acc <= 1.0
        ):
            raise r.fail(f"{w}.accuracy", f"expected null or a fraction in [0, 1], got {acc!r}")
        source = r.get(x, "accuracy_source", w)
        if not isinstance(source, str) or (acc is not None and not source):
            raise r.fail(f"{w}.accuracy_source", "a known accuracy must say where it comes from")
        exits.append(
            Exit(
                **_cost_fields(r, x, w, nb),
                after_unit=after,
                accuracy=None if acc is None else float(acc),
                accuracy_source=source,
            )
        )
    afters = [x.after_unit for x in exits]
    if afters != sorted(set(afters)):
        raise r.fail("exits", f"exits must sit after strictly increasing units, got {afters}")
    if afters[-1] != len(units) - 1:
        raise r.fail("exits", "the last exit must sit after the last unit (the final classifier)")
    return LayerProfile(
        model=r.string(data, "model"),
        family=r.string(data, "family"),
        variant=r.string(data, "variant"),
        variant_info=dict(r.mapping(data, "variant_info")),
        hardware=hardware,
        provenance=dict(r.mapping(data, "provenance")),
        input_shape=r.int_list(inp, "shape", "input"),
        input_raw_bytes=r.integer(inp, "raw_bytes", "input", positive=True),
        input_tensor_bytes=r.integer(inp, "tensor_bytes", "input", positive=True),
        batch_sizes=batch_sizes,
        timing=dict(r.mapping(data, "timing")),
        units=tuple(units),
        exits=tuple(exits),
        path=path,
    )


def load_profile(path: str | Path) -> LayerProfile:
    """Read and validate one profile file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{p}: cannot read profile: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{p}: not valid JSON: {exc}") from exc
    return profile_from_dict(data, str(p))


def save_profile(profile: LayerProfile | Mapping[str, Any], path: str | Path) -> Path:
    """Validate and write a profile (a :class:`LayerProfile` or its dict form) as JSON."""
    data = profile.to_dict() if isinstance(profile, LayerProfile) else dict(profile)
    profile_from_dict(data, str(path))  # never write a file the loader would reject
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return p


def profile_path(model: str, variant: str, hardware: str, root: Path = DATA_DIR) -> Path:
    """Where a profile lives: ``data/<model>/<variant>/<hardware>.json``."""
    return root / model / variant / f"{hardware}.json"


def iter_profile_files(root: Path = DATA_DIR) -> list[Path]:
    return sorted(root.glob("*/*/*.json"))


def _check_location(prof: LayerProfile, path: Path) -> LayerProfile:
    """A shipped file must sit at data/<model>/<variant>/<hardware>.json of what it declares."""
    where = (path.parent.parent.name, path.parent.name, path.stem)
    if where != prof.key:
        raise ProfileError(
            f"{path}: declares model/variant/hardware {'/'.join(prof.key)} but is stored as "
            f"{'/'.join(where)}"
        )
    return prof


def load_all(root: Path = DATA_DIR) -> dict[tuple[str, str, str], LayerProfile]:
    """Load every shipped profile, keyed by (model, variant, hardware)."""
    out: dict[tuple[str, str, str], LayerProfile] = {}
    for f in iter_profile_files(root):
        prof = _check_location(load_profile(f), f)
        if prof.key in out:
            raise ProfileError(f"{f}: duplicate profile for {prof.key} (also {out[prof.key].path})")
        out[prof.key] = prof
    return out


def profiles_on_offer(model: str, variant: str, roots: Sequence[Path]) -> str:
    """What the folders ``roots`` hold for ``model``/``variant``, for an error message: the
    hardware names of that model and variant, else the variants of that model, else the
    models (one short line however many profiles are shipped)."""
    files = [f for r in roots for f in iter_profile_files(r)]
    same_model = [f for f in files if f.parent.parent.name == model]
    hardware = sorted({f.stem for f in same_model if f.parent.name == variant})
    if hardware:
        return f"hardware with {model}/{variant} profiles: {', '.join(hardware)}"
    if same_model:
        variants = sorted({f.parent.name for f in same_model})
        return f"variants of {model} with profiles: {', '.join(variants)}"
    models = sorted({f.parent.parent.name for f in files})
    return (
        f"no profile of model {model!r} at all; models with profiles: {', '.join(models) or 'none'}"
    )


def find_profile(model: str, variant: str, hardware: str, root: Path = DATA_DIR) -> LayerProfile:
    p = profile_path(model, variant, hardware, root)
    if not p.exists():
        raise ProfileError(
            f"no profile for model={model!r} variant={variant!r} hardware={hardware!r} "
            f"(looked for {p}); {profiles_on_offer(model, variant, [root])}"
        )
    return _check_location(load_profile(p), p)
