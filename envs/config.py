"""Typed, strict scenario configuration.

A scenario is a YAML file (``envs/scenarios/<name>.yaml``) decoded into the frozen
dataclasses below. Decoding is strict: an unknown key (including a key with the wrong unit
suffix, e.g. ``rtt_s`` where ``rtt_ms`` is expected), a wrong type or an impossible value
raises :class:`ConfigError` naming the file and the dotted key path.

Units are part of every field name (``_ms``, ``_s``, ``_mbps``, ``_mb``, ``_w``, ``_j``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

MMPP_MIN_STATES = 2  # a Markov-modulated process needs at least two rates to modulate
CachePolicyName = Literal["none", "lru", "lfu", "cost"]
RadioName = Literal["lte", "3g", "wifi"]
TierName = Literal["device", "edge", "cloud"]


class ConfigError(ValueError):
    """A scenario is invalid; the message names the file and the key."""


# ----------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class BandwidthConfig:
    """A link's bandwidth: a constant, a shipped trace family, or the user's own trace files.

    Exactly one of ``constant_mbps``, ``trace_family`` and ``trace_files`` is set. With
    traces, each device draws one trace of the episode's split (training or held-out
    evaluation, chosen by the environment) and a random start offset.

    Own traces: ``trace_files`` are paths (relative ones are relative to the scenario's
    YAML file; a folder stands for every file in it, sorted); ``format`` is ``auto``
    (detected), ``pensieve``, ``mahimahi``, ``csv`` (a header row with ``time_s`` and
    ``column``, in ``unit``) or ``irish5g`` (``column``: ``DL_bitrate`` or ``UL_bitrate``).
    ``eval_files`` are held out for evaluation; without them the last ``eval_share`` of every
    trace's duration is (default 25 %; 1.0 = evaluation only).
    """

    constant_mbps: float | None = None
    trace_family: str | None = None
    direction: Literal["up", "down"] | None = None  # which traces of the family (None: all)
    scale: float = 1.0  # multiplies every trace sample (1.0 = the trace as measured)
    trace_files: tuple[str, ...] = ()
    format: Literal["auto", "pensieve", "mahimahi", "csv", "irish5g"] = "auto"
    column: str | None = None
    unit: Literal["mbps", "kbps", "bps"] = "mbps"
    eval_files: tuple[str, ...] = ()
    eval_share: float = 0.25

    def validate(self, where: str) -> None:
        sources = [self.constant_mbps is not None, self.trace_family is not None]
        sources.append(bool(self.trace_files))
        if sum(sources) != 1:
            raise ConfigError(
                f"{where}: set exactly one of 'constant_mbps', 'trace_family' and 'trace_files'"
            )
        if self.constant_mbps is not None and self.constant_mbps <= 0:
            raise ConfigError(f"{where}.constant_mbps: must be > 0, got {self.constant_mbps}")
        if self.scale <= 0:
            raise ConfigError(f"{where}.scale: must be > 0, got {self.scale}")
        if not 0.0 < self.eval_share <= 1.0:
            raise ConfigError(f"{where}.eval_share: must be in (0, 1], got {self.eval_share}")
        for f in (*self.trace_files, *self.eval_files):
            if not Path(f).exists():
                raise ConfigError(f"{where}: trace file {f} does not exist")
        stray = [f for f in self.eval_files if f not in self.files()]
        if stray:
            raise ConfigError(f"{where}.eval_files: {stray} are not among trace_files")

    def files(self) -> list[str]:
        """``trace_files`` with folders expanded to their files (sorted)."""
        out: list[str] = []
        for f in self.trace_files:
            p = Path(f)
            out += sorted(str(x) for x in p.iterdir() if x.is_file()) if p.is_dir() else [f]
        return out


@dataclass(frozen=True)
class NetworkConfig:
    uplink: BandwidthConfig
    downlink: BandwidthConfig
    access_rtt_ms: float  # device <-> edge round-trip propagation delay
    wan: BandwidthConfig  # edge <-> cloud, shared by all requests
    wan_rtt_ms: float
    bandwidth_window_s: float = 1.0  # the device's bandwidth estimate averages this much past
    # true: device d's downlink is the trace recorded together with its uplink (the same
    # position in the two trace lists, e.g. a mahimahi .up/.down pair) at the same offset;
    # false: the downlink draws its trace and offset independently
    paired_links: bool = False
    result_bytes: int = 8  # a class id (int32) + a confidence (float32) = 8 bytes
    fingerprint_bytes: int = 32  # a cache key: a 256-bit input hash (SHA-256 digest size)


@dataclass(frozen=True)
class FamilyDraw:
    """One shipped trace family a randomised training uplink may draw from.

    ``direction`` picks the family's traces of that link direction (``None``: all) and
    ``scale`` multiplies their samples, as in :class:`BandwidthConfig`.
    """

    family: str
    direction: Literal["up", "down"] | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class ExecutionConfig:
    """How a real runtime's compute differs from the per-layer profiles (default: not at all).

    Profiles time each unit on its own, back to back (warm caches); a runtime runs a segment
    of several units once per request, after idling, behind an observation and a policy.
    ``edgerl fidelity --calibrate-seed`` measures these on a calibration run of the runtime
    (least squares of measured against profiled compute per tier) so that the simulator can
    predict that runtime; every shipped scenario keeps the defaults. A tier's profiled
    segment time ``t > 0`` becomes ``t * <tier>_compute_scale + <tier>_overhead_ms`` (per
    segment on the device and in the cloud, per batch on the edge); ``device_per_request_ms``
    is charged in the device's compute queue for every request (observation + policy + the
    hand-off to the compute thread), also for plans that run no layer there.
    """

    device_per_request_ms: float = 0.0
    device_overhead_ms: float = 0.0
    edge_overhead_ms: float = 0.0
    cloud_overhead_ms: float = 0.0
    device_compute_scale: float = 1.0
    edge_compute_scale: float = 1.0
    cloud_compute_scale: float = 1.0

    def validate(self, where: str) -> None:
        for name in ("device_per_request_ms", "device_overhead_ms", "edge_overhead_ms",
                     "cloud_overhead_ms"):  # fmt: skip
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"{where}.{name} must be a finite number >= 0, got {v}")
        for name in ("device_compute_scale", "edge_compute_scale", "cloud_compute_scale"):
            v = getattr(self, name)
            if not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{where}.{name} must be a finite number > 0, got {v}")


@dataclass(frozen=True)
class RandomizationConfig:
    """Domain randomisation of the *training* episodes (split ``train`` only; the held-out
    evaluation episodes always run on the configured links as they are).

    - ``uplink_families``: each device's uplink draws a family of this list (equally likely),
      then one of that family's training traces and an offset, instead of the configured
      uplink's own traces (list the own family too to keep it in the mix);
    - ``uplink_scale_range``: ``[low, high]``, every uplink of the episode is multiplied by one
      factor drawn log-uniformly from this range (on top of the link's own ``scale``).

    Both are drawn from the episode's ``traces`` stream after every other trace draw, so an
    episode without randomisation draws exactly as before, and all policies still face the
    same episode for a seed (common random numbers).
    """

    uplink_families: tuple[FamilyDraw, ...] = ()
    uplink_scale_range: tuple[float, ...] = ()

    def validate(self, where: str) -> None:
        rng = self.uplink_scale_range
        if rng and (len(rng) != 2 or not 0.0 < rng[0] <= rng[1] or not math.isfinite(rng[1])):  # noqa: PLR2004
            raise ConfigError(
                f"{where}.uplink_scale_range: expected [low, high] with 0 < low <= high, "
                f"got {list(rng)}"
            )
        for i, fam in enumerate(self.uplink_families):
            if fam.scale <= 0:
                raise ConfigError(f"{where}.uplink_families[{i}].scale: must be > 0")

    @property
    def active(self) -> bool:
        return bool(self.uplink_families or self.uplink_scale_range)


@dataclass(frozen=True)
class DeviceConfig:
    count: int
    hardware: str  # profile hardware name, e.g. device-rpi4
    memory_mb: float  # available for model weights + activations
    radio: RadioName
    active_power_w: float | None = None  # None: from the profile's hardware block
    energy_budget_j: float = math.inf  # per device per episode (observation feature)


@dataclass(frozen=True)
class EdgeConfig:
    hardware: str
    workers: int
    memory_mb: float
    max_batch_wait_ms: float
    queue_capacity: int  # requests waiting at the edge (batchers + worker queue); beyond: drop
    cache_capacity: int  # results


@dataclass(frozen=True)
class CloudConfig:
    hardware: str
    workers: int
    queue_capacity: int


@dataclass(frozen=True)
class ArrivalConfig:
    """Per-device arrival process.

    - ``poisson``: rate ``rate_per_s``.
    - ``mmpp``: a Markov-modulated Poisson process; state i has rate ``rates_per_s[i]`` and an
      exponentially distributed sojourn with mean ``mean_sojourn_s[i]``, states visited in a
      cycle (bursty load).
    - ``trace``: inter-arrival times [s] read from ``trace_file`` (one per line), replayed in a
      loop from a random start.
    """

    process: Literal["poisson", "mmpp", "trace"]
    rate_per_s: float | None = None
    rates_per_s: tuple[float, ...] = ()
    mean_sojourn_s: tuple[float, ...] = ()
    trace_file: str | None = None

    def validate(self, where: str) -> None:
        if self.process == "poisson":
            if self.rate_per_s is None or self.rate_per_s <= 0:
                raise ConfigError(f"{where}.rate_per_s: poisson needs a rate > 0")
        elif self.process == "mmpp":
            if len(self.rates_per_s) < MMPP_MIN_STATES or len(self.rates_per_s) != len(
                self.mean_sojourn_s
            ):
                raise ConfigError(
                    f"{where}: mmpp needs >= 2 'rates_per_s' and as many 'mean_sojourn_s'"
                )
            if min(self.rates_per_s) <= 0 or min(self.mean_sojourn_s) <= 0:
                raise ConfigError(f"{where}: mmpp rates and sojourns must be > 0")
        elif self.trace_file is None:
            raise ConfigError(f"{where}.trace_file: the trace process needs a file")


@dataclass(frozen=True)
class AppConfig:
    name: str
    deadline_ms: float
    weight: float = 1.0  # share of requests (normalised over apps)


@dataclass(frozen=True)
class WorkloadConfig:
    arrival: ArrivalConfig
    apps: tuple[AppConfig, ...]
    catalogue_size: int = 1000  # distinct inputs (e.g. faces at a gate)
    zipf_s: float = 0.0  # popularity skew; 0 = uniform


@dataclass(frozen=True)
class AccuracyOverride:
    """Per-exit accuracy for a variant whose profile lacks it, with where it comes from."""

    per_exit: tuple[float, ...]
    source: str


@dataclass(frozen=True)
class ModelConfig:
    name: str  # zoo model, e.g. resnet18_me
    variants: tuple[str, ...]
    accuracy: Mapping[str, AccuracyOverride] = field(default_factory=dict)
    # How a request's answer is decided. "latent": each input has a latent difficulty
    # u ~ U(0, 1) and a (variant, exit) with accuracy a answers it right iff u < a. "measured":
    # each input id stands for a test image of the model's shipped accuracy table
    # (profiles/data/<model>/accuracy.npz) and gets that image's measured answer.
    input_correctness: Literal["latent", "measured"] = "latent"
    # A folder of the user's own profiles (<model>/<variant>/<hardware>.json, as written by
    # `edgerl profile`), relative to the scenario's YAML; profiles found there are used, the
    # others come from the shipped profiles/data.
    profiles_dir: str | None = None


@dataclass(frozen=True)
class ActionMenuConfig:
    """Which choices the agent is offered (keeps the flat plan catalogue small).

    ``exits``: exit indices (negative counts from the end); ``cut_units``: the unit
    indices before which a cut may be placed (0 = raw input leaves the device); the end of
    the exit's chain is always allowed; ``tiers``: which tiers may run units.
    """

    exits: tuple[int, ...] = ()
    cut_units: tuple[int, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    cache_policies: tuple[CachePolicyName, ...] = ("none",)
    # tiers that may compute (e.g. [device] keeps everything on the device)
    tiers: tuple[TierName, ...] = ("device", "edge", "cloud")
    # BranchyNet confidence thresholds: for each tau, plans that leave at the first of
    # ``exits`` whose confidence (max softmax probability) reaches tau (needs measured inputs)
    exit_thresholds: tuple[float, ...] = ()


@dataclass(frozen=True)
class RewardConfig:
    """Utility of one finished request (weights of the named reward parts)."""

    accuracy: float = 1.0  # per unit of (expected) accuracy
    latency_per_s: float = 1.0
    energy_per_j: float = 0.0  # device energy
    slo_miss: float = 1.0  # per request finishing after its deadline
    bytes_per_mb: float = 0.0  # bytes sent on device and WAN links
    privacy: float = 0.0  # per request whose raw input left the device
    drop: float = 2.0  # per dropped request
    accuracy_mode: Literal["expected", "sampled"] = "expected"
    # The latency part saturates here: -latency_per_s * min(latency_s, latency_cap_s). A result
    # this late is worth no less than one a little later; without a cap one overloaded queue
    # makes per-request penalties unbounded (tens of seconds), which dominates RL returns.
    # None: no cap. Metrics always report the true latency.
    latency_cap_s: float | None = None
    # Which step a request's utility is credited to (the env's reward signal; metrics are
    # unaffected). "decision": the step that decided it, as the simulator's exact what-if
    # predicts it then, plus a correction when the request finishes (actual - predicted) in
    # the step where that happens; the episode's return is unchanged. "finish": the step in
    # which the request finishes (the env v1 signal). See edgerl.envs.env.
    credit: Literal["decision", "finish"] = "decision"


@dataclass(frozen=True)
class ScenarioConfig:
    name: str
    description: str
    horizon_s: float
    model: ModelConfig
    devices: DeviceConfig
    edge: EdgeConfig
    cloud: CloudConfig
    network: NetworkConfig
    workload: WorkloadConfig
    action_menu: ActionMenuConfig
    reward: RewardConfig = field(default_factory=RewardConfig)
    # Load shedding: "deadline" drops a request at the tier where missing its deadline becomes
    # certain (see edgerl.envs.sim.simulator); "off" serves every request however late.
    shedding: Literal["off", "deadline"] = "off"
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    path: str = "<memory>"

    def validate(self) -> None:
        w = self.path
        _positive(w, "horizon_s", self.horizon_s)
        _positive(w, "devices.count", self.devices.count)
        _positive(w, "devices.memory_mb", self.devices.memory_mb)
        _positive(w, "edge.workers", self.edge.workers)
        _positive(w, "edge.memory_mb", self.edge.memory_mb)
        _positive(w, "cloud.workers", self.cloud.workers)
        for name in ("access_rtt_ms", "wan_rtt_ms", "bandwidth_window_s"):
            if getattr(self.network, name) < 0:
                raise ConfigError(f"{w}: network.{name} must be >= 0")
        if self.reward.latency_cap_s is not None:
            _positive(w, "reward.latency_cap_s", self.reward.latency_cap_s)
        if self.edge.max_batch_wait_ms < 0:
            raise ConfigError(f"{w}: edge.max_batch_wait_ms must be >= 0")
        if self.edge.cache_capacity < 0 or self.edge.queue_capacity < 1:
            raise ConfigError(f"{w}: edge.cache_capacity >= 0 and edge.queue_capacity >= 1")
        self.network.uplink.validate(f"{w}: network.uplink")
        self.network.downlink.validate(f"{w}: network.downlink")
        self.network.wan.validate(f"{w}: network.wan")
        self.randomization.validate(f"{w}: randomization")
        self.execution.validate(f"{w}: execution")
        if self.randomization.uplink_families and self.network.uplink.constant_mbps is not None:
            raise ConfigError(
                f"{w}: randomization.uplink_families needs a trace-driven network.uplink"
            )
        self.workload.arrival.validate(f"{w}: workload.arrival")
        if not self.workload.apps:
            raise ConfigError(f"{w}: workload.apps must name at least one application")
        for i, app in enumerate(self.workload.apps):
            _positive(w, f"workload.apps[{i}].deadline_ms", app.deadline_ms)
            _positive(w, f"workload.apps[{i}].weight", app.weight)
        _positive(w, "workload.catalogue_size", self.workload.catalogue_size)
        if self.workload.zipf_s < 0:
            raise ConfigError(f"{w}: workload.zipf_s must be >= 0")
        if not self.model.variants:
            raise ConfigError(f"{w}: model.variants must list at least one variant")
        if self.model.profiles_dir is not None and not Path(self.model.profiles_dir).is_dir():
            raise ConfigError(f"{w}: model.profiles_dir {self.model.profiles_dir} is no folder")
        for v, acc in self.model.accuracy.items():
            if v not in self.model.variants:
                raise ConfigError(f"{w}: model.accuracy.{v}: not one of model.variants")
            if not all(0.0 <= a <= 1.0 for a in acc.per_exit) or not acc.source:
                raise ConfigError(f"{w}: model.accuracy.{v}: fractions in [0, 1] and a source")
        menu = self.action_menu
        if not menu.batch_sizes or min(menu.batch_sizes) < 1:
            raise ConfigError(f"{w}: action_menu.batch_sizes must be >= 1")
        if not menu.cache_policies:
            raise ConfigError(f"{w}: action_menu.cache_policies must not be empty")
        if not menu.tiers:
            raise ConfigError(f"{w}: action_menu.tiers must name at least one tier")
        for i, tau in enumerate(menu.exit_thresholds):
            if not 0.0 < tau <= 1.0:
                raise ConfigError(f"{w}: action_menu.exit_thresholds[{i}] must be in (0, 1]")
        if self.edge.cache_capacity == 0 and set(menu.cache_policies) - {"none"}:
            raise ConfigError(f"{w}: cache policies offered but edge.cache_capacity is 0")


def _positive(where: str, key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{where}: {key} must be > 0, got {value}")


# ----------------------------------------------------------------------------- decoding

T = TypeVar("T")


def _decode(tp: Any, value: Any, where: str) -> Any:
    """Decode ``value`` into type ``tp`` strictly; ``where`` is the dotted key path."""
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_decode(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is dict:
        key_tp, val_tp = get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _decode(key_tp, k, f"{where}"): _decode(val_tp, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return decode_dataclass(typing.cast(type, tp), value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and value.strip().lower() in {"inf", ".inf", "infinity"}:
            return math.inf
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _suggest(key: str, allowed: list[str]) -> str:
    """A hint for a mistyped key: same stem with another unit suffix, else the closest name."""
    stem = key.rsplit("_", 1)[0]
    same_stem = [a for a in allowed if a.rsplit("_", 1)[0] == stem or a.startswith(stem + "_")]
    close = same_stem or difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def decode_dataclass(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping; reject unknown and missing keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            hint = _suggest(str(key), list(fields))
            raise ConfigError(
                f"{where}.{key}: unknown key{hint} (allowed: {', '.join(sorted(fields))})"
            )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: missing required key")
    return cls(**kwargs)


def scenario_from_dict(
    data: Any, path: str = "<memory>", base_dir: str | Path | None = None
) -> ScenarioConfig:
    """Decode and validate a scenario; relative file paths in it are relative to ``base_dir``
    (the YAML file's folder; default: the current directory)."""
    cfg = decode_dataclass(ScenarioConfig, data, path)
    cfg = dataclasses.replace(cfg, path=path)
    if base_dir is not None:
        cfg = _resolve_paths(cfg, Path(base_dir))
    cfg.validate()
    return cfg


def _resolve_paths(cfg: ScenarioConfig, base: Path) -> ScenarioConfig:
    """Relative trace and arrival files -> paths relative to ``base`` (absolute)."""

    def fix(f: str) -> str:
        p = Path(f)
        return str(p if p.is_absolute() else (base / p).resolve())

    def link(bw: BandwidthConfig) -> BandwidthConfig:
        return dataclasses.replace(
            bw,
            trace_files=tuple(fix(f) for f in bw.trace_files),
            eval_files=tuple(fix(f) for f in bw.eval_files),
        )

    net = cfg.network
    net = dataclasses.replace(
        net, uplink=link(net.uplink), downlink=link(net.downlink), wan=link(net.wan)
    )
    arrival = cfg.workload.arrival
    if arrival.trace_file is not None:
        arrival = dataclasses.replace(arrival, trace_file=fix(arrival.trace_file))
    workload = dataclasses.replace(cfg.workload, arrival=arrival)
    model = cfg.model
    if model.profiles_dir is not None:
        model = dataclasses.replace(model, profiles_dir=fix(model.profiles_dir))
    return dataclasses.replace(cfg, network=net, workload=workload, model=model)


def load_scenario(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ScenarioConfig:
    """Load a shipped scenario by name (``lte-dynamic``) or any YAML file by path.

    Args:
        name_or_path: a shipped scenario's name or a YAML file.
        overrides: ``dotted.key=value`` changes applied before validation (``value`` is YAML,
            e.g. ``reward.credit=finish`` or ``action_menu.batch_sizes=[1]``); a key that does
            not exist fails like a typo in the file. A scenario with overrides is no longer
            its file: its ``path`` says both, and run directories store its full YAML.
    """
    p = Path(name_or_path)
    shipped = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not p.suffix and len(p.parts) == 1 and shipped.is_file():
        p = shipped
    elif not p.suffix and not p.exists():
        raise ConfigError(
            f"unknown scenario '{name_or_path}'; shipped: {', '.join(list_scenarios())}"
        )
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a scenario YAML file or a shipped name")
    if p.exists() and not p.is_file():
        raise ConfigError(f"{p}: not a regular file; give a scenario YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: cannot read scenario: not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from exc
    except (OSError, yaml.YAMLError) as exc:
        one_line = " ".join(str(exc).split())
        raise ConfigError(f"{p}: cannot read scenario: {one_line}") from exc
    if data is None:
        raise ConfigError(f"{p}: empty scenario file")
    if not overrides:
        return scenario_from_dict(data, str(p), p.parent)
    for item in overrides:
        _apply_override(data, item, str(p))
    try:  # errors name the file's keys; the overrides follow, each with its value
        cfg = scenario_from_dict(data, str(p), p.parent)
    except ConfigError as exc:
        given = ", ".join(f"--set {o}" for o in overrides)
        raise ConfigError(f"{exc} (after {given})") from exc
    return dataclasses.replace(cfg, path=f"{p} with {' '.join(overrides)}")


def _apply_override(data: Any, item: str, where: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{where}: override {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: override {item!r}: value is not YAML: {exc}") from exc
    node = data
    *parents, leaf = key.strip().split(".")
    for i, part in enumerate(parents):
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: override {item!r}: {'.'.join(parents[:i])} is no mapping")
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: override {item!r}: {'.'.join(parents)} is no mapping")
    node[leaf] = value


def list_scenarios() -> list[str]:
    return sorted(f.stem for f in SCENARIO_DIR.glob("*.yaml"))
