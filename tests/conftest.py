"""Shared test fixtures.

``synthetic_profile`` builds small profiles with round numbers for analytically solvable
simulator tests. They are test inputs only; shipped profiles are measured (profiles/data).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from edgerl.envs.config import scenario_from_dict
from edgerl.envs.plans import ModelProfiles
from edgerl.envs.sim.build import ScenarioModel
from edgerl.profiles import LayerProfile, profile_from_dict

BATCH_SIZES = [1, 2, 4, 8, 16]


def synthetic_profile(
    unit_ms: list[float],
    out_bytes: list[int],
    exits_after: list[int],
    head_ms: float = 0.5,
    input_raw_bytes: int = 150_528,
    accuracy: list[float] | None = None,
    hardware: str = "test-hw",
    batch_scaling: float = 0.5,
    params_bytes: int = 1000,
    variant: str = "fp32",
) -> LayerProfile:
    """Latency at batch b = ms * (1 + batch_scaling * (b - 1)) for every unit and head."""

    def lat(ms: float) -> list[float]:
        return [ms * (1 + batch_scaling * (b - 1)) for b in BATCH_SIZES]

    acc = accuracy or [0.5 + 0.1 * i for i in range(len(exits_after))]
    data: dict[str, Any] = {
        "schema_version": 1,
        "kind": "edgerl.layer_profile",
        "model": "toy",
        "family": "toy",
        "variant": variant,
        "variant_info": {"precision": "int8" if variant == "int8" else "fp32"},
        "hardware": {
            "name": hardware,
            "device_class": "test",
            "derived": False,
            "source": "synthetic test input",
            "active_power_w": 2.0,
        },
        "provenance": {"note": "synthetic, tests only"},
        "input": {
            "shape": [3, 224, 224],
            "raw_bytes": input_raw_bytes,
            "tensor_bytes": 4 * input_raw_bytes,
        },
        "batch_sizes": BATCH_SIZES,
        "timing": {"warmup_runs": 0},
        "units": [
            {
                "name": f"u{i}",
                "layer_type": "conv",
                "flops": 1e6,
                "params_bytes": params_bytes,
                "peak_activation_bytes": 2 * ob,
                "latency_ms_median": lat(ms),
                "latency_ms_p95": lat(ms),
                "runs": [10] * 5,
                "output_shape": [ob // 4],
                "output_bytes_fp32": ob,
                "output_bytes_int8": max(1, ob // 4),
            }
            for i, (ms, ob) in enumerate(zip(unit_ms, out_bytes, strict=True))
        ],
        "exits": [
            {
                "name": f"exit{i}",
                "layer_type": "head",
                "flops": 1e3,
                "params_bytes": 100,
                "peak_activation_bytes": 100,
                "latency_ms_median": lat(head_ms),
                "latency_ms_p95": lat(head_ms),
                "runs": [10] * 5,
                "after_unit": a,
                "accuracy": acc[i],
                "accuracy_source": "synthetic test input",
            }
            for i, a in enumerate(exits_after)
        ],
    }
    return profile_from_dict(data)


TOY_SCENARIO: dict[str, Any] = {
    "name": "toy-test",
    "description": "one device, constant bandwidth, no contention",
    "horizon_s": 100.0,
    "model": {"name": "toy", "variants": ["fp32"]},
    "devices": {"count": 1, "hardware": "dev", "memory_mb": 1000.0, "radio": "lte"},
    "edge": {
        "hardware": "edge",
        "workers": 1,
        "memory_mb": 1000.0,
        "max_batch_wait_ms": 10.0,
        "queue_capacity": 100,
        "cache_capacity": 0,
    },
    "cloud": {"hardware": "cloud", "workers": 1, "queue_capacity": 100},
    "network": {
        "uplink": {"constant_mbps": 8.0},
        "downlink": {"constant_mbps": 8.0},
        "access_rtt_ms": 20.0,
        "wan": {"constant_mbps": 80.0},
        "wan_rtt_ms": 40.0,
    },
    "workload": {
        "arrival": {"process": "poisson", "rate_per_s": 0.5},
        "apps": [{"name": "cam", "deadline_ms": 200.0}],
    },
    "action_menu": {"batch_sizes": [1], "cache_policies": ["none"]},
}


def toy_model(overrides: dict[str, Any] | None = None, **profile_kw: Any) -> ScenarioModel:
    """A scenario model over synthetic profiles: device 4x slower than edge, cloud 2x faster."""
    data = copy.deepcopy(TOY_SCENARIO)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    cfg = scenario_from_dict(data)
    base = dict(
        unit_ms=[4.0, 8.0, 8.0, 4.0], out_bytes=[400_000, 100_000, 20_000, 4000], exits_after=[1, 3]
    )
    base.update(profile_kw)
    dev_ms = base.pop("unit_ms")
    profs = {}
    for tier, factor in (("device", 1.0), ("edge", 0.25), ("cloud", 0.125)):
        profs[tier] = {
            v: synthetic_profile(unit_ms=[m * factor for m in dev_ms], variant=v, **base)
            for v in cfg.model.variants
        }
    return ScenarioModel.from_config(cfg, ModelProfiles(**profs))


def busy_toy_model(devices: int, horizon_s: float) -> ScenarioModel:
    """A slow edge and WAN (queues everywhere), batch windows, several batch targets, LRU/LFU/
    cost caching with evictions and shedding at once; constant links and round service times,
    so events tie in time. The what-if exactness tests run on it."""
    return toy_model(
        {
            "devices.count": devices,
            "workload.arrival.rate_per_s": 40.0 / devices,
            "workload.catalogue_size": 8,
            "workload.apps": [{"name": "cam", "deadline_ms": 400.0}],
            "horizon_s": horizon_s,
            "network.uplink": {"constant_mbps": 50.0},
            "network.downlink": {"constant_mbps": 50.0},
            "network.wan": {"constant_mbps": 20.0},
            "action_menu.batch_sizes": [1, 2, 4],
            "action_menu.cache_policies": ["none", "lru", "lfu", "cost"],
            "edge.max_batch_wait_ms": 20.0,
            "edge.cache_capacity": 3,
            "shedding": "deadline",
        },
        unit_ms=[20.0, 40.0, 40.0, 20.0],
    )


@pytest.fixture
def toy() -> ScenarioModel:
    return toy_model()
