"""The Proteus-style planner (agents/proteus.py) and the practitioners' batching references."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.baselines import list_baselines, make_baseline
from edgerl.agents.latency import ObservedState
from edgerl.agents.proteus import ProteusPolicy
from edgerl.agents.serving import RayServeBatchingComposite, TritonBatchingComposite
from edgerl.envs.env import CollabInferenceEnv

UP_MBPS, WAN_MBPS = 8.0, 80.0  # the toy's constant links


def _two_plan_toy():
    """Only device-only and edge-only (full model, batch 1): the allocation is known."""
    return toy_model(
        {
            "action_menu.cut_units": [0, 4],
            "action_menu.tiers": ["device", "edge"],
            "action_menu.exits": [-1],
        }
    )


def _bound(model, policy):
    env = CollabInferenceEnv(model, record=True)
    obs, _ = env.reset(seed=0)
    policy.bind(env)
    policy.reset(seed=0)
    return env, obs


def test_registry_has_proteus_and_the_batching_references():
    names = list_baselines(include_expensive=False)
    assert {"proteus", "composite-triton", "composite-rayserve"} <= set(names)


@pytest.mark.parametrize("rate_per_s", [20.0, 35.0, 40.0])
def test_the_program_finds_the_closed_form_allocation(rate_per_s):
    """Two plans on separate resources (device CPU; uplink + edge): the optimum fills the
    better plan up to its resource's capacity (utilisation x servers / time per request),
    then the other up to its capacity, and leaves the rest unserved."""
    model = _two_plan_toy()
    pol = ProteusPolicy(latency_source="profile")
    _bound(model, pol)
    plans = {("device" if p.cut_edge == p.n_units else "edge"): p.index for p in model.plans}
    assert len(plans) == 2 == len(model.plans)
    dev, edge = plans["device"], plans["edge"]
    s = ObservedState(UP_MBPS, WAN_MBPS, 0.0, 0.0, 0.0, 0.0, 0.2)
    lat, util = pol.predicted(np.array([dev, edge]), s, rate_per_s)
    assert (lat <= 0.2).all()  # both meet the deadline
    assert util[0] > util[1] > -model.cfg.reward.drop  # device first, edge second, drop last
    rho = pol.utilisation
    dev_cap = rho / model.plans[dev].device_s
    up_s = model.plans[edge].uplink_bytes * 8 / (UP_MBPS * 1e6)
    edge_s = pol.edge_batch_s[edge]
    edge_cap = min(rho / up_s, rho * model.cfg.edge.workers / edge_s)
    want_dev = min(rate_per_s, dev_cap)
    want_edge = min(rate_per_s - want_dev, edge_cap)

    alloc, status = pol.solve_allocation(np.array([rate_per_s]), UP_MBPS, WAN_MBPS)
    assert status == "optimal" and alloc is not None
    got = dict(zip(alloc.plans[0].tolist(), alloc.shares[0].tolist(), strict=True))
    served = want_dev + want_edge
    assert alloc.served_fraction == pytest.approx(served / rate_per_s, rel=1e-6)
    assert got.get(dev, 0.0) * served == pytest.approx(want_dev, rel=1e-6)
    assert got.get(edge, 0.0) * served == pytest.approx(want_edge, rel=1e-6, abs=1e-9)
    # the three regimes the parametrisation covers
    assert (rate_per_s <= dev_cap) == (rate_per_s == 20.0)
    assert (rate_per_s > dev_cap + edge_cap) == (rate_per_s == 40.0)


def test_one_batch_size_per_edge_segment():
    """The integer part: an edge segment's requests share one batch size in the solution."""
    model = toy_model({"action_menu.batch_sizes": [1, 4], "action_menu.tiers": ["device", "edge"]})
    pol = ProteusPolicy(latency_source="profile")
    _bound(model, pol)
    alloc, status = pol.solve_allocation(np.array([60.0]), UP_MBPS, WAN_MBPS)
    assert alloc is not None and status == "optimal"
    per_segment: dict = {}
    for p in alloc.plans[0].tolist():
        plan = model.plans[p]
        if plan.uses_edge_compute:
            per_segment.setdefault(pol._segment[p], set()).add(plan.batch_size)
    assert per_segment and all(len(b) == 1 for b in per_segment.values())


def _run(model, pol, env, obs, n):
    out = []
    for _ in range(n):
        a = pol.predict(obs, env.action_masks())
        out.append(a)
        obs, *_, trunc, _ = env.step(a)
        if trunc:
            break
    return out, obs


