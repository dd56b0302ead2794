"""Measure a zoo model unit by unit and write a schema-v1 layer profile.

For every partitionable unit and every exit head of a :class:`~edgerl.profiles.zoo.MultiExitNet`
the profiler records (see ``schema.py`` for the file layout):

* **latency** at each batch size with ``torch.utils.benchmark.Timer``: ``warmup_runs`` explicit
  calls first, then ``blocked_autorange(min_run_time)``; if that gave fewer than ``min_runs``
  timed runs, more runs of the same block size are added with ``Timer.timeit``. A *run* times
  ``calls_per_run`` consecutive calls (the block size Timer picks so that timer overhead stays
  below 0.1 %); its per-call time is run time / calls_per_run. ``latency_ms_median`` and
  ``latency_ms_p95`` are the median and 95th percentile (numpy, linear interpolation) of those
  per-call times, ``runs`` is how many runs they come from. Timer synchronises CUDA itself.
  With ``rounds > 1`` the whole sweep (every batch size, unit and exit) is repeated and, for
  each (entry, batch size), the round with the lowest median is kept: on a host shared with
  other jobs this discards rounds disturbed by them (all round medians are stored in
  ``round_medians_ms``).
  Each unit is fed the *real* output of the preceding units for a batch of seeded uniform
  random images (digits: the trained networks; CIFAR-10 families: the trained networks rebuilt
  from their shipped weights; ImageNet families: random-weight networks).
* **output bytes**: ``numel x element_size`` of the unit's real output tensor for one sample
  (``output_dtype`` says which it was: ``float32`` for fp32 variants, ``quint8`` between the
  units of an int8 variant); ``output_bytes_fp32`` / ``output_bytes_int8`` are the transmission
  sizes of that tensor at 4 and 1 byte per element.
* **parameter bytes**: ``numel x element_size`` of every tensor in the module's ``state_dict``
  (weights, biases, BatchNorm statistics; for int8 modules the packed ``qint8`` weights, their
  float biases and quantization scales, as unpacked by ``state_dict``).
* **FLOPs** per sample: ``torch.utils.flop_counter.FlopCounterMode`` on the float module for a
  batch of one (int8 variants: the float network they were quantized from). One
  multiply-add counts 2; only matmul/convolution-like ops are counted (torch's convention).
* **peak activation bytes** (batch of one): on CPU, ``torch.profiler`` with
  ``profile_memory=True`` records every allocation and free of the unit's forward; replaying
  them in time order gives the live-bytes curve, and the peak of that curve plus the input
  tensor's bytes is reported (buffers an op allocates and frees inside itself are not seen).
  On CUDA, ``torch.cuda.max_memory_allocated`` above the pre-call level plus the input.

The profiler never imports anything from ``envs``/``agents``; it is also usable on a Raspberry
Pi or a Jetson: ``edgerl profile --model NAME --hardware my-device --out DIR``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgerl.profiles import zoo
from edgerl.profiles.schema import PROFILE_KIND, SCHEMA_VERSION, profile_from_dict
from torch import Tensor, nn

DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16)
DEFAULT_MIN_RUN_TIME_S = 0.2  # torch.utils.benchmark's own blocked_autorange default
DEFAULT_WARMUP_RUNS = 3
DEFAULT_MIN_RUNS = 5  # fewest timed runs behind a median/p95
P95 = 95.0  # percentile reported as latency_ms_p95
MS_PER_S = 1e3
FP32_BYTES = 4  # bytes per element of a float32 tensor
INT8_BYTES = 1  # bytes per element of an 8-bit quantized tensor
RAW_PIXEL_BYTES = 1  # an uncompressed 8-bit image sample per channel
EXIT_LAYER_TYPE = "head"


@dataclass(frozen=True)
class ProfileSettings:
    """How to measure.

    Attributes:
        batch_sizes: Strictly increasing batch sizes to time.
        threads: Size of torch's intra-op thread pool during timing.
        min_run_time_s: ``blocked_autorange`` minimum measurement time per (entry, batch) [s].
        warmup_runs: Explicit untimed calls before each measurement.
        min_runs: Fewest timed runs per (entry, batch) and round.
        rounds: Measurement sweeps; per (entry, batch) the least-disturbed one is kept.
        seed: Seeds the random weights (ImageNet families), the input images and digits training.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available; int8 always runs on CPU).
    """

    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    threads: int = 1
    min_run_time_s: float = DEFAULT_MIN_RUN_TIME_S
    warmup_runs: int = DEFAULT_WARMUP_RUNS
    min_runs: int = DEFAULT_MIN_RUNS
    rounds: int = 1
    seed: int = zoo.DEFAULT_SEED
    device: str | None = None

    def __post_init__(self) -> None:
        bs = list(self.batch_sizes)
        if not bs or bs != sorted(set(bs)) or bs[0] < 1:
            raise ValueError(f"batch_sizes must be strictly increasing positive integers, got {bs}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.min_run_time_s <= 0:
            raise ValueError(f"min_run_time_s must be > 0, got {self.min_run_time_s}")
        if self.warmup_runs < 0 or self.min_runs < 1 or self.rounds < 1:
            raise ValueError(
                f"warmup_runs must be >= 0, min_runs and rounds >= 1, "
                f"got {self.warmup_runs}, {self.min_runs}, {self.rounds}"
            )
        if self.device not in (None, "cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or None, got {self.device!r}")


@dataclass
class Timing:
    """Latency statistics of one module at one batch size."""

    median_ms: float
    p95_ms: float
    runs: int
    calls_per_run: int


@dataclass
class EntryCost:
    """Everything measured for one unit or exit head (schema field names)."""

    name: str
    layer_type: str
    flops: float
    params_bytes: int
    peak_activation_bytes: int
    timings: list[Timing] = field(default_factory=list)
    round_medians_ms: list[list[float]] = field(default_factory=list)
    output_shape: tuple[int, ...] = ()
    output_dtype: str = ""
    output_bytes_real: int = 0
    layers: tuple[str, ...] = ()  # the model's modules inside (user models; schema optional)
    operator_calls: int | None = None  # torch.fx call nodes (user models; schema optional)

    def cost_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layer_type": self.layer_type,
            "flops": self.flops,
            "params_bytes": self.params_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "latency_ms_median": [t.median_ms for t in self.timings],
            "latency_ms_p95": [t.p95_ms for t in self.timings],
            "runs": [t.runs for t in self.timings],
            "calls_per_run": [t.calls_per_run for t in self.timings],
            "round_medians_ms": self.round_medians_ms,
        }
        if self.layers:
            out["layers"] = list(self.layers)
        if self.operator_calls is not None:
            out["operator_calls"] = self.operator_calls
        return out

    def add_round(self, batch_index: int, timing: Timing) -> None:
        """Record one round's timing at ``batch_index``; keep the lowest-median round."""
        if batch_index == len(self.timings):
            self.timings.append(timing)
            self.round_medians_ms.append([timing.median_ms])
            return
        self.round_medians_ms[batch_index].append(timing.median_ms)
        if timing.median_ms < self.timings[batch_index].median_ms:
            self.timings[batch_index] = timing


