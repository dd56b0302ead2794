"""Honest comparisons: every policy faces the same workload for a seed, observations hold no
future, no request vanishes from the metrics, and the simulator's accounting of energy,
bytes, privacy and the cache follows its documented semantics.

Each test here failed on the code before the fix it guards (see the commit history).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.baselines import make_baseline
from edgerl.agents.evaluation import evaluate, unit_metrics
from edgerl.envs.config import ArrivalConfig, list_scenarios, load_scenario
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.sim.build import ScenarioModel, build_simulator, scenario_model
from edgerl.envs.sim.network import RADIO_MODELS, BandwidthSource
from edgerl.envs.sim.simulator import Simulator
from edgerl.envs.sim.workload import interarrival_times, mean_rate_per_s

SHIPPED = list_scenarios()
UP_MBPS = 8.0
ACCESS_ONE_WAY_S = 0.010
FINGERPRINT_BYTES, RESULT_BYTES = 32, 8


def tx_s(nbytes: int, mbps: float = UP_MBPS) -> float:
    return nbytes * 8 / (mbps * 1e6)


def short(model: ScenarioModel, horizon_s: float) -> ScenarioModel:
    return dataclasses.replace(model, cfg=dataclasses.replace(model.cfg, horizon_s=horizon_s))


def busy_horizon_s(model: ScenarioModel, requests: int) -> float:
    """A horizon in which about ``requests`` requests arrive."""
    rate = mean_rate_per_s(model.cfg.workload) * model.cfg.devices.count
    return requests / rate


def _gap_file(tmp_path, gap_s: float) -> str:
    p = tmp_path / f"gaps-{gap_s}.txt"
    p.write_text(f"{gap_s}\n")
    return str(p)


# --------------------------------------------------------------------------- 1. same workload


def _workload(model: ScenarioModel, plan_index: int, seed: int) -> list[tuple]:
    env = CollabInferenceEnv(model, record=True)
    env.reset(seed=seed)
    seen = []
    while True:
        req = env.pending_request
        assert req is not None
        seen.append((req.arrival_s, req.device, req.app, req.input_id))
        *_, trunc, _ = env.step(plan_index)
        if trunc:
            return seen


@pytest.mark.parametrize("name", SHIPPED)
def test_two_fixed_plans_face_identical_arrivals(name):
    """Same seed, different plans (finishing at different times): the same arrival times,
    devices, applications and inputs, request by request."""
    model = scenario_model(name)
    model = short(model, busy_horizon_s(model, 300))
    feasible = np.flatnonzero(model.static_mask)
    latencies = [model.plans[i].device_s for i in feasible]
    a, b = feasible[int(np.argmin(latencies))], feasible[int(np.argmax(latencies))]
    assert a != b
    wa, wb = _workload(model, int(a), 102), _workload(model, int(b), 102)
    assert len(wa) > 10
    assert wa == wb


def test_compare_reports_identical_arrival_counts_for_two_fixed_plans():
    model = short(scenario_model("lte-dynamic"), 15.0)
    counts = []
    for name in ("device-only", "edge-only"):
        ev = evaluate(model, make_baseline(name), seeds=[0, 1, 2], episodes=1)
        counts.append([lg.n_arrived for lg in ev.all_logs()])
    assert counts[0] == counts[1]


def test_input_difficulty_does_not_depend_on_when_requests_finish():
    """Correctness of an input is fixed before the episode starts (no lazy draw)."""
    model = toy_model({"horizon_s": 5.0})
    s1 = build_simulator(model, 3)
    s2 = build_simulator(model, 3)
    assert s1.difficulty == s2.difficulty
    assert len(s1.difficulty) == model.cfg.workload.catalogue_size


# --------------------------------------------------------------------------- 2. no future


class Spliced:
    """``a`` before ``switch_s``, ``a * factor`` after: an identical past, another future."""

    def __init__(self, a: BandwidthSource, switch_s: float, factor: float) -> None:
        self.a, self.switch_s, self.factor = a, switch_s, factor

    def _bytes(self, t0: float, t1: float) -> float:
        return self.a.mean_mbps(t0, t1) * (t1 - t0) * 1e6 / 8 if t1 > t0 else 0.0

    def mbps_at(self, t_s: float) -> float:
        return self.a.mbps_at(t_s) * (1.0 if t_s < self.switch_s else self.factor)

    def mean_mbps(self, t0_s: float, t1_s: float) -> float:
        if t1_s <= t0_s:
            return self.mbps_at(t0_s)
        ts = min(max(self.switch_s, t0_s), t1_s)
        total = self._bytes(t0_s, ts) + self.factor * self._bytes(ts, t1_s)
        return total * 8 / 1e6 / (t1_s - t0_s)

    def transfer_end_s(self, start_s: float, nbytes: float) -> float:
        if start_s >= self.switch_s:
            return self.a.transfer_end_s(start_s, nbytes / self.factor)
        before = self._bytes(start_s, self.switch_s)
        if nbytes <= before:
            return min(self.a.transfer_end_s(start_s, nbytes), self.switch_s)
        return self.a.transfer_end_s(self.switch_s, (nbytes - before) / self.factor)


def _observations(model: ScenarioModel, switch_s: float, factor: float) -> list[np.ndarray]:
    """Raw feature vectors before ``switch_s`` of a policy that reacts to every observed bit."""
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=7)
    sim = env.sim
    assert sim is not None
    for link in [sim.wan_up, sim.wan_down, *(d.uplink for d in sim.devices)]:
        link.bandwidth = Spliced(link.bandwidth, switch_s, factor)
    for d in sim.devices:
        d.downlink.bandwidth = Spliced(d.downlink.bandwidth, switch_s, factor)
    feasible = np.flatnonzero(model.static_mask)
    seen = []
    while sim.env.now < switch_s:
        seen.append(env.raw_state())  # unclipped: a clipped feature could hide the future
        assert np.array_equal(obs, env._observe(env.pending_request))
        digest = hashlib.sha256(obs.tobytes()).digest()
        action = int(feasible[int.from_bytes(digest[:4], "little") % len(feasible)])
        obs, *_, trunc, _ = env.step(action)
        if trunc:
            break
    return seen


@pytest.mark.parametrize("name", SHIPPED)
def test_observations_do_not_depend_on_the_future(name):
    """Two episodes identical up to t and different after (every link's bandwidth drops to a
    fifth at t) give identical observations, feature by feature, for every decision before t."""
    model = scenario_model(name)
    model = short(model, busy_horizon_s(model, 400))
    switch_s = model.cfg.horizon_s / 2
    same = _observations(model, switch_s, 1.0)
    other = _observations(model, switch_s, 0.2)
    assert len(same) == len(other) > 20
    env = CollabInferenceEnv(model)
    names = [f.name for f in env.features]
    for k, (x, y) in enumerate(zip(same, other, strict=True)):
        differs = [n for n, u, v in zip(names, x, y, strict=True) if u != v]
        assert not differs, f"decision {k}: features {differs} read the future"


#: Online references whose decisions must depend on the past only (the splice test below).
ONLINE_REFERENCES = (
    "neurosurgeon",
    "edgent",
    "composite",
    "composite-triton",
    "composite-rayserve",
    "proteus",
)


def _decisions(model: ScenarioModel, name: str, switch_s: float, factor: float) -> list[int]:
    """The plans an online reference chooses before ``switch_s`` (future spliced at it)."""
    env = CollabInferenceEnv(model)
    obs, _ = env.reset(seed=7)
    sim = env.sim
    assert sim is not None
    for link in [sim.wan_up, sim.wan_down, *(d.uplink for d in sim.devices)]:
        link.bandwidth = Spliced(link.bandwidth, switch_s, factor)
    for d in sim.devices:
        d.downlink.bandwidth = Spliced(d.downlink.bandwidth, switch_s, factor)
    pol = make_baseline(name)
    pol.bind(env)
    pol.reset(seed=7)
    out = []
    while sim.env.now < switch_s:
        a = pol.predict(obs, env.action_masks())
        out.append(a)
        obs, *_, trunc, _ = env.step(a)
        if trunc:
            break
    return out


@pytest.mark.parametrize("name", ONLINE_REFERENCES)
def test_online_references_decide_from_the_past_only(name):
    """Same past, another future (every link at a fifth after t): an online reference makes
    the same decisions before t (it reads no simulator state, no true future)."""
    model = scenario_model("camera-lte")
    model = short(model, busy_horizon_s(model, 300))
    switch_s = model.cfg.horizon_s / 2
    same = _decisions(model, name, switch_s, 1.0)
    other = _decisions(model, name, switch_s, 0.2)
    assert len(same) > 20
    assert same == other
    if name == "proteus":  # it routes over several plans here: the test is not trivially met
        assert len(set(same)) > 1


# --------------------------------------------------------------------------- 3. none vanish


def test_every_request_is_counted_and_the_return_includes_the_drain():
    """Edge-only builds long uplink queues on lte-dynamic: at the horizon many requests are
    in flight; they are drained, and the env's return is the sum of every request's utility."""
    model = short(scenario_model("lte-dynamic"), 20.0)
    env = CollabInferenceEnv(model, record=True)
    pol = make_baseline("edge-only")
    pol.bind(env)
    obs, _ = env.reset(seed=0)
    ret, last_obs = 0.0, obs
    while True:
        obs, r, _, trunc, _ = env.step(pol.predict(obs, env.action_masks()))
        ret += r
        if trunc:
            last_obs = obs
            break
    sim = env.sim
    assert sim is not None
    assert sim.in_flight_at_horizon > 0  # the case the metrics used to drop
    assert sim.in_flight == 0 and sim.arrived == sim.completed + sim.dropped
    assert len(sim.finished) == sim.arrived
    assert ret == pytest.approx(sum(r.utility for r in sim.finished))
    # the truncation observation is the real state at the horizon, not a zero vector
    assert last_obs.any()
    names = [f.name for f in env.features]
    assert last_obs[names.index("uplink_queue_kb")] > 0


def test_evaluation_metrics_cover_every_request():
    model = short(scenario_model("lte-dynamic"), 20.0)
    ev = evaluate(model, make_baseline("edge-only"), seeds=[0], episodes=1)
    (lg,) = ev.all_logs()
    assert len(lg.utility) == lg.n_arrived
    assert lg.in_flight_at_horizon > 0
    m = unit_metrics([lg])
    assert m["arrived_per_episode"] == m["completed_per_episode"] + m["dropped_per_episode"]


# --------------------------------------------------------------------------- 5. semantics


def _cache_toy(tmp_path, gap_s: float, policies=("lru",)):
    return toy_model(
        {
            "edge.cache_capacity": 8,
            "action_menu.cache_policies": list(policies),
            "workload.catalogue_size": 1,
            "workload.arrival": {"process": "trace", "trace_file": _gap_file(tmp_path, gap_s)},
        }
    )


def test_a_device_result_enters_the_cache_only_when_its_upload_reaches_the_edge(tmp_path):
    """r0 computes on the device (finishes at 0.08454 s) and uploads result + fingerprint,
    which reach the edge at 0.09458 s. r1's lookup reaches the edge at 0.090032 s, after r0
    finished but before its result arrived: a miss (before the fix: a hit on a result the
    edge never received). r2's lookup (0.130032 s) hits."""
    model = _cache_toy(tmp_path, 0.04)
    local = next(p for p in model.plans if p.cut_edge == p.n_units and p.exit_index == 1)
    sim = build_simulator(model, 0, record=True, log_events=True)
    for _ in range(3):
        sim.next_decision()
        sim.apply(local.index)
    sim.env.run(until=0.5)
    r0, r1, r2 = sorted((r for r in sim.finished if r.id < 3), key=lambda r: r.id)
    lookup_s = tx_s(FINGERPRINT_BYTES) + tx_s(RESULT_BYTES) + 2 * ACCESS_ONE_WAY_S
    assert r0.finish_s == pytest.approx(0.04 + lookup_s + local.device_s)
    assert not r0.cache_hit and not r1.cache_hit and r2.cache_hit
    # r0 paid for the result upload: bytes and radio energy
    assert r0.bytes_uplink == FINGERPRINT_BYTES + RESULT_BYTES + FINGERPRINT_BYTES
    lte = RADIO_MODELS["lte"]
    up_mbit = (FINGERPRINT_BYTES + RESULT_BYTES + FINGERPRINT_BYTES) * 8 / 1e6
    up_air_s = tx_s(FINGERPRINT_BYTES) + tx_s(RESULT_BYTES + FINGERPRINT_BYTES)
    expected_j = (
        lte.alpha_up_mw_per_mbps * up_mbit
        + lte.alpha_down_mw_per_mbps * RESULT_BYTES * 8 / 1e6
        + lte.beta_mw * (up_air_s + tx_s(RESULT_BYTES))
    ) / 1e3
    assert r0.energy_radio_j == pytest.approx(expected_j, rel=1e-9)


