"""The serving-side composite and Edgent's dynamic mode (agents/serving.py), and the
change-point detector they use (agents/changepoint.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.baselines import make_baseline
from edgerl.agents.changepoint import GaussianBOCPD
from edgerl.agents.serving import EdgentDynamicPolicy, ServingCompositePolicy
from edgerl.envs.env import CollabInferenceEnv
from test_baselines import _two_variant_toy, closed_form_latency_s


def _obs_with(env: CollabInferenceEnv, obs: np.ndarray, **raw: float) -> np.ndarray:
    out = obs.copy()
    for name, value in raw.items():
        i = next(k for k, f in enumerate(env.features) if f.name == name)
        out[i] = value / env.features[i].scale
    return out


def test_bocpd_detects_a_level_shift_within_a_few_observations():
    rng = np.random.default_rng(0)
    det = GaussianBOCPD(200.0, 0.3, math.log(5.0), 2.0)
    xs = np.r_[math.log(20.0) + 0.3 * rng.standard_normal(100), 0.3 * rng.standard_normal(60)]
    changes = [i for i, x in enumerate(xs) if det.update(float(x))]
    assert changes and 100 <= changes[0] <= 103
    assert all(c >= 100 for c in changes)  # no false alarm on the stationary part
    assert math.exp(det.segment_mean) == pytest.approx(1.0, rel=0.15)


def test_edgent_dynamic_switches_configuration_at_a_bandwidth_step():
    """Device too slow for the final exit (240 ms > 200 ms deadline): at 50 Mbit/s Edgent
    uploads the raw input to the edge (final exit); at 1 Mbit/s it keeps the early exit on
    the device. The configuration follows the change point, not every sample."""
    model = toy_model(unit_ms=[40.0, 80.0, 80.0, 40.0])
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=0)
    pol = EdgentDynamicPolicy(
        latency_source="profile", states_mbps=(np.array([5.0]), np.array([1.0, 50.0]))
    )
    pol.bind(env)
    rng = np.random.default_rng(1)
    trace = np.r_[
        50.0 * np.exp(0.2 * rng.standard_normal(60)), np.exp(0.2 * rng.standard_normal(30))
    ]
    chosen = [
        pol.predict(_obs_with(env, obs, uplink_mbps=float(b)), env.action_masks()) for b in trace
    ]
    high, low = (model.plans[i] for i in (chosen[0], chosen[-1]))
    assert high.exit_index == 1 and high.cut_edge == 0  # raw input to the edge, final exit
    assert low.exit_index == 0 and not low.offloads  # early exit on the device
    assert set(chosen[:60]) == {chosen[0]}
    switch = next(i for i, c in enumerate(chosen) if c != chosen[0])
    assert 60 <= switch <= 63
    assert set(chosen[switch:]) == {chosen[-1]}
    assert pol.changes == 1


@pytest.mark.parametrize(("tolerance", "variant"), [(0.02, "fp32"), (0.1, "int8")])
def test_composite_takes_the_cheapest_accurate_enough_variant_meeting_the_deadline(
    tolerance, variant
):
    """fp32 (0.8) cannot meet the deadline at its final exit, int8 (0.75) can. Within 0.02 of
    the best accuracy only fp32 qualifies: the fastest fp32 plan, however late; within 0.1,
    int8 is the cheapest variant and meets the deadline."""
    model = _two_variant_toy()
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=0)
    pol = ServingCompositePolicy(latency_source="profile", accuracy_tolerance=tolerance)
    pol.bind(env)
    pol.reset()
    plan = model.plans[pol.predict(obs, env.action_masks())]
    assert plan.variant == variant and plan.exit_index == 1
    same = [
        p for p in model.plans if p.variant == variant and p.exit_index == 1 and p.batch_size == 1
    ]
    assert closed_form_latency_s(plan) == pytest.approx(min(map(closed_form_latency_s, same)))


def test_composite_aimd_batch_and_lru_cache():
    """Raw upload to the edge is the fastest plan. While the edge's recent batches are fast
    the batch target grows by one per decision up to the largest offered size; when they
    take longer than the edge budget it backs off by 10 % per decision. The LRU cache is on."""
    model = toy_model(
        {
            "action_menu.batch_sizes": [1, 2, 4],
            "edge.cache_capacity": 8,
            "action_menu.cache_policies": ["none", "lru"],
        },
        unit_ms=[40.0, 80.0, 80.0, 40.0],
    )
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=0)
    pol = make_baseline("composite")
    pol.bind(env)
    pol.reset()
    fast = _obs_with(env, obs, uplink_mbps=50.0, edge_batch_ms=1.0)
    sizes = [model.plans[pol.predict(fast, env.action_masks())].batch_size for _ in range(5)]
    assert sizes == [1, 2, 2, 4, 4]
    assert all(
        model.plans[pol.predict(fast, env.action_masks())].cache_policy == "lru" for _ in range(3)
    )
    slow = _obs_with(env, obs, uplink_mbps=50.0, edge_batch_ms=500.0)
    targets = []
    for _ in range(10):
        pol.predict(slow, env.action_masks())
        targets.append(pol._batch_target)
    assert targets[0] == pytest.approx(4 * 0.9)
    assert targets[-1] == pytest.approx(max(4 * 0.9**10, 1.0))
