"""Per-request credit of the env's reward, and load shedding in the simulator.

Toy (tests/conftest.py): one device, units [4, 8, 8, 4] ms on the device, exit heads 0.5 ms
after units 1 and 3 (accuracy 0.5 and 0.6), 8 Mbit/s uplink, 10 ms one-way access delay,
deadline 200 ms, reward = accuracy - latency_s - 1 * (deadline missed) - 2 * (dropped).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import toy_model
from edgerl.envs.env import CollabInferenceEnv
from edgerl.envs.sim.build import build_simulator
from edgerl.envs.sim.simulator import REWARD_PARTS


def _gaps(tmp_path, gap_s: float) -> str:
    p = tmp_path / "gaps.txt"
    p.write_text(f"{gap_s}\n")
    return str(p)


def _local(model, exit_index: int):
    return next(
        p
        for p in model.plans
        if p.cut_edge == p.n_units and p.exit_index == exit_index and p.cache_policy == "none"
    )


# --------------------------------------------------------------------------- credit


@pytest.mark.parametrize(
    ("credit", "expected"),
    [
        # r0 (0.01 s, final exit, 24.5 ms): U = 0.6 - 0.0245 = 0.5755
        # r1 (0.02 s, final exit, waits for r0 until 0.0345, done 0.059): 0.6 - 0.039 = 0.561
        # r2 (0.03 s, early exit 12.5 ms, waits until 0.059, done 0.0715): 0.5 - 0.0415
        ("decision", [0.5755, 0.561, 0.4585]),
        # the step ending at the 4th arrival (0.04 s) is when r0 (0.0345 s) finishes
        ("finish", [0.0, 0.0, 0.5755]),
    ],
)
def test_step_rewards_on_a_hand_checked_trajectory(tmp_path, credit, expected):
    model = toy_model(
        {
            "workload.arrival": {"process": "trace", "trace_file": _gaps(tmp_path, 0.01)},
            "reward": {"credit": credit},
        }
    )
    env = CollabInferenceEnv(model)
    env.reset(seed=0)
    rewards, corrections = [], []
    for plan in (_local(model, 1), _local(model, 1), _local(model, 0)):
        _, r, _, _, info = env.step(plan.index)
        rewards.append(r)
        corrections.append(info["credit_correction"])
    assert rewards == pytest.approx(expected, abs=1e-12)
    assert corrections == [0.0, 0.0, 0.0]


def test_decision_credit_keeps_the_return_and_reports_corrections():
    """With batching and several devices the decision-time prediction is not exact; the
    corrections make the return equal the sum of the actual utilities anyway."""
    model = toy_model(
        {
            "devices.count": 4,
            "workload.arrival.rate_per_s": 30.0,
            "horizon_s": 10.0,
            "action_menu.batch_sizes": [1, 4],
            "edge.max_batch_wait_ms": 30.0,
        }
    )
    env = CollabInferenceEnv(model, record=True)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    ret, corr = 0.0, []
    while True:
        _, r, _, trunc, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        ret += r
        corr.append(info["credit_correction"])
        if trunc:
            break
    assert env.sim is not None
    assert ret == pytest.approx(sum(q.utility for q in env.sim.finished))
    assert any(c != 0.0 for c in corr)  # batching made some predictions inexact


# --------------------------------------------------------------------------- shedding


def _overloaded(tmp_path, shedding: str, **over):
    return toy_model(
        {
            "workload.arrival": {"process": "trace", "trace_file": _gaps(tmp_path, 0.015)},
            "horizon_s": 5.0,
            "shedding": shedding,
            **over,
        }
    )


def _run_fixed(model, plan_index: int):
    sim = build_simulator(model, 0, record=True)
    while sim.next_decision() is not None:
        sim.check_conservation()
        sim.apply(plan_index)
        sim.check_conservation()
    sim.drain()
    sim.check_conservation()
    return sim


def test_shedding_at_the_device_drops_exactly_the_hopeless_requests(tmp_path):
    """Arrivals every 15 ms, 24.5 ms of device work each: the queue grows without bound.
    Without shedding every request completes, later and later; with shedding a request is
    dropped before it takes the CPU when its known start + compute passes its deadline, so
    every completed request meets the deadline, and the freed CPU serves more of them in
    time."""
    off = _run_fixed(_overloaded(tmp_path, "off"), _local(_overloaded(tmp_path, "off"), 1).index)
    model = _overloaded(tmp_path, "deadline")
    on = _run_fixed(model, _local(model, 1).index)
    assert on.arrived == off.arrived
    done_off = [r for r in off.finished if r.status == "completed"]
    assert len(done_off) == off.arrived and max(r.latency_s for r in done_off) > 1.0
    done_on = [r for r in on.finished if r.status == "completed"]
    dropped = [r for r in on.finished if r.status == "dropped"]
    assert dropped and {r.drop_reason for r in dropped} == {"deadline@device"}
    assert all(r.latency_s <= r.deadline_s + 1e-12 for r in done_on)
    assert all(r.t_device_s == 0 and r.energy_j == 0 for r in dropped)  # never took the CPU
    assert sum(r.slo_met for r in done_on) > sum(r.slo_met for r in done_off)
    parts = dict(zip(REWARD_PARTS, dropped[0].parts, strict=True))
    assert parts["drop"] == -model.cfg.reward.drop


def test_shedding_on_the_uplink_frees_the_link(tmp_path):
    """Raw uploads of 150.5 kB at 8 Mbit/s take 150.5 ms; arrivals every 15 ms. A transfer
    that would start too late to meet the deadline is abandoned at the head of the queue
    (bytes counted as queued until then, no air time, no radio energy)."""
    over = {"network.uplink": {"constant_mbps": 8.0}}
    model = _overloaded(tmp_path, "deadline", **over)
    raw = next(
        p for p in model.plans if p.cut_edge == 0 and p.cut_cloud == p.n_units and p.exit_index == 1
    )
    sim = _run_fixed(model, raw.index)
    dropped = [r for r in sim.finished if r.status == "dropped"]
    assert dropped and {r.drop_reason for r in dropped} <= {"deadline@uplink", "deadline@edge"}
    up = [r for r in dropped if r.drop_reason == "deadline@uplink"]
    assert up and all(r.bytes_uplink == 0 and not r.raw_input_left for r in up)
    done = [r for r in sim.finished if r.status == "completed"]
    assert done and all(r.latency_s <= r.deadline_s for r in done)
    # the uplink carried only the transfers that were sent
    sent = sum(r.bytes_uplink for r in sim.finished)
    assert sim.devices[0].uplink.bytes_sent == sent


def test_prediction_matches_a_shed_request(tmp_path):
    """The what-if predicts the drop (reason and utility) of a request shed at the device."""
    model = _overloaded(tmp_path, "deadline")
    local = _local(model, 1)
    sim = build_simulator(model, 0, record=True)
    while (req := sim.next_decision()) is not None:
        predicted = sim.predict_outcome(req, local)
        sim.apply(local.index)
        if predicted.drop_reason:
            break
    else:
        pytest.fail("nothing was shed")
    sim.env.run(until=sim.env.now + 1e-9)
    done = next(r for r in sim.finished if r.id == req.id)
    assert done.drop_reason == predicted.drop_reason == "deadline@device"
    assert done.utility == pytest.approx(predicted.utility)