def test_cost_aware_cache_values_an_entry_by_compute_not_queueing(tmp_path):
    """r1 waits 3.5 ms for the device CPU behind r0; the cost-aware cache must value its
    entry at the plan's compute time (24.5 ms), not at the wait plus compute."""
    model = _cache_toy(tmp_path, 0.001, policies=("none", "cost"))
    plans = [p for p in model.plans if p.cut_edge == p.n_units and p.exit_index == 1]
    nocache = next(p for p in plans if p.cache_policy == "none")
    costly = next(p for p in plans if p.cache_policy == "cost")
    sim = build_simulator(model, 0, record=True)
    sim.next_decision()
    sim.apply(nocache.index)
    sim.next_decision()
    sim.apply(costly.index)
    sim.env.run(until=0.5)
    r1 = next(r for r in sim.finished if r.id == 1)
    assert r1.t_device_s > costly.device_s + 1e-3  # it did queue
    (entry,) = sim.cache.entries.values()
    assert entry.cost_s == pytest.approx(costly.device_s)


def test_radio_base_power_is_paid_once_while_up_and_downlink_overlap(tmp_path):
    """r0 uploads its raw input (150.5 ms on air from 0.1 s); r1 arrives at 0.2 s and its raw
    upload follows r0's on the FIFO uplink; r0's 8-byte result comes down while r1's upload
    is on air, so it adds no beta time (Huang et al. charge beta once while active)."""
    model = toy_model(
        {"workload.arrival": {"process": "trace", "trace_file": _gap_file(tmp_path, 0.1)}}
    )
    raw = next(
        p for p in model.plans if p.cut_edge == 0 and p.cut_cloud == p.n_units and p.exit_index == 1
    )
    sim = build_simulator(model, 0, record=True)
    for _ in range(2):
        sim.next_decision()
        sim.apply(raw.index)
    sim.env.run(until=1.0)
    r0 = next(r for r in sim.finished if r.id == 0)
    up_s = tx_s(raw.uplink_bytes)
    down_start = 0.1 + up_s + ACCESS_ONE_WAY_S + raw.edge_batch_ms[0] / 1e3
    assert 0.1 + up_s < down_start < 0.1 + 2 * up_s  # inside r1's upload
    lte = RADIO_MODELS["lte"]
    expected_j = (
        lte.alpha_up_mw_per_mbps * raw.uplink_bytes * 8 / 1e6
        + lte.alpha_down_mw_per_mbps * RESULT_BYTES * 8 / 1e6
        + lte.beta_mw * up_s  # the downlink's on-air time is already covered
    ) / 1e3
    assert r0.energy_radio_j == pytest.approx(expected_j, rel=1e-9)


