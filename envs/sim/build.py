"""Assemble a :class:`Simulator` for a scenario: profiles, plan catalogue, links, power.

The static part (profiles, catalogue, memory mask) is built once per scenario and shared by
every episode (:class:`ScenarioModel`); an episode only draws traces, offsets and arrivals.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from edgerl.envs.config import (
    BandwidthConfig,
    ConfigError,
    FamilyDraw,
    RandomizationConfig,
    ScenarioConfig,
    load_scenario,
)
from edgerl.envs.plans import (
    ModelProfiles,
    Plan,
    apply_execution,
    build_catalogue,
    resolve_threshold_plan,
    static_feasibility,
)
from edgerl.envs.sim.network import BandwidthSource, ConstantBandwidth
from edgerl.envs.sim.simulator import MeasuredAnswers, Simulator, offset_source
from edgerl.envs.sim.streams import RandomStreams, SeedLike

if TYPE_CHECKING:
    from edgerl.envs.traces import BandwidthTrace

Split = Literal["train", "eval"]


@dataclass(frozen=True)
class ScenarioModel:
    """Everything about a scenario that does not change between episodes."""

    cfg: ScenarioConfig
    profiles: ModelProfiles
    plans: tuple[Plan, ...]
    static_mask: np.ndarray  # plans that fit the memory limits
    device_power_w: float
    edge_batch_sizes: tuple[int, ...]
    #: threshold-rule plans resolved per exit taken: catalogue index -> exit -> plan (the
    #: resolved plans are numbered after the catalogue, so the simulator can index them)
    resolved: dict[int, dict[int, Plan]] = field(default_factory=dict)
    #: measured answers per test image (``model.input_correctness: measured``), else None
    answers: MeasuredAnswers | None = None

    @classmethod
    def from_config(
        cls, cfg: ScenarioConfig, profiles: ModelProfiles | None = None
    ) -> ScenarioModel:
        """Build from the shipped profiles (or ``profiles``, e.g. a user's own)."""
        if profiles is None:
            profiles = ModelProfiles.load(cfg)
        else:
            profiles.check_table(cfg)
        plans = tuple(apply_execution(p, cfg.execution) for p in build_catalogue(cfg, profiles))
        mask = np.array(static_feasibility(cfg, plans), dtype=bool)
        if not mask.any():
            raise ConfigError(f"{cfg.path}: no plan fits the device and edge memory limits")
        first = profiles.device[cfg.model.variants[0]]
        power = cfg.devices.active_power_w
        if power is None:
            hw_power = first.hardware.extra.get("active_power_w")
            if not isinstance(hw_power, int | float) or hw_power <= 0:
                raise ConfigError(
                    f"{cfg.path}: devices.active_power_w is not set and profile {first.path} "
                    "has no hardware.active_power_w"
                )
            power = float(hw_power)
        edge_bs = profiles.edge[cfg.model.variants[0]].batch_sizes
        resolved: dict[int, dict[int, Plan]] = {}
        n = len(plans)
        for p in plans:
            if p.threshold is not None:
                resolved[p.index] = {}
                for e in p.rule_exits:
                    r = dataclasses.replace(
                        apply_execution(resolve_threshold_plan(p, e, profiles), cfg.execution),
                        index=n,
                    )
                    resolved[p.index][e] = r
                    n += 1
        answers = MeasuredAnswers.from_table(profiles.table, plans) if profiles.table else None
        return cls(cfg, profiles, plans, mask, power, tuple(edge_bs), resolved, answers)

    @property
    def extra_plans(self) -> list[Plan]:
        """The resolved threshold plans, in index order (after the catalogue)."""
        return sorted(
            (r for d in self.resolved.values() for r in d.values()), key=lambda r: r.index
        )


@lru_cache(maxsize=32)
def scenario_model(name_or_path: str) -> ScenarioModel:
    """Cached per scenario name/path (profiles are parsed once per process)."""
    return ScenarioModel.from_config(load_scenario(name_or_path))


def link_traces(
    bw: BandwidthConfig, split: Split, where: str = "bandwidth"
) -> list[BandwidthTrace]:
    """The traces of a trace-driven link for ``split``: the user's files or a shipped family.

    ``where`` (the scenario file and the link's dotted key) starts every error message."""
    from edgerl.envs.traces import load_trace_set, user_trace_set  # numpy-only module

    try:
        if bw.trace_files:
            return user_trace_set(
                bw.files(),
                split,
                fmt=bw.format,
                column=bw.column,
                unit=bw.unit,
                eval_files=bw.eval_files,
                eval_share=bw.eval_share,
            )
        if bw.trace_family is None:
            raise ValueError("neither trace_files nor trace_family is set")
        return load_trace_set(bw.trace_family, split, direction=bw.direction)
    except (KeyError, ValueError) as exc:
        what = f"trace_family {bw.trace_family!r}" if bw.trace_family else "trace_files"
        raise ConfigError(f"{where}.{what}: {exc}") from exc


@dataclass(frozen=True)
class LinkPin:
    """A fixed trace and start offset for device 0's uplink (stratified evaluation).

    Attributes:
        trace_index: position of the trace in the uplink's trace list for the split
            (:func:`link_traces`).
        offset_s: where in that trace the episode starts [s], in ``[0, duration)``.
    """

    trace_index: int
    offset_s: float


def _draw_links(
    traces: Sequence[BandwidthTrace], n: int, rng: np.random.Generator
) -> list[tuple[int, float]]:
    """(trace index, start offset [s]) per device, from ``rng`` (two draws per device)."""
    out = []
    for _ in range(n):
        i = int(rng.integers(len(traces)))
        out.append((i, float(rng.uniform(0.0, traces[i].duration_s))))
    return out


def _trace_sources(
    traces: Sequence[BandwidthTrace], draws: Sequence[tuple[int, float]], scale: float
) -> list[BandwidthSource]:
    return [offset_source(traces[i], off, scale) for i, off in draws]


def _constant(bw: BandwidthConfig, n: int) -> list[BandwidthSource]:
    assert bw.constant_mbps is not None
    return [ConstantBandwidth(bw.constant_mbps * bw.scale) for _ in range(n)]


def _sources(
    bw: BandwidthConfig, n: int, split: Split, rng: np.random.Generator, where: str
) -> list[BandwidthSource]:
    if bw.constant_mbps is not None:
        return _constant(bw, n)
    traces = link_traces(bw, split, where)
    return _trace_sources(traces, _draw_links(traces, n, rng), bw.scale)


def _family_traces(draw: FamilyDraw) -> list[BandwidthTrace]:
    from edgerl.envs.traces import load_trace_set

    try:
        return load_trace_set(draw.family, "train", direction=draw.direction)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"randomization.uplink_families: {draw.family}: {exc}") from exc


