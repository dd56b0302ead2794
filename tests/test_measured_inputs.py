"""Measured per-input answers and BranchyNet threshold exits in the simulator.

A synthetic accuracy table for the toy model (tests/conftest.py: units [4, 8, 8, 4] ms on the
device, exit heads 0.5 ms after units 1 and 3), four test images, four classes:

    image              0      1      2      3
    label              0      1      2      3
    exit 0: predicts   0      0      2      0      (right on 0, 2)  confidence .90 .30 .85 .40
    exit 1: predicts   0      1      2      0      (right on 0, 1, 2) confidence .95 .60 .90 .50

With tau = 0.8 the rule leaves at exit 0 on images 0 and 2 and at exit 1 on 1 and 3: right on
0, 1, 2 and wrong on 3, a measured rule accuracy of 0.75.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TOY_SCENARIO, synthetic_profile
from edgerl.envs.config import ConfigError, scenario_from_dict
from edgerl.envs.plans import ModelProfiles
from edgerl.envs.sim.build import ScenarioModel, build_simulator
from edgerl.profiles.accuracy import table_from_arrays

TAU = 0.8
UNIT_MS = [4.0, 8.0, 8.0, 4.0]
HEAD_MS = 0.5
TAKEN = {0: 0, 1: 1, 2: 0, 3: 1}  # image -> exit the rule takes
RIGHT = {(0, 0): True, (0, 1): False, (0, 2): True, (0, 3): False}  # (exit, image)
RIGHT |= {(1, 0): True, (1, 1): True, (1, 2): True, (1, 3): False}


def toy_table():
    labels = np.array([0, 1, 2, 3], dtype=np.uint8)
    pred = np.array([[[0, 0, 2, 0], [0, 1, 2, 0]]], dtype=np.uint8)
    conf = np.array([[[0.9, 0.3, 0.85, 0.4], [0.95, 0.6, 0.9, 0.5]]], dtype=np.float32)
    meta = {
        "schema_version": 1,
        "kind": "edgerl.accuracy_table",
        "model": "toy",
        "variants": ["fp32"],
        "exit_names": ["exit0", "exit1"],
        "exit_after": [1, 3],
        "n_inputs": 4,
        "class_names": ["a", "b", "c", "d"],
        "test_set": {"description": "synthetic, tests only"},
        "provenance": {"note": "synthetic, tests only"},
    }
    return table_from_arrays(
        {
            "metadata": np.array(json.dumps(meta)),
            "correct": pred == labels[None, None, :],
            "confidence": conf,
            "prediction": pred,
            "labels": labels,
        }
    )


def measured_toy(tmp_path, **menu) -> ScenarioModel:
    gaps = tmp_path / "gaps.txt"
    gaps.write_text("0.2\n")
    data = json.loads(json.dumps(TOY_SCENARIO))
    data["model"]["input_correctness"] = "measured"
    data["workload"]["arrival"] = {"process": "trace", "trace_file": str(gaps)}
    data["workload"]["catalogue_size"] = 4
    data["action_menu"].update({"exit_thresholds": [TAU], **menu})
    cfg = scenario_from_dict(data)
    profs = {
        tier: {
            "fp32": synthetic_profile(
                unit_ms=[m * f for m in UNIT_MS],
                out_bytes=[400_000, 100_000, 20_000, 4000],
                exits_after=[1, 3],
                head_ms=HEAD_MS * f,
                accuracy=[0.5, 0.75],
            )
        }
        for tier, f in (("device", 1.0), ("edge", 0.25), ("cloud", 0.125))
    }
    return ScenarioModel.from_config(cfg, ModelProfiles(**profs, table=toy_table()))


def rule_plan(model: ScenarioModel, c_edge: int):
    return next(
        p
        for p in model.plans
        if p.threshold == TAU and p.cut_edge == c_edge and p.cut_cloud == p.n_units
    )


def run(model: ScenarioModel, plan_index: int, n: int, seed: int = 0):
    sim = build_simulator(model, seed, record=True)
    for _ in range(n):
        sim.next_decision()
        sim.apply(plan_index)
    sim.env.run(until=sim.env.now + 1.0)
    return sim, sorted((r for r in sim.finished if r.id < n), key=lambda r: r.id)


def test_the_rule_is_in_the_catalogue_with_its_measured_accuracy(tmp_path):
    model = measured_toy(tmp_path)
    rules = [p for p in model.plans if p.threshold is not None]
    assert rules and all(p.rule_exits == (0, 1) and p.accuracy == 0.75 for p in rules)
    assert "tau0.8[0,1]" in rules[0].name


def test_correctness_is_the_measured_answer_of_the_image(tmp_path):
    """Fixed exits: a request's correctness is the table's answer for its test image, the same
    on every repeat of the input and for the same seed."""
    model = measured_toy(tmp_path)
    for exit_index in (0, 1):
        plan = next(
            p
            for p in model.plans
            if p.threshold is None and p.exit_index == exit_index and p.cut_edge == p.n_units
        )
        sim, reqs = run(model, plan.index, 12)
        assert sorted(sim.image_of) == [0, 1, 2, 3]  # 4 inputs, 4 distinct images
        for r in reqs:
            assert r.correct == RIGHT[(exit_index, sim.image_of[r.input_id])]
        again, reqs2 = run(model, plan.index, 12)
        assert again.image_of == sim.image_of
        assert [(r.input_id, r.correct) for r in reqs2] == [(r.input_id, r.correct) for r in reqs]


def test_threshold_exit_against_the_hand_computed_case(tmp_path):
    """All on the device: an input leaving at exit 0 runs units 0-1 and head 0 (12.5 ms); one
    going on runs all units and both heads (25 ms). Correct per the table at the exit taken."""
    model = measured_toy(tmp_path)
    sim, reqs = run(model, rule_plan(model, 4).index, 12)
    for r in reqs:
        image = sim.image_of[r.input_id]
        taken = TAKEN[image]
        expected_ms = sum(UNIT_MS[:2]) + HEAD_MS if taken == 0 else sum(UNIT_MS) + 2 * HEAD_MS
        assert r.latency_s == pytest.approx(expected_ms / 1e3)
        assert r.correct == RIGHT[(taken, image)]
        assert r.accuracy == 0.75  # the rule's expected accuracy (reward mode "expected")


def test_an_early_exit_before_the_cut_never_uploads(tmp_path):
    """Cut before unit 2: exit 0 (after unit 1) is on the device, so a confident input
    finishes there and sends nothing; the others upload unit 1's output (100 kB)."""
    model = measured_toy(tmp_path, cut_units=[0, 2])
    sim, reqs = run(model, rule_plan(model, 2).index, 12)
    for r in reqs:
        if TAKEN[sim.image_of[r.input_id]] == 0:
            assert r.bytes_uplink == 0 and r.t_uplink_s == 0.0
        else:
            assert r.bytes_uplink == 100_000