def test_mmpp_starts_in_its_stationary_distribution():
    """lte-dynamic's MMPP spends 8 s at 8 req/s and 4 s at 30 req/s: the stationary start
    has P(state 0) = 2/3, so the expected rate at time 0 is 15.33 req/s (a uniform start
    gives 19). Over 4,000 streams, the arrivals in the first 50 ms estimate it."""
    cfg = ArrivalConfig(process="mmpp", rates_per_s=(8.0, 30.0), mean_sojourn_s=(8.0, 4.0))
    window_s, n = 0.05, 4000
    counts = []
    for seed in range(n):
        t, k = 0.0, 0
        for gap in interarrival_times(cfg, np.random.default_rng(seed)):
            t += gap
            if t > window_s:
                break
            k += 1
        counts.append(k)
    rate = np.mean(counts) / window_s
    stationary = (8.0 * 8.0 + 30.0 * 4.0) / 12.0
    assert rate == pytest.approx(stationary, rel=0.06)


def test_a_dropped_request_pays_for_the_bytes_it_sent_and_its_raw_input(tmp_path):
    model = toy_model(
        {
            "edge.queue_capacity": 1,
            "edge.max_batch_wait_ms": 50.0,
            "action_menu.batch_sizes": [4],
            "network.uplink": {"constant_mbps": 1000.0},
            "workload.arrival": {"process": "trace", "trace_file": _gap_file(tmp_path, 0.002)},
            "reward": {"bytes_per_mb": 1.0, "privacy": 0.1, "drop": 2.0},
        }
    )
    raw = next(p for p in model.plans if p.cut_edge == 0 and p.uses_edge_compute)
    sim = build_simulator(model, 0, record=True)
    for _ in range(3):
        sim.next_decision()
        sim.apply(raw.index)
    sim.env.run(until=1.0)
    dropped = [r for r in sim.finished if r.status == "dropped"]
    assert dropped and all(r.drop_reason == "edge_full" for r in dropped)
    d = dropped[0].parts_dict
    assert d["bytes"] == pytest.approx(-raw.uplink_bytes / 1e6)
    assert d["privacy"] == pytest.approx(-0.1)
    assert d["drop"] == -2.0
    assert dropped[0].utility == pytest.approx(sum(dropped[0].parts))


