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

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgerl.envs.config import ConfigError, ExecutionConfig, ScenarioConfig
from edgerl.profiles import LayerProfile, find_profile, interpolate_latency
from edgerl.profiles.accuracy import AccuracyTable, accuracy_table_path, load_accuracy_table
from edgerl.profiles.schema import DATA_DIR, ProfileError, profile_path, profiles_on_offer

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
    # BranchyNet threshold rule: leave at the first exit of ``rule_exits`` whose confidence
    # reaches ``threshold`` (None: always ``exit_index``). Such a plan's static costs are those
    # of its longest path (every head evaluated, the last exit taken); the simulator runs the
    # resolved plan of the exit the input actually takes (:meth:`ScenarioModel.resolved`).
    threshold: float | None = None
    rule_exits: tuple[int, ...] = ()

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
        exit_part = (
            f"exit{self.exit_index}"
            if self.threshold is None
            else f"tau{self.threshold:g}{list(self.rule_exits)}".replace(" ", "")
        )
        return (
            f"{self.variant}/{exit_part}/dev[0:{self.cut_edge})"
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
            "exit_threshold": self.threshold,
            "rule_exits": list(self.rule_exits),
        }


@dataclass(frozen=True)
class ModelProfiles:
    """The profiles one scenario needs: per variant, the device, edge and cloud hardware."""

    device: dict[str, LayerProfile]
    edge: dict[str, LayerProfile]
    cloud: dict[str, LayerProfile]
    #: measured per-input answers (``model.input_correctness: measured``), else None
    table: AccuracyTable | None = None

    @classmethod
    def load(cls, cfg: ScenarioConfig) -> ModelProfiles:
        """The scenario's profiles: from its ``model.profiles_dir`` where present, else the
        shipped ones (``profiles/data``); likewise the accuracy table."""
        m = cfg.model
        own = Path(m.profiles_dir) if m.profiles_dir is not None else None

        def find(variant: str, hardware: str, key: str) -> LayerProfile:
            if own is not None and profile_path(m.name, variant, hardware, own).is_file():
                return find_profile(m.name, variant, hardware, own)
            if own is None or profile_path(m.name, variant, hardware).is_file():
                return find_profile(m.name, variant, hardware)
            raise ProfileError(  # neither the user's folder nor the shipped ones have it
                f"{key} {hardware!r}: no profile {m.name}/{variant}/{hardware}.json in "
                f"model.profiles_dir {own} nor in the shipped {DATA_DIR}; "
                f"{profiles_on_offer(m.name, variant, [own, DATA_DIR])}"
            )

        def table() -> AccuracyTable:
            if own is not None and accuracy_table_path(m.name, own).is_file():
                return load_accuracy_table(m.name, own)
            return load_accuracy_table(m.name)

        try:
            out = cls(
                device={v: find(v, cfg.devices.hardware, "devices.hardware") for v in m.variants},
                edge={v: find(v, cfg.edge.hardware, "edge.hardware") for v in m.variants},
                cloud={v: find(v, cfg.cloud.hardware, "cloud.hardware") for v in m.variants},
                table=table() if m.input_correctness == "measured" else None,
            )
        except ValueError as exc:
            raise ConfigError(f"{cfg.path}: {exc}") from exc
        out.check_table(cfg)
        return out

    def check_table(self, cfg: ScenarioConfig) -> None:
        """The accuracy table must describe the profiled model: same variants and exits."""
        if cfg.model.input_correctness != "measured":
            return
        t = self.table
        if t is None:
            raise ConfigError(
                f"{cfg.path}: model.input_correctness is 'measured' but no accuracy table "
                f"was given for {cfg.model.name}"
            )
        for v, prof in self.device.items():
            if v not in t.variants:
                raise ConfigError(
                    f"{cfg.path}: the accuracy table {t.path} has no variant {v!r} "
                    f"(it has {', '.join(t.variants)})"
                )
            after = tuple(x.after_unit for x in prof.exits)
            if after != t.exit_after:
                raise ConfigError(
                    f"{cfg.path}: exits of {prof.path} (after units {list(after)}) differ "
                    f"from the accuracy table {t.path} ({list(t.exit_after)})"
                )


def _sum_ms(prof: LayerProfile, unit_lo: int, unit_hi: int, heads: Sequence[int], bi: int) -> float:
    total = sum(prof.units[i].latency_ms_median[bi] for i in range(unit_lo, unit_hi))
    return total + sum(prof.exits[h].latency_ms_median[bi] for h in heads)