def test_prediction_resolves_the_rule(tmp_path):
    model = measured_toy(tmp_path)
    plan = rule_plan(model, 4)
    sim = build_simulator(model, 0, record=True)
    for _ in range(6):
        req = sim.next_decision()
        assert req is not None
        predicted = sim.predict_outcome(req, plan)
        sim.apply(plan.index)
        sim.env.run(until=sim.env.now + 0.1)
        done = next(r for r in sim.finished if r.id == req.id)
        assert predicted.latency_s == pytest.approx(done.latency_s)


def test_thresholds_need_measured_inputs_and_two_exits(tmp_path):
    data = json.loads(json.dumps(TOY_SCENARIO))
    data["action_menu"]["exit_thresholds"] = [0.8]
    cfg = scenario_from_dict(data)
    profs = {
        t: {"fp32": synthetic_profile(UNIT_MS, [400_000, 100_000, 20_000, 4000], [1, 3])}
        for t in ("device", "edge", "cloud")
    }
    with pytest.raises(ConfigError, match="input_correctness: measured"):
        ScenarioModel.from_config(cfg, ModelProfiles(**profs))
    with pytest.raises(ConfigError, match=r"exit_thresholds\[0\] must be in \(0, 1\]"):
        data["action_menu"]["exit_thresholds"] = [1.5]
        scenario_from_dict(data)
