"""Online latency and device-energy predictions for the model-based baselines.

Neurosurgeon (Kang et al., ASPLOS 2017) and Edgent (Li, Zhou, Chen, IEEE TWC 2019) choose a
plan from *predicted* costs: per-layer compute latencies from regression models of each layer
type on each piece of hardware, plus transfer times from the current bandwidth estimate. This
module builds those predictions for every plan of a scenario from information a real system has:

- static (read once at :meth:`PlanCostModel.from_scenario`): per-unit compute latency of each
  tier, predicted by :mod:`edgerl.profiles.regression` models (``source="regression"``, the
  default; see :func:`fit_tier_models` for what they are fitted on) or read from the
  scenario's profiles (``source="profile"``: the costs the simulator itself uses, an upper
  bound on what a regression can know); bytes crossing each cut; link RTTs; device power and
  the radio power model;
- online (:meth:`PlanCostModel.decode`): the observation of the pending request: uplink and
  WAN bandwidth estimates (mean over the past window, never the future), the device CPU and
  edge backlogs (profiled compute of the queued jobs), the estimated drain times of the
  uplink and WAN queues (queued bytes / past-window bandwidth), and the deadline.

The prediction is the pipeline of :mod:`edgerl.envs.sim.simulator` with the observed
backlogs as start delays and each link's estimated bandwidth held constant for the
request's duration. It ignores edge batching (every candidate runs at batch size 1, as
Neurosurgeon and Edgent do), cache lookups and cloud queueing (not observed in time units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from edgerl.envs.observation import OBS_CLIP, Feature
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import ScenarioModel
from edgerl.envs.sim.network import BITS_PER_BYTE, BITS_PER_MBIT, RADIO_MODELS
from edgerl.profiles import (
    DATA_DIR,
    LayerProfile,
    interpolate_latency,
    iter_profile_files,
    load_profile,
)
from edgerl.profiles.regression import (
    LatencyModel,
    fit_latency_models,
    profile_precision,
    unit_io_bytes,
)

LatencySource = Literal["regression", "profile"]
FitOn = Literal["hardware", "scenario"]
TIERS = ("device", "edge", "cloud")
MS_PER_S = 1e3
#: Bandwidth estimates below this are treated as an outage (transfers never finish) [Mbit/s].
MIN_BANDWIDTH_MBPS = 1e-9

#: The observation features the predictions read (names from edgerl.envs.observation).
USED_FEATURES = (
    "uplink_mbps",
    "wan_mbps",
    "device_backlog_ms",
    "uplink_drain_est_ms",
    "edge_backlog_ms",
    "wan_drain_est_ms",
    "deadline_ms",
)


@dataclass(frozen=True)
class ObservedState:
    """What the device knows when it decides (decoded from the observation)."""

    uplink_mbps: float
    wan_mbps: float
    device_backlog_s: float
    uplink_backlog_s: float  # estimated: queued bytes / past-window bandwidth
    edge_backlog_s: float
    wan_backlog_s: float  # estimated, as the uplink's
    deadline_s: float


class ObservationDecoder:
    """Raw values back from a normalised observation: ``obs * scale``.

    A feature at the clip value ``OBS_CLIP`` only says "at least ``OBS_CLIP * scale``"; the
    decoder returns that lower bound (e.g. backlogs beyond 1 s read as 1 s).
    """

    def __init__(self, features: Sequence[Feature]) -> None:
        names = [f.name for f in features]
        missing = [n for n in USED_FEATURES if n not in names]
        if missing:
            raise ValueError(f"observation spec lacks features {missing} (have {names})")
        self._idx = np.array([names.index(n) for n in USED_FEATURES])
        self._scale = np.array([features[i].scale for i in self._idx], dtype=np.float64)
        self.clip = OBS_CLIP

    def decode(self, observation: np.ndarray) -> ObservedState:
        v = np.asarray(observation, dtype=np.float64)[self._idx] * self._scale
        return ObservedState(
            uplink_mbps=float(v[0]),
            wan_mbps=float(v[1]),
            device_backlog_s=float(v[2]) / MS_PER_S,
            uplink_backlog_s=float(v[3]) / MS_PER_S,
            edge_backlog_s=float(v[4]) / MS_PER_S,
            wan_backlog_s=float(v[5]) / MS_PER_S,
            deadline_s=float(v[6]) / MS_PER_S,
        )


# --------------------------------------------------------------------------- regressions


@dataclass(frozen=True)
class TierFit:
    """A tier's latency regression and what it was fitted on."""

    tier: str
    hardware: str
    model: LatencyModel
    trained_on: tuple[str, ...]
    #: Mean absolute percentage error of the predicted batch-1 latency of every unit and exit
    #: head of the scenario's model on this tier, against its profile [%] (a diagnostic).
    scenario_mape_pct: float
    in_sample: bool  # the scenario's own model was among the training profiles

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "hardware": self.hardware,
            "trained_on": list(self.trained_on),
            "scenario_mape_pct": self.scenario_mape_pct,
            "in_sample": self.in_sample,
        }


