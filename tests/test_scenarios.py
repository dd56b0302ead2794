"""Every shipped scenario: loads strictly, registers an ID, passes check_env; the
analytic toy matches its closed form on the measured profiles."""

from __future__ import annotations

import edgerl.envs.registration as registration
import gymnasium as gym
import numpy as np
import pytest
from edgerl.envs.config import list_scenarios, load_scenario
from edgerl.envs.sim.build import build_simulator, scenario_model
from gymnasium.utils.env_checker import check_env

SCENARIOS = list_scenarios()


def test_the_promised_scenarios_ship():
    assert {"toy-analytic", "lte-dynamic", "hsdpa-mobile", "multi-tenant", "cache-heavy"} <= set(
        SCENARIOS
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_registered_id_passes_check_env(name):
    env_id = registration.scenario_env_id(name)
    assert env_id in registration.ENV_IDS
    env = gym.make(env_id, disable_env_checker=True)
    check_env(env.unwrapped, skip_render_check=True)
    generic = gym.make("edgerl/CollabInference-v2", scenario=name, split="eval")
    obs, _ = generic.reset(seed=0)
    assert generic.observation_space.contains(obs)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_has_a_description_and_feasible_plans(name):
    cfg = load_scenario(name)
    assert cfg.description
    model = scenario_model(name)
    assert model.static_mask.any()


@pytest.mark.parametrize("name", SCENARIOS)
def test_conservation_under_a_random_masked_policy(name):
    model = scenario_model(name)
    feasible = np.flatnonzero(model.static_mask)
    rng = np.random.default_rng(0)
    for split in ("train", "eval"):
        sim = build_simulator(model, np.random.default_rng(1), split)  # type: ignore[arg-type]
        for _ in range(2000):
            if sim.next_decision() is None:
                break
            sim.apply(int(rng.choice(feasible)))
            sim.check_conservation()


def test_toy_analytic_matches_the_closed_form_for_every_plan():
    model = scenario_model("toy-analytic")
    cfg = model.cfg
    up = cfg.network.uplink.constant_mbps * 1e6 / 8  # bytes/s
    down = cfg.network.downlink.constant_mbps * 1e6 / 8
    wan = cfg.network.wan.constant_mbps * 1e6 / 8
    access, wan_one_way = cfg.network.access_rtt_ms / 2e3, cfg.network.wan_rtt_ms / 2e3
    result = cfg.network.result_bytes
    closed = {}
    for p in model.plans:
        lat = p.device_s
        if p.offloads:
            lat += p.uplink_bytes / up + access + p.edge_batch_ms[0] / 1e3
            if p.uses_cloud:
                lat += p.wan_bytes / wan + wan_one_way + p.cloud_s + result / wan + wan_one_way
            lat += result / down + access
        closed[p.index] = lat
        sim = build_simulator(model, np.random.default_rng(0), record=True)
        sim.next_decision()
        sim.apply(p.index)
        sim.env.run(until=sim.env.now + 10.0)
        first = next(r for r in sim.finished if r.id == 0)
        assert first.latency_s == pytest.approx(lat, rel=1e-9), p.name
    best = min(closed, key=closed.__getitem__)
    assert model.plans[best].name  # the known optimum (printed by `edgerl scenarios --toy`)
