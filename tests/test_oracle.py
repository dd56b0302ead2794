"""The hindsight windowed oracle (agents/oracle.py)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents import oracle as oracle_mod
from edgerl.agents.baselines import FixedPlanPolicy
from edgerl.agents.evaluation import evaluate
from edgerl.agents.oracle import HindsightWindowOracle, window_schedule
from edgerl.envs.sim.build import build_simulator
from test_baselines import closed_form_utility


def test_oracle_equals_the_known_optimum_on_the_toy():
    """Rare requests on constant links: no queueing, so the best plan of every window is
    the plan with the best closed-form utility of a lone request."""
    model = toy_model({"horizon_s": 60.0, "workload.arrival.rate_per_s": 0.5})
    best = max((p for p in model.plans if model.static_mask[p.index]), key=closed_form_utility)
    sim = build_simulator(model, np.random.SeedSequence(5))
    arrivals = []
    while (req := sim.next_decision()) is not None:
        arrivals.append(req.arrival_s)
        sim.apply(best.index)
    schedule = window_schedule(model, 5, "train", window_s=10.0, lookahead_s=0.0)
    busy_windows = sorted({int(t // 10.0) for t in arrivals})
    assert busy_windows
    assert all(schedule[k] == (best.index,) for k in busy_windows)


class StepDown:
    """A bandwidth that falls from ``hi`` to ``lo`` Mbit/s at ``t_s``."""

    def __init__(self, hi: float, lo: float, t_s: float) -> None:
        self.hi, self.lo, self.t_s = hi, lo, t_s

    def mbps_at(self, t: float) -> float:
        return self.hi if t < self.t_s else self.lo

    def _bytes(self, t0: float, t1: float) -> float:
        a = max(0.0, min(t1, self.t_s) - t0) * self.hi
        b = max(0.0, t1 - max(t0, self.t_s)) * self.lo
        return (a + b) * 1e6 / 8

    def mean_mbps(self, t0: float, t1: float) -> float:
        return self.mbps_at(t0) if t1 <= t0 else self._bytes(t0, t1) * 8 / 1e6 / (t1 - t0)

    def transfer_end_s(self, start: float, nbytes: float) -> float:
        if start < self.t_s:
            before = (self.t_s - start) * self.hi * 1e6 / 8
            if nbytes <= before:
                return start + nbytes * 8 / (self.hi * 1e6)
            nbytes, start = nbytes - before, self.t_s
        return start + nbytes * 8 / (self.lo * 1e6)


def test_oracle_switches_plans_when_the_uplink_collapses(monkeypatch):
    """Raw upload to the edge pays off at 200 Mbit/s and not at 0.2 Mbit/s: the oracle
    offloads in the first window and computes locally after the step, and beats both fixed
    plans on the same episode."""
    model = toy_model(
        {
            "horizon_s": 20.0,
            "workload.arrival.rate_per_s": 2.0,
            "action_menu.cut_units": [0],
        },
        unit_ms=[40.0, 80.0, 80.0, 40.0],
    )
    build = oracle_mod.build_simulator

    def stepped(*args, **kw):
        sim = build(*args, **kw)
        for d in sim.devices:
            d.uplink.bandwidth = StepDown(200.0, 0.2, 10.0)
            d.downlink.bandwidth = StepDown(200.0, 0.2, 10.0)
        return sim

    monkeypatch.setattr(oracle_mod, "build_simulator", stepped)
    schedule = window_schedule(model, 3, "train", window_s=10.0, lookahead_s=0.0)
    first, second = (model.plans[a[0]] for a in schedule)
    assert first.cut_edge == 0 and first.offloads  # raw input to the edge
    assert not second.offloads  # all on the device
    # the episode's total utility: oracle vs the two fixed plans, on the same arrivals

    def total(plan_of) -> float:
        sim = stepped(model, np.random.SeedSequence(3), "train")
        acc = [0.0]
        sim.on_finish.append(lambda r: acc.__setitem__(0, acc[0] + r.utility))
        while (req := sim.next_decision()) is not None:
            sim.apply(plan_of(req))
        sim.drain()
        return acc[0]

    u_oracle = total(lambda r: schedule[int(r.arrival_s // 10.0)][r.device])
    assert u_oracle > total(lambda r: first.index)
    assert u_oracle > total(lambda r: second.index)


def test_oracle_policy_in_the_evaluator_matches_its_schedule():
    model = toy_model({"horizon_s": 30.0, "workload.arrival.rate_per_s": 1.0})
    pol = HindsightWindowOracle(window_s=10.0, references=(), alternations=0)
    ev = evaluate(model, pol, seeds=[0], episodes=1)
    (lg,) = ev.all_logs()
    assert len(pol.schedule) == 3
    expected = [pol.schedule[int(t // 10.0)][0] for t in lg.arrival_s[np.argsort(lg.arrival_s)]]
    # decisions are made in arrival order
    assert list(lg.decision_plan) == expected
    fixed = evaluate(model, FixedPlanPolicy(pol.schedule[0][0]), seeds=[0], episodes=1)
    assert ev.metrics()["utility_mean"]["mean"] >= fixed.metrics()["utility_mean"]["mean"] - 1e-12


def test_oracle_rejects_bad_windows():
    model = toy_model()
    with pytest.raises(ValueError, match="window_s"):
        window_schedule(model, 0, "train", window_s=0.0)
    with pytest.raises(ValueError, match="lookahead_s"):
        window_schedule(model, 0, "train", window_s=1.0, lookahead_s=-1.0)


def test_oracle_gives_each_device_its_own_plan(monkeypatch):
    """Two devices, one on a fast uplink and one on a dead one: the common best plan cannot
    suit both; coordinate ascent gives the first the edge and keeps the second local."""
    model = toy_model(
        {
            "horizon_s": 10.0,
            "devices.count": 2,
            "workload.arrival.rate_per_s": 2.0,
            "action_menu.cut_units": [0],
        },
        unit_ms=[40.0, 80.0, 80.0, 40.0],
    )
    build = oracle_mod.build_simulator

    def split_links(*args, **kw):
        sim = build(*args, **kw)
        fast, dead = StepDown(200.0, 200.0, 0.0), StepDown(0.2, 0.2, 0.0)
        for d, bw in zip(sim.devices, (fast, dead), strict=True):
            d.uplink.bandwidth = d.downlink.bandwidth = bw
        return sim

    monkeypatch.setattr(oracle_mod, "build_simulator", split_links)
    (plans,) = window_schedule(model, 4, "train", window_s=10.0)
    first, second = (model.plans[i] for i in plans)
    assert first.offloads and not second.offloads


def test_planning_in_a_spawned_interpreter_gives_the_same_schedule():
    """``isolate``: the oracle may plan in a fresh interpreter (cheaper forks when torch is
    loaded here); the model is pickled over and the schedule must not change."""
    model = toy_model({"horizon_s": 20.0, "workload.arrival.rate_per_s": 2.0})
    here = window_schedule(model, 7, "train", window_s=5.0)
    assert window_schedule(model, 7, "train", window_s=5.0, spawn=True) == here


def test_isolate_is_checked_and_auto_follows_torch(monkeypatch):
    with pytest.raises(ValueError, match="isolate"):
        HindsightWindowOracle(isolate="sometimes")  # type: ignore[arg-type]
    model = toy_model({"horizon_s": 10.0, "workload.arrival.rate_per_s": 1.0})
    used = []

    def schedule(*args, **kwargs):
        used.append("isolated" if args[7] else "here")
        return [(0,)] * 2

    monkeypatch.setattr(oracle_mod, "window_schedule", schedule)
    for loaded, expected in ((True, "isolated"), (False, "here")):
        monkeypatch.setattr(oracle_mod, "heavy_modules_loaded", lambda v=loaded: v)
        used.clear()
        evaluate(model, HindsightWindowOracle(window_s=5.0), seeds=[0], episodes=1)
        assert used == [expected]
    monkeypatch.setattr(oracle_mod, "heavy_modules_loaded", lambda: True)
    used.clear()
    evaluate(model, HindsightWindowOracle(window_s=5.0, isolate="never"), seeds=[0], episodes=1)
    assert used == ["here"]


def _totals(model, policy, seeds):
    from edgerl.agents.evaluation import evaluate as ev

    return [float(lg.utility.sum()) for lg in ev(model, policy, seeds=seeds, episodes=1).all_logs()]


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("alexnet-edgepc-lte", ["horizon_s=12"]),  # where per-request references beat plans
        ("camera-lte", ["horizon_s=12"]),
    ],
)
def test_the_reference_oracle_is_never_below_its_references(scenario, overrides):
    """Issue 18: the oracle follows, per window, the best of every plan, every alternation of
    the best plan with the next ones and the online references; it is never below any of
    those references on any seed (the schedule falls back to a whole-episode reference)."""
    from edgerl.agents.baselines import make_baseline
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel

    model = ScenarioModel.from_config(load_scenario(scenario, overrides))
    seeds = [100, 101]
    oracle = _totals(model, HindsightWindowOracle(workers=2, isolate="never"), seeds)
    for name in oracle_mod.REFERENCES:
        ref = _totals(model, make_baseline(name), seeds)
        for s, o, r in zip(seeds, oracle, ref, strict=True):
            assert o >= r - 1e-9, f"seed {s}: oracle {o:.3f} below {name} {r:.3f}"


def test_alternations_and_references_replay_exactly_in_the_evaluator(monkeypatch):
    """Every kind of choice (a plan, an alternation, a stateless and a stateful reference
    asked at every decision) gives in evaluation exactly the utility it was planned with."""
    model = toy_model(
        {"horizon_s": 20.0, "workload.arrival.rate_per_s": 8.0, "action_menu.batch_sizes": [1, 2]}
    )
    a, b = (int(i) for i in np.flatnonzero(model.static_mask)[:2])
    schedule = [(a,), ((a, b),), ("clairvoyant",), ("composite",), ((b, a),)]
    monkeypatch.setattr(oracle_mod, "window_schedule", lambda *args, **kw: schedule)
    pol = HindsightWindowOracle(window_s=4.0, isolate="never")
    (lg,) = evaluate(model, pol, seeds=[0], episodes=1).all_logs()
    assert pol._entropy is not None
    entropy, pin = pol._entropy
    planned = oracle_mod.schedule_total(
        model, entropy, "eval", schedule, 4.0, oracle_mod.REFERENCES, pin
    )
    assert float(lg.utility.sum()) == pytest.approx(planned, abs=1e-9)
    decided = list(zip(lg.decision_plan.tolist(), lg.decision_s.tolist(), strict=True))
    first = [p for p, t in decided if t < 4.0]
    second = [p for p, t in decided if 4.0 <= t < 8.0]
    assert set(first) == {a} and second == [(a, b)[j % 2] for j in range(len(second))]
