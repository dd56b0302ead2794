"""Strict scenario configuration: every mistake names its key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from conftest import TOY_SCENARIO
from edgerl.envs.config import ConfigError, load_scenario, scenario_from_dict


def with_change(dotted: str, value: Any, delete: bool = False) -> dict[str, Any]:
    data = copy.deepcopy(TOY_SCENARIO)
    node = data
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[p]
    if delete:
        del node[leaf]
    else:
        node[leaf] = value
    return data


def test_toy_config_is_valid():
    cfg = scenario_from_dict(copy.deepcopy(TOY_SCENARIO))
    assert cfg.devices.count == 1
    assert cfg.network.uplink.constant_mbps == 8.0


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        (
            "network.access_rtt_s",
            0.02,
            r"network\.access_rtt_s: unknown key; did you mean 'access_rtt_ms'",
        ),
        ("edge.cache_size", 10, r"edge\.cache_size: unknown key; did you mean 'cache_capacity'"),
        ("horizon_s", "long", r"horizon_s: expected a number"),
        ("horizon_s", -1.0, r"horizon_s must be > 0"),
        ("devices.count", 1.5, r"devices\.count: expected an integer"),
        ("devices.radio", "5g", r"devices\.radio: expected one of \['lte', '3g', 'wifi'\]"),
        ("network.uplink", {"constant_mbps": 5.0, "trace_family": "x"}, r"exactly one of"),
        ("network.uplink", {"constant_mbps": -5.0}, r"constant_mbps: must be > 0"),
        ("workload.arrival", {"process": "mmpp", "rates_per_s": [1.0]}, r"mmpp needs"),
        ("workload.apps", [], r"at least one application"),
        ("action_menu.cache_policies", ["lru"], r"cache_capacity is 0"),
        ("action_menu.cache_policies", ["fifo"], r"expected one of"),
        (
            "reward",
            {"latency_per_ms": 1.0},
            r"reward\.latency_per_ms: unknown key; did you mean 'latency_per_s'",
        ),
        (
            "model.accuracy",
            {"int8": {"per_exit": [0.5], "source": "x"}},
            r"not one of model\.variants",
        ),
        ("horizon_s", float("nan"), r"horizon_s: expected a number"),
        ("reward", {"latency_cap_s": 0.0}, r"reward\.latency_cap_s must be > 0"),
        ("reward", {"latency_cap_s": "2 s"}, r"reward\.latency_cap_s: expected a number"),
    ],
)
def test_bad_values_name_the_key(dotted, value, message):
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(with_change(dotted, value), "bad.yaml")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"bad\.yaml\.edge\.workers: missing required key"):
        scenario_from_dict(with_change("edge.workers", None, delete=True), "bad.yaml")


def test_unknown_scenario_name_lists_shipped_ones():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; shipped:"):
        load_scenario("nope")


def test_malformed_yaml_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(p)
