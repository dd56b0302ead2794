"""Baselines on the analytically solvable toy (tests/conftest.py), where each choice is known.

Toy: one device, constant 8 Mbit/s uplink / 80 Mbit/s WAN, 20/40 ms RTTs, rare Poisson
requests (no queueing), units [4, 8, 8, 4] ms on the device (edge 4x, cloud 8x faster), exits
after units 1 and 3 (accuracy 0.5 and 0.6), deadline 200 ms.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import synthetic_profile, toy_model
from edgerl.agents.baselines import (
    BaselineOptions,
    ClairvoyantGreedyPolicy,
    EdgentPolicy,
    NeurosurgeonPolicy,
    PlacementPolicy,
    RandomPolicy,
    UnknownBaselineError,
    closest_plan,
    list_baselines,
    make_baseline,
)
from edgerl.agents.best_fixed import SearchConfig, search_best_fixed
from edgerl.agents.latency import ObservationDecoder, PlanCostModel
from edgerl.envs.config import scenario_from_dict
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.plans import ModelProfiles, Plan
from edgerl.envs.sim.build import ScenarioModel
from edgerl.envs.sim.network import RADIO_MODELS

UP_MBPS, WAN_MBPS = 8.0, 80.0
ACCESS_ONE_WAY_S, WAN_ONE_WAY_S = 0.010, 0.020
RESULT_BYTES = 8
DEADLINE_S = 0.200


def tx_s(nbytes: int, mbps: float) -> float:
    return nbytes * 8 / (mbps * 1e6)


def closed_form_latency_s(p: Plan) -> float:
    """Latency of a lone request (no contention), written out independently of the agents."""
    lat = p.device_s
    if p.offloads:
        lat += tx_s(p.uplink_bytes, UP_MBPS) + ACCESS_ONE_WAY_S + p.edge_batch_ms[0] / 1e3
        if p.uses_cloud:
            lat += tx_s(p.wan_bytes, WAN_MBPS) + WAN_ONE_WAY_S + p.cloud_s
            lat += tx_s(RESULT_BYTES, WAN_MBPS) + WAN_ONE_WAY_S
        lat += tx_s(RESULT_BYTES, UP_MBPS) + ACCESS_ONE_WAY_S
    return lat


def closed_form_utility(p: Plan) -> float:
    """Default reward weights: accuracy - latency_s - 1 * (SLO missed)."""
    lat = closed_form_latency_s(p)
    return p.accuracy - lat - (lat > DEADLINE_S)


def device_edge(model: ScenarioModel, exit_index: int | None = None) -> list[Plan]:
    return [
        p
        for p in model.plans
        if p.cut_cloud == p.n_units and (exit_index is None or p.exit_index == exit_index)
    ]


def first_obs(model: ScenarioModel) -> tuple[CollabInferenceEnv, np.ndarray]:
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=0)
    return env, obs


def linear_toy(unit_ms: list[float]) -> ScenarioModel:
    """The toy with latencies exactly proportional to FLOPs (a regression can fit them)."""
    cfg = scenario_from_dict(
        {**_toy_dict(), "model": {"name": "toy", "variants": ["fp32"]}}, "<linear-toy>"
    )
    profs = {}
    for tier, factor in (("device", 1.0), ("edge", 0.25), ("cloud", 0.125)):
        prof = synthetic_profile(
            unit_ms=[m * factor for m in unit_ms],
            out_bytes=[400_000, 100_000, 20_000, 4000],
            exits_after=[1, 3],
            batch_scaling=1.0,
            head_ms=0.5 * factor,
            hardware=f"lin-{tier}",
        )
        units = tuple(
            dataclasses.replace(u, flops=m * 1e6, params_bytes=0)
            for u, m in zip(prof.units, unit_ms, strict=True)
        )
        exits = tuple(dataclasses.replace(x, flops=0.5e6, params_bytes=0) for x in prof.exits)
        profs[tier] = {"fp32": dataclasses.replace(prof, units=units, exits=exits)}
    return ScenarioModel.from_config(cfg, ModelProfiles(**profs))


def _toy_dict() -> dict:
    from conftest import TOY_SCENARIO

    return json.loads(json.dumps(TOY_SCENARIO))


# --------------------------------------------------------------------------- registry


def test_registry_lists_every_baseline_and_rejects_unknown_names():
    assert set(list_baselines()) >= {
        "device-only",
        "edge-only",
        "cloud-only",
        "random",
        "neurosurgeon",
        "edgent",
        "best-fixed",
        "clairvoyant",
        "edgent-fp32",
        "edgent-dynamic",
        "composite",
        "oracle",
    }
    assert "oracle" not in list_baselines(include_expensive=False)
    with pytest.raises(UnknownBaselineError, match="valid baselines: device-only, edge-only"):
        make_baseline("no-such-baseline")
    a, b = make_baseline("random"), make_baseline("random")
    assert a is not b


# --------------------------------------------------------------------------- placements


@pytest.mark.parametrize(
    ("placement", "cut_edge", "cut_cloud"),
    [("device", 4, 4), ("edge", 0, 4), ("cloud", 0, 0)],
)
def test_single_tier_baselines_pick_the_full_model_on_that_tier(
    toy, placement, cut_edge, cut_cloud
):
    pol = PlacementPolicy(placement)
    env, obs = first_obs(toy)
    pol.bind(env)
    p = toy.plans[pol.predict(obs, env.action_masks())]
    assert (p.cut_edge, p.cut_cloud, p.exit_index, p.variant) == (cut_edge, cut_cloud, 1, "fp32")
    assert pol.describe()["exact"] is True


def test_device_only_falls_back_to_the_closest_plan_that_fits_memory():
    # device memory for weights + activations of about two units only
    model = toy_model({"devices.memory_mb": 0.5})
    best, exact = closest_plan(model, "device")
    assert not exact
    assert model.static_mask[best.index]
    feasible = [p for p in model.plans if model.static_mask[p.index]]
    assert best.cut_edge == max(p.cut_edge for p in feasible)


# --------------------------------------------------------------------------- random


def test_random_is_masked_and_reproducible():
    model = toy_model({"devices.memory_mb": 0.5})
    env, obs = first_obs(model)
    mask = env.action_masks()
    pol = RandomPolicy()
    pol.bind(env)
    pol.reset(seed=3)
    a = [pol.predict(obs, mask) for _ in range(200)]
    pol.reset(seed=3)
    assert a == [pol.predict(obs, mask) for _ in range(200)]
    assert all(mask[i] for i in a)
    assert len(set(a)) > 1
    pol.reset(seed=4)
    assert a != [pol.predict(obs, mask) for _ in range(200)]


# --------------------------------------------------------------------------- Neurosurgeon


@pytest.mark.parametrize(
    ("unit_ms", "expected_cut"),
    [([4.0, 8.0, 8.0, 4.0], 4), ([40.0, 80.0, 80.0, 40.0], 0)],
)
def test_neurosurgeon_picks_the_closed_form_optimal_cut(unit_ms, expected_cut):
    model = toy_model(unit_ms=unit_ms)
    best = min(device_edge(model, exit_index=1), key=closed_form_latency_s)
    assert best.cut_edge == expected_cut  # the toy's known answer
    env, obs = first_obs(model)
    pol = NeurosurgeonPolicy(latency_source="profile")
    pol.bind(env)
    assert pol.predict(obs, env.action_masks()) == best.index


@pytest.mark.parametrize("unit_ms", [[4.0, 8.0, 8.0, 4.0], [40.0, 80.0, 80.0, 40.0]])
def test_neurosurgeon_regression_recovers_linear_latencies_and_the_optimal_cut(unit_ms):
    model = linear_toy(unit_ms)
    costs = PlanCostModel.from_scenario(model, "regression", fit_on="scenario")
    exact = PlanCostModel.from_scenario(model, "profile")
    np.testing.assert_allclose(costs.device_s, exact.device_s, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(costs.edge_s, exact.edge_s, rtol=1e-6, atol=1e-9)
    assert all(f.scenario_mape_pct < 1e-4 for f in costs.fits.values())
    env, obs = first_obs(model)
    pol = NeurosurgeonPolicy(latency_source="regression", fit_on="scenario")
    pol.bind(env)
    best = min(device_edge(model, exit_index=1), key=closed_form_latency_s)
    assert pol.predict(obs, env.action_masks()) == best.index


def test_predicted_latency_equals_the_closed_form_for_every_plan(toy):
    env, obs = first_obs(toy)
    costs = PlanCostModel.from_scenario(toy, "profile")
    state = ObservationDecoder(env.features).decode(obs)
    pred = costs.latency_s(np.arange(len(toy.plans)), state)
    expected = [closed_form_latency_s(p) for p in toy.plans]
    np.testing.assert_allclose(pred, expected, rtol=1e-6)  # float32 observation


def device_energy_j(p: Plan) -> float:
    """Device compute at the toy's 2 W + LTE radio energy (Huang et al. 2012 model)."""
    radio = RADIO_MODELS["lte"]
    e = 2.0 * p.device_s
    if p.offloads:
        e += radio.uplink_energy_j(p.uplink_bytes, tx_s(p.uplink_bytes, UP_MBPS))
        e += radio.downlink_energy_j(RESULT_BYTES, tx_s(RESULT_BYTES, UP_MBPS))
    return e


