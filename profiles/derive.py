"""Derived profiles for device classes that cannot be measured here. numpy + PyYAML only.

The simulator needs a Raspberry-Pi-class end device, an edge GPU server and a cloud GPU; the
build machine is an x86 CPU. This module turns a *measured* host profile into a profile of one
of the device classes of ``devices.yaml`` (every figure there cites its source), marks it
``hardware.derived = true`` and records the derivation in ``hardware.source``. Bytes, FLOPs,
layer types, exits and accuracies are copied unchanged; only latencies are derived.

Two methods, chosen per device class in ``devices.yaml``:

``cpu-scaled`` (CPU to CPU, e.g. ``device-rpi4``). Each measured host latency ``L`` of a unit at
batch ``b`` is split by the host roofline into a compute share ``w_c = t_c / (t_c + t_m)`` and
a memory share ``w_m = 1 - w_c``, with ``t_c = b * flops / R_host`` (``R_host``: the host's
measured torch matmul FLOP/s) and ``t_m = (params + b * (in + out)) / B_host`` (measured copy
bandwidth). The derived latency is ``L * (w_c * S_c[group] + w_m * S_m)``: the memory share
scales by the bandwidth ratio ``S_m = B_host / B_device`` (cited STREAM figure), the compute
share by a factor per *group of layer types* (e.g. dense convolutions vs depthwise blocks), each
solved in closed form so that the group's reference model (batch 1, all units + final exit)
takes exactly a cited end-to-end latency on the device, scaled by the FLOP ratio of our model to
the cited one. Layer-type awareness thus comes from two places: the measured host behaviour of
each unit (a unit the host runs memory-bound keeps that character) and the per-group factors
(the cited Raspberry Pi 4 table shows depthwise-separable networks reaching a far lower FLOP
rate there than dense ones). The batch behaviour is the host's measured one.

``gpu-roofline`` (edge/cloud GPUs). Per unit or exit head::

    latency(b) = max(n_ops * t_op, max(b * flops / (eff * peak * occ(b)), bytes(b) / mem_bw))
    occ(b)     = min(1, b * work_items / (sm_count * max_threads_per_sm))

``n_ops`` (operator calls, each dispatching at least one kernel from eager PyTorch) is counted
from the model graph by the caller; ``work_items`` is the larger of the entry's input and output
element counts (the parallelism a kernel can spread over the GPU); ``bytes(b) = params +
b * (in + out)``. ``t_op`` and ``eff`` are fitted per (device, precision) to a cited ResNet-50
v1.5 latency-vs-batch table, with ResNet-50 v1.5 built analytically here. This gives the
sub-linear batch behaviour of a GPU: flat while Python dispatch or low occupancy dominate, then
linear once the GPU is saturated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from edgerl.profiles.schema import CostEntry, LayerProfile, ProfileError, profile_from_dict

DEVICES_PATH = Path(__file__).resolve().parent / "devices.yaml"
DEVICES_KIND = "edgerl.device_classes"
DEVICES_SCHEMA_VERSION = 1
METHODS = ("cpu-scaled", "gpu-roofline")
DEVICE_CLASSES = ("device", "edge", "cloud")
PRECISIONS = ("fp32", "int8")

MS_PER_S = 1e3
FP32_BYTES = 4  # bytes per float32 element
FP16_BYTES = 2  # bytes per float16 element (the mixed-precision reference benchmark)

# ---- grid of the (t_op, eff) calibration fit
T_OP_GRID_MS = (1e-3, 1.0)  # searched range of the per-operator dispatch time [ms]
EFF_GRID = (0.01, 1.0)  # searched range of the compute efficiency (fraction of peak)
GRID_POINTS = 121  # points per axis, log-spaced
GRID_REFINE_ROUNDS = 3  # zoom-in rounds around the best point
GRID_REFINE_SPAN = 4.0  # each round searches best / span .. best * span (log axis)


class DeviceTableError(ValueError):
    """``devices.yaml`` is malformed (the message names the file and the field)."""


class UnknownDeviceError(KeyError):
    """No device class or host of that name in the device table."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DerivationError(ValueError):
    """A profile cannot be derived (wrong source, missing calibration data, ...)."""


# --------------------------------------------------------------------------- the device table


