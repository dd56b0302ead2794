"""Simulator tests: closed forms, exact event logs, accounting, cache, energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import toy_model
from edgerl.envs.plans import Plan
from edgerl.envs.sim.build import build_simulator
from edgerl.envs.sim.cache import ResultCache
from edgerl.envs.sim.network import RADIO_MODELS, ConstantBandwidth, Link
from edgerl.envs.sim.servers import FifoServer, MultiServer
from edgerl.envs.sim.simulator import Simulator

UP_MBPS, WAN_MBPS = 8.0, 80.0
ACCESS_ONE_WAY_S, WAN_ONE_WAY_S = 0.010, 0.020
RESULT_BYTES = 8


def tx_s(nbytes: int, mbps: float) -> float:
    return nbytes * 8 / (mbps * 1e6)


def closed_form_latency_s(p: Plan) -> float:
    """Latency of a lone request under the toy scenario (no contention)."""
    lat = p.device_s
    if p.offloads:
        lat += tx_s(p.uplink_bytes, UP_MBPS) + ACCESS_ONE_WAY_S
        lat += p.edge_batch_ms[0] / 1e3
        if p.uses_cloud:
            lat += tx_s(p.wan_bytes, WAN_MBPS) + WAN_ONE_WAY_S + p.cloud_s
            lat += tx_s(RESULT_BYTES, WAN_MBPS) + WAN_ONE_WAY_S
        lat += tx_s(RESULT_BYTES, UP_MBPS) + ACCESS_ONE_WAY_S
    return lat


def run_first_request(sim: Simulator, plan_index: int) -> None:
    sim.next_decision()
    sim.apply(plan_index)
    sim.env.run(until=sim.env.now + 5.0)


def test_toy_latency_of_every_plan_equals_closed_form(toy):
    for p in toy.plans:
        sim = build_simulator(toy, np.random.default_rng(0), record=True)
        run_first_request(sim, p.index)
        first = next(r for r in sim.finished if r.id == 0)
        assert first.status == "completed"
        assert first.latency_s == pytest.approx(closed_form_latency_s(p), rel=1e-9, abs=1e-12), (
            p.name
        )


@pytest.mark.parametrize(
    ("unit_ms", "expected_cut"),
    [
        # device 24.5 ms in all; any offload costs >= 20 ms propagation: device-only wins
        ([4.0, 8.0, 8.0, 4.0], 4),
        # device 10x slower (240.5 ms): raw upload 150.5 + 20 + edge 60.1 = 230.7 ms wins
        ([40.0, 80.0, 80.0, 40.0], 0),
    ],
)
def test_toy_optimal_cut_is_the_closed_form_argmin(unit_ms, expected_cut):
    toy = toy_model(unit_ms=unit_ms)
    final_exit = max(p.exit_index for p in toy.plans)
    edge_only = [p for p in toy.plans if p.exit_index == final_exit and p.cut_cloud == p.n_units]
    best_closed = min(edge_only, key=closed_form_latency_s)
    simulated = {}
    for p in edge_only:
        sim = build_simulator(toy, np.random.default_rng(0), record=True)
        run_first_request(sim, p.index)
        simulated[p.index] = sim.finished[0].latency_s
    assert min(simulated, key=simulated.__getitem__) == best_closed.index
    assert best_closed.cut_edge == expected_cut


def _two_request_sim(window_ms: float) -> tuple[Simulator, Plan]:
    model = toy_model(
        {
            "workload.arrival": {"process": "trace", "trace_file": _gap_file(0.01)},
            "action_menu.batch_sizes": [2],
            "edge.max_batch_wait_ms": window_ms,
        }
    )
    plan = next(
        p
        for p in model.plans
        if p.exit_index == 1 and p.cut_edge == 3 and p.cut_cloud == 4 and p.batch_size == 2
    )
    sim = build_simulator(model, np.random.default_rng(0), record=True, log_events=True)
    for _ in range(2):
        sim.next_decision()
        sim.apply(plan.index)
    sim.env.run(until=0.2)
    return sim, plan


_GAP_FILES: dict[float, str] = {}


def _gap_file(gap_s: float) -> str:
    import tempfile

    if gap_s not in _GAP_FILES:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(f"{gap_s}\n")
        _GAP_FILES[gap_s] = f.name
    return _GAP_FILES[gap_s]


def _events(sim: Simulator, ids: set[int]) -> list[tuple[float, int, str]]:
    assert sim.events is not None
    return [(round(t, 9), i, e) for t, i, e in sim.events if i in ids]


def test_exact_event_log_window_expires():
    """Two requests 10 ms apart, cut before unit 3, batch 2 wanted, 10 ms window.

    Device: units 0-2 take 20 ms. Uplink: 20 kB at 8 Mbit/s = 20 ms + 10 ms propagation.
    r0: arrive .01, device .03, on air .03-.05, at edge .06, window ends .07 -> batch of 1,
        edge unit 3 (1 ms) + head (0.5 ms) -> .0715, result 8 B (8 us) + 10 ms -> .081508.
    r1: arrive .02, device waits for r0 until .03, done .05, on air .05-.07, at edge .08,
        window ends .09 -> batch of 1 -> .0915 -> .101508.
    """
    sim, _ = _two_request_sim(window_ms=10.0)
    assert _events(sim, {0, 1}) == [
        (0.01, 0, "arrive"),
        (0.02, 1, "arrive"),
        (0.03, 0, "device_done"),
        (0.05, 1, "device_done"),
        (0.06, 0, "at_edge"),
        (0.07, 0, "batch:1"),
        (0.0715, 0, "edge_done"),
        (0.08, 1, "at_edge"),
        (0.081508, 0, "complete"),
        (0.09, 1, "batch:1"),
        (0.0915, 1, "edge_done"),
        (0.101508, 1, "complete"),
    ]


def test_exact_event_log_batch_forms():
    """Same, with a 30 ms window: r1 reaches the edge at .08 and joins r0: a batch of 2.

    Edge latency at batch 2 = 1.5 ms * 1.5 = 2.25 ms -> both done .08225; results share the
    downlink FIFO: r0 on air until .082258, r1 until .082266, + 10 ms each.
    """
    sim, _ = _two_request_sim(window_ms=30.0)
    assert _events(sim, {0, 1}) == [
        (0.01, 0, "arrive"),
        (0.02, 1, "arrive"),
        (0.03, 0, "device_done"),
        (0.05, 1, "device_done"),
        (0.06, 0, "at_edge"),
        (0.08, 1, "at_edge"),
        (0.08, 0, "batch:2"),
        (0.08, 1, "batch:2"),
        (0.08225, 0, "edge_done"),
        (0.08225, 1, "edge_done"),
        (0.092258, 0, "complete"),
        (0.092266, 1, "complete"),
    ]
    r0, r1 = sorted((r for r in sim.finished if r.id in (0, 1)), key=lambda r: r.id)
    assert r0.t_edge_wait_s == pytest.approx(0.02)
    assert r1.t_edge_wait_s == pytest.approx(0.0)


def test_batch_never_exceeds_the_largest_profiled_batch():
    model = toy_model(
        {
            "workload.arrival.rate_per_s": 2000.0,
            "action_menu.batch_sizes": [16],
            "edge.max_batch_wait_ms": 1000.0,
            "horizon_s": 0.5,
            "edge.queue_capacity": 10_000,
            "network.uplink": {"constant_mbps": 100_000.0},
        }
    )
    plan = next(p for p in model.plans if p.cut_edge == 3 and p.uses_edge_compute)
    sim = build_simulator(model, np.random.default_rng(3), log_events=True)
    while sim.next_decision() is not None:
        sim.apply(plan.index)
    assert sim.events is not None
    sizes = [int(e.split(":")[1]) for _, _, e in sim.events if e.startswith("batch:")]
    assert max(sizes) == 16
    assert sizes.count(16) > 1


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "devices.count": 4,
            "workload.arrival.rate_per_s": 40.0,
            "edge.queue_capacity": 5,
            "network.uplink": {"constant_mbps": 1000.0},
            "edge.workers": 1,
            "cloud.queue_capacity": 3,
            "edge.cache_capacity": 16,
            "workload.zipf_s": 1.0,
            "action_menu.batch_sizes": [1, 4, 8],
            "action_menu.cache_policies": ["none", "lru", "lfu", "cost"],
        },
        {
            "workload.arrival": {
                "process": "mmpp",
                "rates_per_s": [1.0, 80.0],
                "mean_sojourn_s": [2.0, 0.5],
            },
            "devices.count": 2,
            "edge.queue_capacity": 4,
            "action_menu.batch_sizes": [1, 2],
        },
    ],
)
def test_conservation_under_random_policies(overrides):
    model = toy_model({**overrides, "horizon_s": 20.0})
    feasible = np.flatnonzero(model.static_mask)
    for episode in range(5):
        rng = np.random.default_rng(episode)
        sim = build_simulator(model, np.random.default_rng(100 + episode), record=True)
        steps = 0
        while (req := sim.next_decision()) is not None:
            sim.check_conservation()
            infeasible = rng.random() < 0.05  # exercise the infeasible-plan drop as well
            sim.apply(int(rng.choice(feasible)), feasible=not infeasible)
            sim.check_conservation()
            steps += 1
            assert req.status in ("in_flight", "dropped")
        assert sim.arrived == sim.completed + sim.dropped + sim.in_flight
        assert len(sim.finished) == sim.completed + sim.dropped
        assert len({r.id for r in sim.finished}) == len(sim.finished)  # never counted twice
        assert steps > 0
    if overrides.get("edge.queue_capacity") == 5:
        assert any(r.drop_reason == "edge_full" for r in sim.finished)


def test_same_seed_same_episode_different_seed_different():
    model = toy_model({"devices.count": 2, "workload.arrival.rate_per_s": 20.0, "horizon_s": 10.0})

    def run(seed: int) -> list[tuple[int, float, float]]:
        sim = build_simulator(model, np.random.default_rng(seed), record=True)
        rng = np.random.default_rng(seed + 1)
        while sim.next_decision() is not None:
            sim.apply(int(rng.integers(len(model.plans))))
        return [(r.id, r.finish_s, r.utility) for r in sim.finished]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_cache_hit_answers_without_compute_and_reproduces_correctness():
    model = toy_model(
        {
            "edge.cache_capacity": 8,
            "action_menu.cache_policies": ["lru"],
            "workload.catalogue_size": 1,
            "workload.arrival": {"process": "trace", "trace_file": _gap_file(0.2)},
        }
    )
    plan = next(p for p in model.plans if p.cut_edge == p.n_units and p.exit_index == 1)
    sim = build_simulator(model, np.random.default_rng(0), record=True, log_events=True)
    for _ in range(3):
        sim.next_decision()
        sim.apply(plan.index)
    sim.env.run(until=sim.env.now + 0.5)
    first, *rest = sorted((r for r in sim.finished if r.id < 3), key=lambda r: r.id)
    assert len(rest) == 2
    assert not first.cache_hit and first.t_device_s > 0
    assert all(r.cache_hit and r.t_device_s == 0 and r.correct == first.correct for r in rest)
    # a hit costs the fingerprint round trip only
    lookup_s = tx_s(32, UP_MBPS) + tx_s(8, UP_MBPS) + 2 * ACCESS_ONE_WAY_S
    assert rest[0].latency_s == pytest.approx(lookup_s)


@pytest.mark.parametrize(
    ("policy", "victim"),
    [("lru", 1), ("lfu", 2), ("cost", 3)],
)
def test_cache_eviction_policies(policy, victim):
    c = ResultCache(3)
    c.admit(0.0, 1, policy, cost_s=1.0, correct=True, accuracy=0.9)  # old, hit twice, costly
    c.admit(1.0, 2, policy, cost_s=1.0, correct=True, accuracy=0.9)  # hit once, most recent
    c.admit(2.0, 3, policy, cost_s=0.01, correct=True, accuracy=0.9)  # cheap, hit twice
    for t, key in ((3.0, 1), (3.5, 1), (4.0, 3), (4.5, 3), (5.0, 2)):
        assert c.lookup(t, key) is not None
    c.admit(6.0, 4, policy, cost_s=1.0, correct=False, accuracy=0.5)
    assert victim not in c.entries and 4 in c.entries
    assert c.evictions == 1


def test_radio_and_compute_energy_equal_the_model():
    model = toy_model()
    lte = RADIO_MODELS["lte"]
    by_name = {(p.cut_edge, p.cut_cloud, p.exit_index): p for p in model.plans}
    local = by_name[(4, 4, 1)]
    sim = build_simulator(model, np.random.default_rng(0), record=True)
    run_first_request(sim, local.index)
    r = sim.finished[0]
    assert r.energy_radio_j == 0.0
    assert r.energy_compute_j == pytest.approx(2.0 * local.device_s)  # 2 W synthetic device
    split = by_name[(3, 4, 1)]
    sim = build_simulator(model, np.random.default_rng(0), record=True)
    run_first_request(sim, split.index)
    r = sim.finished[0]
    up_s, down_s = tx_s(split.uplink_bytes, UP_MBPS), tx_s(RESULT_BYTES, UP_MBPS)
    expected = (
        lte.alpha_up_mw_per_mbps * split.uplink_bytes * 8 / 1e6
        + lte.beta_mw * up_s
        + lte.alpha_down_mw_per_mbps * RESULT_BYTES * 8 / 1e6
        + lte.beta_mw * down_s
    ) / 1e3
    assert r.energy_radio_j == pytest.approx(expected)
    assert r.raw_input_left is False
    raw = by_name[(0, 4, 1)]
    sim = build_simulator(model, np.random.default_rng(0), record=True)
    run_first_request(sim, raw.index)
    assert sim.finished[0].raw_input_left is True


def test_fifo_link_and_servers():
    link = Link(ConstantBandwidth(8.0), prop_delay_s=0.01)
    assert link.send(0.0, 1000) == pytest.approx((0.0, 0.001))  # (start, end) on the link
    assert link.send(0.0, 1000) == pytest.approx((0.001, 0.002))  # queued behind the first
    # what the sender knows: 1 kB delivered per ms at 8 Mbit/s
    assert link.queued_bytes(0.0) == pytest.approx(2000)
    assert link.queued_bytes(0.0005) == pytest.approx(1500)
    assert link.queued_bytes(0.0015) == pytest.approx(500)
    assert link.queued_bytes(0.002) == 0.0
    cpu = FifoServer()
    assert cpu.schedule(0.0, 1.0) == (0.0, 1.0)
    assert cpu.schedule(0.5, 1.0) == (1.0, 2.0)
    ms = MultiServer(2)
    assert ms.schedule(0.0, 1.0) == (0.0, 1.0)
    assert ms.schedule(0.0, 1.0) == (0.0, 1.0)
    assert ms.schedule(0.0, 1.0) == (1.0, 2.0)
    assert ms.waiting(0.5) == 1
    assert ms.waiting(1.0) == 0
    assert math.isclose(ms.backlog_s(0.5), 0.5)


def test_multiserver_counts_the_waiting_jobs_of_batches_and_copies_apart():
    ms = MultiServer(1)
    ms.schedule(0.0, 1.0, 3)  # starts at once: not waiting
    ms.schedule(0.0, 1.0, 4)  # starts at 1
    ms.schedule(0.5, 1.0, 2)  # starts at 2
    assert ms.waiting(0.5) == 6
    c = ms.copy()
    assert ms.waiting(1.0) == 2
    assert ms.waiting(2.0) == 0
    assert c.waiting(0.5) == 6
    assert c.waiting(1.5) == 2


def test_two_simulators_coexist():
    model = toy_model({"horizon_s": 5.0})
    a = build_simulator(model, np.random.default_rng(1), record=True)
    b = build_simulator(model, np.random.default_rng(1), record=True)
    while (ra := a.next_decision()) is not None:
        rb = b.next_decision()
        assert rb is not None and (ra.arrival_s, ra.input_id) == (rb.arrival_s, rb.input_id)
        a.apply(0)
        b.apply(0)
    assert b.next_decision() is None


def test_predict_outcome_matches_a_lone_request(toy):
    """Without contention the what-if prediction equals what the simulation then does."""
    for p in toy.plans:
        sim = build_simulator(toy, np.random.default_rng(0), record=True)
        req = sim.next_decision()
        assert req is not None
        predicted = sim.predict_outcome(req, p)
        sim.apply(p.index)
        sim.env.run(until=sim.env.now + 5.0)
        done = next(r for r in sim.finished if r.id == req.id)
        assert predicted.latency_s == pytest.approx(done.latency_s, rel=1e-9), p.name
        assert predicted.energy_j == pytest.approx(done.energy_j, rel=1e-9)
        assert predicted.utility == pytest.approx(done.utility, rel=1e-9)


def test_predict_outcome_sees_queues_and_future_bandwidth():
    model = toy_model({"workload.arrival": {"process": "trace", "trace_file": _gap_file(0.001)}})
    local = next(p for p in model.plans if p.cut_edge == p.n_units and p.exit_index == 1)
    sim = build_simulator(model, np.random.default_rng(0), record=True)
    sim.next_decision()
    sim.apply(local.index)  # occupies the device CPU for 24.5 ms
    req = sim.next_decision()
    assert req is not None
    out = sim.predict_outcome(req, local)
    sim.apply(local.index)
    sim.env.run(until=sim.env.now + 1.0)
    done = next(r for r in sim.finished if r.id == req.id)
    assert out.latency_s == pytest.approx(done.latency_s)
    assert out.latency_s > local.device_s + 0.02


def test_latency_cap_bounds_the_latency_part_only():
    """reward.latency_cap_s saturates the latency penalty; metrics keep the true latency,
    and the what-if prediction charges the same capped penalty."""
    cap_s = 0.05
    capped = toy_model({"reward": {"latency_per_s": 2.0, "latency_cap_s": cap_s}})
    plain = toy_model({"reward": {"latency_per_s": 2.0}})
    slow = max(capped.plans, key=closed_form_latency_s)
    fast = min(capped.plans, key=closed_form_latency_s)
    assert closed_form_latency_s(slow) > cap_s > closed_form_latency_s(fast)
    for p, expected_charge_s in ((slow, cap_s), (fast, closed_form_latency_s(fast))):
        done = {}
        for label, model in (("capped", capped), ("plain", plain)):
            sim = build_simulator(model, np.random.default_rng(0), record=True)
            req = sim.next_decision()
            assert req is not None
            predicted = sim.predict_outcome(req, model.plans[p.index])
            run_first_request(sim, p.index)
            done[label] = next(r for r in sim.finished if r.id == 0)
            assert predicted.utility == pytest.approx(done[label].utility, rel=1e-9)
        a, b = done["capped"], done["plain"]
        assert a.latency_s == pytest.approx(b.latency_s) == pytest.approx(closed_form_latency_s(p))
        assert a.parts[1] == pytest.approx(-2.0 * expected_charge_s)
        assert a.parts[0] == b.parts[0] and a.parts[3] == b.parts[3]
        assert b.parts[1] == pytest.approx(-2.0 * b.latency_s)