def test_neurosurgeon_energy_objective_picks_the_least_device_energy_cut():
    # slow device: uploading the raw input is fastest (0.23 s), but its radio energy (0.72 J)
    # exceeds running everything on the device at 2 W (0.48 J)
    model = toy_model(unit_ms=[40.0, 80.0, 80.0, 40.0])
    cands = device_edge(model, exit_index=1)
    by_energy = min(cands, key=device_energy_j)
    by_latency = min(cands, key=closed_form_latency_s)
    assert (by_energy.cut_edge, by_latency.cut_edge) == (4, 0)
    env, obs = first_obs(model)
    pol = NeurosurgeonPolicy("energy", latency_source="profile")
    pol.bind(env)
    assert pol.predict(obs, env.action_masks()) == by_energy.index


def test_online_baselines_use_only_the_observation_and_static_data(toy):
    """After bind, Neurosurgeon/Edgent decide without the simulator; the oracle needs it."""
    env, obs = first_obs(toy)
    mask = env.action_masks()
    pols = [NeurosurgeonPolicy(latency_source="profile"), EdgentPolicy(latency_source="profile")]
    for p in pols:
        p.bind(env)
    before = [p.predict(obs, mask) for p in pols]
    env.sim = None  # the live simulator is gone: observation + static data only
    assert [p.predict(obs, mask) for p in pols] == before
    oracle = ClairvoyantGreedyPolicy()
    oracle.bind(env)
    with pytest.raises(RuntimeError, match="no pending request"):
        oracle.predict(obs, mask)


