"""``edgerl fidelity``'s pieces that need no processes: the execution calibration of the
simulator (``execution`` block), its fit, the per-stage mapping, the ranking rule and the plot.
The end-to-end command runs three processes per plan (README, Runtime; not in the fast suite)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from edgerl.agents.rundir import scenario_fingerprint, scenario_yaml_text
from edgerl.envs.config import ConfigError, ExecutionConfig, load_scenario
from edgerl.envs.plans import apply_execution
from edgerl.envs.sim.build import ScenarioModel
from edgerl.runtime.fidelity import (
    UNACCOUNTED,
    FidelityResult,
    PolicyRanking,
    _agrees,
    _calibrate,
    _stage_ms,
    default_grid,
    fit_tier,
    host_overrides,
    simulate,
)

BASE = (
    "model.variants=[fp32]",
    "action_menu.tiers=[device,edge,cloud]",
    "action_menu.batch_sizes=[1,4]",
    "action_menu.cache_policies=[none,lru]",
    "edge.cache_capacity=8",
    "devices.active_power_w=5.4",
)
EXEC = (
    "execution.device_per_request_ms=1.5",
    "execution.device_overhead_ms=2.0",
    "execution.device_compute_scale=3.0",
    "execution.edge_overhead_ms=0.5",
    "execution.edge_compute_scale=2.0",
    "execution.cloud_overhead_ms=0.25",
)


def _model(*sets: str) -> ScenarioModel:
    return ScenarioModel.from_config(load_scenario("edgent-rpi", [*BASE, *sets]))


def test_default_execution_changes_nothing_and_keeps_fingerprints() -> None:
    cfg = load_scenario("camera-lte")
    assert cfg.execution == ExecutionConfig()
    plan = _model().plans[3]
    assert apply_execution(plan, ExecutionConfig()) is plan
    changed = dataclasses.replace(cfg, execution=ExecutionConfig(edge_overhead_ms=1.0))
    assert scenario_fingerprint(changed) != scenario_fingerprint(cfg)
    # the canonical text leaves the block out at its default (published runs keep their key)
    assert "execution" not in scenario_yaml_text(cfg)


def test_execution_transform_per_tier() -> None:
    raw, cal = _model(), _model(*EXEC)
    for p, q in zip(raw.plans, cal.plans, strict=True):
        want_dev = (p.device_s * 1e3 * 3.0 + 2.0 if p.device_s > 0 else 0.0) + 1.5
        assert q.device_s * 1e3 == pytest.approx(want_dev)  # every plan pays the decision
        for m, n in zip(p.edge_batch_ms, q.edge_batch_ms, strict=True):
            assert n == pytest.approx(m * 2.0 + 0.5 if m > 0 else 0.0)
        assert q.cloud_s * 1e3 == pytest.approx(p.cloud_s * 1e3 + 0.25 if p.cloud_s > 0 else 0)
    for resolved in cal.resolved.values():
        for r in resolved.values():
            assert r.device_s * 1e3 >= 1.5  # resolved threshold plans are transformed too


def test_execution_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match=r"execution\.edge_compute_scale"):
        load_scenario("edgent-rpi", ["execution.edge_compute_scale=0"])
    with pytest.raises(ConfigError, match=r"execution\.device_overhead_ms"):
        load_scenario("edgent-rpi", ["execution.device_overhead_ms=-1"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_scenario("edgent-rpi", ["execution.warp=2"])


def test_device_only_latency_is_the_transformed_compute_when_idle() -> None:
    """An analytically solvable case: one device-only request at a time (rate 0.5/s over 20 s)
    finishes after exactly its (transformed) device time."""
    sets = (*host_overrides(20.0), "workload.arrival.rate_per_s=0.5")
    raw, cal = _model(*sets), _model(*sets, *EXEC)
    idx = next(p.index for p in raw.plans if p.cut_edge == p.n_units and p.threshold is None)
    for m in (raw, cal):
        done = simulate(m, idx, 5, "eval")
        lat = sorted((r.finish_s - r.arrival_s) for r in done.values())
        gaps = np.diff(sorted(r.arrival_s for r in done.values()))
        assert len(done) > 3 and gaps.min() > m.plans[idx].device_s  # no queueing
        assert lat[0] == pytest.approx(m.plans[idx].device_s)
        assert lat[-1] == pytest.approx(m.plans[idx].device_s)
    want = raw.plans[idx].device_s * 1e3 * 3.0 + 2.0 + 1.5
    assert cal.plans[idx].device_s * 1e3 == pytest.approx(want)


def test_fit_tier_recovers_a_line_and_handles_degenerate_samples() -> None:
    xs = [0.5, 0.5, 1.0, 1.0, 2.0]
    fit = fit_tier("edge", [(x, 2.0 * x + 1.5) for x in xs])
    assert fit.compute_scale == pytest.approx(2.0) and fit.overhead_ms == pytest.approx(1.5)
    assert [p[2] for p in fit.points] == [2.0, 2.0, 1.0]  # requests per profiled time
    one = fit_tier("device", [(1.0, 3.0), (1.0, 4.0), (1.0, 3.5)])
    assert one.compute_scale == 1.0 and one.overhead_ms == pytest.approx(2.5)
    origin = fit_tier("cloud", [(1.0, 1.0), (2.0, 3.0)])  # intercept < 0: through the origin
    assert origin.overhead_ms == 0.0 and origin.compute_scale == pytest.approx(7.0 / 5.0)


def test_calibrate_from_records() -> None:
    model = _model()
    dev = next(p for p in model.plans if p.cut_edge == p.n_units and p.threshold is None)
    edge = next(p for p in model.plans if p.cut_edge == 0 and p.cut_cloud == p.n_units
                and p.batch_size == 1 and p.threshold is None)  # fmt: skip
    d_ms, e_ms = dev.device_s * 1e3, edge.edge_batch_ms[0]

    def rec(stages: dict[str, float], **kw: Any) -> dict[str, Any]:
        total = sum(stages.values()) + 0.2
        return {"outcome": "completed", "stages_ms": {**stages, "end_to_end": total},
                "latency_ms": total, **kw}  # fmt: skip

    recs = [(rec({"decide": 1.0, "device_compute": d_ms * 2 + 1}), dev) for _ in range(3)]
    recs += [
        (rec({"decide": 1.0, "uplink": 30.0, "edge_compute": e_ms + 2}, edge_batch=1,
             tier="edge", cache=None, bytes={"uplink": 3500, "downlink": 480}), edge),
        (rec({"decide": 1.0, "cache_lookup": 41.0}, tier="cache", cache="hit",
             bytes={"uplink": 150, "downlink": 230}), edge),
    ]  # fmt: skip
    recs += [({"outcome": "dropped", "stages_ms": {}, "latency_ms": 0.0}, edge)]
    cal = _calibrate(recs, model, 99, 10.0)
    assert cal.decide_median_ms == 1.0 and cal.unaccounted_median_ms == pytest.approx(0.2)
    ex = cal.execution
    assert ex["device_per_request_ms"] == pytest.approx(1.2)
    assert ex["device_overhead_ms"] == pytest.approx(d_ms + 1)  # one profiled time: scale 1
    assert ex["edge_overhead_ms"] == pytest.approx(2.0)
    assert "cloud_overhead_ms" not in ex  # no cloud sample: left at its default
    assert (cal.result_bytes, cal.fingerprint_bytes) == (480, 150)  # frames on the wire
    assert "network.result_bytes=480" in cal.overrides()
    # the overrides load as a scenario
    load_scenario("edgent-rpi", [*BASE, *cal.overrides()])


def test_stage_mapping_sums_to_the_end_to_end_latency() -> None:
    rec = {"latency_ms": 60.0, "stages_ms": {"decide": 1.0, "uplink": 30.0,
           "edge_batching+queue": 0.5, "edge_compute": 3.0, "downlink": 20.0}}  # fmt: skip
    req = SimpleNamespace(t_lookup_s=0.0, t_device_s=0.0, t_uplink_s=0.031, t_edge_wait_s=0.0,
                          t_edge_s=0.001, t_wan_s=0.0, t_cloud_wait_s=0.0, t_cloud_s=0.0,
                          t_downlink_s=0.02, arrival_s=1.0, finish_s=1.052)  # fmt: skip
    rt, sim = _stage_ms(rec, req)
    assert set(rt) == set(sim)
    assert rt["device+decide"] == 1.0 and sim["device+decide"] == 0.0
    assert sim["uplink"] == pytest.approx(31.0) and "cloud_compute" not in rt
    assert sum(rt.values()) == pytest.approx(60.0) and sum(sim.values()) == pytest.approx(52.0)
    assert rt[UNACCOUNTED] == pytest.approx(5.5) and sim[UNACCOUNTED] == pytest.approx(0.0)


def _rank(policy: str, rt: float, sim: float) -> PolicyRanking:
    return PolicyRanking(policy, 0, rt, sim, 10, 10, 1.0, 1.0)


def test_ranking_checks_only_pairs_the_simulator_separates() -> None:
    assert _agrees([_rank("a", 0.8, 0.9), _rank("b", 0.5, 0.6), _rank("c", 0.1, 0.2)])
    assert not _agrees([_rank("a", 0.5, 0.9), _rank("b", 0.8, 0.6)])
    # a and b tie in the simulator (the same plans): their runtime order is noise
    assert _agrees([_rank("a", 0.80, 0.844), _rank("b", 0.81, 0.844), _rank("c", 0.1, 0.2)])


def test_grid_offers_batching_and_cache_plans() -> None:
    model = _model(*host_overrides(2.0))
    plans = [model.plans[i] for i in default_grid(model)]
    assert any(p.batch_size > 1 for p in plans)
    assert any(p.cache_policy == "lru" for p in plans)
    assert sum(p.cut_edge == p.n_units for p in plans) == 1


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from edgerl.experiments.fidelity_plot import plot_fidelity
    from edgerl.runtime.fidelity import PlanFidelity, StageError

    res = FidelityResult("edgent-rpi", [], [0], [10.0], 2.0)
    res.plans = [PlanFidelity(0, "p", "p", 3, 5.0, 4.0, 0.2, 0.3, 0, 0)]
    res.stages = [StageError("device", 3, 5.0, 4.0, 1.0, 1.0)]
    res.pairs = [[0.0, 0.0, 5.0, 4.0], [0.0, 0.0, 6.0, 4.5], [0.0, 0.0, 4.0, 4.0]]
    res.overall_rel_error_median, res.overall_rel_error_p95 = 0.2, 0.3
    out = plot_fidelity(res, tmp_path / "f.png")
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"


def test_source_text_of_a_scenario_with_many_overrides() -> None:
    """A long override list makes the scenario's path description longer than a file name
    may be: the source text is simply absent (it used to raise ENAMETOOLONG in train)."""
    from edgerl.agents.rundir import source_yaml_text

    sets = [*BASE, *host_overrides(5.0), *EXEC, "workload.catalogue_size=50"]
    cfg = load_scenario("edgent-rpi", sets)
    assert len(cfg.path) > 255
    assert source_yaml_text(cfg) is None
    assert source_yaml_text(load_scenario("edgent-rpi")) is not None


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["runtime", "run", "--placement", "0,1"], "--placement"),
        (["runtime", "run", "--placement", "0,one,1"], "--placement"),
        (["fidelity", "--rates", "ten"], "--rates"),
        (["fidelity", "--seeds", "a,b"], "--seeds"),
        (["fidelity", "--seeds", ""], "--seeds"),
        (["fidelity", "--plans", "99999", "--seeds", "0"], "--plans"),
    ],
)
def test_runtime_and_fidelity_options_fail_before_starting_anything(
    argv: list[str], needle: str, tmp_path: Path
) -> None:
    from edgerl.experiments.cli import app
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, [*argv, *(["--out", str(tmp_path / "f.json")]
                                            if argv[0] == "fidelity" else [])])  # fmt: skip
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and needle in res.stderr, res.stderr
    assert not (tmp_path / "f.json").exists()


@pytest.mark.slow
def test_fidelity_end_to_end_with_calibration_and_ranking(tmp_path: Path) -> None:
    """Three processes per run: a calibration run, one plan and one ranked policy on one
    condition; the JSON holds both simulators' errors and the plot is written."""
    import json
    import subprocess
    import sys

    out = tmp_path / "fid.json"
    sets = [x for o in (*BASE, "edge.max_batch_wait_ms=10") for x in ("--set", o)]
    subprocess.run(
        [sys.executable, "-c", "from edgerl.experiments.cli import main; main()", "fidelity",
         *sets, "--seeds", "3", "--plans", "0", "--duration-s", "1.5", "--calibrate-seed", "9",
         "--policies", "baseline:device-only", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    res = json.loads(out.read_text())
    assert res["calibration"]["seed"] == 9 and res["calibration"]["execution"]
    assert any(o.startswith("execution.") for o in res["overrides"])
    assert res["plans"] and res["uncalibrated"]["plans"]
    assert len(res["conditions"]) == 1 and len(res["ranking"]) == 1
    assert res["ranking_agrees"] == [True]  # one policy: nothing to disagree on
    assert out.with_suffix(".png").stat().st_size > 1000
