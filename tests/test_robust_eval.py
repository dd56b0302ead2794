"""Evaluation on networks a policy never saw (issue 19): `--uplink-traces` / `--downlink-traces`
on the command line, baselines built from the training traces and scored on the override,
paired links, the stratified evaluation and domain randomisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from edgerl.envs.config import SCENARIO_DIR
from edgerl.experiments.cli import app
from edgerl.experiments.cmd_agents import MULTI_VALUE_OPTIONS, expand_multi_values
from typer.testing import CliRunner

FAST_SEARCH = ["--search-episodes", "1", "--search-horizon-s", "5"]


def _pensieve(path, mbps: list[float]) -> None:
    path.write_text("".join(f"{i}.0 {b}\n" for i, b in enumerate(mbps)))


@pytest.fixture
def study(tmp_path):
    """The toy model on the user's traces: training traces at 2 and 5 Mbit/s, held out 9."""
    root = tmp_path / "study"
    (root / "traces").mkdir(parents=True)
    _pensieve(root / "traces" / "walk.log", [2.0] * 40)
    _pensieve(root / "traces" / "bus.log", [5.0] * 40)
    _pensieve(root / "traces" / "train.log", [9.0] * 40)
    data = yaml.safe_load((SCENARIO_DIR / "toy-analytic.yaml").read_text())
    data["name"] = "study"
    data["network"]["uplink"] = {
        "trace_files": ["traces/walk.log", "traces/bus.log", "traces/train.log"],
        "eval_files": ["traces/train.log"],
    }
    (root / "study.yaml").write_text(yaml.safe_dump(data))
    return root


def test_several_values_after_one_flag_are_expanded():
    args = ["--uplink-traces", "a", "b", "--seeds", "1", "--downlink-traces=c", "d"]
    assert expand_multi_values(args, MULTI_VALUE_OPTIONS) == [
        "--uplink-traces",
        "a",
        "--uplink-traces",
        "b",
        "--seeds",
        "1",
        "--downlink-traces=c",
        "--downlink-traces",
        "d",
    ]
    # a flag without a value stays one, so that the parser reports it
    assert expand_multi_values(["--uplink-traces", "--x"], MULTI_VALUE_OPTIONS) == [
        "--uplink-traces",
        "--x",
    ]


def test_compare_builds_best_fixed_and_edgent_dynamic_from_the_training_traces(study, tmp_path):
    """`--uplink-traces A B` (two files after one flag, as a shell glob expands): the episodes
    run on A and B, best-fixed and edgent-dynamic come from the scenario's training traces."""
    _pensieve(tmp_path / "slow1.log", [0.3] * 60)
    _pensieve(tmp_path / "slow2.log", [0.6] * 60)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            "--scenario",
            str(study / "study.yaml"),
            "--policies",
            "baseline:best-fixed,baseline:edgent-dynamic,baseline:edge-only",
            "--seeds",
            "0",
            "--episodes",
            "1",
            "--horizon-s",
            "10",
            "--uplink-traces",
            str(tmp_path / "slow1.log"),
            str(tmp_path / "slow2.log"),
            "--no-plots",
            "--out",
            str(out),
            *FAST_SEARCH,
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "comparison.json").read_text())
    assert "slow1.log" in doc["scenario"] and "slow2.log" in doc["scenario"]
    assert doc["training_scenario_fingerprint"] != doc["scenario_fingerprint"]
    assert any("slow2.log" in o for o in doc["evaluation_overrides"])
    pols = doc["policies"]
    # Edgent's bandwidth states are quantiles of the training traces (2 and 5 Mbit/s), not
    # of the override (0.3 and 0.6 Mbit/s)
    states = pols["edgent-dynamic"]["description"]["states_mbps"]
    assert min(states) >= 2.0 and max(states) <= 5.0
    cache = json.loads(next(out.glob("best_fixed*.json")).read_text())
    assert cache["scenario_fingerprint"] == doc["training_scenario_fingerprint"]
    # ... and they are scored on the override: raw uploads at <= 0.6 Mbit/s are slow
    assert pols["edge-only"]["metrics"]["latency_p50_ms"]["mean"] > 1000


def test_downlink_traces_are_paired_with_the_uplink_traces(tmp_path):
    from edgerl.experiments.cmd_agents import _trace_overrides

    ups = [tmp_path / f"u{i}.log" for i in range(2)]
    downs = [tmp_path / f"d{i}.log" for i in range(2)]
    for i, (u, d) in enumerate(zip(ups, downs, strict=True)):
        _pensieve(u, [1.0 + i] * 30)
        _pensieve(d, [10.0 + 10 * i] * 30)
    sets = _trace_overrides(ups, "auto", None, "mbps", downs)
    assert "network.paired_links=true" in sets
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator

    model = ScenarioModel.from_config(load_scenario("toy-analytic", sets))
    seen = set()
    for seed in range(12):
        sim = build_simulator(model, seed, "eval")
        dev = sim.devices[0]
        up, down = dev.uplink.bandwidth.mbps_at(1.0), dev.downlink.bandwidth.mbps_at(1.0)
        assert (up, down) in {(1.0, 10.0), (2.0, 20.0)}  # never crossed
        seen.add(up)
    assert seen == {1.0, 2.0}
    with pytest.raises(Exception, match="one downlink per uplink"):
        _trace_overrides(ups, "auto", None, "mbps", downs[:1])