# --------------------------------------------------------------------------- Edgent


def test_edgent_keeps_the_final_exit_when_it_meets_the_deadline(toy):
    env, obs = first_obs(toy)
    pol = EdgentPolicy(latency_source="profile")
    pol.bind(env)
    best = min(device_edge(toy, exit_index=1), key=closed_form_latency_s)
    assert closed_form_latency_s(best) <= DEADLINE_S
    assert pol.predict(obs, env.action_masks()) == best.index


def test_edgent_falls_back_to_an_earlier_exit_that_meets_the_deadline():
    model = toy_model(unit_ms=[40.0, 80.0, 80.0, 40.0])
    final = min(device_edge(model, exit_index=1), key=closed_form_latency_s)
    early = min(device_edge(model, exit_index=0), key=closed_form_latency_s)
    assert closed_form_latency_s(final) > DEADLINE_S >= closed_form_latency_s(early)
    env, obs = first_obs(model)
    pol = EdgentPolicy(latency_source="profile")
    pol.bind(env)
    assert pol.predict(obs, env.action_masks()) == early.index


def test_edgent_takes_the_fastest_plan_when_no_exit_can_meet_the_deadline():
    model = toy_model(
        {"workload.apps": [{"name": "cam", "deadline_ms": 1.0}]}, unit_ms=[40.0, 80.0, 80.0, 40.0]
    )
    fastest = min(device_edge(model), key=closed_form_latency_s)
    env, obs = first_obs(model)
    pol = EdgentPolicy(latency_source="profile")
    pol.bind(env)
    assert pol.predict(obs, env.action_masks()) == fastest.index