def _cut_bytes(prof: LayerProfile, cut: int) -> int:
    if cut == 0:
        return prof.input_raw_bytes
    unit = prof.units[cut - 1]
    int8 = prof.variant_info.get("precision") == "int8"
    return unit.output_bytes_int8 if int8 else unit.output_bytes_fp32


def _segment_memory(prof: LayerProfile, lo: int, hi: int, heads: Sequence[int], batch: int) -> int:
    """Weights of the segment plus its largest activation footprint at ``batch``."""
    entries = [prof.units[i] for i in range(lo, hi)]
    entries += [prof.exits[h] for h in heads]
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


def _tier_of(unit: int, c_edge: int, c_cloud: int) -> str:
    return "device" if unit < c_edge else "edge" if unit < c_cloud else "cloud"


def make_plan(
    index: int,
    variant: str,
    tiers: tuple[LayerProfile, LayerProfile, LayerProfile],
    exit_index: int,
    c_edge: int,
    c_cloud: int,
    batch: int,
    cache: str,
    accuracy: float,
    heads: Sequence[int] = (),
    threshold: float | None = None,
    rule_exits: tuple[int, ...] = (),
) -> Plan:
    """A plan whose request runs units ``[0, n_e)`` of the exit and the exit heads ``heads``
    (default: the exit's own head) on the tiers its cuts assign them to."""
    dev, edge, cloud = tiers
    n_e = dev.exits[exit_index].after_unit + 1
    run_heads = list(heads) or [exit_index]
    by_tier: dict[str, list[int]] = {"device": [], "edge": [], "cloud": []}
    for h in run_heads:
        by_tier[_tier_of(dev.exits[h].after_unit, c_edge, c_cloud)].append(h)
    head_tier = _tier_of(n_e - 1, c_edge, c_cloud)
    return Plan(
        index=index,
        variant=variant,
        exit_index=exit_index,
        n_units=n_e,
        cut_edge=c_edge,
        cut_cloud=c_cloud,
        batch_size=batch,
        cache_policy=cache,
        device_s=_sum_ms(dev, 0, c_edge, by_tier["device"], 0) / 1e3,
        edge_batch_ms=tuple(
            _sum_ms(edge, c_edge, c_cloud, by_tier["edge"], bi)
            for bi in range(len(edge.batch_sizes))
        ),
        cloud_s=_sum_ms(cloud, c_cloud, n_e, by_tier["cloud"], 0) / 1e3,
        uplink_bytes=_cut_bytes(dev, c_edge) if c_edge < n_e else 0,
        wan_bytes=_cut_bytes(dev, c_cloud) if c_cloud < n_e else 0,
        device_memory_bytes=_segment_memory(dev, 0, c_edge, by_tier["device"], 1),
        edge_memory_bytes=_segment_memory(edge, c_edge, c_cloud, by_tier["edge"], batch),
        accuracy=accuracy,
        raw_input_leaves=c_edge == 0 and n_e > 0,
        head_tier=head_tier,
        threshold=threshold,
        rule_exits=rule_exits,
    )


def apply_execution(plan: Plan, ex: ExecutionConfig) -> Plan:
    """``plan`` with its compute times as a runtime executes them (:class:`ExecutionConfig`;
    the default returns ``plan`` itself)."""
    if ex == ExecutionConfig():
        return plan

    def seg(ms: float, scale: float, overhead_ms: float) -> float:
        return ms * scale + overhead_ms if ms > 0 else 0.0

    return dataclasses.replace(
        plan,
        device_s=(
            seg(plan.device_s * 1e3, ex.device_compute_scale, ex.device_overhead_ms)
            + ex.device_per_request_ms
        )
        / 1e3,
        edge_batch_ms=tuple(
            seg(m, ex.edge_compute_scale, ex.edge_overhead_ms) for m in plan.edge_batch_ms
        ),
        cloud_s=seg(plan.cloud_s * 1e3, ex.cloud_compute_scale, ex.cloud_overhead_ms) / 1e3,
    )