def test_downlink_traces_on_the_command_line(study, tmp_path):
    _pensieve(tmp_path / "down.log", [0.05] * 60)
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--scenario",
            str(study / "study.yaml"),
            "--policy",
            "baseline:edge-only",
            "--episodes",
            "1",
            "--horizon-s",
            "10",
            "--downlink-traces",
            str(tmp_path / "down.log"),
            "--json",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert "down.log" in doc["scenario"]


def test_mahimahi_up_and_down_traces_can_be_paired():
    from edgerl.envs.config import load_scenario
    from edgerl.envs.sim.build import ScenarioModel, build_simulator, link_traces

    model = ScenarioModel.from_config(load_scenario("camera-lte", ["network.paired_links=true"]))
    net = model.cfg.network
    ups, downs = link_traces(net.uplink, "eval"), link_traces(net.downlink, "eval")
    stems = [t.name.split(".")[0] for t in ups]
    assert stems == [t.name.split(".")[0] for t in downs]
    for seed in range(5):
        sim = build_simulator(model, seed, "eval")
        up, down = sim.devices[0].uplink.bandwidth, sim.devices[0].downlink.bandwidth
        up_trace = next(t for t in ups if t is up._src)
        down_trace = next(t for t in downs if t is down._src)
        assert up_trace.name.split(".")[0] == down_trace.name.split(".")[0]
        assert np.isclose(up.offset_s % down_trace.duration_s, down.offset_s)


def test_reuse_refusal_checks_configuration_and_commit(monkeypatch):
    from edgerl.experiments import bench_agents, runinfo
    from edgerl.experiments.train import TrainConfig, planned_record

    monkeypatch.setattr(runinfo, "git_commit", lambda *a: "c1")
    tcfg = TrainConfig(scenario="toy-analytic", algo="ppo", timesteps=128, n_envs=2)
    data = planned_record(tcfg) | {"git_commit": "c1"}
    assert bench_agents.reuse_refusal(data, tcfg) is None
    assert "commit c0" in str(bench_agents.reuse_refusal(data | {"git_commit": "c0"}, tcfg))
    assert bench_agents.reuse_refusal(data | {"git_commit": "c0"}, tcfg, True) is None
    for change in (
        {"hp": ("n_steps=32",)},
        {"seed": 1},
        {"scenario_set": ("reward.slo_miss=0.4",)},
        {"algo": "a2c"},
    ):
        other = TrainConfig(**{**vars(tcfg), **change})
        assert "another configuration" in str(bench_agents.reuse_refusal(data, other)), change
    monkeypatch.setattr(runinfo, "git_commit", lambda *a: "c1-dirty")
    assert "c1-dirty" in str(bench_agents.reuse_refusal(data | {"git_commit": "c1-dirty"}, tcfg))


@pytest.mark.slow
def test_bench_reuses_a_training_only_for_the_same_configuration_and_commit(tmp_path, monkeypatch):
    from edgerl.experiments import bench_agents, runinfo
    from edgerl.experiments import train as train_mod

    commit = {"now": "c1"}
    monkeypatch.setattr(runinfo, "git_commit", lambda *a: commit["now"])
    cfg = bench_agents.BenchConfig(
        timesteps=128,
        runs_dir=tmp_path / "runs",
        n_envs=2,
        hp=("eval_freq=64", "eval_episodes=1", "eval_horizon_s=10", "n_steps=64"),
        progress_bar=False,
    )
    first = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert not first["reused"] and first["git_commit"] == "c1"

    def no_training(_cfg):
        raise AssertionError("retrained")

    monkeypatch.setattr(train_mod, "train", no_training)
    again = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert again["reused"] and not again["reused_other_commit"]
    commit["now"] = "c2"  # the code moved on: not reused ...
    with pytest.raises(AssertionError, match="retrained"):
        bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    cfg.reuse_other_commits = True  # ... unless asked, and then the results say so
    other = bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
    assert other["reused"] and other["reused_other_commit"] and other["git_commit"] == "c1"
    commit["now"] = "c1"
    cfg.hp = (*cfg.hp[:-1], "n_steps=32")  # same run directory, other hyperparameters
    with pytest.raises(AssertionError, match="retrained"):
        bench_agents._train_or_reuse(cfg, "toy-analytic", "maskable_ppo", 0, ())
