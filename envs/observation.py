"""The observation spec: what a device or edge can know at decision time, and how it is
normalised. numpy only, so the runtime planner builds observations with the same code.

Every feature is a past or present quantity; none reads the future (``tests/test_env.py``
checks this for the whole vector by splicing different futures onto identical pasts). Where
each comes from:

- measured by the device: its bandwidth estimate (mean over the past window), the bytes it
  has handed to its uplink and not had delivered, its CPU's queued work (profiled compute
  times of the jobs it has queued), its request rate, whether it sent the same input
  recently (its own history of fingerprints), the request's deadline and application, its
  energy budget;
- reported by the edge server (its own state at that instant; a real system piggybacks it
  on responses or broadcasts it): edge queue and batcher occupancy, the time until an edge
  worker is free (profiled compute of the batches it dispatched), the service time of its
  recent batches, cloud queue length, the bytes it has queued towards the cloud, the WAN
  bandwidth estimate, cache hit rate and fill.

Drain-time estimates divide queued bytes by the past-window bandwidth: they are what a sender
can predict, not the true future drain time.

Each feature is a raw measured quantity (with its unit) divided by a normalisation scale
and clipped to ``[0, OBS_CLIP]``. The scales are normalisation choices, not physical claims:
they bring typical values near 1 so the policy network sees well-conditioned inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Upper clip of every normalised feature (values above are rare outliers, still ordered).
OBS_CLIP = 10.0
#: Normalisation scales (typical magnitudes, not measurements).
BANDWIDTH_SCALE_MBPS = 10.0
WAN_SCALE_MBPS = 100.0
BACKLOG_SCALE_MS = 100.0
QUEUE_SCALE_KB = 100.0
RATE_SCALE_PER_S = 10.0


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    scale: float
    description: str


def observation_features(
    app_names: Sequence[str],
    edge_queue_capacity: int,
    cloud_queue_capacity: int,
    max_deadline_ms: float,
) -> list[Feature]:
    """The features of a scenario, in observation order."""
    feats = [
        Feature(
            "uplink_mbps",
            "Mbit/s",
            BANDWIDTH_SCALE_MBPS,
            "device's uplink bandwidth, mean over the past bandwidth_window_s",
        ),
        Feature(
            "wan_mbps",
            "Mbit/s",
            WAN_SCALE_MBPS,
            "edge-cloud bandwidth, mean over the past bandwidth_window_s",
        ),
        Feature("device_backlog_ms", "ms", BACKLOG_SCALE_MS, "work queued on the device CPU"),
        Feature(
            "uplink_queue_kb",
            "kB",
            QUEUE_SCALE_KB,
            "bytes handed to the uplink and not yet delivered (what the device has sent and "
            "not had acknowledged)",
        ),
        Feature(
            "uplink_drain_est_ms",
            "ms",
            BACKLOG_SCALE_MS,
            "estimated time to deliver the queued uplink bytes at the past-window bandwidth",
        ),
        Feature(
            "edge_queue_len",
            "requests",
            float(edge_queue_capacity),
            "requests waiting at the edge (batching + worker queue)",
        ),
        Feature("edge_backlog_ms", "ms", BACKLOG_SCALE_MS, "time until an edge worker is free"),
        Feature(
            "edge_batch_waiting",
            "requests",
            float(edge_queue_capacity),
            "requests waiting in batchers",
        ),
        Feature(
            "cloud_queue_len",
            "requests",
            float(cloud_queue_capacity),
            "requests waiting for a cloud worker",
        ),
        Feature(
            "wan_queue_kb",
            "kB",
            QUEUE_SCALE_KB,
            "bytes the edge has handed to the WAN towards the cloud and not yet delivered",
        ),
        Feature(
            "wan_drain_est_ms",
            "ms",
            BACKLOG_SCALE_MS,
            "estimated time to deliver the queued WAN bytes at the past-window bandwidth",
        ),
        Feature(
            "edge_batch_ms",
            "ms",
            BACKLOG_SCALE_MS,
            "service time of the edge's recent batches (EWMA of profiled batch latency)",
        ),
        Feature("cache_hit_rate", "fraction", 1.0, "recent edge cache hit rate (EWMA)"),
        Feature("cache_fill", "fraction", 1.0, "edge cache occupancy"),
        Feature(
            "arrival_rate_per_s",
            "1/s",
            RATE_SCALE_PER_S,
            "this device's recent request rate (EWMA of inter-arrival gaps)",
        ),
        Feature(
            "input_seen_recently",
            "indicator",
            1.0,
            "this device sent the same input (fingerprint) among its last "
            "64 requests (RECENT_INPUTS_PER_DEVICE in edgerl.envs.sim.simulator)",
        ),
        Feature("deadline_ms", "ms", max_deadline_ms, "this request's deadline"),
        Feature("energy_left", "fraction", 1.0, "device energy budget left this episode"),
    ]
    feats += [
        Feature(f"app_{a}", "indicator", 1.0, f"request is of application {a!r}") for a in app_names
    ]
    return feats


def feature_scales(features: Sequence[Feature]) -> np.ndarray:
    return np.array([f.scale for f in features], dtype=np.float64)


def normalise(raw: np.ndarray, inv_scales: np.ndarray) -> np.ndarray:
    """raw * (1 / scale), clipped to [0, OBS_CLIP], as a new float32 array.

    (Two ufuncs instead of ``np.clip``, which costs several times more on short vectors.)
    """
    x = raw * inv_scales
    np.maximum(x, 0.0, out=x)
    np.minimum(x, OBS_CLIP, out=x)
    return x.astype(np.float32)


class ObservationError(ValueError):
    """A raw state given to the planner is incomplete or invalid."""


def raw_from_mapping(features: Sequence[Feature], state: Mapping[str, Any]) -> np.ndarray:
    """Raw feature vector from named measurements; strict about missing/extra/NaN fields."""
    names = [f.name for f in features]
    missing = [n for n in names if n not in state]
    extra = [k for k in state if k not in names]
    if missing or extra:
        raise ObservationError(
            f"state fields do not match the observation spec: missing {missing}, unexpected {extra}"
        )
    raw = np.empty(len(names), dtype=np.float64)
    for i, n in enumerate(names):
        v = state[n]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ObservationError(f"state field {n!r}: expected a number, got {v!r}")
        if not np.isfinite(v):
            raise ObservationError(f"state field {n!r}: must be finite, got {v!r}")
        if v < 0:  # every feature is a rate, size, time, count, fraction or indicator
            raise ObservationError(f"state field {n!r}: must be >= 0, got {v!r}")
        raw[i] = v
    return raw


def spec_to_json(features: Sequence[Feature]) -> list[dict[str, Any]]:
    return [asdict(f) for f in features]


def spec_from_json(items: Sequence[Mapping[str, Any]]) -> list[Feature]:
    return [
        Feature(str(d["name"]), str(d["unit"]), float(d["scale"]), str(d["description"]))
        for d in items
    ]