# ----------------------------------------------------------------------------- primitives


def tensor_bytes(t: Tensor) -> int:
    """Bytes of ``t``'s elements: ``numel x element_size`` (1 for quint8/qint8)."""
    return t.numel() * t.element_size()


def _walk_tensors(obj: Any) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for o in obj:
            yield from _walk_tensors(o)


def _unpack(obj: torch.ScriptObject) -> Any:
    """The tensors inside a packed quantized-weight object (conv or linear)."""
    if "unpack" in obj._method_names():  # type: ignore[attr-defined]
        return obj.unpack()  # type: ignore[attr-defined]
    return torch.ops.quantized.linear_unpack(obj)


def params_bytes(module: nn.Module) -> int:
    """Bytes of every tensor in ``module.state_dict()`` (packed int8 params are unpacked).

    Quantized modules (``nnq.Conv2d``, ``nnq.Linear``) put their packed weights in the
    ``state_dict`` already; packed weights that FX stores as plain attributes of a graph module
    (``_packed_weight_N`` of a functional op, absent from the ``state_dict``) are unpacked and
    counted here.
    """
    total = sum(tensor_bytes(t) for v in module.state_dict().values() for t in _walk_tensors(v))
    for sub in module.modules():
        if not isinstance(sub, torch.fx.GraphModule):
            continue
        for value in vars(sub).values():
            if isinstance(value, torch.ScriptObject):
                total += sum(tensor_bytes(t) for t in _walk_tensors(_unpack(value)))
    return total