def _shipped_profiles_of(hardware: str, root: Any = DATA_DIR) -> list[LayerProfile]:
    return [load_profile(p) for p in iter_profile_files(root) if p.stem == hardware]


def fit_tier_models(model: ScenarioModel, fit_on: FitOn = "hardware") -> dict[str, TierFit]:
    """Per-layer-type latency regressions for each tier's hardware.

    Args:
        model: the scenario.
        fit_on: ``"hardware"`` (default): every shipped profile of the tier's hardware
            (``profiles/data/*/*/<hardware>.json``, all models and variants) plus the
            scenario's own profiles of that tier, as Neurosurgeon profiles layer types once
            per device; the scenario's model is therefore in the training set (in-sample).
            ``"scenario"``: only the scenario's own profiles of the tier.

    Returns:
        ``{tier: TierFit}`` for ``device``, ``edge`` and ``cloud``.
    """
    fits: dict[str, TierFit] = {}
    for tier in TIERS:
        own: dict[str, LayerProfile] = getattr(model.profiles, tier)
        hardware = next(iter(own.values())).hardware.name
        profs: dict[tuple[str, str, str], LayerProfile] = {p.key: p for p in own.values()}
        if fit_on == "hardware":
            for p in _shipped_profiles_of(hardware):
                profs.setdefault(p.key, p)
        elif fit_on != "scenario":
            raise ValueError(f"fit_on must be 'hardware' or 'scenario', got {fit_on!r}")
        lm = fit_latency_models(profs.values(), source=f"edgerl.agents.latency ({fit_on})")
        errs = []
        for prof in own.values():
            pred = predicted_entry_ms(lm, prof)
            meas = [prof.latency_ms(e, 1) for e in (*prof.units, *prof.exits)]
            errs += [abs(p - m) / m for p, m in zip(pred, meas, strict=True) if m > 0]
        fits[tier] = TierFit(
            tier=tier,
            hardware=hardware,
            model=lm,
            trained_on=tuple(sorted("/".join(k) for k in profs)),
            scenario_mape_pct=float(np.mean(errs) * 100.0) if errs else float("nan"),
            in_sample=True,
        )
    return fits


def predicted_entry_ms(lm: LatencyModel, prof: LayerProfile, batch_size: int = 1) -> list[float]:
    """Predicted latency of every unit, then every exit head, of ``prof`` [ms]."""
    prec = profile_precision(prof)
    out = []
    for u, (in_b, out_b) in zip(prof.units, unit_io_bytes(prof), strict=True):
        out.append(
            lm.predict_ms(
                u.layer_type,
                u.flops,
                in_b,
                out_b,
                u.params_bytes,
                batch_size,
                peak_activation_bytes=u.peak_activation_bytes,
                precision=prec,
                allow_fallback=True,
            )
        )
    for x in prof.exits:
        in_b = prof.units[x.after_unit].output_bytes_fp32
        out.append(
            lm.predict_ms(
                x.layer_type,
                x.flops,
                in_b,
                0,
                x.params_bytes,
                batch_size,
                peak_activation_bytes=x.peak_activation_bytes,
                precision=prec,
                allow_fallback=True,
            )
        )
    return out


# --------------------------------------------------------------------------- plan costs