def _two_variant_toy() -> ScenarioModel:
    """fp32 too slow for the 200 ms deadline at its final exit; int8 4x faster, a little less
    accurate at the final exit (0.75 vs 0.8) but far more than fp32's early exit (0.5)."""
    cfg = scenario_from_dict(
        {**_toy_dict(), "model": {"name": "toy", "variants": ["fp32", "int8"]}}, "<two-variant>"
    )
    speed = {"fp32": 1.0, "int8": 0.25}
    acc = {"fp32": [0.5, 0.8], "int8": [0.45, 0.75]}
    profs = {
        tier: {
            v: synthetic_profile(
                unit_ms=[m * factor * speed[v] for m in (40.0, 80.0, 80.0, 40.0)],
                out_bytes=[400_000, 100_000, 20_000, 4000],
                exits_after=[1, 3],
                accuracy=acc[v],
                variant=v,
            )
            for v in cfg.model.variants
        }
        for tier, factor in (("device", 1.0), ("edge", 0.25), ("cloud", 0.125))
    }
    return ScenarioModel.from_config(cfg, ModelProfiles(**profs))


def test_edgent_right_sizes_over_variants_and_the_fp32_form_does_not():
    """Edgent's right-sizing: the most accurate (variant, exit) predicted to meet the deadline.
    With the variants as accuracy levels it runs int8 to its final exit (0.75); restricted to
    fp32 (the paper's single-model form) it can only fall back to the early exit (0.5)."""
    model = _two_variant_toy()
    fp32_final = [p for p in device_edge(model, 1) if p.variant == "fp32"]
    assert min(closed_form_latency_s(p) for p in fp32_final) > DEADLINE_S
    int8_final = min(
        (p for p in device_edge(model, 1) if p.variant == "int8"), key=closed_form_latency_s
    )
    fp32_early = min(
        (p for p in device_edge(model, 0) if p.variant == "fp32"), key=closed_form_latency_s
    )
    assert closed_form_latency_s(int8_final) <= DEADLINE_S
    assert closed_form_latency_s(fp32_early) <= DEADLINE_S
    env, obs = first_obs(model)
    chosen = {}
    for name in ("edgent", "edgent-fp32"):
        pol = make_baseline(name, BaselineOptions(latency_source="profile"))
        pol.bind(env)
        chosen[name] = pol.predict(obs, env.action_masks())
    assert chosen == {"edgent": int8_final.index, "edgent-fp32": fp32_early.index}


# --------------------------------------------------------------------------- oracle / search


def test_clairvoyant_picks_the_closed_form_best_plan(toy):
    env, obs = first_obs(toy)
    pol = ClairvoyantGreedyPolicy()
    pol.bind(env)
    best = max(toy.plans, key=closed_form_utility)
    assert pol.predict(obs, env.action_masks()) == best.index


def test_best_fixed_finds_the_closed_form_best_plan_and_caches_it(tmp_path):
    model = toy_model({"horizon_s": 40.0})
    cfg = SearchConfig(screen_episodes=1, episodes=2, finalists=3, horizon_s=40.0)
    res = search_best_fixed(model, cfg, tmp_path)
    best = max(model.plans, key=closed_form_utility)
    assert res.best_index == best.index and res.complete
    assert res.plans_evaluated == int(model.static_mask.sum())
    assert res.cache_file is not None and res.cache_file.is_file()
    assert oct(os.stat(res.cache_file).st_mode & 0o777) == "0o644"
    again = search_best_fixed(model, cfg, tmp_path)
    assert again.extra.get("from_cache") and again.best_index == res.best_index
    res.cache_file.write_text("{corrupt", encoding="utf-8")  # a torn/corrupt cache: recompute
    assert search_best_fixed(model, cfg, tmp_path).best_index == best.index


def test_best_fixed_policy_through_the_registry(tmp_path, toy):
    opts = BaselineOptions(search=SearchConfig(episodes=1, horizon_s=30.0), cache_dir=str(tmp_path))
    pol = make_baseline("best-fixed", opts)
    env, obs = first_obs(toy)
    pol.bind(env)
    assert pol.predict(obs) == max(toy.plans, key=closed_form_utility).index
    assert pol.describe()["complete"] is True


def test_best_fixed_wall_time_bound_stops_early_and_does_not_cache(tmp_path):
    model = toy_model({"horizon_s": 40.0})
    cfg = SearchConfig(episodes=1, horizon_s=40.0, max_wall_s=1e-9)
    res = search_best_fixed(model, cfg, tmp_path)
    assert not res.complete
    assert res.plans_evaluated < int(model.static_mask.sum())
    assert list(tmp_path.iterdir()) == []
