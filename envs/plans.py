"""Execution plans and the flat plan catalogue (the action space).

A *plan* fixes, for one request: the model variant, the exit branch, two cut points and the
edge batch size and cache policy::

    units   0 ........ c_edge-1 | c_edge ...... c_cloud-1 | c_cloud ...... n_e-1 | exit head
            device              | edge (batched)           | cloud                | where the
                                                                                    last unit ran

where ``n_e = exits[e].after_unit + 1`` is the number of units the exit needs and
``0 <= c_edge <= c_cloud <= n_e``. ``c_edge == 0`` sends the raw input off the device;
``c_edge == n_e`` runs everything on the device. Data sent over a cut at ``c > 0`` is the
output of unit ``c - 1`` (int8 for the ``int8`` precision, fp32 otherwise).

Why a flat catalogue: the joint choice has hard dependencies (cuts cannot pass the exit,
batch size only matters when the edge computes), which SB3 cannot express as independent
per-dimension masks of a MultiDiscrete space. A ``Discrete(N)`` space over the structurally
valid plans, with ``action_masks()`` for the state-dependent constraints (memory), works
unchanged with MaskablePPO, PPO, A2C and DQN. The scenario's ``action_menu`` keeps N small.

Every static quantity of a plan (segment latencies per batch size, bytes per link, memory,
accuracy) is computed once here, so the simulator's hot path only looks them up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgerl.envs.config import ConfigError, ScenarioConfig
from edgerl.profiles import LayerProfile, find_profile, interpolate_latency

CACHE_POLICIES = ("none", "lru", "lfu", "cost")
MB = 1e6  # bytes per megabyte (SI), the unit of the *_mb config keys


@dataclass(frozen=True, slots=True)
class Plan:
    """One entry of the catalogue. Indices refer to the scenario's model profiles."""

    index: int
    variant: str
    exit_index: int
    n_units: int  # units the exit needs (n_e)
    cut_edge: int
    cut_cloud: int
    batch_size: int
    cache_policy: str
    # static costs, derived from the profiles
    device_s: float  # device compute (units [0, c_edge) + head if it runs there), batch 1
    edge_batch_ms: tuple[float, ...]  # edge segment latency at the profile's batch sizes
    cloud_s: float  # cloud compute at batch 1
    uplink_bytes: int  # device -> edge (0 if nothing leaves the device)
    wan_bytes: int  # edge -> cloud
    device_memory_bytes: int
    edge_memory_bytes: int  # at the plan's batch size
    accuracy: float
    raw_input_leaves: bool
    head_tier: str  # "device" | "edge" | "cloud"

    @property
    def uses_edge_compute(self) -> bool:
        return self.cut_edge < self.cut_cloud

    @property
    def uses_cloud(self) -> bool:
        return self.cut_cloud < self.n_units

    @property
    def offloads(self) -> bool:
        return self.cut_edge < self.n_units

    @property
    def name(self) -> str:
        return (
            f"{self.variant}/exit{self.exit_index}/dev[0:{self.cut_edge})"
            f"/edge[{self.cut_edge}:{self.cut_cloud})/cloud[{self.cut_cloud}:{self.n_units})"
            f"/b{self.batch_size}/cache:{self.cache_policy}"
        )

    def describe(self) -> dict[str, object]:
        """Human-readable decoding (used by the planner artefact and the CLI)."""
        return {
            "index": self.index,
            "name": self.name,
            "variant": self.variant,
            "exit": self.exit_index,
            "cut_edge": self.cut_edge,
            "cut_cloud": self.cut_cloud,
            "n_units": self.n_units,
            "batch_size": self.batch_size,
            "cache_policy": self.cache_policy,
            "raw_input_leaves_device": self.raw_input_leaves,
        }


@dataclass(frozen=True)
class ModelProfiles:
    """The profiles one scenario needs: per variant, the device, edge and cloud hardware."""

    device: dict[str, LayerProfile]
    edge: dict[str, LayerProfile]
    cloud: dict[str, LayerProfile]

    @classmethod
    def load(cls, cfg: ScenarioConfig) -> ModelProfiles:
        m = cfg.model
        try:
            return cls(
                device={v: find_profile(m.name, v, cfg.devices.hardware) for v in m.variants},
                edge={v: find_profile(m.name, v, cfg.edge.hardware) for v in m.variants},
                cloud={v: find_profile(m.name, v, cfg.cloud.hardware) for v in m.variants},
            )
        except ValueError as exc:
            raise ConfigError(f"{cfg.path}: {exc}") from exc


def _sum_ms(prof: LayerProfile, unit_lo: int, unit_hi: int, head: int | None, bi: int) -> float:
    total = sum(prof.units[i].latency_ms_median[bi] for i in range(unit_lo, unit_hi))
    if head is not None:
        total += prof.exits[head].latency_ms_median[bi]
    return total


def _cut_bytes(prof: LayerProfile, cut: int) -> int:
    if cut == 0:
        return prof.input_raw_bytes
    unit = prof.units[cut - 1]
    int8 = prof.variant_info.get("precision") == "int8"
    return unit.output_bytes_int8 if int8 else unit.output_bytes_fp32


def _segment_memory(prof: LayerProfile, lo: int, hi: int, head: int | None, batch: int) -> int:
    """Weights of the segment plus its largest activation footprint at ``batch``."""
    entries = [prof.units[i] for i in range(lo, hi)]
    if head is not None:
        entries.append(prof.exits[head])
    if not entries:
        return 0
    return sum(e.params_bytes for e in entries) + batch * max(
        e.peak_activation_bytes for e in entries
    )