@dataclass(frozen=True)
class Figure:
    """A number with its unit and where it comes from."""

    value: Any
    unit: str
    source: str
    assumption: bool = False

    @property
    def x(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class Host:
    """A measured host (the source hardware of a derivation)."""

    name: str
    description: str
    matmul_flops_per_s: Figure
    copy_bytes_per_s: Figure


@dataclass(frozen=True)
class Calibration:
    """The cited end-to-end benchmark a device's free parameter(s) are fitted to."""

    precision: str
    data: Mapping[str, Any]  # the raw block (figures already parsed into Figure)
    assumption: bool = False
    note: str = ""

    def figure(self, key: str) -> Figure:
        f = self.data.get(key)
        if not isinstance(f, Figure):
            raise DeviceTableError(f"calibration.{self.precision}.{key}: missing figure")
        return f


@dataclass(frozen=True)
class Device:
    """A device class of ``devices.yaml``."""

    name: str
    device_class: str
    method: str
    derive_from: str
    description: str
    figures: Mapping[str, Figure]
    calibration: Mapping[str, Calibration]

    def figure(self, key: str) -> Figure:
        if key not in self.figures:
            raise DeviceTableError(f"device {self.name!r}: missing figure {key!r}")
        return self.figures[key]

    def calib(self, precision: str) -> Calibration:
        if precision not in self.calibration:
            raise DerivationError(
                f"device {self.name!r} has no {precision!r} calibration in devices.yaml "
                f"(has: {', '.join(sorted(self.calibration)) or 'none'})"
            )
        return self.calibration[precision]


@dataclass(frozen=True)
class DeviceTable:
    hosts: Mapping[str, Host]
    devices: Mapping[str, Device]
    path: str = "<memory>"
    sha256: str = ""

    def device(self, name: str) -> Device:
        if name not in self.devices:
            raise UnknownDeviceError(
                f"unknown derived hardware {name!r}; {self.path} defines: "
                f"{', '.join(sorted(self.devices)) or 'none'}"
            )
        return self.devices[name]

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise UnknownDeviceError(
                f"no measured host figures for {name!r} in {self.path} (hosts: "
                f"{', '.join(sorted(self.hosts)) or 'none'}); measure them with "
                f"`edgerl derive --measure-host --threads N` and add them under 'hosts'"
            )
        return self.hosts[name]


_FIGURE_KEYS = {"value", "unit", "source", "assumption"}


def _is_figure(v: Any) -> bool:
    return isinstance(v, Mapping) and "value" in v and "source" in v


def _figure(v: Mapping[str, Any], where: str, path: str) -> Figure:
    extra = set(v) - _FIGURE_KEYS
    if extra:
        raise DeviceTableError(f"{path}: field '{where}': unknown keys {sorted(extra)}")
    src = v.get("source")
    if not isinstance(src, str) or not src.strip():
        raise DeviceTableError(f"{path}: field '{where}.source': every figure must cite a source")
    val = v["value"]
    if val is None:
        raise DeviceTableError(
            f"{path}: field '{where}.value': no value (null); fill in the figure"
        )

    def numeric(x: Any) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    ok = numeric(val) or (
        isinstance(val, list)
        and all(isinstance(r, list) and r and all(numeric(c) for c in r) for r in val)
    )
    if not ok:
        raise DeviceTableError(
            f"{path}: field '{where}.value': expected a number or a table of numbers, got "
            f"{val!r} (write exponents with a sign, 8.1e+12: YAML reads 8.1e12 as a string)"
        )
    return Figure(val, str(v.get("unit", "")), src, bool(v.get("assumption", False)))


def _parse_block(block: Mapping[str, Any], where: str, path: str) -> dict[str, Any]:
    """Parse the figures of a calibration block (and of the groups listed in it)."""
    out: dict[str, Any] = {}
    for k, v in block.items():
        if _is_figure(v):
            out[k] = _figure(v, f"{where}.{k}", path)
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            out[k] = [_parse_block(x, f"{where}.{k}[{i}]", path) for i, x in enumerate(v)]
        else:
            out[k] = v
    return out


CPU_GROUP_KEYS = ("name", "layer_types", "reference_model", "reference_variant", "cited_model")
CPU_GROUP_FIGURES = ("cited_flops", "latency_ms")


def _check_cpu_groups(block: Mapping[str, Any], where: str, path: str) -> None:
    groups = block.get("groups")
    if not isinstance(groups, list) or not groups:
        raise DeviceTableError(f"{path}: field '{where}.groups': expected a non-empty list")
    n_default = 0
    for i, g in enumerate(groups):
        gw = f"{where}.groups[{i}]"
        for k in CPU_GROUP_KEYS:
            if k not in g:
                raise DeviceTableError(f"{path}: field '{gw}.{k}': missing")
        for k in CPU_GROUP_FIGURES:
            if not isinstance(g.get(k), Figure):
                raise DeviceTableError(f"{path}: field '{gw}.{k}': missing figure")
        lt = g["layer_types"]
        if lt == "default":
            n_default += 1
        elif not (isinstance(lt, list) and lt and all(isinstance(x, str) for x in lt)):
            raise DeviceTableError(
                f"{path}: field '{gw}.layer_types': expected 'default' or a list of layer types"
            )
    if n_default != 1:
        raise DeviceTableError(
            f"{path}: field '{where}.groups': exactly one group must have layer_types: default "
            f"(it covers every layer type the others do not list), found {n_default}"
        )


def _req(d: Mapping[str, Any], key: str, where: str, path: str) -> Any:
    if not isinstance(d, Mapping) or key not in d:
        raise DeviceTableError(f"{path}: field '{where}.{key}': missing".replace("'.", "'"))
    return d[key]


def parse_device_table(data: Any, path: str = "<memory>") -> DeviceTable:
    """Validate a decoded device table; raise :class:`DeviceTableError` naming the bad field."""
    if not isinstance(data, Mapping):
        raise DeviceTableError(f"{path}: expected a mapping at top level")
    if data.get("kind") != DEVICES_KIND:
        raise DeviceTableError(f"{path}: field 'kind': expected {DEVICES_KIND!r}")
    if data.get("schema_version") != DEVICES_SCHEMA_VERSION:
        raise DeviceTableError(
            f"{path}: field 'schema_version': expected {DEVICES_SCHEMA_VERSION}, "
            f"got {data.get('schema_version')!r}"
        )
    hosts: dict[str, Host] = {}
    for name, h in (data.get("hosts") or {}).items():
        w = f"hosts.{name}"
        hosts[name] = Host(
            name=name,
            description=str(h.get("description", "")),
            matmul_flops_per_s=_figure(_req(h, "matmul_flops_per_s", w, path),
                                       f"{w}.matmul_flops_per_s", path),
            copy_bytes_per_s=_figure(_req(h, "copy_bytes_per_s", w, path),
                                     f"{w}.copy_bytes_per_s", path),
        )  # fmt: skip
    devices: dict[str, Device] = {}
    raw_devices = _req(data, "devices", "", path)
    if not isinstance(raw_devices, Mapping) or not raw_devices:
        raise DeviceTableError(f"{path}: field 'devices': expected a non-empty mapping")
    for name, d in raw_devices.items():
        w = f"devices.{name}"
        if not isinstance(d, Mapping):
            raise DeviceTableError(f"{path}: field '{w}': expected a mapping")
        dc = _req(d, "device_class", w, path)
        if dc not in DEVICE_CLASSES:
            raise DeviceTableError(
                f"{path}: field '{w}.device_class': {dc!r} not in {DEVICE_CLASSES}"
            )
        method = _req(d, "method", w, path)
        if method not in METHODS:
            raise DeviceTableError(f"{path}: field '{w}.method': {method!r} not in {METHODS}")
        figures = {k: _figure(v, f"{w}.{k}", path) for k, v in d.items() if _is_figure(v)}
        for k in ("active_power_w", "idle_power_w", "memory_bytes"):
            if k not in figures:
                raise DeviceTableError(
                    f"{path}: field '{w}.{k}': missing (needed for energy/memory)"
                )
        calib: dict[str, Calibration] = {}
        for prec, c in (d.get("calibration") or {}).items():
            cw = f"{w}.calibration.{prec}"
            if prec not in PRECISIONS:
                raise DeviceTableError(f"{path}: field '{cw}': precision not in {PRECISIONS}")
            if not isinstance(c, Mapping):
                raise DeviceTableError(f"{path}: field '{cw}': expected a mapping")
            parsed = _parse_block(c, cw, path)
            if method == "cpu-scaled":
                _check_cpu_groups(parsed, cw, path)
            calib[prec] = Calibration(
                prec, parsed, bool(c.get("assumption", False)), str(c.get("note", ""))
            )
        if "fp32" not in calib:
            raise DeviceTableError(f"{path}: field '{w}.calibration.fp32': missing")
        devices[name] = Device(
            name=name,
            device_class=dc,
            method=method,
            derive_from=str(_req(d, "derive_from", w, path)),
            description=str(d.get("description", "")),
            figures=figures,
            calibration=calib,
        )
    return DeviceTable(hosts=hosts, devices=devices, path=path)


def load_device_table(path: str | Path = DEVICES_PATH) -> DeviceTable:
    """Read and validate ``devices.yaml``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeviceTableError(f"{p}: cannot read device table: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DeviceTableError(f"{p}: not valid YAML: {exc}") from exc
    table = parse_device_table(data, str(p))
    return DeviceTable(
        table.hosts, table.devices, table.path, hashlib.sha256(text.encode()).hexdigest()
    )


# --------------------------------------------------------------------------- entry costs


@dataclass(frozen=True)
class EntryCost:
    """What the derivation needs to know about one unit or exit head (per sample)."""

    name: str
    flops: float
    in_bytes: float
    out_bytes: float
    params_bytes: float
    work_items: float  # parallel work items (activation elements) for the GPU occupancy model
    n_ops: int = 0  # operator calls (GPU dispatch); 0 when unknown (CPU method ignores it)


def activation_bytes(profile: LayerProfile, precision: str) -> list[tuple[int, int]]:
    """``(in, out)`` bytes of every unit as stored between units at this precision.

    Unit 0 reads the float input tensor; int8 variants pass ``quint8`` tensors between units.
    """
    out: list[tuple[int, int]] = []
    prev = profile.input_tensor_bytes
    for u in profile.units:
        ob = u.output_bytes_int8 if precision == "int8" else u.output_bytes_fp32
        out.append((prev, ob))
        prev = ob
    return out


def entry_costs(
    profile: LayerProfile, precision: str, op_counts: Mapping[str, int] | None = None
) -> tuple[list[EntryCost], list[EntryCost]]:
    """Costs of the units and of the exit heads of a profile (exit outputs count 0 bytes)."""
    io = activation_bytes(profile, precision)
    elems_in = [profile.input_tensor_bytes / FP32_BYTES] + [
        u.output_bytes_fp32 / FP32_BYTES for u in profile.units
    ]

    def n_ops(name: str) -> int:
        if op_counts is None:
            return 0
        if name not in op_counts:
            raise DerivationError(
                f"{profile.path}: no operator count for entry {name!r} "
                f"(have: {', '.join(sorted(op_counts))})"
            )
        return int(op_counts[name])

    units = [
        EntryCost(u.name, u.flops, i, o, u.params_bytes,
                  max(elems_in[k], u.output_bytes_fp32 / FP32_BYTES), n_ops(u.name))
        for k, (u, (i, o)) in enumerate(zip(profile.units, io, strict=True))
    ]  # fmt: skip
    exits = [
        EntryCost(x.name, x.flops, io[x.after_unit][1], 0.0, x.params_bytes,
                  elems_in[x.after_unit + 1], n_ops(x.name))
        for x in profile.exits
    ]  # fmt: skip
    return units, exits


def main_path(profile: LayerProfile) -> list[CostEntry]:
    """The entries a request that takes the final exit runs: every unit, then the last exit."""
    return [*profile.units, profile.exits[-1]]


# --------------------------------------------------------------------------- ResNet-50 v1.5

RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)
RESNET50_EXPANSION = 4  # bottleneck output = 4 x width (He et al., CVPR 2016, Table 1)
RESNET50_STEM_CHANNELS = 64
RESNET50_STEM_KERNEL = 7
RESNET50_INPUT = (3, 224, 224)
RESNET50_CLASSES = 1000
BN_STATE_PER_CHANNEL = 4  # weight, bias, running mean, running var
STEM_OPS = 4  # conv, bn, relu, maxpool
BOTTLENECK_OPS = 10  # (conv, bn, relu) x 2, conv, bn, add, relu
DOWNSAMPLE_OPS = 2  # conv, bn of the projection shortcut
HEAD_OPS = 3  # avgpool, flatten, fc


def resnet50_v15_costs(elem_bytes: int = FP32_BYTES) -> list[EntryCost]:
    """ResNet-50 v1.5 as a chain of units (stem, 16 bottlenecks, head), built analytically.

    Architecture: He et al., "Deep residual learning for image recognition", CVPR 2016,
    Table 1 (50-layer); v1.5 puts the stride-2 in the 3x3 convolution of a downsampling block
    (NVIDIA DeepLearningExamples, resnet50v1.5 README). FLOPs count 2 per multiply-add of
    convolutions and the fully connected layer only, like ``torch.utils.flop_counter``.
    """
    c, h, w = RESNET50_INPUT
    k = RESNET50_STEM_KERNEL
    h1 = h // 2  # stride-2 stem conv
    stem_flops = 2.0 * c * k * k * RESNET50_STEM_CHANNELS * h1 * h1
    h2 = h1 // 2  # stride-2 max pool
    stem_params = (c * k * k + BN_STATE_PER_CHANNEL) * RESNET50_STEM_CHANNELS
    units = [
        EntryCost("stem", stem_flops, c * h * w * FP32_BYTES,
                  RESNET50_STEM_CHANNELS * h2 * h2 * elem_bytes, stem_params * elem_bytes,
                  max(c * h * w, RESNET50_STEM_CHANNELS * h1 * h1), STEM_OPS)
    ]  # fmt: skip
    c_in, hw = RESNET50_STEM_CHANNELS, h2
    for width, blocks, stride in RESNET50_STAGES:
        c_out = width * RESNET50_EXPANSION
        for i in range(blocks):
            s = stride if i == 0 else 1
            ho = hw // s
            ds = i == 0
            flops = 2.0 * (
                c_in * width * hw * hw + 9 * width * width * ho * ho + width * c_out * ho * ho
            )
            params = c_in * width + 9 * width * width + width * c_out
            params += BN_STATE_PER_CHANNEL * (2 * width + c_out)
            if ds:
                flops += 2.0 * c_in * c_out * ho * ho
                params += c_in * c_out + BN_STATE_PER_CHANNEL * c_out
            units.append(
                EntryCost(f"layer{len(units)}", flops, c_in * hw * hw * elem_bytes,
                          c_out * ho * ho * elem_bytes, params * elem_bytes,
                          max(c_in * hw * hw, c_out * ho * ho),
                          BOTTLENECK_OPS + (DOWNSAMPLE_OPS if ds else 0))
            )  # fmt: skip
            c_in, hw = c_out, ho
    units.append(
        EntryCost("head", 2.0 * c_in * RESNET50_CLASSES, c_in * hw * hw * elem_bytes,
                  RESNET50_CLASSES * elem_bytes, (c_in + 1) * RESNET50_CLASSES * elem_bytes,
                  c_in * hw * hw, HEAD_OPS)
    )  # fmt: skip
    return units


# --------------------------------------------------------------------------- GPU model


@dataclass(frozen=True)
class GpuParams:
    """Hardware figures and fitted constants of the GPU model for one (device, precision)."""

    peak_flops_per_s: float
    mem_bytes_per_s: float
    resident_threads: float  # sm_count * max_threads_per_sm
    t_op_ms: float  # fitted: per operator call (eager dispatch)
    eff: float  # fitted: achieved fraction of peak at full occupancy
    fit_mape_pct: float = float("nan")  # calibration error against the cited table

    def latency_ms(self, cost: EntryCost, batch_size: int) -> float:
        return float(gpu_latency_ms(cost, np.array([batch_size], float), self.peak_flops_per_s,
                                    self.mem_bytes_per_s, self.resident_threads,
                                    self.t_op_ms, self.eff)[0])  # fmt: skip


def gpu_latency_ms(
    cost: EntryCost,
    batch: Any,
    peak_flops_per_s: float,
    mem_bytes_per_s: float,
    resident_threads: float,
    t_op_ms: Any,
    eff: Any,
) -> Any:
    """Latency of one entry on a GPU [ms]; ``batch``, ``t_op_ms``, ``eff`` broadcast (numpy)."""
    b = np.asarray(batch, dtype=float)
    occ = np.minimum(1.0, b * max(cost.work_items, 1.0) / resident_threads)
    compute_s = b * cost.flops / (np.asarray(eff) * peak_flops_per_s * occ)
    memory_s = (cost.params_bytes + b * (cost.in_bytes + cost.out_bytes)) / mem_bytes_per_s
    exec_ms = MS_PER_S * np.maximum(compute_s, memory_s)
    return np.maximum(cost.n_ops * np.asarray(t_op_ms), exec_ms)


def _grid_fit(
    costs: Sequence[EntryCost],
    batches: Any,
    measured_ms: Any,
    peak: float,
    bw: float,
    threads: float,
) -> tuple[float, float, float]:
    """Least squares in log space over a (t_op, eff) grid, zooming in a few rounds."""
    lo_t, hi_t = np.log(T_OP_GRID_MS[0]), np.log(T_OP_GRID_MS[1])
    lo_e, hi_e = np.log(EFF_GRID[0]), np.log(EFF_GRID[1])
    y = np.log(np.asarray(measured_ms, dtype=float))
    b = np.asarray(batches, dtype=float)
    best = (math.nan, math.nan, math.inf)
    for _ in range(GRID_REFINE_ROUNDS + 1):
        t = np.exp(np.linspace(lo_t, hi_t, GRID_POINTS))[:, None, None]
        e = np.exp(np.linspace(lo_e, hi_e, GRID_POINTS))[None, :, None]
        total = sum(gpu_latency_ms(c, b[None, None, :], peak, bw, threads, t, e) for c in costs)
        loss = np.mean((np.log(total) - y) ** 2, axis=2)
        i, j = np.unravel_index(int(np.argmin(loss)), loss.shape)
        best = (float(t[i, 0, 0]), float(e[0, j, 0]), float(loss[i, j]))
        span = np.log(GRID_REFINE_SPAN)
        lo_t, hi_t = np.log(best[0]) - span, np.log(best[0]) + span
        lo_e = np.log(best[1]) - span
        hi_e = min(np.log(best[1]) + span, np.log(EFF_GRID[1]))
    return best


def calibrate_gpu(device: Device, precision: str) -> GpuParams:
    """Fit ``t_op`` and ``eff`` of a GPU device to its cited ResNet-50 latency-vs-batch table."""
    if device.method != "gpu-roofline":
        raise DerivationError(f"device {device.name!r} is not a GPU (method {device.method!r})")
    cal = device.calib(precision)
    ref = cal.data.get("reference")
    if ref != "resnet50_v1.5":
        raise DerivationError(
            f"device {device.name!r}: calibration.{precision}.reference must be 'resnet50_v1.5' "
            f"(the only reference network built in), got {ref!r}"
        )
    peak = device.figure(str(cal.data.get("peak"))).x
    bw = device.figure("mem_bytes_per_s").x
    threads = device.figure("sm_count").x * device.figure("max_threads_per_sm").x
    table = np.asarray(cal.figure("latency_ms_by_batch").value, dtype=float)
    elem = FP32_BYTES if precision == "fp32" else FP16_BYTES
    costs = resnet50_v15_costs(elem)
    t_op, eff, _ = _grid_fit(costs, table[:, 0], table[:, 1], peak, bw, threads)
    params = GpuParams(peak, bw, threads, t_op, eff)
    pred = np.array([sum(params.latency_ms(c, int(bb)) for c in costs) for bb in table[:, 0]])
    fit_mape = float(np.mean(np.abs(pred - table[:, 1]) / table[:, 1]) * 100)
    return GpuParams(peak, bw, threads, t_op, eff, fit_mape)


# --------------------------------------------------------------------------- CPU model


@dataclass(frozen=True)
class CpuGroup:
    """One calibrated compute factor of the ``cpu-scaled`` method (a set of layer types)."""

    name: str
    layer_types: tuple[str, ...] | None  # None: every layer type no other group claims
    factor: float  # S_c of these layer types
    reference: str  # "model/variant" whose batch-1 main path was matched
    target_ms: float
    cited_model: str
    source: str
    assumption: bool = False
    note: str = ""


@dataclass(frozen=True)
class CpuScaling:
    """Factors of the ``cpu-scaled`` method for one (device, precision)."""

    host: str
    host_flops_per_s: float
    host_bytes_per_s: float
    memory_factor: float  # S_m = host bandwidth / device bandwidth
    groups: tuple[CpuGroup, ...] = ()

    def group_of(self, layer_type: str) -> CpuGroup:
        for g in self.groups:
            if g.layer_types is not None and layer_type in g.layer_types:
                return g
        for g in self.groups:
            if g.layer_types is None:
                return g
        raise DerivationError(f"no compute-factor group covers layer type {layer_type!r}")

    def shares(self, cost: EntryCost, batch_size: int) -> tuple[float, float]:
        """``(w_c, w_m)``: compute and memory shares of the host time (host roofline)."""
        t_c = batch_size * cost.flops / self.host_flops_per_s
        moved = cost.params_bytes + batch_size * (cost.in_bytes + cost.out_bytes)
        t_m = moved / self.host_bytes_per_s
        total = t_c + t_m
        if total <= 0:
            return 1.0, 0.0  # no work at all: treat as compute (dispatch) overhead
        return t_c / total, t_m / total

    def factor(self, cost: EntryCost, layer_type: str, batch_size: int) -> float:
        w_c, w_m = self.shares(cost, batch_size)
        return w_c * self.group_of(layer_type).factor + w_m * self.memory_factor


def _listed(layer_types: Any) -> list[str]:
    return [] if layer_types == "default" else [str(t) for t in layer_types]


def calibrate_cpu(
    device: Device,
    host: Host,
    precision: str,
    profiles: Mapping[tuple[str, str], LayerProfile],
) -> CpuScaling:
    """Solve the compute factors so each group's reference main path hits its cited time.

    Groups are solved in the order of ``devices.yaml``; a group's reference model may contain
    layer types of groups solved before it (their factors are then known), never of later ones
    (that would be an error: its factor is still unknown).

    Args:
        device: a ``cpu-scaled`` device.
        host: the measured source host (its matmul FLOP/s and copy bandwidth).
        precision: ``fp32`` or ``int8``.
        profiles: measured host profiles keyed by ``(model, variant)``; must contain every
            group's reference.
    """
    cal = device.calib(precision)
    raw_groups = cal.data.get("groups")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise DeviceTableError(
            f"device {device.name!r}: calibration.{precision}.groups must be a non-empty list"
        )
    s_m = host.copy_bytes_per_s.x / device.figure("stream_bytes_per_s").x
    solved: list[CpuGroup] = []
    for g in raw_groups:
        key = (str(g["reference_model"]), str(g["reference_variant"]))
        ref = profiles.get(key)
        if ref is None:
            raise DerivationError(
                f"device {device.name!r}: {precision} group {g['name']!r} calibrates on the "
                f"measured {host.name} profile of {key[0]}/{key[1]}, which was not given "
                f"(measure it: edgerl profile --model {key[0]} --variant {key[1]} "
                f"--hardware {host.name} --out DIR)"
            )
        if ref.hardware.name != host.name or ref.hardware.derived:
            raise DerivationError(
                f"calibration profile {ref.path} is not a measured profile of {host.name!r}"
            )
        if 1 not in ref.batch_sizes:
            raise DerivationError(f"{ref.path}: calibration needs batch size 1")
        b1 = ref.batch_sizes.index(1)
        lt = g["layer_types"]
        layer_types = None if lt == "default" else tuple(str(x) for x in lt)
        units, exits = entry_costs(ref, precision)
        costs = [*units, exits[-1]]
        cited_flops, cited_ms = g["cited_flops"].x, g["latency_ms"].x
        target = cited_ms * sum(c.flops for c in costs) / cited_flops
        this = CpuGroup(str(g["name"]), layer_types, math.nan, f"{key[0]}/{key[1]}", target,
                        str(g.get("cited_model", "")), g["latency_ms"].source,
                        bool(g.get("assumption", False)), str(g.get("note", "")))  # fmt: skip
        probe = CpuScaling(host.name, host.matmul_flops_per_s.x, host.copy_bytes_per_s.x, s_m,
                           (*solved, this))  # fmt: skip
        later = {t for x in raw_groups[len(solved) + 1 :] for t in _listed(x["layer_types"])}
        clash = sorted({e.layer_type for e in main_path(ref)} & later)
        if clash:
            raise DerivationError(
                f"device {device.name!r}: {precision} group {this.name!r} calibrates on "
                f"{this.reference}, which has layer types {clash} of a group solved later"
            )
        known = unknown = 0.0
        for c, e in zip(costs, main_path(ref), strict=True):
            w_c, w_m = probe.shares(c, 1)
            lat = e.latency_ms_median[b1]
            known += lat * w_m * s_m
            grp = probe.group_of(e.layer_type)
            if grp is this:
                unknown += lat * w_c
            else:
                known += lat * w_c * grp.factor
        factor = (target - known) / unknown if unknown > 0 else math.nan
        if not (math.isfinite(factor) and factor > 0):
            raise DerivationError(
                f"device {device.name!r}: cannot calibrate {precision} group {this.name!r}: "
                f"the rest of {this.reference} alone ({known:.1f} ms) reaches the target "
                f"{target:.1f} ms, or the reference has no {this.name!r} layers"
            )
        solved.append(dataclasses.replace(this, factor=factor))
    return CpuScaling(host.name, host.matmul_flops_per_s.x, host.copy_bytes_per_s.x, s_m,
                      tuple(solved))  # fmt: skip


# --------------------------------------------------------------------------- derivation


def _precision(profile: LayerProfile) -> str:
    prec = profile.variant_info.get("precision")
    if prec not in PRECISIONS:
        raise DerivationError(
            f"{profile.path}: field 'variant_info.precision' must be one of {PRECISIONS}, "
            f"got {prec!r}"
        )
    return str(prec)


def _power_block(device: Device) -> dict[str, Any]:
    a, i, m = (device.figure(k) for k in ("active_power_w", "idle_power_w", "memory_bytes"))
    return {
        "active_power_w": a.x,
        "idle_power_w": i.x,
        "power_source": f"active: {a.source}; idle: {i.source}",
        "memory_bytes": int(m.x),
        "memory_source": m.source,
    }


def derive_profile(
    source: LayerProfile,
    device: Device,
    table: DeviceTable,
    *,
    op_counts: Mapping[str, int] | None = None,
    calibration_profiles: Mapping[tuple[str, str], LayerProfile] | None = None,
    command: str = "",
) -> LayerProfile:
    """Derive the profile of ``source``'s (model, variant) on ``device``.

    Args:
        source: a measured profile (``hardware.derived`` false) of the host the device derives
            from.
        device: the device class (from :func:`load_device_table`).
        table: the device table (for the host's measured figures and the file hash).
        op_counts: operator calls per unit/exit name; required by the ``gpu-roofline`` method.
        calibration_profiles: measured host profiles keyed by ``(model, variant)`` holding the
            device's calibration references; required by the ``cpu-scaled`` method.
        command: the command line recorded in the provenance.

    Raises:
        DerivationError: wrong source hardware, a derived source, missing inputs.
    """
    if source.hardware.derived:
        raise DerivationError(f"{source.path}: is itself derived; derive from a measured profile")
    prec = _precision(source)
    units, exits = entry_costs(source, prec, op_counts if device.method == "gpu-roofline" else None)
    details: dict[str, Any]
    if device.method == "cpu-scaled":
        if calibration_profiles is None:
            raise DerivationError(f"device {device.name!r} (cpu-scaled) needs calibration profiles")
        host = table.host(source.hardware.name)
        scaling = calibrate_cpu(device, host, prec, calibration_profiles)

        def lat(c: EntryCost, e: CostEntry, b: int, k: int) -> float:
            return e.latency_ms_median[k] * scaling.factor(c, e.layer_type, b)

        details = {
            "method": "cpu-scaled",
            "memory_factor": scaling.memory_factor,
            "compute_factors": {g.name: g.factor for g in scaling.groups},
            "host_matmul_flops_per_s": scaling.host_flops_per_s,
            "host_copy_bytes_per_s": scaling.host_bytes_per_s,
            "calibration": [
                {"group": g.name, "layer_types": list(g.layer_types or ["(all others)"]),
                 "reference": g.reference, "target_ms_batch1": g.target_ms,
                 "cited_model": g.cited_model, "assumption": g.assumption}
                for g in scaling.groups
            ],
        }  # fmt: skip
        groups_text = "; ".join(
            f"{g.name} layers ({', '.join(g.layer_types) if g.layer_types else 'all others'}) "
            f"x {g.factor:.3g}, solved so that {g.reference} (all units + final exit, batch 1) "
            f"takes {g.target_ms:.1f} ms = the cited time of {g.cited_model} x FLOP ratio "
            f"[{g.source}]" + (f" ASSUMPTION: {g.note}" if g.assumption else "")
            for g in scaling.groups
        )
        text = (
            f"DERIVED (not measured) from the measured {source.hardware.name} profile by "
            f"edgerl.profiles.derive, method cpu-scaled: each host latency is split by the host "
            f"roofline (measured torch matmul {scaling.host_flops_per_s / 1e9:.1f} GFLOP/s, copy "
            f"{scaling.host_bytes_per_s / 1e9:.1f} GB/s) into compute and memory shares; the "
            f"memory share is scaled by {scaling.memory_factor:.3g} (host copy bandwidth / "
            f"device STREAM [{device.figure('stream_bytes_per_s').source}]), the compute share "
            f"by a calibrated factor per layer-type group: {groups_text}. Batch behaviour, "
            f"p95/median ratio and run counts are the host's. Device: {device.description}."
        )
    else:
        gp = calibrate_gpu(device, prec)
        cal = device.calib(prec)

        def lat(c: EntryCost, e: CostEntry, b: int, k: int) -> float:
            return gp.latency_ms(c, b)

        details = {
            "method": "gpu-roofline",
            "t_op_ms": gp.t_op_ms,
            "compute_efficiency": gp.eff,
            "peak_flops_per_s": gp.peak_flops_per_s,
            "mem_bytes_per_s": gp.mem_bytes_per_s,
            "resident_threads": gp.resident_threads,
            "calibration_mape_pct": gp.fit_mape_pct,
            "calibration_assumption": cal.assumption,
            "operator_calls": {c.name: c.n_ops for c in [*units, *exits]},
        }
        text = (
            f"DERIVED (not measured) by edgerl.profiles.derive, method gpu-roofline, from the "
            f"FLOPs, bytes and operator counts of the measured {source.hardware.name} profile "
            f"(host latencies are not used): latency = max(n_ops x t_op, max(b x FLOPs / "
            f"(eff x peak x occupancy), bytes / bandwidth)), peak "
            f"{gp.peak_flops_per_s / 1e12:.3g} TFLOP/s "
            f"({device.figure(str(cal.data.get('peak'))).source}), bandwidth "
            f"{gp.mem_bytes_per_s / 1e9:.0f} GB/s ({device.figure('mem_bytes_per_s').source}), "
            f"occupancy over {gp.resident_threads:.0f} resident threads; t_op = "
            f"{gp.t_op_ms * 1e3:.1f} us and eff = {gp.eff:.3f} fitted (MAPE "
            f"{gp.fit_mape_pct:.1f} %) to ResNet-50 v1.5 latency vs batch "
            f"({cal.figure('latency_ms_by_batch').source})."
            + (f" {cal.note}" if cal.assumption else "")
            + f" p95/median ratio and run counts are the host's. Device: {device.description}."
        )

    data = source.to_dict()
    for entries, costs, key in ((source.units, units, "units"), (source.exits, exits, "exits")):
        for raw, e, c in zip(data[key], entries, costs, strict=True):
            med = [lat(c, e, b, k) for k, b in enumerate(source.batch_sizes)]
            ratio = [p / m for p, m in zip(e.latency_ms_p95, e.latency_ms_median, strict=True)]
            raw["latency_ms_median"] = med
            raw["latency_ms_p95"] = [m * r for m, r in zip(med, ratio, strict=True)]
    data["hardware"] = {
        "name": device.name,
        "device_class": device.device_class,
        "derived": True,
        "source": text,
        "derived_from": source.hardware.name,
        "description": device.description,
        **_power_block(device),
        "derivation": details,
    }
    data["provenance"] = {
        "derived_with": command or "edgerl.profiles.derive.derive_profile",
        "date": date.today().isoformat(),
        "devices_table": Path(table.path).name,
        "devices_table_sha256": table.sha256,
        "source_profile": f"{source.model}/{source.variant}/{source.hardware.name}.json",
        "source_provenance": dict(source.provenance),
    }
    try:
        return profile_from_dict(json.loads(json.dumps(data)), f"<derived {device.name}>")
    except ProfileError as exc:  # a bug here, not bad input: say so
        raise DerivationError(f"derived profile failed validation: {exc}") from exc


def main_path_latency_ms(profile: LayerProfile, batch_size: int = 1) -> float:
    """Latency of a request that runs the whole model to its final exit [ms]."""
    return sum(profile.latency_ms(e, batch_size) for e in main_path(profile))


# --------------------------------------------------------------------------- a user's devices


def load_user_device_table(path: str | Path, base: str | Path = DEVICES_PATH) -> DeviceTable:
    """A user's device table, with the hosts of the shipped table added.

    The user's file lists their own device classes (``devices``) and may define ``hosts`` (the
    measured machines a derivation starts from); hosts it does not define are taken from
    ``base`` (the shipped ``devices.yaml``), so a file with one ``devices`` entry is enough to
    derive from this project's measured hosts. Only the user's devices are in the result.
    """
    user = load_device_table(path)
    shipped = load_device_table(base)
    return DeviceTable(
        hosts={**shipped.hosts, **user.hosts},
        devices=user.devices,
        path=user.path,
        sha256=user.sha256,
    )


def profile_operator_calls(profile: LayerProfile) -> dict[str, int] | None:
    """Operator calls per entry recorded in the profile (user models), or ``None``.

    Profiles of models outside the zoo record ``operator_calls`` per unit and exit head
    (``edgerl profile --model module:factory``); the ``gpu-roofline`` method needs them and
    cannot rebuild such a model from the zoo.
    """
    entries: list[CostEntry] = [*profile.units, *profile.exits]
    if not all(e.operator_calls is not None for e in entries):
        return None
    return {e.name: int(e.operator_calls or 0) for e in entries}


_TEMPLATE_HEAD = """\
# A device-table entry for `edgerl derive --devices THIS_FILE --to {name} --data-dir DIR`.
# Replace every `value: null` with your device's figure and every `source` with where it comes
# from (datasheet, paper or benchmark page, and its date); the loader rejects a null or an
# empty source. Mark a figure that is a modelling choice rather than a measurement or a
# datasheet number with `assumption: true`. Write numbers with an explicit exponent sign
# (8.1e+12): YAML reads 8.1e12 as a string. Hosts (the measured machines a derivation starts
# from, `derive_from`) come from the shipped profiles/devices.yaml unless this file defines
# `hosts:` too (`edgerl derive --measure-host --threads N` measures yours).
schema_version: 1
kind: edgerl.device_classes
devices:
  {name}:
"""

_TEMPLATE_GPU = """\
    # Method gpu-roofline (edgerl.profiles.derive): per unit at batch b,
    #   latency = max(n_ops x t_op, max(b x FLOPs / (eff x peak x occupancy), bytes / bandwidth))
    # with t_op and eff fitted to the ResNet-50 v1.5 latency-vs-batch table below. Only the
    # FLOPs, bytes and operator counts of the source profiles are used, not their latencies.
    device_class: edge  # device, edge or cloud
    method: gpu-roofline
    derive_from: cpu-epyc-2t  # any measured hardware with profiles of your model (--from)
    description: "TODO: the device, its software stack"
    peak_fp32_flops_per_s: {value: null, unit: FLOP/s, source: "TODO: datasheet"}
    mem_bytes_per_s: {value: null, unit: B/s, source: "TODO: datasheet"}
    memory_bytes: {value: null, unit: B, source: "TODO: datasheet"}
    sm_count: {value: null, unit: SMs, source: "TODO: datasheet / whitepaper"}
    max_threads_per_sm: {value: null, unit: threads, source: "TODO: CUDA programming guide"}
    active_power_w: {value: null, unit: W, source: "TODO: datasheet or measurement"}
    idle_power_w: {value: null, unit: W, source: "TODO: datasheet or measurement"}
    calibration:
      fp32:
        reference: resnet50_v1.5  # the only reference network built in
        peak: peak_fp32_flops_per_s
        latency_ms_by_batch:
          value: null  # [[batch size, ms], ...], e.g. [[1, 10.7], [8, 22.4], [64, 152.7]]
          unit: "[batch size, ms]"
          source: "TODO: a published ResNet-50 v1.5 inference latency table of this device"
"""

_TEMPLATE_CPU = """\
    # Method cpu-scaled (edgerl.profiles.derive): each measured host latency is split into a
    # compute and a memory share (host roofline); the memory share scales with host copy
    # bandwidth / stream_bytes_per_s, the compute share by one factor per group of layer types,
    # solved so that the group's reference model (measured on the host) takes the cited time x
    # (its FLOPs / cited_flops). Groups are solved in order; exactly one is `default`.
    device_class: device  # device, edge or cloud
    method: cpu-scaled
    derive_from: cpu-epyc-1t  # a host with figures under `hosts` and profiles of your model
    description: "TODO: the device, its software stack, threads"
    stream_bytes_per_s: {value: null, unit: B/s, source: "TODO: STREAM benchmark of the device"}
    memory_bytes: {value: null, unit: B, source: "TODO: datasheet"}
    active_power_w: {value: null, unit: W, source: "TODO: datasheet or measurement"}
    idle_power_w: {value: null, unit: W, source: "TODO: datasheet or measurement"}
    calibration:
      fp32:
        groups:
          - name: dense
            layer_types: default
            reference_model: resnet18_me  # measured on the host (shipped for cpu-epyc-1t)
            reference_variant: fp32
            cited_model: "TODO: the network your cited latency is for"
            cited_flops: {value: null, unit: FLOP, source: "TODO: its FLOPs (2 per MAC)"}
            latency_ms: {value: null, unit: ms, source: "TODO: its batch-1 latency on the device"}
          - name: depthwise
            layer_types: [depthwise]
            reference_model: mobilenetv2_me
            reference_variant: fp32
            cited_model: "TODO: a depthwise-separable network"
            cited_flops: {value: null, unit: FLOP, source: "TODO"}
            latency_ms: {value: null, unit: ms, source: "TODO"}
"""


def device_template_yaml(method: str, name: str) -> str:
    """A commented device-table entry for ``method`` to fill with a device's figures."""
    if method not in METHODS:
        raise DeviceTableError(f"unknown method {method!r}; choose one of {METHODS}")
    body = _TEMPLATE_GPU if method == "gpu-roofline" else _TEMPLATE_CPU
    return _TEMPLATE_HEAD.format(name=name) + body