def count_flops(module: nn.Module, x: Tensor) -> float:
    """FLOPs of ``module(x)`` counted by ``torch.utils.flop_counter`` (2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return float(counter.get_total_flops())


@contextmanager
def _silence_stderr_fd() -> Iterator[None]:
    """Redirect file descriptor 2 to /dev/null (kineto prints start/stop lines from C++)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_activation_bytes(module: nn.Module, x: Tensor) -> int:
    """Peak live activation bytes while ``module(x)`` runs, input included (see module doc)."""
    if x.is_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        with torch.no_grad():
            module(x)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated(x.device) - base) + tensor_bytes(x)
    from torch.profiler import ProfilerActivity, profile

    with (
        _silence_stderr_fd(),
        torch.no_grad(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        module(x)
    deltas = sorted(
        (e.time_range.start, e.self_cpu_memory_usage)
        for e in prof.events()
        if e.self_cpu_memory_usage != 0
    )
    live = peak = 0
    for _, delta in deltas:
        live += delta
        peak = max(peak, live)
    return peak + tensor_bytes(x)


def time_module(
    module: nn.Module, x: Tensor, *, threads: int, min_run_time_s: float, warmup_runs: int,
    min_runs: int,
) -> Timing:  # fmt: skip
    """Latency of ``module(x)`` with ``torch.utils.benchmark.Timer`` (see module doc)."""
    from torch.utils.benchmark import Timer

    with torch.no_grad():
        for _ in range(warmup_runs):
            module(x)
        timer = Timer(stmt="module(x)", globals={"module": module, "x": x}, num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_run_time_s)
        per_call_s = list(m.times)
        while len(per_call_s) < min_runs:
            per_call_s.extend(timer.timeit(number=m.number_per_run).times)
    arr = np.asarray(per_call_s) * MS_PER_S
    return Timing(
        median_ms=float(np.median(arr)),
        p95_ms=float(np.percentile(arr, P95)),
        runs=len(arr),
        calls_per_run=int(m.number_per_run),
    )


# ----------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _load_avg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def hardware_info(name: str, threads: int, device: torch.device) -> dict[str, Any]:
    """The ``hardware`` block of a measured profile (load averages are filled in later)."""
    info: dict[str, Any] = {
        "name": name,
        "device_class": "host-gpu" if device.type == "cuda" else "host-cpu",
        "derived": False,
        "source": "measured on this machine with `edgerl profile` (torch.utils.benchmark.Timer)",
        "cpu_model": _cpu_model(),
        "cores": _physical_cores(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu_model"] = torch.cuda.get_device_name(device)
    return info


def provenance(command: str, seed: int) -> dict[str, Any]:
    """The ``provenance`` block: software versions, date, git commit, command."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return {
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": commit or "unknown",
        "git_dirty": None if status is None else bool(status),
        "command": command,
        "seed": seed,
        "quantized_engine": torch.backends.quantized.engine,
    }


# ----------------------------------------------------------------------------- profiling


AccuracyTable = Sequence[tuple[float | None, str]]


def measure_network(
    net: zoo.MultiExitNet,
    *,
    float_net: zoo.MultiExitNet,
    settings: ProfileSettings,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[EntryCost], list[EntryCost]]:
    """Measure every unit and exit head of ``net``.

    Args:
        net: The network to time (fp32 or int8).
        float_net: Its float architecture twin, used only for FLOPs (may be ``net`` itself).
        settings: Batch sizes, threads, timing budget, seed.
        device: Where to run (int8 networks must be on CPU).
        progress: Called with a short status line after each batch size.

    Returns:
        ``(units, exits)`` costs in network order.
    """
    if len(float_net.units) != len(net.units) or float_net.exit_after != net.exit_after:
        raise ValueError(f"{net.model_name}: float_net does not match the network's structure")
    gen = torch.Generator().manual_seed(settings.seed)
    heads = dict(zip(net.exit_after, range(len(net.exits)), strict=True))

    # Per-sample static costs from a batch of one.
    x1 = zoo.random_images(net.input_shape, 1, gen).to(device)
    units: list[EntryCost] = []
    exits: list[EntryCost] = [EntryCost("", EXIT_LAYER_TYPE, 0.0, 0, 0) for _ in net.exits]
    with torch.no_grad(), zoo.quiet_quantization_warnings():
        h, hf = x1, x1
        for i, unit in enumerate(net.units):
            out = unit(h)
            units.append(
                EntryCost(
                    name=net.unit_names[i],
                    layer_type=net.unit_layer_types[i],
                    flops=count_flops(float_net.units[i], hf),
                    params_bytes=params_bytes(unit),
                    peak_activation_bytes=peak_activation_bytes(unit, h),
                    output_shape=tuple(out.shape[1:]),
                    output_dtype=str(out.dtype).removeprefix("torch."),
                    output_bytes_real=tensor_bytes(out[0:1]),
                )
            )
            hf = float_net.units[i](hf)
            if i in heads:
                e = heads[i]
                exits[e] = EntryCost(
                    name=net.exit_names[e],
                    layer_type=EXIT_LAYER_TYPE,
                    flops=count_flops(float_net.exits[e], hf),
                    params_bytes=params_bytes(net.exits[e]),
                    peak_activation_bytes=peak_activation_bytes(net.exits[e], out),
                )
            h = out

        # Latency per batch size; each unit gets the real output of the units before it.
        inputs = [
            zoo.random_images(net.input_shape, b, gen).to(device) for b in settings.batch_sizes
        ]
        for r in range(settings.rounds):
            for k, x in enumerate(inputs):
                h = x
                for i, unit in enumerate(net.units):
                    units[i].add_round(k, _time(unit, h, settings))
                    h = unit(h)
                    if i in heads:
                        exits[heads[i]].add_round(k, _time(net.exits[heads[i]], h, settings))
                if progress is not None:
                    total = sum(u.round_medians_ms[k][-1] for u in units)
                    total += exits[-1].round_medians_ms[k][-1]
                    progress(
                        f"round {r + 1}/{settings.rounds} batch {settings.batch_sizes[k]}: "
                        f"units + final exit {total:.3f} ms"
                    )
    return units, exits


def _time(module: nn.Module, x: Tensor, s: ProfileSettings) -> Timing:
    return time_module(
        module, x, threads=s.threads, min_run_time_s=s.min_run_time_s,
        warmup_runs=s.warmup_runs, min_runs=s.min_runs,
    )  # fmt: skip


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(settings: ProfileSettings, precision: str) -> torch.device:
    """CUDA when asked for or available, except for int8 (the quantized kernels are CPU-only)."""
    want = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if precision == "int8":
        return torch.device("cpu")
    return torch.device(want)


def networks(
    model: str, variant: str, seed: int, digits_result: Any | None = None
) -> tuple[zoo.MultiExitNet, zoo.MultiExitNet]:
    """``(net, float_net)`` to profile: trained (digits, CIFAR-10) or seeded random networks."""
    spec = zoo.get_spec(model)
    vspec = spec.variant(variant)
    if spec.shipped_weights:
        from edgerl.profiles import cifar

        net = cifar.load_trained(model, variant)
        float_net = cifar.load_trained(model, "fp32") if vspec.precision == "int8" else net
        return net, float_net
    if spec.measured_accuracy:
        if digits_result is None:
            raise ValueError(f"{model}: profiling needs the trained networks (digits_result)")
        net = digits_result.nets[variant]
        float_net = digits_result.nets["fp32"] if vspec.precision == "int8" else net
        return net, float_net
    net = zoo.build(model, variant, seed=seed)
    float_net = zoo.build_float(model, variant, seed=seed) if vspec.precision == "int8" else net
    return net, float_net


def exit_accuracies(
    model: str, variant: str, *, digits_result: Any | None = None, command: str = ""
) -> list[tuple[float | None, str]]:
    """``(accuracy, accuracy_source)`` per exit: measured (digits, CIFAR-10) or cited / unknown."""
    spec = zoo.get_spec(model)
    vspec = spec.variant(variant)
    if spec.shipped_weights:
        return cifar_exit_accuracies(model, variant)
    if spec.measured_accuracy:
        if digits_result is None:
            raise ValueError(f"{model}: accuracy is measured; pass digits_result")
        src = digits_result.accuracy_source(variant, command)
        return [(a, src) for a in digits_result.accuracy[variant]]
    early = [(None, zoo.UNKNOWN_ACCURACY)] * (len(spec.exit_after) - 1)
    return [*early, (vspec.final_accuracy, vspec.final_accuracy_source)]


def cifar_exit_accuracies(model: str, variant: str) -> list[tuple[float | None, str]]:
    """Per-exit top-1 of a CIFAR-10 family from its shipped accuracy table, with the source."""
    from edgerl.profiles.accuracy import load_accuracy_table

    table = load_accuracy_table(model)
    prov = table.metadata["provenance"]
    src = (
        f"measured: top-1 of this exit on the {table.n_inputs:,} CIFAR-10 test images (JPEG "
        f"copy: a lossy re-encoding, so it may differ slightly from the original set); per-input "
        f"answers in profiles/data/{model}/accuracy.npz (edgerl.profiles.accuracy), seed "
        f"{prov.get('seed')}, trained by `{prov.get('command')}`"
    )
    return [(table.top1(variant, e), src) for e in range(len(table.exit_names))]


def build_profile_dict(
    net: zoo.MultiExitNet,
    units: Sequence[EntryCost],
    exits: Sequence[EntryCost],
    accuracies: AccuracyTable,
    *,
    settings: ProfileSettings,
    hardware: Mapping[str, Any],
    provenance_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble a schema-v1 profile dict of a zoo network (validated by profile_from_dict)."""
    spec = zoo.get_spec(net.model_name)
    vspec = spec.variant(net.variant)
    weights = (
        "trained (see exits[].accuracy_source)"
        if spec.measured_accuracy
        else f"random, seed {settings.seed} (architecture-only: for cost profiling)"
    )
    variant_info = {
        "precision": vspec.precision,
        "input_resolution": vspec.input_resolution,
        "width_multiplier": vspec.width_multiplier,
        "description": vspec.description,
        "weights": weights,
    }
    return assemble_profile_dict(
        net, units, exits, accuracies, variant_info=variant_info, settings=settings,
        hardware=hardware, provenance_info=provenance_info,
    )  # fmt: skip


def assemble_profile_dict(
    net: zoo.MultiExitNet,
    units: Sequence[EntryCost],
    exits: Sequence[EntryCost],
    accuracies: AccuracyTable,
    *,
    variant_info: Mapping[str, Any],
    settings: ProfileSettings,
    hardware: Mapping[str, Any],
    provenance_info: Mapping[str, Any],
) -> dict[str, Any]:
    """A schema-v1 profile dict of any measured multi-exit network (zoo or user model)."""
    numel_in = _numel(net.input_shape)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": PROFILE_KIND,
        "model": net.model_name,
        "family": net.family,
        "variant": net.variant,
        "variant_info": dict(variant_info),
        "hardware": dict(hardware),
        "provenance": dict(provenance_info),
        "input": {
            "shape": list(net.input_shape),
            "raw_bytes": numel_in * RAW_PIXEL_BYTES,
            "tensor_bytes": numel_in * FP32_BYTES,
        },
        "batch_sizes": list(settings.batch_sizes),
        "timing": {
            "timer": (
                "torch.utils.benchmark.Timer.blocked_autorange (+ Timer.timeit up to min_runs)"
            ),
            "warmup_runs": settings.warmup_runs,
            "min_run_time_s": settings.min_run_time_s,
            "min_runs": settings.min_runs,
            "rounds": settings.rounds,
            "round_selection": (
                "the whole sweep is repeated `rounds` times; per entry and batch size the round "
                "with the lowest median is kept (its median, p95, runs, calls_per_run); every "
                "round's median is in round_medians_ms"
            ),
            "threads": settings.threads,
            "statistic": (
                "median and 95th percentile of per-call times over `runs` timed runs; a run "
                "times `calls_per_run` consecutive calls; latency is for the whole batch"
            ),
            "peak_activation": "batch 1; torch.profiler allocation replay (CPU) + input bytes",
            "input_data": f"uniform random images, seed {settings.seed}",
        },
        "units": [
            {
                **u.cost_dict(),
                "output_shape": list(u.output_shape),
                "output_dtype": u.output_dtype,
                "output_bytes_fp32": _numel(u.output_shape) * FP32_BYTES,
                "output_bytes_int8": _numel(u.output_shape) * INT8_BYTES,
            }
            for u in units
        ],
        "exits": [
            {
                **x.cost_dict(),
                "after_unit": after,
                "accuracy": acc,
                "accuracy_source": src,
            }
            for x, after, (acc, src) in zip(exits, net.exit_after, accuracies, strict=True)
        ],
    }
    profile_from_dict(data)  # fail here, not in a later reader
    return data


def _numel(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if shape else 1


def profile_model(
    model: str,
    variant: str,
    *,
    hardware_name: str,
    settings: ProfileSettings,
    command: str,
    digits_result: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build (or take the trained) ``(model, variant)``, measure it and return the profile dict.

    Args:
        model: Zoo model name.
        variant: Variant name.
        hardware_name: ``hardware.name`` of the profile (e.g. ``cpu-epyc-1t``).
        settings: What to measure and how long.
        command: The command line, recorded in ``provenance.command`` and accuracy sources.
        digits_result: For ``digits_me``: the :class:`~edgerl.profiles.digits.DigitsResult`
            whose trained networks are profiled and whose accuracies are stored.
        progress: Optional status callback.

    Returns:
        A validated schema-v1 profile dict (write it with ``save_profile``).
    """
    spec = zoo.get_spec(model)
    vspec = spec.variant(variant)
    device = resolve_device(settings, vspec.precision)
    start = time.perf_counter()
    load_start = _load_avg()
    with _torch_threads(settings.threads), zoo.quiet_quantization_warnings():
        net, float_net = networks(model, variant, settings.seed, digits_result)
        if (net.model_name, net.variant) != (model, variant):
            raise ValueError(
                f"asked to profile {model}/{variant} but got the network of "
                f"{net.model_name}/{net.variant}"
            )
        net = net.to(device)
        units, exits = measure_network(
            net, float_net=float_net, settings=settings, device=device, progress=progress
        )
    hw = hardware_info(hardware_name, settings.threads, device)
    hw["load_avg_at_start"] = load_start
    hw["load_avg_at_end"] = _load_avg()
    prov = provenance(command, settings.seed)
    prov["wall_time_s"] = round(time.perf_counter() - start, 2)
    accuracies = exit_accuracies(model, variant, digits_result=digits_result, command=command)
    for u in units:
        real = FP32_BYTES if u.output_dtype == "float32" else INT8_BYTES
        if u.output_bytes_real != _numel(u.output_shape) * real:
            raise RuntimeError(
                f"{model}/{variant} unit {u.name}: output dtype {u.output_dtype} has "
                f"{u.output_bytes_real} bytes, expected {_numel(u.output_shape) * real}"
            )
    return build_profile_dict(
        net, units, exits, accuracies, settings=settings, hardware=hw, provenance_info=prov
    )


# ----------------------------------------------------------------------------- user models

#: Tolerance of the check that a split model's units reproduce the model's own output; the
#: pieces run the very same operators in the same order, so any difference is a bug.
SPLIT_CHECK_RTOL = 1e-4
SPLIT_CHECK_ATOL = 1e-5
ERROR_DETAIL_CHARS = 100  # of an exception's message quoted in a one-line error


def profile_user_model(
    spec: str,
    *,
    input_shape: tuple[int, ...],
    exit_heads: Sequence[str] = (),
    variant: str = "fp32",
    hardware_name: str,
    settings: ProfileSettings,
    command: str,
    fuse_pointwise: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Profile a model outside the zoo: ``spec`` names a factory returning a ``nn.Module``.

    The model is traced and cut at its valid cut points by :mod:`edgerl.profiles.graph`; every
    unit and exit head is then measured exactly like a zoo model's (:func:`measure_network`).
    Weights are whatever the factory returns; the model runs in fp32 on ``settings.device``.
    Each entry also records the model's module names it calls (``layers``) and its operator
    calls. Exit accuracies are unknown (a scenario must supply them).

    Args:
        spec: ``"package.module:factory"`` or ``"path/to/file.py:factory"``.
        input_shape: Per-sample input shape, e.g. ``(3, 32, 32)``.
        exit_heads: Module names that become exits (see :mod:`edgerl.profiles.graph`).
        variant: Variant name stored in the profile.
        hardware_name: ``hardware.name`` of the profile.
        settings: What to measure and how long.
        command: The command line (provenance).
        fuse_pointwise: Keep BatchNorm/activation/reshape ops with the layer before them.
        progress: Optional status callback.

    Raises:
        edgerl.profiles.graph.GraphError: the model cannot be loaded, traced or split.
    """
    from edgerl.profiles import graph

    device = resolve_device(settings, "fp32")
    start = time.perf_counter()
    load_start = _load_avg()
    name = graph.model_name_of(spec)
    with _torch_threads(settings.threads):
        model = graph.build_model(spec).to(device)
        gen = torch.Generator().manual_seed(settings.seed)
        probe = zoo.random_images(input_shape, graph.SHAPE_PROBE_BATCH, gen).to(device)
        try:
            with torch.no_grad():
                expected = model(probe)
        except Exception as exc:
            raise graph.GraphError(
                f"--model {spec} on input shape {list(input_shape)} (check --input-shape): "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:ERROR_DETAIL_CHARS]}"
            ) from exc
        split = graph.split_model(
            model, probe, exit_heads=exit_heads, fuse_pointwise=fuse_pointwise
        )
        _check_split(split, model, probe, expected, spec)
        net = zoo.MultiExitNet(
            model=name, family=name, variant=variant,
            precision="fp32", units=[u.module for u in split.units],
            exits=[x.module for x in split.exits], unit_names=[u.name for u in split.units],
            unit_layer_types=[u.layer_type for u in split.units],
            exit_names=[x.name for x in split.exits], exit_after=split.exit_after,
            input_shape=input_shape,
            num_classes=0,
        ).eval()  # fmt: skip
        units, exits = measure_network(
            net, float_net=net, settings=settings, device=device, progress=progress
        )
    for cost, piece in zip([*units, *exits], [*split.units, *split.exits], strict=True):
        cost.layers = piece.layers
        cost.operator_calls = piece.operator_calls
    hw = hardware_info(hardware_name, settings.threads, device)
    hw["load_avg_at_start"] = load_start
    hw["load_avg_at_end"] = _load_avg()
    prov = provenance(command, settings.seed)
    prov["wall_time_s"] = round(time.perf_counter() - start, 2)
    prov["factory"] = spec
    variant_info = {
        "precision": "fp32",
        "description": f"user model {spec}, input {list(input_shape)}",
        "weights": "as returned by the factory (not changed by edgerl)",
        "graph": {
            "method": "torch.fx symbolic trace; units between valid cut points "
            "(edgerl.profiles.graph)",
            "fuse_pointwise": fuse_pointwise,
            "exit_heads": list(exit_heads),
            "cuts": len(split.units) - 1,
        },
    }
    accuracies = [(None, zoo.UNKNOWN_ACCURACY)] * len(exits)
    return assemble_profile_dict(
        net, units, exits, accuracies, variant_info=variant_info, settings=settings,
        hardware=hw, provenance_info=prov,
    )  # fmt: skip


def _check_split(split: Any, model: nn.Module, x: Tensor, expected: Any, spec: str) -> None:
    """The units (and each exit) must reproduce the model's own output(s)."""
    with torch.no_grad():
        got = split(x)
    want = list(_walk_tensors(expected))
    for e, g in enumerate(got):
        match = next(
            (
                k
                for k, w in enumerate(want)
                if g.shape == w.shape
                and torch.allclose(g, w, rtol=SPLIT_CHECK_RTOL, atol=SPLIT_CHECK_ATOL)
            ),
            None,
        )
        if match is None:
            raise RuntimeError(
                f"{spec}: exit {split.exits[e].name!r} of the split model matches none of the "
                "model's own outputs (a bug in edgerl.profiles.graph; please report it)"
            )
        del want[match]