def test_the_arrival_rate_feature_is_not_inflated_at_the_episode_start():
    """The arrival-rate feature is 1 / (EWMA of arrival gaps). An EWMA started at 0 reported
    about 1/EWMA_WEIGHT = 20 times the true rate at the first decisions; initialised by the
    first gap, the median over many episodes of the first decision's value is that of
    1 / Exp(rate), rate / ln 2, and it stays near the true rate after."""
    rate = 10.0
    env = CollabInferenceEnv(
        toy_model({"workload.arrival": {"process": "poisson", "rate_per_s": rate}})
    )
    first, fifth = [], []
    for seed in range(300):
        env.reset(seed=seed)
        for k in range(5):
            value = env.raw_state_dict()["arrival_rate_per_s"]
            if k == 0:
                first.append(value)
            elif k == 4:
                fifth.append(value)
            _, _, term, trunc, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
            if term or trunc:
                break
    assert np.median(first) == pytest.approx(rate / np.log(2), rel=0.15)
    assert 0.7 * rate < np.median(fifth) < 1.5 * rate


def test_the_device_backlog_does_not_reveal_where_a_threshold_request_leaves():
    """Two episodes that differ only in one queued request's image (so in the exit its
    confidence rule takes) give identical observations until the device has evaluated that
    request's first exit (issue 18: the CPU was booked with the resolved compute at once)."""
    # busy enough that requests queue behind each other on the device (2.1 ms per frame)
    cfg = load_scenario("edgent-rpi", ["horizon_s=3", "workload.arrival.rate_per_s=400"])
    model = ScenarioModel.from_config(cfg)
    rule = [p for p in model.plans if p.threshold is not None and p.cut_edge == p.n_units]
    assert rule
    plan = max(rule, key=lambda p: p.device_s)  # the longest device path of a rule plan

    def run(swap: tuple[int, int] | None) -> tuple[list[np.ndarray], list[float], Simulator]:
        env = CollabInferenceEnv(model)
        env.reset(seed=3)
        sim = env.sim
        assert sim is not None
        if swap is not None:
            sim.image_of[swap[0]] = swap[1]
        obs_seen, times = [], []
        while True:
            obs_seen.append(env.raw_state())
            times.append(sim.env.now)
            *_, trunc, _ = env.step(plan.index)
            if trunc:
                return obs_seen, times, sim

    base_obs, times, sim = run(None)
    key = (plan.variant, plan.threshold, plan.rule_exits)
    exit_of = sim.answers.exit_of[key]
    # the first request whose input appears for the first time while the CPU is busy
    first_seen: set[int] = set()
    env = CollabInferenceEnv(model)
    env.reset(seed=3)
    target, start_s = None, 0.0
    while target is None:
        req = env.pending_request
        assert req is not None and env.sim is not None
        busy_s = env.sim.devices[0].cpu.backlog_s(env.sim.env.now)
        if req.input_id not in first_seen and busy_s > 0.004:  # requests queued ahead
            target, start_s = req, env.sim.env.now + busy_s  # FIFO: it starts then
        first_seen.add(req.input_id)
        env.step(plan.index)
    image = sim.image_of[target.input_id]
    other = next(i for i in range(sim.answers.n_images) if exit_of[i] != exit_of[image])
    swapped_obs, _, _ = run((target.input_id, other))
    names = [f.name for f in env.features]
    first_point_s = min(sim.device_points[plan.index])
    # until the target's first exit decision can have happened, nothing may differ
    limit = start_s + first_point_s
    compared = 0
    for k, (t, x, y) in enumerate(zip(times, base_obs, swapped_obs, strict=False)):
        if t >= limit:
            break
        differs = [n for n, u, v in zip(names, x, y, strict=True) if u != v]
        assert not differs, f"decision {k} at {t:.4f} s: {differs} reveal the exit taken"
        compared += k > 0 and t > target.arrival_s
    assert compared > 0  # a decision while the target was queued was compared