@pytest.mark.parametrize(
    "failure",
    [
        "raises",
        "infeasible",  # HiGHS status 2 and no solution
        "time_limit_without_solution",  # status 1 (limit reached) but no incumbent
    ],
)
def test_a_failed_solve_keeps_the_last_solution(failure):
    model = toy_model({"workload.arrival.rate_per_s": 20.0, "horizon_s": 5.0})
    pol = ProteusPolicy(latency_source="profile")
    env, obs = _bound(model, pol)
    _, obs = _run(model, pol, env, obs, 3)
    assert len(pol.solve_log) == 1 and not pol.solve_log[0].kept_last
    before = pol.allocation
    assert before is not None

    def broken(*args, **kwargs):
        if failure == "raises":
            raise ValueError("solver crashed")
        status = 2 if failure == "infeasible" else 1
        return SimpleNamespace(x=None, status=status, message=failure, fun=None)

    pol.solver = broken
    pol._elapsed_s = pol.interval_s  # the next decision re-solves
    a = pol.predict(obs, env.action_masks())
    rec = pol.solve_log[-1]
    assert rec.kept_last and rec.status.startswith("failed")
    assert rec.wall_ms >= 0.0
    assert pol.allocation is before  # the last solution still routes
    assert env.action_masks()[a]
    assert pol.describe()["solves_kept_last"] == 1


def test_proteus_is_deterministic_and_records_every_solve():
    model = toy_model({"workload.arrival.rate_per_s": 20.0, "horizon_s": 5.0})
    runs = []
    for _ in range(2):
        pol = ProteusPolicy(latency_source="profile")
        env, obs = _bound(model, pol)
        acts, _ = _run(model, pol, env, obs, 200)
        runs.append(acts)
        assert len(pol.solve_log) >= 2  # re-solved at the interval
        assert all(r.status == "optimal" and r.wall_ms > 0 for r in pol.solve_log)
    assert runs[0] == runs[1]


def test_weighted_round_robin_follows_the_solved_shares():
    """Routing with a fixed solution: each plan's share of decisions tracks its solved share
    within one request (smooth weighted round-robin)."""
    model = _two_plan_toy()
    pol = ProteusPolicy(latency_source="profile", interval_s=1e9)
    env, obs = _bound(model, pol)
    pol.predict(obs, env.action_masks())  # first solve
    alloc, _ = pol.solve_allocation(np.array([35.0]), UP_MBPS, WAN_MBPS)
    assert alloc is not None and len(alloc.plans[0]) == 2
    pol.allocation = alloc
    pol._credit = [dict.fromkeys((int(p) for p in ps), 0.0) for ps in alloc.plans]
    idle = ObservedState(UP_MBPS, WAN_MBPS, 0.0, 0.0, 0.0, 0.0, 0.2)  # every plan meets it
    n = 200
    counts: dict[int, int] = {}
    for _ in range(n):
        p = pol._route(0, idle, 35.0, None)
        counts[p] = counts.get(p, 0) + 1
    for p, share in zip(alloc.plans[0].tolist(), alloc.shares[0].tolist(), strict=True):
        assert abs(counts.get(p, 0) - share * n) <= 1.0


# --------------------------------------------------------------------------- batching refs


def _obs_with(env, obs, **raw):
    names = [f.name for f in env.features]
    out = obs.copy()
    for k, v in raw.items():
        i = names.index(k)
        out[i] = v / env.features[i].scale
    return out


def test_triton_default_adds_no_delay_on_an_idle_edge_and_batches_what_waits():
    model = toy_model({"action_menu.batch_sizes": [1, 4, 8], "action_menu.tiers": ["edge"]})
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=0)
    pol = TritonBatchingComposite(latency_source="profile")
    pol.bind(env)
    pol.reset()
    idle = _obs_with(env, obs, edge_backlog_ms=0.0, edge_batch_waiting=0.0)
    assert pol._batch_for(idle) == 1
    # busy for 100 ms at 20 req/s, 2 already waiting: 1 + 2 + 2 = 5 expected -> batch 4
    busy = _obs_with(
        env, obs, edge_backlog_ms=100.0, edge_batch_waiting=2.0, arrival_rate_per_s=20.0
    )
    assert pol._batch_for(busy) == 4


def test_ray_serve_defaults_take_the_largest_offered_batch_up_to_ten():
    for sizes, want in (([1, 4], 4), ([1, 4, 8, 16], 8)):
        model = toy_model({"action_menu.batch_sizes": sizes, "action_menu.tiers": ["edge"]})
        env = CollabInferenceEnv(model)
        obs, _ = env.reset(seed=0)
        pol = RayServeBatchingComposite(latency_source="profile")
        pol.bind(env)
        assert pol._batch_for(obs) == want
        assert model.plans[pol.predict(obs, env.action_masks())].batch_size == want
    assert make_baseline("composite-rayserve").name == "composite-rayserve"