@dataclass(frozen=True)
class PlanCostModel:
    """Predicted compute time per tier of every plan, and the static link figures.

    Arrays are indexed by plan index (all plans of the catalogue).
    """

    device_s: np.ndarray
    edge_s: np.ndarray
    cloud_s: np.ndarray
    uplink_bytes: np.ndarray
    wan_bytes: np.ndarray
    offloads: np.ndarray
    uses_edge: np.ndarray
    uses_cloud: np.ndarray
    access_one_way_s: float
    wan_one_way_s: float
    result_bytes: int
    device_power_w: float
    radio_alpha_up_mw_per_mbps: float
    radio_alpha_down_mw_per_mbps: float
    radio_beta_mw: float
    source: str
    fits: dict[str, TierFit] = field(default_factory=dict)

    @classmethod
    def from_scenario(
        cls, model: ScenarioModel, source: LatencySource = "regression", fit_on: FitOn = "hardware"
    ) -> PlanCostModel:
        """Static costs of every plan (see the module docstring for ``source``)."""
        plans = model.plans
        if source == "profile":
            dev = np.array([p.device_s for p in plans])
            edge = np.array(
                [
                    interpolate_latency(model.edge_batch_sizes, p.edge_batch_ms, 1) / MS_PER_S
                    for p in plans
                ]
            )
            cloud = np.array([p.cloud_s for p in plans])
            fits: dict[str, TierFit] = {}
        elif source == "regression":
            fits = fit_tier_models(model, fit_on)
            per_tier = {
                tier: {
                    v: predicted_entry_ms(fits[tier].model, prof)
                    for v, prof in getattr(model.profiles, tier).items()
                }
                for tier in TIERS
            }
            n_units = {v: len(p.units) for v, p in model.profiles.device.items()}
            dev, edge, cloud = (
                np.array(
                    [_segment_s(per_tier[t][p.variant], n_units[p.variant], p, t) for p in plans]
                )
                for t in TIERS
            )
        else:
            raise ValueError(f"latency source must be 'regression' or 'profile', got {source!r}")
        net = model.cfg.network
        radio = RADIO_MODELS[model.cfg.devices.radio]
        return cls(
            device_s=dev,
            edge_s=edge,
            cloud_s=cloud,
            uplink_bytes=np.array([p.uplink_bytes for p in plans], dtype=np.float64),
            wan_bytes=np.array([p.wan_bytes for p in plans], dtype=np.float64),
            offloads=np.array([p.offloads for p in plans]),
            uses_edge=np.array([p.uses_edge_compute for p in plans]),
            uses_cloud=np.array([p.uses_cloud for p in plans]),
            access_one_way_s=net.access_rtt_ms / MS_PER_S / 2,
            wan_one_way_s=net.wan_rtt_ms / MS_PER_S / 2,
            result_bytes=net.result_bytes,
            device_power_w=model.device_power_w,
            radio_alpha_up_mw_per_mbps=radio.alpha_up_mw_per_mbps,
            radio_alpha_down_mw_per_mbps=radio.alpha_down_mw_per_mbps,
            radio_beta_mw=radio.beta_mw,
            source=source,
            fits=fits,
        )

    def latency_s(self, idx: np.ndarray, s: ObservedState) -> np.ndarray:
        """Predicted end-to-end latency of plans ``idx`` for a request decided now [s]."""
        up_s_per_byte = BITS_PER_BYTE / (max(s.uplink_mbps, MIN_BANDWIDTH_MBPS) * BITS_PER_MBIT)
        wan_s_per_byte = BITS_PER_BYTE / (max(s.wan_mbps, MIN_BANDWIDTH_MBPS) * BITS_PER_MBIT)
        dev = self.device_s[idx]
        t = np.where(dev > 0, s.device_backlog_s + dev, 0.0)
        t_up = np.maximum(t, s.uplink_backlog_s) + self.uplink_bytes[idx] * up_s_per_byte
        t_up += self.access_one_way_s
        t_edge = np.where(
            self.uses_edge[idx], np.maximum(t_up, s.edge_backlog_s) + self.edge_s[idx], t_up
        )
        cloud_leg = (
            self.wan_bytes[idx] * wan_s_per_byte
            + self.cloud_s[idx]
            + self.result_bytes * wan_s_per_byte
            + 2 * self.wan_one_way_s
        )
        t_cloud = np.where(
            self.uses_cloud[idx], np.maximum(t_edge, s.wan_backlog_s) + cloud_leg, t_edge
        )
        t_back = t_cloud + self.result_bytes * up_s_per_byte + self.access_one_way_s
        return np.where(self.offloads[idx], t_back, t)

    def device_energy_j(self, idx: np.ndarray, s: ObservedState) -> np.ndarray:
        """Predicted device energy of plans ``idx``: compute + radio (Huang et al. 2012) [J]."""
        mbps = max(s.uplink_mbps, MIN_BANDWIDTH_MBPS)
        up_mbit = self.uplink_bytes[idx] * BITS_PER_BYTE / BITS_PER_MBIT
        res_mbit = self.result_bytes * BITS_PER_BYTE / BITS_PER_MBIT
        radio_mj = (
            self.radio_alpha_up_mw_per_mbps * up_mbit
            + self.radio_beta_mw * up_mbit / mbps
            + self.radio_alpha_down_mw_per_mbps * res_mbit
            + self.radio_beta_mw * res_mbit / mbps
        )
        compute_j = self.device_power_w * self.device_s[idx]
        return compute_j + np.where(self.offloads[idx], radio_mj / MS_PER_S, 0.0)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "fits": {t: f.to_dict() for t, f in self.fits.items()}}


def _segment_s(entry_ms: Sequence[float], n_units: int, p: Plan, tier: str) -> float:
    """Predicted compute time of ``tier``'s segment of plan ``p`` (batch 1) [s]."""
    lo, hi = {
        "device": (0, p.cut_edge),
        "edge": (p.cut_edge, p.cut_cloud),
        "cloud": (p.cut_cloud, p.n_units),
    }[tier]
    total = sum(entry_ms[lo:hi])
    if p.head_tier == tier:
        total += entry_ms[n_units + p.exit_index]
    return total / MS_PER_S