def resolve_threshold_plan(plan: Plan, exit_taken: int, profiles: ModelProfiles) -> Plan:
    """The plan a threshold-rule request runs when it leaves at ``exit_taken``.

    Units up to that exit run where the rule plan's cuts put them (a cut beyond the exit is
    never reached: nothing is sent there); the heads of the rule's exits up to and including
    ``exit_taken`` run on the tiers of the units they follow (the earlier ones are evaluated
    and do not fire). Its index is -1 (not an action); its accuracy stays the rule's.
    """
    if plan.threshold is None or exit_taken not in plan.rule_exits:
        raise ValueError(f"plan {plan.name}: {exit_taken} is not one of its rule's exits")
    tiers = (
        profiles.device[plan.variant],
        profiles.edge[plan.variant],
        profiles.cloud[plan.variant],
    )
    n_e = tiers[0].exits[exit_taken].after_unit + 1
    heads = [e for e in plan.rule_exits if e <= exit_taken]
    return make_plan(
        -1,
        plan.variant,
        tiers,
        exit_taken,
        min(plan.cut_edge, n_e),
        min(plan.cut_cloud, n_e),
        plan.batch_size,
        plan.cache_policy,
        plan.accuracy,
        heads=heads,
        threshold=plan.threshold,
        rule_exits=plan.rule_exits,
    )


def rule_accuracy(table: AccuracyTable, variant: str, tau: float, exits: Sequence[int]) -> float:
    """Measured top-1 accuracy of the threshold rule over the table's test inputs."""
    taken = table.threshold_exits(variant, tau, list(exits))
    return float(table.threshold_correct(variant, taken).mean())


def build_catalogue(cfg: ScenarioConfig, profiles: ModelProfiles) -> list[Plan]:
    """All structurally valid plans of the scenario's action menu, in a stable order."""
    menu = cfg.action_menu
    plans: list[Plan] = []
    tiers_allowed = set(menu.tiers)

    def cut_pairs(n_e: int) -> list[tuple[int, int]]:
        cuts = sorted({c for c in (menu.cut_units or range(n_e + 1)) if 0 <= c < n_e} | {n_e})
        out = []
        for c_edge in cuts:
            for c_cloud in (c for c in cuts if c >= c_edge):
                if (
                    (c_edge > 0 and "device" not in tiers_allowed)
                    or (c_edge < c_cloud and "edge" not in tiers_allowed)
                    or (c_cloud < n_e and "cloud" not in tiers_allowed)
                ):
                    continue
                out.append((c_edge, c_cloud))
        return out

    def add_all(variant: str, tiers: Any, exit_index: int, accuracy: float, **rule: Any) -> None:
        n_e = tiers[0].exits[exit_index].after_unit + 1
        for c_edge, c_cloud in cut_pairs(n_e):
            batch_sizes = menu.batch_sizes if c_edge < c_cloud else (1,)
            for b in sorted(set(batch_sizes)):
                for policy in menu.cache_policies:
                    plans.append(
                        make_plan(
                            len(plans),
                            variant,
                            tiers,
                            exit_index,
                            c_edge,
                            c_cloud,
                            b,
                            policy,
                            accuracy,
                            **rule,
                        )
                    )

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
        bad = [c for c in menu.cut_units if not 0 <= c <= n_total]
        if bad:
            raise ConfigError(
                f"{cfg.path}: action_menu.cut_units: {bad} out of range for {cfg.model.name}, "
                f"which has {n_total} units (cuts 0..{n_total})"
            )
        exits = _resolve_exits(menu.exits, len(dev.exits), cfg.path)
        accs = exit_accuracies(cfg, dev, exits)
        for e in exits:
            add_all(variant, (dev, edge, cloud), e, accs[e])
        if menu.exit_thresholds:
            if profiles.table is None:
                raise ConfigError(
                    f"{cfg.path}: action_menu.exit_thresholds need measured per-input "
                    "confidences: set model.input_correctness: measured"
                )
            if len(exits) < 2:  # noqa: PLR2004 (a rule chooses between at least two exits)
                raise ConfigError(
                    f"{cfg.path}: action_menu.exit_thresholds need at least two exits in "
                    f"action_menu.exits, got {exits}"
                )
            for tau in menu.exit_thresholds:
                acc = rule_accuracy(profiles.table, variant, tau, exits)
                add_all(
                    variant,
                    (dev, edge, cloud),
                    exits[-1],
                    acc,
                    heads=exits,
                    threshold=tau,
                    rule_exits=tuple(exits),
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
