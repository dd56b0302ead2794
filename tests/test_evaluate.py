"""The evaluator: determinism, metric definitions, confidence intervals, clear CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import toy_model
from edgerl.agents.baselines import make_baseline
from edgerl.agents.evaluation import METRICS, EpisodeLog, evaluate, t_interval, unit_metrics
from edgerl.experiments.cli import app
from edgerl.experiments.evaluate import EvalConfig, PolicySpecError, load_policy, run_evaluation
from typer.testing import CliRunner

TIMING = {"decision_time_us"}  # wall-clock metrics, not deterministic


@pytest.fixture(scope="module")
def busy():
    return toy_model(
        {
            "devices.count": 2,
            "workload.arrival.rate_per_s": 6.0,
            "horizon_s": 20.0,
            "edge.cache_capacity": 16,
            "action_menu.cache_policies": ["none", "lru"],
            "workload.zipf_s": 1.0,
        }
    )


def _values(ev) -> dict:
    return {k: v["per_unit"] for k, v in ev.metrics().items() if k not in TIMING}


@pytest.mark.parametrize("name", ["random", "edgent", "clairvoyant"])
def test_evaluation_is_deterministic_for_a_seed(busy, name):
    a = evaluate(busy, make_baseline(name), seeds=[3, 4], episodes=2)
    b = evaluate(busy, make_baseline(name), seeds=[3, 4], episodes=2)
    assert _values(a) == _values(b)
    c = evaluate(busy, make_baseline(name), seeds=[5, 6], episodes=2)
    assert _values(a)["utility_mean"] != _values(c)["utility_mean"]


def test_every_policy_starts_from_the_same_episode(busy):
    # Same env seed per (seed, episode) for every policy: the first arrival coincides. Later
    # arrivals share the simulator's generator with policy-dependent draws (input difficulty on
    # completion), so the streams diverge once the policies' outcomes differ.
    a = evaluate(busy, make_baseline("device-only"), seeds=[1], episodes=1)
    b = evaluate(busy, make_baseline("random"), seeds=[1], episodes=1)
    assert a.logs[1][0].decision_s[0] == b.logs[1][0].decision_s[0]
    assert a.logs[1][0].seed == b.logs[1][0].seed


def _log(**kw) -> EpisodeLog:
    n = len(kw["latency_s"])
    base = dict(
        seed=0,
        arrival_s=np.zeros(n),
        finish_s=np.asarray(kw["latency_s"]),
        completed=np.ones(n, bool),
        deadline_s=np.full(n, 0.1),
        utility=np.zeros(n),
        accuracy=np.full(n, 0.7),
        correct=np.ones(n, bool),
        energy_j=np.full(n, 0.002),
        bytes_sent=np.full(n, 1000.0),
        cache_hit=np.zeros(n, bool),
        raw_input_left=np.zeros(n, bool),
        plan_index=np.zeros(n, np.int64),
        decision_s=np.zeros(n),
        decision_plan=np.zeros(n, np.int64),
        decision_state=np.zeros((n, 3)),
        n_arrived=n,
        in_flight_at_horizon=0,
        ep_return=0.0,
        decision_wall_s=0.0,
    )
    base.update({k: np.asarray(v) if isinstance(v, list) else v for k, v in kw.items()})
    return EpisodeLog(**base)


def test_metric_definitions_on_a_hand_made_episode():
    lg = _log(
        latency_s=[0.05, 0.2, 0.08, 0.0],
        completed=[True, True, True, False],  # the last one was dropped
        utility=[1.0, 0.0, 0.5, -2.0],
        accuracy=[0.7, 0.7, 0.6, 0.0],
        cache_hit=[False, False, True, False],
        raw_input_left=[True, False, False, False],
        in_flight_at_horizon=3,
    )
    m = unit_metrics([lg])
    assert set(m) == set(METRICS)
    assert m["utility_mean"] == pytest.approx(-0.125)
    assert m["latency_mean_ms"] == pytest.approx(110.0)  # completed only
    assert m["latency_p50_ms"] == pytest.approx(80.0)
    assert m["slo_hit_rate"] == pytest.approx(2 / 4)  # dropped counts as a miss
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["cache_hit_rate"] == pytest.approx(1 / 3)
    assert m["raw_input_left_fraction"] == pytest.approx(1 / 4)
    assert m["energy_mj_per_request"] == pytest.approx(2.0)
    assert m["bytes_per_request"] == pytest.approx(1000.0)
    assert (m["completed_per_episode"], m["dropped_per_episode"]) == (3, 1)
    assert m["in_flight_at_horizon_per_episode"] == 3
    assert m["arrived_per_episode"] == 4


def test_goodput_and_p99_slo_attainment_on_hand_made_episodes():
    """Two episodes of 2 s: 3 and 1 requests within their 0.1 s deadline (a late one and a
    dropped one miss): goodput (3 + 1) / 4 s; 4 of 6 met, below 99 %: not attained."""
    a = _log(latency_s=[0.05, 0.2, 0.08, 0.09], horizon_s=2.0)
    b = _log(latency_s=[0.01, 0.0], completed=[True, False], horizon_s=2.0)
    m = unit_metrics([a, b])
    assert m["goodput_per_s"] == pytest.approx(4 / 4.0)
    assert m["slo_hit_rate"] == pytest.approx(4 / 6)
    assert m["slo_p99_attained"] == 0.0
    # 100 requests, one late: exactly 99 % met -> attained; two late -> not
    for late, want in ((1, 1.0), (2, 0.0)):
        lat = [0.05] * (100 - late) + [0.5] * late
        m = unit_metrics([_log(latency_s=lat, horizon_s=10.0)])
        assert m["goodput_per_s"] == pytest.approx((100 - late) / 10.0)
        assert m["slo_p99_attained"] == want


def test_t_interval_matches_the_textbook_values():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert t_interval([5.0]) == (5.0, None, None)


def test_single_seed_uses_episodes_as_units(busy):
    ev = evaluate(busy, make_baseline("edgent"), seeds=[0], episodes=3)
    doc = ev.to_json()
    assert doc["ci_unit"] == "episode" and doc["n_units"] == 3
    assert doc["metrics"]["utility_mean"]["ci95"] is not None
    ev2 = evaluate(busy, make_baseline("edgent"), seeds=[0, 1], episodes=2)
    assert ev2.to_json()["ci_unit"] == "seed"


def test_run_evaluation_document(busy, tmp_path):
    cfg = EvalConfig(
        scenario=busy,
        policies=("baseline:device-only", "baseline:edgent"),
        seeds=(0, 1),
        episodes=1,
    )
    doc, _ = run_evaluation(cfg)
    assert doc["split"] == "eval" and doc["kind"] == "edgerl.evaluation"
    assert list(doc["policies"]) == ["device-only", "edgent"]
    for pd in doc["policies"].values():
        assert set(pd["metrics"]) == {*METRICS, "utility_pooled"}
        assert {"mean", "ci95", "unit", "per_unit"} <= set(pd["metrics"]["utility_mean"])
        assert {"mean", "ci95", "n_episodes"} <= set(pd["metrics"]["utility_pooled"])
    json.dumps(doc)  # serialisable


def test_policy_spec_errors_are_clear(tmp_path):
    cfg = EvalConfig()
    with pytest.raises(PolicySpecError, match="no such run directory"):
        load_policy(str(tmp_path / "missing"), cfg)
    with pytest.raises(PolicySpecError, match="unknown policy kind 'baselin:'"):
        load_policy("baselin:edgent", cfg)


# --------------------------------------------------------------------------- CLI errors

runner = CliRunner()


def _err(result) -> str:
    return " ".join((result.output + (result.stderr or "")).split())


def test_cli_unknown_baseline_lists_the_valid_ones():
    r = runner.invoke(app, ["evaluate", "--scenario", "toy-analytic", "--policy", "baseline:nope"])
    assert r.exit_code == 2
    assert "unknown baseline 'nope'" in _err(r) and "edgent" in _err(r)


def test_cli_unknown_scenario_lists_the_shipped_ones():
    r = runner.invoke(app, ["evaluate", "--scenario", "no-such", "--policy", "baseline:edgent"])
    assert r.exit_code == 2
    assert "unknown scenario 'no-such'" in _err(r) and "toy-analytic" in _err(r)


def test_cli_missing_and_corrupt_run_directory(tmp_path):
    r = runner.invoke(
        app, ["evaluate", "--scenario", "toy-analytic", "--policy", str(tmp_path / "gone")]
    )
    assert r.exit_code == 2 and "no such run directory" in _err(r)
    (tmp_path / "run.json").write_text("{", encoding="utf-8")
    r = runner.invoke(app, ["evaluate", "--scenario", "toy-analytic", "--policy", str(tmp_path)])
    assert r.exit_code == 2 and "corrupt JSON" in _err(r)


def test_pooled_utility_is_total_over_requests_with_a_ratio_ci():
    from edgerl.agents.evaluation import pooled

    # episodes of 1 and 3 requests: the mean of per-episode means would be (1 + 1) / 2 = 1,
    # pooled it is (1 + 9) / 4 = 2.5
    out = pooled(np.array([1.0, 9.0]), np.array([1.0, 3.0]))
    assert out["mean"] == pytest.approx(2.5) and out["n_episodes"] == 2
    lo, hi = out["ci95"]
    # residuals 1 - 2.5 = -1.5 and 9 - 7.5 = 1.5; se = sqrt(2 * 4.5) / 4 = 0.75; t(0.975, 1)
    assert hi - lo == pytest.approx(2 * 12.7062047 * 0.75, rel=1e-6)
    assert pooled(np.array([2.0]), np.array([4.0]))["ci95"] is None


def test_paired_difference_cancels_the_shared_episode_variance(toy):
    from edgerl.agents.baselines import make_baseline
    from edgerl.agents.evaluation import evaluate, paired_difference

    a = evaluate(toy, make_baseline("device-only"), seeds=[0, 1, 2], episodes=1)
    b = evaluate(toy, make_baseline("edge-only"), seeds=[0, 1, 2], episodes=1)
    d = paired_difference([a], b)
    ua, ub = a.pooled_utility()["mean"], b.pooled_utility()["mean"]
    assert d["mean"] == pytest.approx(ua - ub)
    assert d["reference_utility"] == pytest.approx(ub)
    self_diff = paired_difference([a], a)
    assert self_diff["mean"] == 0.0 and self_diff["ci95"] == [0.0, 0.0]
    other = evaluate(toy, make_baseline("device-only"), seeds=[5], episodes=1)
    with pytest.raises(ValueError, match="same held-out episodes"):
        paired_difference([other], b)