def training_uplink_traces(cfg: ScenarioConfig) -> list[BandwidthTrace]:
    """The traces a training episode's uplinks draw from, with the link's (and a randomised
    family's) ``scale`` applied: the scenario's own training traces, or those of every family
    of ``randomization.uplink_families``. The per-episode factor of
    ``randomization.uplink_scale_range`` is not applied (it is drawn per episode).

    Raises:
        ConfigError: a constant uplink (no traces).
    """
    bw = cfg.network.uplink
    if bw.constant_mbps is not None:
        raise ConfigError(f"{cfg.path}: network.uplink is constant; it has no traces")
    fams = cfg.randomization.uplink_families
    if not fams:
        own = link_traces(bw, "train")
        return own if bw.scale == 1.0 else [t.scaled(bw.scale) for t in own]
    return [t.scaled(f.scale * bw.scale) for f in fams for t in _family_traces(f)]


def _randomized_uplinks(
    cfg: ScenarioConfig, n: int, rng: np.random.Generator
) -> list[BandwidthSource]:
    """Training uplinks drawn over ``randomization.uplink_families``: per device a family
    (equally likely), then a trace and an offset."""
    fams = cfg.randomization.uplink_families
    out: list[BandwidthSource] = []
    for _ in range(n):
        fam = fams[int(rng.integers(len(fams)))]
        traces = _family_traces(fam)
        ((i, off),) = _draw_links(traces, 1, rng)
        out.append(offset_source(traces[i], off, fam.scale * cfg.network.uplink.scale))
    return out