def exit_accuracies(cfg: ScenarioConfig, prof: LayerProfile, needed: Sequence[int]) -> list[float]:
    """Per-exit accuracy: from the scenario if it overrides the variant (it must cite a
    source), else from the profile. Every exit in ``needed`` must be known."""
    override = cfg.model.accuracy.get(prof.variant)
    if override is not None:
        if len(override.per_exit) != len(prof.exits):
            raise ConfigError(
                f"{cfg.path}: model.accuracy.{prof.variant}.per_exit has "
                f"{len(override.per_exit)} entries, the model has {len(prof.exits)} exits"
            )
        return list(override.per_exit)
    accs = [x.accuracy for x in prof.exits]
    missing = [i for i in needed if accs[i] is None]
    if missing:
        raise ConfigError(
            f"{cfg.path}: accuracy of {prof.model}/{prof.variant} exits {missing} is unknown "
            f"(profile {prof.path}); supply model.accuracy.{prof.variant} with a source"
        )
    return [math.nan if a is None else float(a) for a in accs]


def _resolve_exits(menu_exits: Sequence[int], n_exits: int, where: str) -> list[int]:
    if not menu_exits:
        return list(range(n_exits))
    out = []
    for e in menu_exits:
        idx = e + n_exits if e < 0 else e
        if not 0 <= idx < n_exits:
            raise ConfigError(f"{where}: action_menu.exits: {e} out of range for {n_exits} exits")
        out.append(idx)
    return sorted(set(out))


def build_catalogue(cfg: ScenarioConfig, profiles: ModelProfiles) -> list[Plan]:
    """All structurally valid plans of the scenario's action menu, in a stable order."""
    menu = cfg.action_menu
    plans: list[Plan] = []
    for variant in cfg.model.variants:
        dev, edge, cloud = profiles.device[variant], profiles.edge[variant], profiles.cloud[variant]
        n_total = len(dev.units)
        for other in (edge, cloud):
            if len(other.units) != n_total or len(other.exits) != len(dev.exits):
                raise ConfigError(
                    f"{cfg.path}: profiles {dev.path} and {other.path} describe different models"
                )
        max_batch = max(edge.batch_sizes)
        for b in menu.batch_sizes:
            if b > max_batch:
                raise ConfigError(
                    f"{cfg.path}: action_menu.batch_sizes: {b} exceeds the largest profiled "
                    f"batch size {max_batch} of {edge.path}"
                )
        exits = _resolve_exits(menu.exits, len(dev.exits), cfg.path)
        accs = exit_accuracies(cfg, dev, exits)
        for e in exits:
            n_e = dev.exits[e].after_unit + 1
            cuts = sorted({c for c in (menu.cut_units or range(n_e + 1)) if 0 <= c < n_e} | {n_e})
            tiers = set(menu.tiers)
            for c_edge in cuts:
                for c_cloud in (c for c in cuts if c >= c_edge):
                    if (
                        (c_edge > 0 and "device" not in tiers)
                        or (c_edge < c_cloud and "edge" not in tiers)
                        or (c_cloud < n_e and "cloud" not in tiers)
                    ):
                        continue
                    head_tier = "cloud" if c_cloud < n_e else "edge" if c_edge < n_e else "device"
                    dev_head = e if head_tier == "device" else None
                    edge_head = e if head_tier == "edge" else None
                    cloud_head = e if head_tier == "cloud" else None
                    batch_sizes = menu.batch_sizes if c_edge < c_cloud else (1,)
                    for b in sorted(set(batch_sizes)):
                        for policy in menu.cache_policies:
                            plans.append(
                                Plan(
                                    index=len(plans),
                                    variant=variant,
                                    exit_index=e,
                                    n_units=n_e,
                                    cut_edge=c_edge,
                                    cut_cloud=c_cloud,
                                    batch_size=b,
                                    cache_policy=policy,
                                    device_s=_sum_ms(dev, 0, c_edge, dev_head, 0) / 1e3,
                                    edge_batch_ms=tuple(
                                        _sum_ms(edge, c_edge, c_cloud, edge_head, bi)
                                        for bi in range(len(edge.batch_sizes))
                                    ),
                                    cloud_s=_sum_ms(cloud, c_cloud, n_e, cloud_head, 0) / 1e3,
                                    uplink_bytes=_cut_bytes(dev, c_edge) if c_edge < n_e else 0,
                                    wan_bytes=_cut_bytes(dev, c_cloud) if c_cloud < n_e else 0,
                                    device_memory_bytes=_segment_memory(
                                        dev, 0, c_edge, dev_head, 1
                                    ),
                                    edge_memory_bytes=_segment_memory(
                                        edge, c_edge, c_cloud, edge_head, b
                                    ),
                                    accuracy=accs[e],
                                    raw_input_leaves=c_edge == 0 and n_e > 0,
                                    head_tier=head_tier,
                                )
                            )
    if not plans:
        raise ConfigError(f"{cfg.path}: the action menu yields no plan")
    return plans


def edge_batch_latency_s(plan: Plan, batch_sizes: Sequence[int], n: int) -> float:
    """Latency of the plan's edge segment for a batch of ``n`` requests [s]."""
    return interpolate_latency(batch_sizes, plan.edge_batch_ms, n) / 1e3


def static_feasibility(cfg: ScenarioConfig, plans: Sequence[Plan]) -> list[bool]:
    """Plans that fit the device and edge memory limits (state-independent mask)."""
    dev_cap = cfg.devices.memory_mb * MB
    edge_cap = cfg.edge.memory_mb * MB
    return [
        p.device_memory_bytes <= dev_cap
        and p.edge_memory_bytes <= edge_cap
        and math.isfinite(p.accuracy)
        for p in plans
    ]
