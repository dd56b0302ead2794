"""Assemble a :class:`Simulator` for a scenario: profiles, plan catalogue, links, power.

The static part (profiles, catalogue, memory mask) is built once per scenario and shared by
every episode (:class:`ScenarioModel`); an episode only draws traces, offsets and arrivals.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np
from edgerl.envs.config import BandwidthConfig, ConfigError, ScenarioConfig, load_scenario
from edgerl.envs.plans import (
    ModelProfiles,
    Plan,
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
        plans = tuple(build_catalogue(cfg, profiles))
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
                    r = dataclasses.replace(resolve_threshold_plan(p, e, profiles), index=n)
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


def _sources(
    bw: BandwidthConfig, n: int, split: Split, rng: np.random.Generator, where: str
) -> list[BandwidthSource]:
    if bw.constant_mbps is not None:
        return [ConstantBandwidth(bw.constant_mbps * bw.scale) for _ in range(n)]
    traces = link_traces(bw, split, where)
    out: list[BandwidthSource] = []
    for _ in range(n):
        tr = traces[int(rng.integers(len(traces)))]
        out.append(offset_source(tr, float(rng.uniform(0.0, tr.duration_s)), bw.scale))
    return out


def build_simulator(
    model: ScenarioModel,
    seed: SeedLike | RandomStreams,
    split: Split = "train",
    *,
    record: bool = False,
    log_events: bool = False,
) -> Simulator:
    """A fresh episode: the random streams spawned from ``seed``
    (:class:`~edgerl.envs.sim.streams.RandomStreams`), traces and offsets drawn from its
    ``traces`` stream, then the simulator."""
    cfg = model.cfg
    n = cfg.devices.count
    streams = seed if isinstance(seed, RandomStreams) else RandomStreams.spawn(seed, n)
    net = cfg.network
    rng = streams.traces
    uplinks = _sources(net.uplink, n, split, rng, f"{cfg.path}: network.uplink")
    # The downlink of a device follows the same draw discipline, independently.
    downlinks = _sources(net.downlink, n, split, rng, f"{cfg.path}: network.downlink")
    (wan,) = _sources(net.wan, 1, split, rng, f"{cfg.path}: network.wan")
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