def build_simulator(
    model: ScenarioModel,
    seed: SeedLike | RandomStreams,
    split: Split = "train",
    *,
    record: bool = False,
    log_events: bool = False,
    uplink_pin: LinkPin | None = None,
) -> Simulator:
    """A fresh episode: the random streams spawned from ``seed``
    (:class:`~edgerl.envs.sim.streams.RandomStreams`), traces and offsets drawn from its
    ``traces`` stream, then the simulator.

    Draw order on the ``traces`` stream: every uplink (trace, offset), every downlink (none
    when ``network.paired_links``: each follows its uplink), the WAN; then, on the training
    split only, the domain randomisation of ``randomization`` (its families replace the
    uplink draws; its scale factor is drawn last).

    ``uplink_pin`` fixes device 0's uplink trace and offset (stratified evaluation,
    :func:`eval_strata`); the stream is consumed as without it, so the other devices, the
    downlinks and the WAN draw exactly as they would.
    """
    cfg = model.cfg
    n = cfg.devices.count
    streams = seed if isinstance(seed, RandomStreams) else RandomStreams.spawn(seed, n)
    net = cfg.network
    rng = streams.traces
    rand = cfg.randomization if split == "train" else RandomizationConfig()
    up_bw, down_bw = net.uplink, net.downlink
    up_traces: list[BandwidthTrace] = []
    up_draws: list[tuple[int, float]] = []
    uplinks: list[BandwidthSource]
    if rand.uplink_families:
        if uplink_pin is not None:
            raise ConfigError("an uplink pin applies to a link without randomised families")
        uplinks = _randomized_uplinks(cfg, n, rng)
    elif up_bw.constant_mbps is not None:
        uplinks = _constant(up_bw, n)
    else:
        up_traces = link_traces(up_bw, split, f"{cfg.path}: network.uplink")
        up_draws = _draw_links(up_traces, n, rng)
        if uplink_pin is not None:
            up_draws[0] = _check_pin(uplink_pin, up_traces)
        uplinks = _trace_sources(up_traces, up_draws, up_bw.scale)
    if net.paired_links and down_bw.constant_mbps is None:
        down_traces = link_traces(down_bw, split, f"{cfg.path}: network.downlink")
        if len(down_traces) != len(up_traces) or not up_draws:
            raise ConfigError(
                f"{cfg.path}: network.paired_links needs trace-driven up- and downlinks with as "
                f"many traces each (split {split}: {len(up_traces)} up, {len(down_traces)} down)"
            )
        down_draws = [(i, off % down_traces[i].duration_s) for i, off in up_draws]
        downlinks = _trace_sources(down_traces, down_draws, down_bw.scale)
    else:
        # The downlink of a device follows the same draw discipline, independently.
        downlinks = _sources(down_bw, n, split, rng, f"{cfg.path}: network.downlink")
    (wan,) = _sources(net.wan, 1, split, rng, f"{cfg.path}: network.wan")
    if rand.uplink_scale_range:
        low, high = rand.uplink_scale_range
        factor = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        uplinks = [offset_source(u, 0.0, factor) for u in uplinks]
    return Simulator(
        cfg,
        model.plans,
        model.edge_batch_sizes,
        streams,
        uplinks,
        downlinks,
        wan,
        model.device_power_w,
        record=record,
        log_events=log_events,
        resolved=model.resolved,
        answers=model.answers,
    )


def _check_pin(pin: LinkPin, traces: Sequence[BandwidthTrace]) -> tuple[int, float]:
    if not 0 <= pin.trace_index < len(traces):
        raise ValueError(
            f"uplink pin: trace index {pin.trace_index} outside the {len(traces)} traces"
        )
    dur = traces[pin.trace_index].duration_s
    if not 0.0 <= pin.offset_s < dur:
        raise ValueError(f"uplink pin: offset {pin.offset_s} s outside [0, {dur}) s")
    return pin.trace_index, float(pin.offset_s)


#: At most this many start offsets per held-out trace in a stratified evaluation.
MAX_OFFSETS_PER_TRACE = 4
#: Mixed into the seed of the stratified offsets (a stream of its own: it never coincides
#: with an episode's streams or another derived seed).
_STRATA_STREAM = [ord(c) for c in "strata"]


@dataclass(frozen=True)
class Stratum:
    """One cell of a stratified evaluation: a held-out uplink trace and a start offset."""

    trace_index: int
    trace: str
    family: str
    offset_s: float

    def pin(self) -> LinkPin:
        return LinkPin(self.trace_index, self.offset_s)


def eval_strata(
    model: ScenarioModel,
    horizon_s: float,
    seed: int,
    *,
    max_offsets: int = MAX_OFFSETS_PER_TRACE,
    split: Split = "eval",
) -> list[Stratum]:
    """The strata of a stratified evaluation of ``model``'s uplink traces, from ``seed``.

    Every trace of the split gets ``k = min(max_offsets, ceil(duration / horizon_s))`` strata
    (one for a trace shorter than an episode, several for long ones): the trace is cut into
    ``k`` equal stretches and one offset is drawn uniformly inside each, so the episodes start
    all along the trace (stratified sampling). Traces in list order, offsets increasing;
    the same seed gives the same strata. A constant uplink has no strata (empty list).
    """
    if horizon_s <= 0 or max_offsets < 1:
        raise ValueError("eval_strata needs horizon_s > 0 and max_offsets >= 1")
    bw = model.cfg.network.uplink
    if bw.constant_mbps is not None:
        return []
    traces = link_traces(bw, split)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), *_STRATA_STREAM]))
    out: list[Stratum] = []
    for i, tr in enumerate(traces):
        k = min(max_offsets, max(1, math.ceil(tr.duration_s / horizon_s)))
        for j in range(k):
            off = float(rng.uniform(tr.duration_s * j / k, tr.duration_s * (j + 1) / k))
            out.append(Stratum(i, tr.name, tr.family, min(off, math.nextafter(tr.duration_s, 0))))
    return out
